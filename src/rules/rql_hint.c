/* The rule index: for every rule, conditions its program cannot match without (field
 * equalities, substrings, networks, intel lists), and per event the rules whose conditions
 * hold, so that the ruleset evaluates only the rules an event can match. */
#include "rules/rql_internal.h"

#include <hs.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"

/* ==== the rule index ===========================================================================
 *
 * A rule's key is a set of atoms, at least one of which holds for every event the rule matches
 * (so an event none of whose atoms hold is never evaluated against it). An atom says that some
 * value of a field path, optionally case-mapped, is:
 *   AT_EQ    equal to one of a few strings         (= "s", in [...], |lowercase = "s")
 *   AT_SUB   a string containing a literal         (contains, containscis, startswith,
 *                                                   endswith, a literal every match of a
 *                                                   regexp contains)
 *   AT_CIDR  an IP address within one of networks  (cidr "net", cidr [...])
 *   AT_INTEL in an intel list                      (intel(field, 'List'))
 * Keys come from the program's tree: a predicate gives its atoms; `a and b` the cheaper key of a
 * or b (either is necessary); `a or b` the union of both keys (one of them must hold; no key if
 * either has none); `expand p (e)` the key of e with p's segments before each path (the
 * elements of p are the objects the path resolves to, so a value of field f in an element is a
 * value of p.f); `not` and negated predicates give no key. A rule without a key is evaluated for
 * every event.
 *
 * Why an atom never misses a value evaluation would see (the resolver, walk_obj below):
 *   - Values are collected along the same path as evaluation resolves it: objects descended by
 *     key, lists of objects crossed, the event's first raw_log string read as JSON (its text, by
 *     the reader below, or the tree evaluation parses, shared through struct sl_rql_input).
 *     Every member with the key is followed (evaluation takes the first), so the resolver's
 *     values are a superset.
 *   - After a hit, sl_rql_index_update reads the members the actions wrote and adds their
 *     rules: candidates only grow within an event (a rule left a candidate by an edit is just
 *     evaluated, and fails).
 *   - Shapes it does not follow make every rule keyed under that point a candidate: a member
 *     key with a dot whose first part is a segment the index knows (evaluation may take the flat
 *     dotted key instead), and an array directly inside an array (evaluation flattens it, and
 *     mutators splice it).
 *   - Atoms are made only where the predicate's test is exactly the atom on the values: strings
 *     compared byte for byte after the same case map as the mutators (rql_case_map); a number
 *     by its canonical text, which equals a string literal exactly when the literal is that
 *     number's canonical text (the literal's canon flag); substrings only over strings, as the
 *     operators read only strings; no other mutator, no negation. `|all` needs every element to
 *     pass, so in particular one: the same atom holds.
 *   - When the index cannot answer (no memory, a Hyperscan error), it sets the rules it could
 *     not clear. */

#define INF_COST   1e300
#define FOLD_LOWER 1
#define FOLD_UPPER 2
#define RUN_MIN    3   /* shortest regexp literal used as a key */
#define MAX_REGEX  256 /* regexps of one program read for literals */

enum { AT_EQ = 0, AT_SUB, AT_CIDR, AT_INTEL };

struct seg {
    const char *s;
    uint16_t n;
};

/* A built atom (build time: points into the program). */
struct atom {
    uint8_t kind;
    uint8_t fold; /* case maps before the test: fold & 3 first, then fold >> 2 (FOLD_*) */
    uint16_t nseg;
    struct seg *segs;
    const struct rql_lit *lits; /* AT_EQ: string values */
    size_t nlits;
    const char *s; /* AT_SUB: the literal; AT_INTEL: the list name */
    size_t n;
    const struct rql_net *nets; /* AT_CIDR */
    size_t nnets;
    struct atom *next;
};

struct kset {
    double cost; /* INF_COST: no key */
    struct atom *head;
};

/* Counts of (atom, value) over all the rules: a value many rules test ("ip", "Security") is
 * less selective than one few do. */
struct freq {
    uint64_t *keys;
    uint32_t *counts;
    size_t cap, n;
};

struct kctx {
    struct sl_arena *mem;
    struct freq *freq;
    int counting; /* first pass: count values, costs unused */
    int oom;
    const struct sl_rql *prog;
    struct seg pre[RQL_MAX_SEGMENTS]; /* the segments of the enclosing expand paths */
    size_t npre;
    const struct rql_node *rx_node[MAX_REGEX]; /* the program's regexps, in source order */
    const char *rx_pat[MAX_REGEX];
    size_t rx_len[MAX_REGEX];
    size_t nrx;
};

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define FNV_INIT 0xcbf29ce484222325ULL

/* ---- literals a regular expression cannot match without ------------------------------------ */

static int run_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr(" -_/:;,'\"!@%&=<>~`#", c));
}

/* The end of the character class starting at p[i] ('['), or 0 when unsure. */
static size_t skip_class(const char *p, size_t n, size_t i)
{
    i++;
    if (i < n && p[i] == '^')
        i++;
    if (i < n && p[i] == ']')
        i++; /* a ] first is a member */
    while (i < n) {
        if (p[i] == '\\') {
            if (i + 1 >= n || p[i + 1] == 'Q')
                return 0;
            i += 2;
            continue;
        }
        if (p[i] == '[' && i + 1 < n && (p[i + 1] == ':' || p[i + 1] == '.' || p[i + 1] == '=')) {
            char close = p[i + 1];
            size_t j = i + 2;
            while (j + 1 < n && !(p[j] == close && p[j + 1] == ']'))
                j++;
            if (j + 1 >= n)
                return 0;
            i = j + 2;
            continue;
        }
        if (p[i] == ']')
            return i + 1;
        i++;
    }
    return 0;
}

/* The end of the group starting at p[i] ('('), or 0 when unsure. */
static size_t skip_group(const char *p, size_t n, size_t i)
{
    int depth = 0;
    while (i < n) {
        char c = p[i];
        if (c == '\\') {
            if (i + 1 >= n || p[i + 1] == 'Q')
                return 0;
            i += 2;
            continue;
        }
        if (c == '[') {
            if (!(i = skip_class(p, n, i)))
                return 0;
            continue;
        }
        if (c == '(') {
            if (i + 2 < n && p[i + 1] == '?' && p[i + 2] == '#')
                return 0; /* a comment: its text is not pattern */
            depth++;
        } else if (c == ')' && --depth == 0) {
            return i + 1;
        }
        i++;
    }
    return 0;
}

/* A quantifier at p[i]: its end (past a lazy or possessive mark) and its minimum, or 0. */
static size_t quantifier(const char *p, size_t n, size_t i, unsigned long *min)
{
    if (p[i] == '*' || p[i] == '?') {
        *min = 0;
        i++;
    } else if (p[i] == '+') {
        *min = 1;
        i++;
    } else {
        size_t j = i + 1, d = 0;
        unsigned long v = 0;
        while (j < n && p[j] >= '0' && p[j] <= '9' && d < 6) {
            v = v * 10 + (unsigned long)(p[j++] - '0');
            d++;
        }
        if (d == 0 || j >= n)
            return 0; /* "{" that is not a quantifier is a literal: not read here */
        if (p[j] == ',') {
            j++;
            while (j < n && p[j] >= '0' && p[j] <= '9')
                j++;
        }
        if (j >= n || p[j] != '}')
            return 0;
        *min = v;
        i = j + 1;
    }
    if (i < n && (p[i] == '?' || p[i] == '+'))
        i++;
    return i;
}

/* Appends to out (up to max) the runs of literal characters every match of the pattern
 * contains (each of RUN_MIN bytes or more, decoded into buf, which holds n bytes). Reads only
 * what it is sure of: a top-level alternation, an inline option, \Q, or an escape it does not
 * know gives no runs. Returns the number of runs. */
static size_t regex_runs(const char *p, size_t n, char *buf, struct seg *out, size_t max)
{
    size_t nruns = 0, blen = 0, start = 0, i = 0;
    int prev = 0; /* the previous atom: 0 none, 1 a literal character in the run, 2 other */
#define END_RUN()                                                                                  \
    do {                                                                                           \
        if (blen - start >= RUN_MIN && nruns < max && blen - start <= UINT16_MAX)                  \
            out[nruns++] = (struct seg){buf + start, (uint16_t)(blen - start)};                    \
        start = blen;                                                                              \
    } while (0)
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\\') {
            if (i + 1 >= n)
                return 0;
            unsigned char d = (unsigned char)p[i + 1];
            if (d >= 0x20 && d < 0x7f &&
                !((d >= 'a' && d <= 'z') || (d >= 'A' && d <= 'Z') || (d >= '0' && d <= '9'))) {
                buf[blen++] = (char)d; /* an escaped punctuation character is itself */
                prev = 1;
            } else if (d && strchr("dDwWsShHvVR", d)) {
                END_RUN();
                prev = 2;
            } else if (d == 'N' && !(i + 2 < n && p[i + 2] == '{')) {
                END_RUN();
                prev = 2;
            } else if (d && strchr("bBAzZGK", d)) {
                END_RUN();
                prev = 0;
            } else {
                return 0;
            }
            i += 2;
            continue;
        }
        if (c == '[' || c == '(') {
            size_t j;
            if (c == '(' && i + 1 < n &&
                (p[i + 1] == '*' || (p[i + 1] == '?' && !(i + 2 < n && p[i + 2] == ':'))))
                return 0; /* options, lookarounds, verbs, named groups */
            j = c == '[' ? skip_class(p, n, i) : skip_group(p, n, i);
            if (!j)
                return 0;
            END_RUN();
            prev = 2;
            i = j;
            continue;
        }
        if (c == ')' || c == '|')
            return 0;
        if (c == '*' || c == '+' || c == '?' || c == '{') {
            unsigned long min;
            size_t j = quantifier(p, n, i, &min);
            if (!j || prev == 0)
                return 0;
            if (prev == 1) {
                if (min == 0)
                    blen--; /* the character is optional */
                if (blen < start)
                    start = blen;
                END_RUN();
            }
            prev = 2;
            i = j;
            continue;
        }
        if (c == '.' || c == '^' || c == '$') {
            END_RUN();
            prev = c == '.' ? 2 : 0;
            i++;
            continue;
        }
        if (run_char(c)) {
            buf[blen++] = (char)c;
            prev = 1;
            i++;
            continue;
        }
        /* Anything else (a UTF-8 character, a control character, ] or }): one atom. */
        END_RUN();
        prev = 2;
        i++;
        while (c >= 0xc0 && i < n && ((unsigned char)p[i] & 0xc0) == 0x80)
            i++;
    }
    END_RUN();
#undef END_RUN
    return nruns;
}

/* Finds the program's regexps and their patterns: the compiled program keeps no text, so the
 * query is lexed again; the k-th `regexp` token's string is the k-th regexp predicate in source
 * order (the tree's order). Any doubt leaves the regexps without patterns. */
static void find_regexps(struct kctx *k, const struct rql_node *n)
{
    if (n->kind == RQL_PRED && n->op == OP_REGEXP) {
        if (k->nrx < MAX_REGEX)
            k->rx_node[k->nrx] = n;
        k->nrx++;
    }
    for (size_t i = 0; i < n->nkids; i++)
        find_regexps(k, n->kids[i]);
}

static void regex_patterns(struct kctx *k, const char *query)
{
    struct rql_lexer lx;
    struct rql_token t;
    struct sl_rql_error err;
    size_t found = 0;
    find_regexps(k, k->prog->root);
    if (k->nrx == 0 || k->nrx > MAX_REGEX || !query)
        goto none;
    rql_lex_init(&lx, query, strlen(query), k->mem, &err);
    for (;;) {
        if (rql_lex_next(&lx, &t))
            goto none;
        if (t.type == T_EOF)
            break;
        if (t.type != T_REGEXP)
            continue;
        if (rql_lex_next(&lx, &t) || t.type != T_STRING || found == k->nrx)
            goto none;
        k->rx_pat[found] = t.str;
        k->rx_len[found] = t.slen;
        found++;
    }
    if (found == k->nrx)
        return;
none:
    k->nrx = 0;
}

/* ---- keys of a program ------------------------------------------------------------------------
 */

static void freq_add(struct freq *f, uint64_t key)
{
    if (2 * (f->n + 1) > f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 1024;
        uint64_t *keys = calloc(cap, sizeof(*keys));
        uint32_t *counts = calloc(cap, sizeof(*counts));
        if (!keys || !counts) {
            free(keys);
            free(counts);
            return; /* counts only steer the choice of keys */
        }
        for (size_t i = 0; i < f->cap; i++) {
            if (!f->keys[i])
                continue;
            size_t j = f->keys[i] & (cap - 1);
            while (keys[j])
                j = (j + 1) & (cap - 1);
            keys[j] = f->keys[i];
            counts[j] = f->counts[i];
        }
        free(f->keys);
        free(f->counts);
        f->keys = keys;
        f->counts = counts;
        f->cap = cap;
    }
    key |= 1;
    size_t j = key & (f->cap - 1);
    while (f->keys[j] && f->keys[j] != key)
        j = (j + 1) & (f->cap - 1);
    if (!f->keys[j]) {
        f->keys[j] = key;
        f->n++;
    }
    f->counts[j]++;
}

static uint32_t freq_get(const struct freq *f, uint64_t key)
{
    key |= 1;
    if (!f->cap)
        return 1;
    size_t j = key & (f->cap - 1);
    while (f->keys[j]) {
        if (f->keys[j] == key)
            return f->counts[j];
        j = (j + 1) & (f->cap - 1);
    }
    return 1;
}

/* How selective a value of an atom is: the number of atoms of the ruleset testing it. */
static double value_cost(struct kctx *k, const struct atom *a, const char *v, size_t n)
{
    uint64_t h = FNV_INIT ^ ((uint64_t)a->kind << 8 | a->fold);
    for (size_t i = 0; i < a->nseg; i++)
        h = mix64(fnv(h, a->segs[i].s, a->segs[i].n));
    h = mix64(fnv(h, v, n));
    if (k->counting) {
        freq_add(k->freq, h);
        return 1;
    }
    return (double)freq_get(k->freq, h);
}

static struct kset none(void)
{
    return (struct kset){INF_COST, NULL};
}

/* The case maps of n's mutators (see struct atom), or -1 when a mutator does more. */
static int mut_fold(const struct rql_node *n)
{
    int f = 0;
    if (n->nmut > 2)
        return -1;
    for (int i = 0; i < n->nmut; i++) {
        if (n->mut[i] != MUT_LOWERCASE && n->mut[i] != MUT_UPPERCASE)
            return -1;
        f |= (n->mut[i] == MUT_LOWERCASE ? FOLD_LOWER : FOLD_UPPER) << (2 * i);
    }
    return f;
}

static struct atom *new_atom(struct kctx *k, int kind, int fold, const struct rql_node *n)
{
    size_t nseg = k->npre + n->path.nseg;
    struct atom *a = sl_arena_alloc(k->mem, sizeof(*a));
    struct seg *segs = sl_arena_alloc(k->mem, nseg * sizeof(*segs));
    if (!a || !segs) {
        k->oom = 1;
        return NULL;
    }
    memset(a, 0, sizeof(*a));
    memcpy(segs, k->pre, k->npre * sizeof(*segs));
    for (size_t i = 0; i < n->path.nseg; i++)
        segs[k->npre + i] = (struct seg){n->path.text + n->path.seg_off[i],
                                         (uint16_t)(n->path.seg_end[i] - n->path.seg_off[i])};
    a->kind = (uint8_t)kind;
    a->fold = (uint8_t)fold;
    a->nseg = (uint16_t)nseg;
    a->segs = segs;
    return a;
}

/* A path under raw_log costs a parse of the raw_log when no other key needs it. */
static double path_cost(const struct atom *a)
{
    return a->nseg > 1 && a->segs[0].n == 7 && !memcmp(a->segs[0].s, "raw_log", 7) ? 4 : 0;
}

static struct kset one(struct atom *a, double cost)
{
    return a ? (struct kset){cost + path_cost(a), a} : none();
}

/* = "s", in [...]: any of the values (all: one of them, the rarest). */
static struct kset eq_key(struct kctx *k, const struct rql_node *n, int fold, int all)
{
    struct kset best = none();
    if (n->nlits == 0)
        return none();
    for (size_t i = 0; i < n->nlits; i++)
        if (n->lits[i].type != LIT_STR || n->lits[i].has_nul)
            return none();
    if (!all) {
        struct atom *a = new_atom(k, AT_EQ, fold, n);
        double cost = 0;
        if (!a)
            return none();
        a->lits = n->lits;
        a->nlits = n->nlits;
        for (size_t i = 0; i < n->nlits; i++)
            cost += value_cost(k, a, n->lits[i].s, n->lits[i].n);
        return one(a, cost);
    }
    for (size_t i = 0; i < n->nlits; i++) {
        struct atom *a = new_atom(k, AT_EQ, fold, n);
        if (!a)
            return none();
        a->lits = &n->lits[i];
        a->nlits = 1;
        struct kset c = one(a, value_cost(k, a, n->lits[i].s, n->lits[i].n));
        if (c.cost < best.cost)
            best = c;
    }
    return best;
}

static struct kset sub_atom(struct kctx *k, const struct rql_node *n, int fold, const char *s,
                            size_t len)
{
    struct atom *a = new_atom(k, AT_SUB, fold, n);
    if (!a)
        return none();
    a->s = s;
    a->n = len;
    /* Short literals are found in many values. */
    double cost = 2 * value_cost(k, a, s, len) + (len < 4 ? 16 : len < 6 ? 2 : 0);
    return one(a, cost);
}

/* Appends the atoms of b to a (an `or`). */
static void ks_join(struct kset *a, struct kset b)
{
    struct atom **tail = &a->head;
    while (*tail)
        tail = &(*tail)->next;
    *tail = b.head;
    a->cost += b.cost;
}

static struct kset contains_key(struct kctx *k, const struct rql_node *n, int fold)
{
    int ci = n->op == OP_CONTAINSCIS;
    struct kset acc = {0, NULL}, best = none();
    if (ci) {
        if ((fold >> 2) & 3)
            return none(); /* three case maps: not indexed */
        fold = fold & 3 ? fold | FOLD_LOWER << 2 : FOLD_LOWER;
    }
    if (n->nlits == 0)
        return none();
    for (size_t i = 0; i < n->nlits; i++) {
        const struct rql_lit *l = &n->lits[i];
        if (l->n == 0) {
            if (!n->all)
                return none(); /* "" is in every string */
            continue;
        }
        struct kset c = sub_atom(k, n, fold, ci ? l->low : l->s, l->n);
        if (c.cost >= INF_COST)
            return none();
        if (n->all) {
            if (c.cost < best.cost)
                best = c;
        } else {
            ks_join(&acc, c);
        }
    }
    return n->all ? best : acc;
}

static struct kset regexp_key(struct kctx *k, const struct rql_node *n, int fold)
{
    struct kset best = none();
    size_t i = 0;
    while (i < k->nrx && k->rx_node[i] != n)
        i++;
    if (i == k->nrx)
        return none();
    char *buf = sl_arena_alloc(k->mem, k->rx_len[i] + 1);
    struct seg runs[16];
    if (!buf) {
        k->oom = 1;
        return none();
    }
    size_t nruns = regex_runs(k->rx_pat[i], k->rx_len[i], buf, runs, 16);
    for (size_t r = 0; r < nruns; r++) {
        struct kset c = sub_atom(k, n, fold, runs[r].s, runs[r].n);
        if (c.cost < best.cost)
            best = c;
    }
    return best;
}

static struct kset pred_key(struct kctx *k, const struct rql_node *n)
{
    int fold = mut_fold(n);
    if (n->negate || fold < 0 || n->path.nseg == 0 || k->npre + n->path.nseg > RQL_MAX_SEGMENTS)
        return none();
    switch (n->op) {
    case OP_EQ:
        return eq_key(k, n, fold, 0);
    case OP_IN:
        return eq_key(k, n, fold, n->all);
    case OP_CONTAINS:
    case OP_CONTAINSCIS:
        return contains_key(k, n, fold);
    case OP_STARTSWITH:
    case OP_ENDSWITH:
        if (n->nlits != 1 || n->lits[0].n == 0)
            return none();
        return sub_atom(k, n, fold, n->lits[0].s, n->lits[0].n);
    case OP_REGEXP:
        return regexp_key(k, n, fold);
    case OP_CIDR: {
        if (fold || n->nnets == 0)
            return none();
        struct atom *a = new_atom(k, AT_CIDR, 0, n);
        double cost = 0;
        if (!a)
            return none();
        a->nets = n->nets;
        a->nnets = n->nnets;
        for (size_t i = 0; i < n->nnets; i++)
            cost += n->nets[i].bits < (n->nets[i].v6 ? 32 : 8) ? 16 : 2;
        return one(a, cost);
    }
    default:
        return none();
    }
}

static struct kset keyset(struct kctx *k, const struct rql_node *n)
{
    struct kset acc = {0, NULL}, best = none();
    int keyless = 0;
    switch (n->kind) {
    case RQL_AND:
        for (size_t i = 0; i < n->nkids; i++) {
            struct kset c = keyset(k, n->kids[i]);
            if (c.cost < best.cost)
                best = c;
        }
        return best;
    case RQL_OR:
        for (size_t i = 0; i < n->nkids; i++) {
            struct kset c = keyset(k, n->kids[i]);
            if (c.cost >= INF_COST)
                keyless = 1; /* keep going: the first pass counts every value */
            else
                ks_join(&acc, c);
        }
        return keyless ? none() : acc;
    case RQL_EXPAND: {
        size_t saved = k->npre;
        if (k->npre + n->path.nseg > RQL_MAX_SEGMENTS)
            return none();
        for (size_t i = 0; i < n->path.nseg; i++)
            k->pre[k->npre++] = (struct seg){n->path.text + n->path.seg_off[i],
                                             (uint16_t)(n->path.seg_end[i] - n->path.seg_off[i])};
        best = keyset(k, n->kids[0]);
        k->npre = saved;
        return best;
    }
    case RQL_INTEL: {
        int fold = mut_fold(n);
        /* Inside expand, intel(value, ...) passes the element's data type: not indexed. */
        if (k->npre || fold < 0 || n->path.nseg == 0)
            return none();
        struct atom *a = new_atom(k, AT_INTEL, fold, n);
        if (!a)
            return none();
        a->s = k->prog->lists[n->list];
        a->n = strlen(a->s);
        return one(a, 8);
    }
    case RQL_PRED:
        return pred_key(k, n);
    default:
        return none();
    }
}

/* ---- the index ------------------------------------------------------------------------------- */

/* Rules ix->rules[off..off+n). */
struct post {
    uint32_t off, n;
};

/* A node of the trie of indexed paths: one segment. */
struct tnode {
    char *name;
    uint16_t len;
    uint8_t raw_log; /* the top-level raw_log: a JSON string there is parsed */
    int32_t path;    /* the path ending here, or -1 */
    uint32_t *kids;  /* node numbers */
    uint32_t nkids, kcap;
    uint32_t *byfirst;  /* 256 entries: 1 + the first kid whose name starts with the byte */
    uint32_t next_same; /* 1 + the next kid of the parent with the same first byte, or 0 */
    struct post sub;    /* rules with an atom on a path through this node */
};

struct ix_intel {
    char *list;
    struct post rules;
};

/* The atoms on one path after one case map. */
struct group {
    uint32_t path;
    uint8_t fold;
    uint8_t eq;        /* has AT_EQ entries in ix->eq */
    hs_database_t *db; /* AT_SUB literals, id = literal number */
    struct post *lit;  /* rules of each literal */
    uint32_t nlit;
    size_t minlit; /* the shortest literal: a shorter value holds none */
    struct ix_intel *intel;
    uint32_t nintel;
};

/* An AT_EQ value: while building, one per (value, rule); in the table, one per distinct
 * (group, value) with its rules. */
struct eqent {
    uint64_t hash; /* 0: empty slot */
    const char *s;
    uint32_t n;
    uint32_t group;
    uint32_t rule;     /* while building */
    struct post rules; /* in the table */
    uint8_t canon;     /* the value is a number's canonical text: numbers equal it */
};

struct cidrent {
    uint8_t v6, bits;
    uint8_t addr[16];
    uint32_t rule;
};

struct pfx {
    uint8_t v6, bits;
};

struct ipath {
    uint32_t node;
    uint32_t *groups;
    uint32_t ngroups;
    struct cidrent *cidr; /* sorted by (v6, bits, addr) */
    size_t ncidr;
    struct pfx *pfx; /* the distinct (v6, bits) of cidr */
    size_t npfx;
};

struct sl_rql_index {
    uint64_t id; /* unique: the per-thread Hyperscan scratch knows which indexes it fits */
    size_t nrules, nwords, nunkeyed;
    uint64_t *always;
    struct tnode *nodes; /* nodes[0]: the event */
    size_t nnodes, nodecap;
    struct ipath *paths;
    size_t npaths;
    struct group *groups;
    size_t ngroups;
    struct eqent *eq;
    size_t eqmask; /* eq has eqmask + 1 slots (0 when no AT_EQ atom) */
    uint32_t *rules;
    size_t nposts;
    struct sl_arena *mem;
};

static atomic_uint_fast64_t next_index_id = 1;

/* ---- building ---- */

/* (key, rule) pairs, turned into postings. */
struct pair {
    uint32_t key, rule;
};

struct pairs {
    struct pair *v;
    size_t n, cap;
};

static int pairs_add(struct pairs *p, uint32_t key, uint32_t rule)
{
    if (p->n && p->v[p->n - 1].key == key && p->v[p->n - 1].rule == rule)
        return 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 64;
        struct pair *v = realloc(p->v, cap * sizeof(*p->v));
        if (!v)
            return -1;
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n].key = key;
    p->v[p->n].rule = rule;
    p->n++;
    return 0;
}

static int cmp_pair(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->rule < y->rule ? -1 : x->rule > y->rule;
}

/* Fills out[0..nkeys) from the pairs, appending their rules to ix->rules (which has room). */
static void pairs_post(struct sl_rql_index *ix, struct pairs *p, struct post *const *out,
                       size_t nkeys)
{
    if (p->n)
        qsort(p->v, p->n, sizeof(*p->v), cmp_pair);
    size_t i = 0;
    for (size_t key = 0; key < nkeys; key++) {
        struct post *dst = out[key];
        dst->off = (uint32_t)ix->nposts;
        dst->n = 0;
        while (i < p->n && p->v[i].key < key)
            i++;
        for (; i < p->n && p->v[i].key == key; i++) {
            if (dst->n && ix->rules[ix->nposts - 1] == p->v[i].rule)
                continue;
            ix->rules[ix->nposts++] = p->v[i].rule;
            dst->n++;
        }
    }
}

static inline uint64_t load64(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint64_t load32(const char *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* A hash of s[0..n) read a word at a time (the last words may overlap). */
static uint64_t bytes_hash(uint64_t seed, const char *s, size_t n)
{
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL), a, b;
    size_t left = n;
    while (left > 16) {
        h = (h ^ load64(s)) * 0xff51afd7ed558ccdULL;
        h = (h ^ (h >> 29) ^ load64(s + 8)) * 0xc4ceb9fe1a85ec53ULL;
        s += 16;
        left -= 16;
    }
    if (left >= 8) {
        a = load64(s);
        b = load64(s + left - 8);
    } else if (left >= 4) {
        a = load32(s);
        b = load32(s + left - 4);
    } else {
        a = left ? ((uint64_t)(unsigned char)s[0] << 16 |
                    (uint64_t)(unsigned char)s[left / 2] << 8 | (unsigned char)s[left - 1])
                 : 0;
        b = 0;
    }
    h = (h ^ a) * 0xff51afd7ed558ccdULL;
    h = (h ^ (h >> 29) ^ b) * 0xc4ceb9fe1a85ec53ULL;
    return mix64(h);
}

/* The kid of node t named s, or -1. Build time: a linear search. */
static int32_t kid_find_slow(const struct sl_rql_index *ix, const struct tnode *t, const char *s,
                             size_t n)
{
    for (uint32_t i = 0; i < t->nkids; i++) {
        const struct tnode *k = &ix->nodes[t->kids[i]];
        if (k->len == n && !memcmp(k->name, s, n))
            return (int32_t)t->kids[i];
    }
    return -1;
}

/* The node of an atom's path (added as needed), or -1 when out of memory. */
static int32_t trie_add(struct sl_rql_index *ix, const struct atom *a)
{
    uint32_t cur = 0;
    for (size_t i = 0; i < a->nseg; i++) {
        int32_t k = kid_find_slow(ix, &ix->nodes[cur], a->segs[i].s, a->segs[i].n);
        if (k < 0) {
            if (ix->nnodes == ix->nodecap) {
                size_t cap = 2 * ix->nodecap;
                struct tnode *nodes = realloc(ix->nodes, cap * sizeof(*nodes));
                if (!nodes)
                    return -1;
                ix->nodes = nodes;
                ix->nodecap = cap;
            }
            struct tnode *t = &ix->nodes[cur];
            if (t->nkids == t->kcap) {
                uint32_t cap = t->kcap ? 2 * t->kcap : 4;
                uint32_t *kids = realloc(t->kids, cap * sizeof(*kids));
                if (!kids)
                    return -1;
                t->kids = kids;
                t->kcap = cap;
            }
            struct tnode *nt = &ix->nodes[ix->nnodes];
            memset(nt, 0, sizeof(*nt));
            nt->name = sl_arena_alloc(ix->mem, a->segs[i].n + 1);
            if (!nt->name)
                return -1;
            memcpy(nt->name, a->segs[i].s, a->segs[i].n);
            nt->name[a->segs[i].n] = '\0';
            nt->len = a->segs[i].n;
            nt->path = -1;
            nt->raw_log = cur == 0 && nt->len == 7 && !memcmp(nt->name, "raw_log", 7);
            k = (int32_t)ix->nnodes++;
            t->kids[t->nkids++] = (uint32_t)k;
        }
        cur = (uint32_t)k;
    }
    return (int32_t)cur;
}

static int kid_tables(struct sl_rql_index *ix)
{
    for (size_t i = 0; i < ix->nnodes; i++) {
        struct tnode *t = &ix->nodes[i];
        if (!t->nkids)
            continue;
        if (!(t->byfirst = calloc(256, sizeof(*t->byfirst))))
            return -1;
        for (uint32_t k = t->nkids; k-- > 0;) {
            struct tnode *kid = &ix->nodes[t->kids[k]];
            unsigned char c = (unsigned char)kid->name[0];
            kid->next_same = t->byfirst[c];
            t->byfirst[c] = t->kids[k] + 1;
        }
    }
    return 0;
}

static int32_t path_of(struct sl_rql_index *ix, int32_t node)
{
    struct tnode *t = &ix->nodes[node];
    if (t->path >= 0)
        return t->path;
    struct ipath *p = realloc(ix->paths, (ix->npaths + 1) * sizeof(*p));
    if (!p)
        return -1;
    ix->paths = p;
    memset(&p[ix->npaths], 0, sizeof(*p));
    p[ix->npaths].node = (uint32_t)node;
    t->path = (int32_t)ix->npaths;
    return (int32_t)ix->npaths++;
}

static int32_t group_of(struct sl_rql_index *ix, uint32_t path, int fold)
{
    struct ipath *p = &ix->paths[path];
    for (uint32_t i = 0; i < p->ngroups; i++)
        if (ix->groups[p->groups[i]].fold == fold)
            return (int32_t)p->groups[i];
    struct group *g = realloc(ix->groups, (ix->ngroups + 1) * sizeof(*g));
    uint32_t *pg = realloc(p->groups, (p->ngroups + 1) * sizeof(*pg));
    if (g)
        ix->groups = g;
    if (pg)
        p->groups = pg;
    if (!g || !pg)
        return -1;
    memset(&g[ix->ngroups], 0, sizeof(*g));
    g[ix->ngroups].path = path;
    g[ix->ngroups].fold = (uint8_t)fold;
    p->groups[p->ngroups++] = (uint32_t)ix->ngroups;
    return (int32_t)ix->ngroups++;
}

static char *copy_bytes(struct sl_arena *mem, const char *s, size_t n)
{
    char *d = sl_arena_alloc(mem, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* What the build collects before the index takes its final form. */
struct strent {
    uint32_t group;
    const char *s; /* index memory */
    size_t n;
    uint32_t rule;
};

struct build {
    struct pairs sub;            /* (node, rule) */
    struct strent *lits, *lists; /* AT_SUB literals, AT_INTEL lists */
    size_t nlits, nlists, litcap, listcap;
    struct eqent *eqs;
    size_t neq, eqcap;
    struct cidrent **cidr; /* by path */
    size_t *ncidr;
    size_t pathcap;
};

static int strent_add(struct strent **v, size_t *n, size_t *cap, struct strent e)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        struct strent *m = realloc(*v, c * sizeof(*m));
        if (!m)
            return -1;
        *v = m;
        *cap = c;
    }
    (*v)[(*n)++] = e;
    return 0;
}

static uint64_t eq_hash(uint32_t group, const char *s, size_t n)
{
    return bytes_hash(FNV_INIT ^ group, s, n) | 1;
}

/* Records one atom of rule. 0 or -1 (no memory). */
static int add_atom(struct sl_rql_index *ix, struct build *b, const struct atom *a, uint32_t rule)
{
    int32_t node = trie_add(ix, a);
    if (node < 0)
        return -1;
    /* Every node on the path: the rules to set when the event's shape there is unusual. */
    uint32_t cur = 0;
    for (size_t i = 0; i < a->nseg; i++) {
        cur = (uint32_t)kid_find_slow(ix, &ix->nodes[cur], a->segs[i].s, a->segs[i].n);
        if (pairs_add(&b->sub, cur, rule))
            return -1;
    }
    int32_t path = path_of(ix, node);
    int32_t group = path < 0 ? -1 : group_of(ix, (uint32_t)path, a->fold);
    if (group < 0)
        return -1;
    switch (a->kind) {
    case AT_EQ:
        for (size_t i = 0; i < a->nlits; i++) {
            const struct rql_lit *l = &a->lits[i];
            if (b->neq == b->eqcap) {
                size_t c = b->eqcap ? 2 * b->eqcap : 64;
                struct eqent *m = realloc(b->eqs, c * sizeof(*m));
                if (!m)
                    return -1;
                b->eqs = m;
                b->eqcap = c;
            }
            char *s = copy_bytes(ix->mem, l->s, l->n);
            if (!s)
                return -1;
            b->eqs[b->neq++] = (struct eqent){.hash = eq_hash((uint32_t)group, s, l->n),
                                              .s = s,
                                              .n = (uint32_t)l->n,
                                              .group = (uint32_t)group,
                                              .rule = rule,
                                              .canon = l->canon};
            ix->groups[group].eq = 1;
        }
        return 0;
    case AT_SUB:
    case AT_INTEL: {
        char *s = copy_bytes(ix->mem, a->s, a->n);
        struct strent e = {(uint32_t)group, s, a->n, rule};
        if (!s)
            return -1;
        return a->kind == AT_SUB ? strent_add(&b->lits, &b->nlits, &b->litcap, e)
                                 : strent_add(&b->lists, &b->nlists, &b->listcap, e);
    }
    default: {
        if ((size_t)path >= b->pathcap) {
            size_t c = (size_t)path + 16;
            struct cidrent **m = realloc(b->cidr, c * sizeof(*m));
            size_t *nc = m ? realloc(b->ncidr, c * sizeof(*nc)) : NULL;
            if (m)
                b->cidr = m;
            if (!m || !nc)
                return -1;
            b->ncidr = nc;
            for (size_t i = b->pathcap; i < c; i++) {
                b->cidr[i] = NULL;
                b->ncidr[i] = 0;
            }
            b->pathcap = c;
        }
        struct cidrent *m = realloc(b->cidr[path], (b->ncidr[path] + a->nnets) * sizeof(*m));
        if (!m)
            return -1;
        b->cidr[path] = m;
        for (size_t i = 0; i < a->nnets; i++) {
            struct cidrent *e = &m[b->ncidr[path]++];
            e->v6 = a->nets[i].v6;
            e->bits = a->nets[i].bits;
            memcpy(e->addr, a->nets[i].addr, 16);
            e->rule = rule;
        }
        return 0;
    }
    }
}

static int cmp_strent(const void *a, const void *b)
{
    const struct strent *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, n);
    if (c)
        return c;
    if (x->n != y->n)
        return x->n < y->n ? -1 : 1;
    return x->rule < y->rule ? -1 : x->rule > y->rule;
}

static int cmp_cidr(const void *a, const void *b)
{
    const struct cidrent *x = a, *y = b;
    if (x->v6 != y->v6)
        return x->v6 < y->v6 ? -1 : 1;
    if (x->bits != y->bits)
        return x->bits < y->bits ? -1 : 1;
    return memcmp(x->addr, y->addr, 16);
}

/* Gives each group its distinct literals (or lists), each with its rules; for literals, the
 * Hyperscan database. A group whose database does not compile keeps its rules in always. */
static int finish_strs(struct sl_rql_index *ix, struct strent *v, size_t n, int lits)
{
    if (n)
        qsort(v, n, sizeof(*v), cmp_strent);
    size_t i = 0;
    while (i < n) {
        struct group *g = &ix->groups[v[i].group];
        size_t end = i, distinct = 0;
        while (end < n && v[end].group == v[i].group) {
            if (end == i || v[end].n != v[end - 1].n || memcmp(v[end].s, v[end - 1].s, v[end].n))
                distinct++;
            end++;
        }
        struct post *posts = sl_arena_alloc(ix->mem, distinct * sizeof(*posts));
        struct ix_intel *intel =
            lits ? NULL : sl_arena_alloc(ix->mem, distinct * sizeof(struct ix_intel));
        const char **exprs = calloc(distinct, sizeof(*exprs));
        size_t *lens = calloc(distinct, sizeof(*lens));
        unsigned *ids = calloc(distinct, sizeof(*ids)), *flags = calloc(distinct, sizeof(*flags));
        if (!posts || (!lits && !intel) || !exprs || !lens || !ids || !flags) {
            free(exprs);
            free(lens);
            free(ids);
            free(flags);
            return -1;
        }
        size_t d = (size_t)-1;
        for (size_t j = i; j < end; j++) {
            if (j == i || v[j].n != v[j - 1].n || memcmp(v[j].s, v[j - 1].s, v[j].n)) {
                d++;
                posts[d] = (struct post){(uint32_t)ix->nposts, 0};
                exprs[d] = v[j].s;
                lens[d] = v[j].n;
                ids[d] = (unsigned)d;
                flags[d] = HS_FLAG_SINGLEMATCH;
                if (intel)
                    intel[d].list = (char *)v[j].s;
            }
            if (posts[d].n && ix->rules[ix->nposts - 1] == v[j].rule)
                continue;
            ix->rules[ix->nposts++] = v[j].rule;
            posts[d].n++;
        }
        if (intel) {
            for (size_t j = 0; j < distinct; j++)
                intel[j].rules = posts[j];
            g->intel = intel;
            g->nintel = (uint32_t)distinct;
        } else {
            hs_compile_error_t *cerr = NULL;
            if (hs_compile_lit_multi(exprs, flags, ids, lens, (unsigned)distinct, HS_MODE_BLOCK,
                                     NULL, &g->db, &cerr) == HS_SUCCESS) {
                g->lit = posts;
                g->nlit = (uint32_t)distinct;
                g->minlit = SIZE_MAX;
                for (size_t k = 0; k < distinct; k++)
                    if (lens[k] < g->minlit)
                        g->minlit = lens[k];
            } else {
                hs_free_compile_error(cerr);
                g->db = NULL;
                for (size_t j = i; j < end; j++)
                    ix->always[v[j].rule / 64] |= 1ULL << (v[j].rule % 64);
            }
        }
        free(exprs);
        free(lens);
        free(ids);
        free(flags);
        i = end;
    }
    return 0;
}

static int cmp_eqent(const void *a, const void *b)
{
    const struct eqent *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    if (x->n != y->n)
        return x->n < y->n ? -1 : 1;
    int c = memcmp(x->s, y->s, x->n);
    return c ? c : x->rule < y->rule ? -1 : x->rule > y->rule;
}

/* The table of distinct values (at most a quarter full: absent values, the common case, end
 * their probe soon). */
static int finish_eq(struct sl_rql_index *ix, struct build *b)
{
    if (!b->neq)
        return 0;
    qsort(b->eqs, b->neq, sizeof(*b->eqs), cmp_eqent);
    size_t cap = 16;
    while (cap < 4 * b->neq)
        cap *= 2;
    if (!(ix->eq = calloc(cap, sizeof(*ix->eq))))
        return -1;
    ix->eqmask = cap - 1;
    for (size_t i = 0; i < b->neq;) {
        struct eqent e = b->eqs[i];
        e.rules = (struct post){(uint32_t)ix->nposts, 0};
        for (; i < b->neq && b->eqs[i].group == e.group && b->eqs[i].n == e.n &&
               !memcmp(b->eqs[i].s, e.s, e.n);
             i++)
            if (!e.rules.n || ix->rules[ix->nposts - 1] != b->eqs[i].rule) {
                ix->rules[ix->nposts++] = b->eqs[i].rule;
                e.rules.n++;
            }
        size_t j = e.hash & ix->eqmask;
        while (ix->eq[j].hash)
            j = (j + 1) & ix->eqmask;
        ix->eq[j] = e;
    }
    return 0;
}

static int finish_cidr(struct sl_rql_index *ix, struct build *b)
{
    for (size_t p = 0; p < b->pathcap && p < ix->npaths; p++) {
        struct ipath *ip = &ix->paths[p];
        size_t n = b->ncidr[p];
        if (!n)
            continue;
        qsort(b->cidr[p], n, sizeof(struct cidrent), cmp_cidr);
        ip->cidr = b->cidr[p];
        ip->ncidr = n;
        b->cidr[p] = NULL;
        if (!(ip->pfx = calloc(n, sizeof(*ip->pfx))))
            return -1;
        for (size_t i = 0; i < n; i++)
            if (i == 0 || ip->cidr[i].v6 != ip->cidr[i - 1].v6 ||
                ip->cidr[i].bits != ip->cidr[i - 1].bits)
                ip->pfx[ip->npfx++] = (struct pfx){ip->cidr[i].v6, ip->cidr[i].bits};
    }
    return 0;
}

static void build_fini(struct build *b)
{
    free(b->sub.v);
    free(b->lits);
    free(b->lists);
    free(b->eqs);
    for (size_t i = 0; i < b->pathcap; i++)
        free(b->cidr[i]);
    free(b->cidr);
    free(b->ncidr);
}

void sl_rql_index_free(struct sl_rql_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->nnodes; i++) {
        free(ix->nodes[i].kids);
        free(ix->nodes[i].byfirst);
    }
    for (size_t i = 0; i < ix->npaths; i++) {
        free(ix->paths[i].groups);
        free(ix->paths[i].cidr);
        free(ix->paths[i].pfx);
    }
    for (size_t i = 0; i < ix->ngroups; i++)
        if (ix->groups[i].db)
            hs_free_database(ix->groups[i].db);
    free(ix->nodes);
    free(ix->paths);
    free(ix->groups);
    free(ix->eq);
    free(ix->rules);
    free(ix->always);
    sl_arena_destroy(ix->mem);
    free(ix);
}

/* The keys of every rule: a first pass counts the values, the second chooses. */
static int rule_keys(struct kctx *k, const struct sl_rql *const *progs, const char *const *queries,
                     size_t n, struct kset *out)
{
    for (int pass = 0; pass < 2; pass++) {
        k->counting = pass == 0;
        for (size_t i = 0; i < n; i++) {
            k->prog = progs[i];
            k->npre = 0;
            k->nrx = 0;
            out[i] = none();
            if (!progs[i] || !progs[i]->root)
                continue;
            regex_patterns(k, queries ? queries[i] : NULL);
            out[i] = keyset(k, progs[i]->root);
            if (k->oom)
                return -1;
        }
    }
    return 0;
}

struct sl_rql_index *sl_rql_index_build(const struct sl_rql *const *progs,
                                        const char *const *queries, size_t n)
{
    struct sl_rql_index *ix = calloc(1, sizeof(*ix));
    struct sl_arena *tmp = sl_arena_create(64 * 1024, 0);
    struct freq freq = {0};
    struct kctx *k = calloc(1, sizeof(*k));
    struct kset *keys = calloc(n + 1, sizeof(*keys));
    struct build b = {0};
    int ok = 0;
    if (!ix || !tmp || !k || !keys)
        goto out;
    ix->id = atomic_fetch_add(&next_index_id, 1);
    ix->nrules = n;
    ix->nwords = (n + 63) / 64 + 1;
    ix->mem = sl_arena_create(16 * 1024, 0);
    ix->always = calloc(ix->nwords, sizeof(uint64_t));
    ix->nodes = calloc(16, sizeof(*ix->nodes));
    ix->nodecap = 16;
    if (!ix->mem || !ix->always || !ix->nodes)
        goto out;
    ix->nnodes = 1;
    ix->nodes[0].path = -1;
    k->mem = tmp;
    k->freq = &freq;
    if (rule_keys(k, progs, queries, n, keys))
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (keys[i].cost >= INF_COST) {
            ix->always[i / 64] |= 1ULL << (i % 64);
            ix->nunkeyed++;
            continue;
        }
        for (const struct atom *a = keys[i].head; a; a = a->next) {
            if (add_atom(ix, &b, a, (uint32_t)i))
                goto out;
        }
    }
    /* Postings: trie nodes, literals and lists (each at most one rule per atom and node). */
    if (!(ix->rules = calloc(b.sub.n + b.nlits + b.nlists + b.neq + 1, sizeof(uint32_t))))
        goto out;
    struct post **subs = calloc(ix->nnodes, sizeof(*subs));
    if (!subs)
        goto out;
    for (size_t i = 0; i < ix->nnodes; i++)
        subs[i] = &ix->nodes[i].sub;
    pairs_post(ix, &b.sub, subs, ix->nnodes);
    free(subs);
    if (kid_tables(ix) || finish_strs(ix, b.lits, b.nlits, 1) ||
        finish_strs(ix, b.lists, b.nlists, 0) || finish_eq(ix, &b) || finish_cidr(ix, &b))
        goto out;
    ok = 1;
out:
    build_fini(&b);
    free(freq.keys);
    free(freq.counts);
    free(keys);
    free(k);
    sl_arena_destroy(tmp);
    if (!ok) {
        sl_rql_index_free(ix);
        return NULL;
    }
    return ix;
}

size_t sl_rql_index_words(const struct sl_rql_index *ix)
{
    return ix->nwords;
}

size_t sl_rql_index_unkeyed(const struct sl_rql_index *ix)
{
    return ix->nunkeyed;
}

/* ---- candidates of an event ---- */

/* A Hyperscan scratch per thread, grown to fit every index it has met (a scratch stays usable
 * with every database it was allocated for). */
static _Thread_local hs_scratch_t *tls_hs;
static _Thread_local uint64_t tls_hs_fits[16];
static pthread_key_t hs_key;
static pthread_once_t hs_once = PTHREAD_ONCE_INIT;
static int hs_key_ok;

static void hs_tls_free(void *p)
{
    hs_free_scratch(p);
    if (tls_hs == p)
        tls_hs = NULL;
}

static void hs_key_init(void)
{
    hs_key_ok = pthread_key_create(&hs_key, hs_tls_free) == 0;
}

static hs_scratch_t *thread_scratch(const struct sl_rql_index *ix)
{
    if (tls_hs && tls_hs_fits[ix->id & 15] == ix->id)
        return tls_hs;
    pthread_once(&hs_once, hs_key_init);
    if (!hs_key_ok)
        return NULL;
    hs_scratch_t *s = tls_hs;
    int ok = 1;
    for (size_t i = 0; ok && i < ix->ngroups; i++)
        ok = !ix->groups[i].db || hs_alloc_scratch(ix->groups[i].db, &s) == HS_SUCCESS;
    if (s != tls_hs) {
        /* A grown scratch replaces (and freed) the old one, and fits what it did. */
        if (pthread_setspecific(hs_key, s) != 0) {
            hs_free_scratch(s);
            tls_hs = NULL;
            return NULL;
        }
        tls_hs = s;
    }
    if (!ok)
        return NULL;
    tls_hs_fits[ix->id & 15] = ix->id;
    return s;
}

struct run {
    const struct sl_rql_index *ix;
    struct sl_rql_input *in;
    const struct sl_rql_env *env;
    struct sl_arena *scratch;
    uint64_t *bits;
    int raw_log_seen; /* the event's first raw_log member was visited */
    int hs_state;     /* 0: not asked yet, 1: r->hs usable, -1: none */
    hs_scratch_t *hs;
};

static void mark(struct run *r, struct post p)
{
    const uint32_t *v = r->ix->rules + p.off;
    for (uint32_t i = 0; i < p.n; i++)
        r->bits[v[i] / 64] |= 1ULL << (v[i] % 64);
}

struct scan {
    struct run *r;
    const struct group *g;
};

static int on_literal(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                      void *ud)
{
    struct scan *sc = ud;
    (void)from;
    (void)to;
    (void)flags;
    if (id < sc->g->nlit)
        mark(sc->r, sc->g->lit[id]);
    return 0;
}

static void scan_literals(struct run *r, const struct group *g, const char *s, size_t n)
{
    struct scan sc = {r, g};
    if (r->hs_state == 0) {
        r->hs = thread_scratch(r->ix);
        r->hs_state = r->hs ? 1 : -1;
    }
    if (r->hs_state > 0 && n <= UINT_MAX &&
        hs_scan(g->db, s, (unsigned)n, 0, r->hs, on_literal, &sc) == HS_SUCCESS)
        return;
    for (uint32_t i = 0; i < g->nlit; i++) /* could not scan: every literal may be there */
        mark(r, g->lit[i]);
}

static void eq_lookup(struct run *r, uint32_t group, const char *s, size_t n, int num)
{
    const struct sl_rql_index *ix = r->ix;
    uint64_t h = eq_hash(group, s, n);
    for (size_t j = h & ix->eqmask; ix->eq[j].hash; j = (j + 1) & ix->eqmask) {
        const struct eqent *e = &ix->eq[j];
        if (e->hash == h && e->group == group && e->n == n && !memcmp(e->s, s, n)) {
            if (!num || e->canon)
                mark(r, e->rules);
            return; /* values are distinct */
        }
    }
}

static void cidr_lookup(struct run *r, const struct ipath *p, const char *s, size_t n)
{
    uint8_t addr[16], key[16];
    int v6;
    if (rql_ip_parse(s, n, addr, &v6))
        return;
    for (size_t k = 0; k < p->npfx; k++) {
        if (p->pfx[k].v6 != v6)
            continue;
        int bits = p->pfx[k].bits;
        for (int i = 0; i < 16; i++) {
            int keep = bits - i * 8;
            key[i] = keep <= 0 ? 0 : keep < 8 ? (uint8_t)(addr[i] & (0xff << (8 - keep))) : addr[i];
        }
        struct cidrent probe = {(uint8_t)v6, (uint8_t)bits, {0}, 0};
        memcpy(probe.addr, key, 16);
        size_t lo = 0, hi = p->ncidr;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (cmp_cidr(&p->cidr[mid], &probe) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < p->ncidr && !cmp_cidr(&p->cidr[lo], &probe); lo++)
            r->bits[p->cidr[lo].rule / 64] |= 1ULL << (p->cidr[lo].rule % 64);
    }
}

/* A number's canonical text, as rql_format_number writes it (integers without it). */
static size_t number_text(double d, char *out, size_t cap)
{
    if (d > -1e15 && d < 1e15 && d == (double)(long long)d) { /* (NaN fails the range) */
        long long v = (long long)d;
        char tmp[24];
        size_t n = 0, k = 0;
        unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        do {
            tmp[n++] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (v < 0)
            out[k++] = '-';
        while (n)
            out[k++] = tmp[--n];
        return k;
    }
    return rql_format_number(d, out, cap);
}

/* The value s (or the number d when s is NULL) of path p, against the path's atoms. */
static void value(struct run *r, const struct ipath *p, const char *s, size_t n, double d)
{
    const struct sl_rql_index *ix = r->ix;
    const struct sl_rql_env *env = r->env;
    char num[48], buf[2][256];
    int isnum = s == NULL;
    if (isnum) {
        n = number_text(d, num, sizeof(num));
        s = num;
    }
    for (uint32_t gi = 0; gi < p->ngroups; gi++) {
        const struct group *g = &ix->groups[p->groups[gi]];
        const char *t = s;
        int sub = g->db && !isnum && n >= g->minlit;
        if (!g->eq && !g->nintel && !sub)
            continue; /* only literals, and the value is too short for any */
        if (g->fold && !isnum) {
            char *o1 = n <= sizeof(buf[0]) ? buf[0] : NULL,
                 *o2 = n <= sizeof(buf[1]) ? buf[1] : NULL;
            if (!o1 && r->scratch) {
                o1 = sl_arena_alloc(r->scratch, n ? n : 1);
                o2 = sl_arena_alloc(r->scratch, n ? n : 1);
            }
            if (!o1 || !o2) {
                mark(r, ix->nodes[p->node].sub);
                continue;
            }
            rql_case_map(s, n, o1, (g->fold & 3) == FOLD_UPPER);
            t = o1;
            if (g->fold >> 2) {
                rql_case_map(o1, n, o2, (g->fold >> 2) == FOLD_UPPER);
                t = o2;
            }
        }
        if (g->eq)
            eq_lookup(r, p->groups[gi], t, n, isnum);
        if (sub)
            scan_literals(r, g, t, n);
        for (uint32_t i = 0; i < g->nintel; i++)
            if (env && env->intel_match &&
                env->intel_match(env->ud, g->intel[i].list, t, n, NULL) == 1)
                mark(r, g->intel[i].rules);
    }
    if (p->ncidr && !isnum)
        cidr_lookup(r, p, s, n);
}

/* The values at the end of path p: a string, a number, or the strings and numbers of an array
 * (an array in the array: every rule on the path is set). */
static void emit_leaf(struct run *r, const struct ipath *p, const cJSON *j)
{
    if (RQL_IS_STRING(j)) {
        if (j->valuestring)
            value(r, p, j->valuestring, strlen(j->valuestring), 0);
    } else if (RQL_JTYPE(j) == cJSON_Number) {
        value(r, p, NULL, 0, j->valuedouble);
    } else if (RQL_IS_ARRAY(j)) {
        for (const cJSON *e = j->child; e; e = e->next) {
            if (RQL_IS_ARRAY(e))
                mark(r, r->ix->nodes[p->node].sub);
            else if (RQL_IS_STRING(e) || RQL_JTYPE(e) == cJSON_Number)
                emit_leaf(r, p, e);
        }
    }
}

/* The kid of t a member key names: the kid whose name is the key (*dotted = 0), or the key's
 * part before its first dot (*dotted = 1: a flat dotted key), or NULL. key is n bytes, or
 * NUL-terminated when n is SIZE_MAX. */
static inline const struct tnode *kid_of_key(const struct sl_rql_index *ix, const struct tnode *t,
                                             const char *key, size_t n, int *dotted)
{
    uint32_t k = t->byfirst && n ? t->byfirst[(unsigned char)key[0]] : 0;
    for (; k; k = ix->nodes[k - 1].next_same) {
        const struct tnode *kid = &ix->nodes[k - 1];
        size_t j = 1;
        while (j < kid->len && j < n && key[j] == kid->name[j])
            j++; /* a NUL-terminated key stops at its NUL, which no name holds */
        if (j < kid->len)
            continue;
        if (j == n || (n == SIZE_MAX && key[j] == '\0')) {
            *dotted = 0;
            return kid;
        }
        if (key[j] == '.') {
            *dotted = 1;
            return kid;
        }
    }
    return NULL;
}

/* ---- raw_log read without a parse ------------------------------------------------------------
 * Building raw_log's cJSON tree costs more than the rest of the index together, and most events
 * match no rule that reads it; so the index reads the JSON text itself, following only its
 * paths. Whenever the text is not plain (a key with an escape, a \u escape or a fraction in a
 * value on a path, nesting past the paths, malformed JSON), the reader gives up and the tree is
 * built and walked as usual. For text cJSON parses, the reader sees the same members and values
 * (cJSON's grammar: whitespace is any byte up to 32, a string ends at the first '"' not after a
 * backslash, a number is a run of [0-9+-.eE] read by strtod); for text it does not parse,
 * evaluation sees no raw_log fields at all, and extra candidates are harmless. */

struct jscan {
    struct run *r;
    const char *p, *end;
    int bad;
};

static void js_ws(struct jscan *j)
{
    while (j->p < j->end && (unsigned char)*j->p <= 32)
        j->p++;
}

/* The string at p: its raw contents, and whether it holds a backslash. */
static int js_string(struct jscan *j, const char **s, size_t *n, int *esc)
{
    const char *q = j->p + 1;
    *esc = 0;
    for (;;) {
        while (q < j->end && *q != '"' && *q != '\\')
            q++;
        if (q >= j->end || *q == '"')
            break;
        *esc = 1;
        if (j->end - q < 2)
            return -1; /* a backslash at the end */
        q += 2;
    }
    if (q >= j->end)
        return -1;
    *s = j->p + 1;
    *n = (size_t)(q - *s);
    j->p = q + 1;
    return 0;
}

static int num_char(char c)
{
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
}

/* Skips one value. Inside an object or array only strings and brackets matter: for text cJSON
 * parses, the brackets outside strings match, so the value ends at its closing bracket. */
static void js_skip(struct jscan *j)
{
    const char *q, *end = j->end;
    js_ws(j);
    if (j->p >= end) {
        j->bad = 1;
        return;
    }
    char c = *j->p;
    if (c == '"') {
        const char *s;
        size_t n;
        int esc;
        if (js_string(j, &s, &n, &esc))
            j->bad = 1;
        return;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        while (j->p < end && num_char(*j->p))
            j->p++;
        return;
    }
    if (end - j->p >= 4 && (!memcmp(j->p, "true", 4) || !memcmp(j->p, "null", 4))) {
        j->p += 4;
        return;
    }
    if (end - j->p >= 5 && !memcmp(j->p, "false", 5)) {
        j->p += 5;
        return;
    }
    if (c != '{' && c != '[') {
        j->bad = 1;
        return;
    }
    /* Bytes that matter: 1 in a container ('"', brackets), 2 in a string ('"', '\\'). */
    static const unsigned char cls[256] = {
        ['"'] = 3, ['\\'] = 2, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1};
    int depth = 0;
    for (q = j->p; q < end;) {
        while (q < end && !(cls[(unsigned char)*q] & 1))
            q++;
        if (q >= end)
            break;
        c = *q++;
        if (c == '"') {
            for (;;) {
                while (q < end && !(cls[(unsigned char)*q] & 2))
                    q++;
                if (q >= end || *q == '"')
                    break;
                if (end - q < 2) {
                    q = end; /* a backslash at the end */
                    break;
                }
                q += 2; /* a backslash and the byte it escapes */
            }
            if (q >= end)
                break;
            q++;
        } else if (c == '{' || c == '[') {
            if (++depth > 1000)
                break;
        } else if (--depth == 0) {
            j->p = q;
            return;
        }
    }
    j->bad = 1;
}

/* A string or a number on path p (a number: integers only; others give up). */
static void js_scalar(struct jscan *j, const struct ipath *p)
{
    const char *s;
    size_t n;
    int esc;
    if (*j->p == '"') {
        char small[256], *buf;
        if (js_string(j, &s, &n, &esc)) {
            j->bad = 1;
            return;
        }
        if (!esc) {
            value(j->r, p, s, n, 0);
            return;
        }
        buf = n <= sizeof(small) ? small : j->r->scratch ? sl_arena_alloc(j->r->scratch, n) : NULL;
        if (!buf) {
            j->bad = 1;
            return;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] != '\\') {
                buf[k++] = s[i];
                continue;
            }
            const char *m = strchr("b\bf\fn\nr\rt\t\"\"\\\\//", s[++i]);
            if (!m || s[i] == '\0' || ((m - "b\bf\fn\nr\rt\t\"\"\\\\//") & 1)) {
                j->bad = 1; /* \u and the escapes cJSON refuses */
                return;
            }
            buf[k++] = m[1];
        }
        value(j->r, p, buf, k, 0);
        return;
    }
    s = j->p;
    while (j->p < j->end && num_char(*j->p))
        j->p++;
    n = (size_t)(j->p - s);
    char num[64];
    size_t d = s < j->p && *s == '-';
    if (n == d || n >= sizeof(num)) {
        j->bad = 1;
        return;
    }
    for (size_t i = d; i < n; i++)
        if (s[i] < '0' || s[i] > '9') {
            j->bad = 1; /* a fraction or exponent: read as cJSON does, by parsing */
            return;
        }
    memcpy(num, s, n);
    num[n] = '\0';
    value(j->r, p, NULL, 0, strtod(num, NULL));
}

static void js_object(struct jscan *j, const struct tnode *t, int depth);

/* A value under trie node t: its strings and numbers if t ends a path (unless top), its members
 * if t has kids. */
static void js_value(struct jscan *j, const struct tnode *t, int depth, int top)
{
    const struct ipath *p = t->path >= 0 && !top ? &j->r->ix->paths[t->path] : NULL;
    js_ws(j);
    if (j->p >= j->end) {
        j->bad = 1;
        return;
    }
    char c = *j->p;
    if (c == '{' && t->nkids) {
        js_object(j, t, depth);
    } else if (c == '[' && (p || t->nkids)) {
        j->p++;
        js_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return;
        }
        for (;;) {
            js_ws(j);
            if (j->p >= j->end) {
                j->bad = 1;
                return;
            }
            c = *j->p;
            if (c == '{' && t->nkids) {
                js_object(j, t, depth);
            } else if (c == '[') {
                mark(j->r, t->sub); /* an array in an array: not followed */
                js_skip(j);
            } else if (p && (c == '"' || c == '-' || (c >= '0' && c <= '9'))) {
                js_scalar(j, p);
            } else {
                js_skip(j);
            }
            js_ws(j);
            if (j->bad || j->p >= j->end) {
                j->bad = 1;
                return;
            }
            if (*(j->p++) == ']')
                return;
            if (j->p[-1] != ',') {
                j->bad = 1;
                return;
            }
        }
    } else if (p && (c == '"' || c == '-' || (c >= '0' && c <= '9'))) {
        js_scalar(j, p);
    } else {
        js_skip(j);
    }
}

static void js_object(struct jscan *j, const struct tnode *t, int depth)
{
    if (depth > RQL_MAX_SEGMENTS + 2) {
        j->bad = 1;
        return;
    }
    j->p++;
    js_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return;
    }
    for (;;) {
        const char *k;
        size_t n;
        int esc;
        js_ws(j);
        if (j->p >= j->end || *j->p != '"' || js_string(j, &k, &n, &esc)) {
            j->bad = 1;
            return;
        }
        js_ws(j);
        if (j->p >= j->end || *j->p != ':') {
            j->bad = 1;
            return;
        }
        j->p++;
        const struct tnode *kid = NULL;
        unsigned char c0 = n ? (unsigned char)k[0] : 0;
        int dotted = 0;
        if (esc && (c0 == '\\' || (t->byfirst && t->byfirst[c0]))) {
            j->bad = 1; /* an escaped key is compared after decoding, by the tree */
            return;
        }
        if (n && (kid = kid_of_key(j->r->ix, t, k, n, &dotted)) && dotted) {
            mark(j->r, kid->sub);
            kid = NULL;
        }
        if (kid)
            js_value(j, kid, depth + 1, 0);
        else
            js_skip(j);
        js_ws(j);
        if (j->bad || j->p >= j->end) {
            j->bad = 1;
            return;
        }
        if (*(j->p++) == '}')
            return;
        if (j->p[-1] != ',') {
            j->bad = 1;
            return;
        }
    }
}

/* The paths under raw_log (node t) from its text s; 0, or -1 when the tree must be walked. */
static int scan_raw_log(struct run *r, const struct tnode *t, const char *s)
{
    size_t n = strlen(s), i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    if (i == n || (s[i] != '{' && s[i] != '['))
        return 0; /* not JSON: evaluation sees no raw_log fields */
    struct jscan j = {r, s + i, s + n, 0};
    js_value(&j, t, 1, 1);
    return j.bad ? -1 : 0;
}

static void walk_obj(struct run *r, const cJSON *o, const struct tnode *t);

static void visit_node(struct run *r, const cJSON *j, const struct tnode *t)
{
    if (t->path >= 0)
        emit_leaf(r, &r->ix->paths[t->path], j);
    if (!t->nkids)
        return;
    if (t->raw_log) {
        /* Evaluation parses the first raw_log member of the event, when it is a string. */
        int first = !r->raw_log_seen;
        r->raw_log_seen = 1;
        if (RQL_IS_STRING(j)) {
            if (!first || !j->valuestring)
                return;
            if (r->in->raw_log_state == 0 && scan_raw_log(r, t, j->valuestring) == 0)
                return;
            if (!(j = rql_raw_log_tree(r->in, j)))
                return;
        }
    }
    if (RQL_IS_OBJECT(j)) {
        walk_obj(r, j, t);
    } else if (RQL_IS_ARRAY(j)) {
        for (const cJSON *e = j->child; e; e = e->next) {
            if (RQL_IS_OBJECT(e))
                walk_obj(r, e, t);
            else if (RQL_IS_ARRAY(e))
                mark(r, t->sub); /* evaluation flattens arrays in arrays: not followed here */
        }
    }
}

static void walk_obj(struct run *r, const cJSON *o, const struct tnode *t)
{
    for (const cJSON *c = o->child; c; c = c->next) {
        int dotted = 0;
        const struct tnode *kid =
            c->string ? kid_of_key(r->ix, t, c->string, SIZE_MAX, &dotted) : NULL;
        if (!kid)
            continue;
        if (dotted)
            mark(r, kid->sub); /* a flat dotted key: evaluation may take it instead */
        else
            visit_node(r, c, kid);
    }
}

void sl_rql_index_update(const struct sl_rql_index *ix, struct sl_rql_input *in,
                         const struct sl_rql_env *env, struct sl_arena *scratch,
                         const char *const *members, size_t nmembers, uint64_t *bits)
{
    const struct tnode *root = &ix->nodes[0], *sel[32];
    size_t nsel = 0;
    int dotted;
    if (!in || !in->event || nmembers > 32) {
        sl_rql_index_candidates(ix, in, env, scratch, bits);
        return;
    }
    for (size_t i = 0; i < nmembers; i++) {
        const struct tnode *k = kid_of_key(ix, root, members[i], SIZE_MAX, &dotted);
        if (k && !dotted)
            sel[nsel++] = k;
    }
    if (!nsel || !RQL_IS_OBJECT(in->event))
        return; /* no indexed path starts at those members */
    struct run r = {ix, in, env, scratch, bits, 1, 0, NULL};
    for (const cJSON *c = in->event->child; c; c = c->next) {
        const struct tnode *kid =
            c->string ? kid_of_key(ix, root, c->string, SIZE_MAX, &dotted) : NULL;
        size_t k = 0;
        while (kid && k < nsel && sel[k] != kid)
            k++;
        if (!kid || k == nsel)
            continue;
        if (dotted)
            mark(&r, kid->sub);
        else
            visit_node(&r, c, kid);
    }
}

void sl_rql_index_candidates(const struct sl_rql_index *ix, struct sl_rql_input *in,
                             const struct sl_rql_env *env, struct sl_arena *scratch, uint64_t *bits)
{
    memcpy(bits, ix->always, ix->nwords * sizeof(uint64_t));
    if (ix->nnodes < 2 || !in || !in->event)
        return;
    struct run r = {ix, in, env, scratch, bits, 0, 0, NULL};
    visit_node(&r, in->event, &ix->nodes[0]);
}
