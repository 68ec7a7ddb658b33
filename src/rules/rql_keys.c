/* The keys of a program: the atoms (equalities, substrings, literals every match of a regexp
 * contains, networks, intel lists) one of which holds for every event the rule matches. See
 * rql_index.c for the design. */
#include "rules/rql_index_int.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"

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
    int prev = 0; /* the previous atom: 0 rql_ix_none, 1 a literal character in the run, 2 other */
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

void rql_ix_regex_patterns(struct kctx *k, const char *query)
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

struct kset rql_ix_none(void)
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
    return a ? (struct kset){cost + path_cost(a), a} : rql_ix_none();
}

/* = "s", in [...]: any of the values (all: one of them, the rarest). */
static struct kset eq_key(struct kctx *k, const struct rql_node *n, int fold, int all)
{
    struct kset best = rql_ix_none();
    if (n->nlits == 0)
        return rql_ix_none();
    for (size_t i = 0; i < n->nlits; i++)
        if (n->lits[i].type != LIT_STR || n->lits[i].has_nul)
            return rql_ix_none();
    if (!all) {
        struct atom *a = new_atom(k, AT_EQ, fold, n);
        double cost = 0;
        if (!a)
            return rql_ix_none();
        a->lits = n->lits;
        a->nlits = n->nlits;
        for (size_t i = 0; i < n->nlits; i++)
            cost += value_cost(k, a, n->lits[i].s, n->lits[i].n);
        return one(a, cost);
    }
    for (size_t i = 0; i < n->nlits; i++) {
        struct atom *a = new_atom(k, AT_EQ, fold, n);
        if (!a)
            return rql_ix_none();
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
        return rql_ix_none();
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
    struct kset acc = {0, NULL}, best = rql_ix_none();
    if (ci) {
        if ((fold >> 2) & 3)
            return rql_ix_none(); /* three case maps: not indexed */
        fold = fold & 3 ? fold | FOLD_LOWER << 2 : FOLD_LOWER;
    }
    if (n->nlits == 0)
        return rql_ix_none();
    for (size_t i = 0; i < n->nlits; i++) {
        const struct rql_lit *l = &n->lits[i];
        if (l->n == 0) {
            if (!n->all)
                return rql_ix_none(); /* "" is in every string */
            continue;
        }
        struct kset c = sub_atom(k, n, fold, ci ? l->low : l->s, l->n);
        if (c.cost >= INF_COST)
            return rql_ix_none();
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
    struct kset best = rql_ix_none();
    size_t i = 0;
    while (i < k->nrx && k->rx_node[i] != n)
        i++;
    if (i == k->nrx)
        return rql_ix_none();
    char *buf = sl_arena_alloc(k->mem, k->rx_len[i] + 1);
    struct seg runs[16];
    if (!buf) {
        k->oom = 1;
        return rql_ix_none();
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
        return rql_ix_none();
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
            return rql_ix_none();
        return sub_atom(k, n, fold, n->lits[0].s, n->lits[0].n);
    case OP_REGEXP:
        return regexp_key(k, n, fold);
    case OP_CIDR: {
        if (fold || n->nnets == 0)
            return rql_ix_none();
        struct atom *a = new_atom(k, AT_CIDR, 0, n);
        double cost = 0;
        if (!a)
            return rql_ix_none();
        a->nets = n->nets;
        a->nnets = n->nnets;
        for (size_t i = 0; i < n->nnets; i++)
            cost += n->nets[i].bits < (n->nets[i].v6 ? 32 : 8) ? 16 : 2;
        return one(a, cost);
    }
    default:
        return rql_ix_none();
    }
}

struct kset rql_ix_keyset(struct kctx *k, const struct rql_node *n)
{
    struct kset acc = {0, NULL}, best = rql_ix_none();
    int keyless = 0;
    switch (n->kind) {
    case RQL_AND:
        for (size_t i = 0; i < n->nkids; i++) {
            struct kset c = rql_ix_keyset(k, n->kids[i]);
            if (c.cost < best.cost)
                best = c;
        }
        return best;
    case RQL_OR:
        for (size_t i = 0; i < n->nkids; i++) {
            struct kset c = rql_ix_keyset(k, n->kids[i]);
            if (c.cost >= INF_COST)
                keyless = 1; /* keep going: the first pass counts every value */
            else
                ks_join(&acc, c);
        }
        return keyless ? rql_ix_none() : acc;
    case RQL_EXPAND: {
        size_t saved = k->npre;
        if (k->npre + n->path.nseg > RQL_MAX_SEGMENTS)
            return rql_ix_none();
        for (size_t i = 0; i < n->path.nseg; i++)
            k->pre[k->npre++] = (struct seg){n->path.text + n->path.seg_off[i],
                                             (uint16_t)(n->path.seg_end[i] - n->path.seg_off[i])};
        best = rql_ix_keyset(k, n->kids[0]);
        k->npre = saved;
        return best;
    }
    case RQL_INTEL: {
        int fold = mut_fold(n);
        /* Inside expand, intel(value, ...) passes the element's data type: not indexed. */
        if (k->npre || fold < 0 || n->path.nseg == 0)
            return rql_ix_none();
        struct atom *a = new_atom(k, AT_INTEL, fold, n);
        if (!a)
            return rql_ix_none();
        a->s = k->prog->lists[n->list];
        a->n = strlen(a->s);
        return one(a, 8);
    }
    case RQL_PRED:
        return pred_key(k, n);
    default:
        return rql_ix_none();
    }
}
