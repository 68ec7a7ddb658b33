/* The rule index: for every rule, conditions its program cannot match without (field
 * equalities, substrings, networks, intel lists), built into tables per field path; rql_scan.c
 * looks an event up in them, so that the ruleset evaluates only the rules an event can match. */
#include "rules/rql_index_int.h"

#include <limits.h>
#include <pthread.h>
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

uint64_t rql_ix_eq_hash(uint32_t group, const char *s, size_t n)
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
            b->eqs[b->neq++] = (struct eqent){.hash = rql_ix_eq_hash((uint32_t)group, s, l->n),
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

int rql_ix_cmp_cidr(const void *a, const void *b)
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
        qsort(b->cidr[p], n, sizeof(struct cidrent), rql_ix_cmp_cidr);
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
            out[i] = rql_ix_none();
            if (!progs[i] || !progs[i]->root)
                continue;
            rql_ix_regex_patterns(k, queries ? queries[i] : NULL);
            out[i] = rql_ix_keyset(k, progs[i]->root);
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
