/* The RQL evaluator: resolves field paths in an event (flat dotted keys, nested objects, lists
 * of objects flattened, raw_log parsed on demand), applies mutators and operators. The program
 * is read-only here; everything temporary is on the stack or in the caller's scratch arena. */
#include "rules/rql_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"

void *rql_alloc(struct rql_ctx *x, size_t n)
{
    if (x->oom)
        return NULL;
    void *p = x->scratch ? sl_arena_alloc(x->scratch, n ? n : 1) : NULL;
    if (!p)
        x->oom = 1;
    return p;
}

void sl_rql_input_fini(struct sl_rql_input *in)
{
    if (!in)
        return;
    cJSON_Delete(in->raw_log);
    in->raw_log = NULL;
    in->raw_log_state = 0;
}

/* ---- field resolution --------------------------------------------------------------------- */

/* Leaves found while resolving one path. Until a list is crossed (multi == 0) there is at most
 * one leaf, the value itself; past a list, leaves are collected (arrays spliced, nulls and
 * missing values skipped) into items: the caller's buffer first, scratch memory beyond it. */
struct coll {
    struct rql_ctx *x;
    const struct rql_path *p;
    const cJSON *event; /* where raw_log is parsed on demand (NULL inside expand) */
    struct rv *items;
    size_t n, cap;
    const cJSON *single;
    int multi;
    int fallback; /* > 0 while trying a shorter flat key after a longer one led nowhere */
    int budget;   /* visits left for fallbacks */
};

static int coll_push(struct coll *c, const cJSON *j)
{
    if (c->n == c->cap) {
        struct rv *m = rql_alloc(c->x, 2 * c->cap * sizeof(*m));
        if (!m)
            return -1;
        memcpy(m, c->items, c->n * sizeof(*m));
        c->items = m;
        c->cap *= 2;
    }
    struct rv *r = &c->items[c->n++];
    r->kind = RV_JSON;
    r->b = 0;
    r->n = 0;
    r->u.j = j;
    return 0;
}

static size_t add_leaf(struct coll *c, const cJSON *j)
{
    if (!c->multi) {
        c->single = j;
        return 1;
    }
    if (RQL_IS_NULL(j))
        return 0;
    if (!RQL_IS_ARRAY(j))
        return coll_push(c, j) ? 0 : 1;
    size_t k = 0;
    for (const cJSON *e = j->child; e; e = e->next)
        if (!RQL_IS_NULL(e) && !coll_push(c, e))
            k++;
    return k;
}

const cJSON *rql_raw_log_tree(struct sl_rql_input *in, const cJSON *str)
{
    if (in->raw_log_state == 0) {
        in->raw_log_state = 2;
        const char *s = str->valuestring;
        if (s) {
            size_t n = strlen(s), i = 0;
            while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
                i++;
            if (i < n && (s[i] == '{' || s[i] == '[')) {
                in->raw_log = cJSON_ParseWithLength(s, n);
                if (in->raw_log)
                    in->raw_log_state = 1;
            }
        }
    }
    return in->raw_log_state == 1 ? in->raw_log : NULL;
}

#define WALK_MAX_DEPTH (RQL_MAX_SEGMENTS + RQL_MAX_ARRAY_NEST + 2)

static size_t walk(struct coll *c, const cJSON *node, int seg, int depth);

static size_t walk_array(struct coll *c, const cJSON *node, int seg, int depth)
{
    int saved = c->multi;
    size_t found = 0;
    c->multi = 1;
    for (const cJSON *e = node->child; e && !c->x->oom; e = e->next)
        if (RQL_IS_OBJECT(e) || RQL_IS_ARRAY(e))
            found += walk(c, e, seg, depth + 1);
    if (!found)
        c->multi = saved;
    return found;
}

static size_t walk(struct coll *c, const cJSON *node, int seg, int depth)
{
    const struct rql_path *p = c->p;
    if (seg == p->nseg)
        return add_leaf(c, node);
    if (depth > WALK_MAX_DEPTH || (c->fallback && --c->budget < 0))
        return 0;
    if (RQL_IS_ARRAY(node))
        return walk_array(c, node, seg, depth);
    if (!RQL_IS_OBJECT(node))
        return 0;
    if (seg == p->nseg - 1) {
        /* The last segment: only a key equal to it can match (the common case). */
        const char *name = p->text + p->seg_off[seg];
        size_t len = p->seg_end[seg] - p->seg_off[seg];
        for (const cJSON *ch = node->child; ch; ch = ch->next) {
            const char *k = ch->string;
            if (k && k[0] == name[0] && !strncmp(k, name, len) && !k[len])
                return walk(c, ch, seg + 1, depth + 1);
        }
        return 0;
    }
    /* One pass over the members finds every key that spells segments seg..k-1 joined by dots
     * (the flat dotted keys); the longest is tried first. */
    const char *rest = p->text + p->seg_off[seg];
    size_t restlen = p->len - p->seg_off[seg];
    const cJSON *cand[RQL_MAX_SEGMENTS + 1];
    uint64_t mask = 0;
    for (const cJSON *ch = node->child; ch; ch = ch->next) {
        const char *k = ch->string;
        if (!k || k[0] != rest[0])
            continue;
        size_t i = 0;
        while (i < restlen && k[i] && k[i] == rest[i])
            i++;
        if (k[i] || (i < restlen && rest[i] != '.'))
            continue;
        size_t end = p->seg_off[seg] + i;
        int next = seg;
        while (next < p->nseg && p->seg_end[next] != end)
            next++;
        if (next == p->nseg)
            continue;
        next++;
        if (!(mask & (1ULL << next))) {
            mask |= 1ULL << next;
            cand[next] = ch;
        }
    }
    if (!mask)
        return 0;
    int tried = 0;
    for (int nx = p->nseg; nx > seg; nx--) {
        if (!(mask & (1ULL << nx)))
            continue;
        const cJSON *ch = cand[nx];
        int saved = c->multi;
        size_t f;
        if (tried)
            c->fallback++;
        if (node == c->event && seg == 0 && nx == 1 && nx < p->nseg && RQL_IS_STRING(ch) &&
            p->seg_end[0] == 7 && !memcmp(p->text, "raw_log", 7)) {
            const cJSON *tree = rql_raw_log_tree(c->x->in, ch);
            f = tree ? walk(c, tree, nx, depth + 1) : 0;
        } else {
            f = walk(c, ch, nx, depth + 1);
        }
        if (tried)
            c->fallback--;
        tried = 1;
        if (f)
            return f;
        c->multi = saved;
    }
    return 0;
}

/* Resolves p under root into out. buf (cap entries) holds a flattened list when it fits. */
static void resolve(struct rql_ctx *x, const cJSON *root, const struct rql_path *p, struct rv *buf,
                    size_t cap, struct rv *out)
{
    struct coll c = {.x = x,
                     .p = p,
                     .event = root == x->in->event ? root : NULL,
                     .items = buf,
                     .cap = cap,
                     .budget = RQL_MAX_WALK};
    memset(out, 0, sizeof(*out));
    if (!walk(&c, root, 0, 0) || x->oom)
        return;
    if (!c.multi) {
        out->kind = RV_JSON;
        out->u.j = c.single;
        return;
    }
    out->kind = RV_LIST;
    out->n = c.n;
    out->u.items = c.items;
}

/* ---- operators ------------------------------------------------------------------------------ */

static int elem_eq(const struct sc *e, const struct rql_lit *l)
{
    double d;
    switch (l->type) {
    case LIT_STR:
        if (e->t == SC_STR)
            return e->n == l->n && !memcmp(e->s, l->s, l->n);
        return e->t == SC_NUM && l->canon && e->d == l->num;
    case LIT_NUM:
        if (e->t == SC_NUM)
            return e->d == l->num;
        return e->t == SC_STR && !rql_parse_number(e->s, e->n, &d) && d == l->num;
    default:
        return e->t == SC_BOOL && e->b == l->b;
    }
}

/* elem_eq for a whole value; JSON text is compared in place, without a strlen. */
static inline int eq_value(const struct rv *v, const struct rql_lit *l)
{
    if (v->kind == RV_JSON && RQL_IS_STRING(v->u.j) && l->type == LIT_STR && !l->has_nul &&
        v->u.j->valuestring) {
        const char *s = v->u.j->valuestring;
        size_t i = 0;
        for (; i < l->n; i++)
            if (s[i] != l->s[i])
                return 0; /* also at the end of s: l has no NUL */
        return s[i] == '\0';
    }
    struct sc e;
    rql_sc_of(v, &e);
    return elem_eq(&e, l);
}

static int eq_list(const struct rql_node *n, const struct rv *v)
{
    struct rv_iter it = {0};
    struct rv item;
    size_t count = 0;
    rv_iter_init(&it, v);
    while (rv_iter_next(&it, &item)) {
        int r = eq_value(&item, n->lits);
        if (r && !n->all)
            return 1;
        if (!r && n->all)
            return 0;
        count++;
    }
    return n->all && count > 0;
}

/* The first of refs[0..n) whose value is d, or n. */
static size_t find_num(const struct rql_numref *refs, size_t n, double d)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (refs[mid].v < d)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && refs[lo].v == d ? lo : n;
}

/* Finds the string literal equal to s[0..len); returns 1 + its index, or 0. */
static uint32_t find_str(const struct rql_node *n, const char *s, size_t len, uint64_t hash)
{
    const struct rql_set *set = &n->set;
    uint32_t h = (uint32_t)hash & set->mask;
    while (set->slots[h]) {
        const struct rql_lit *l = &n->lits[set->slots[h] - 1];
        if (l->n == len && !memcmp(l->s, s, len))
            return set->slots[h];
        h = (h + 1) & set->mask;
    }
    return 0;
}

/* One element against the set. Without found, returns whether it equals any value; with found
 * (|all), marks every distinct value it equals and returns how many were new. */
static size_t in_elem(const struct rql_node *n, const struct sc *e, uint64_t hash, int hashed,
                      uint8_t *found)
{
    const struct rql_set *set = &n->set;
    size_t marked = 0;
    double d;
    if (e->t == SC_STR) {
        uint32_t k = find_str(n, e->s, e->n, hashed ? hash : rql_hash(e->s, e->n));
        if (k && !found)
            return 1;
        if (k && !found[k - 1]) {
            found[k - 1] = 1;
            marked++;
        }
        if (!set->nnums || rql_parse_number(e->s, e->n, &d))
            return marked;
    } else if (e->t == SC_NUM) {
        d = e->d;
        size_t i = find_num(set->canon, set->ncanon, d);
        if (i < set->ncanon && !found)
            return 1;
        for (; i < set->ncanon && set->canon[i].v == d; i++) {
            uint32_t r = set->rep[set->canon[i].lit];
            if (!found[r]) {
                found[r] = 1;
                marked++;
            }
        }
    } else {
        return 0;
    }
    size_t i = find_num(set->nums, set->nnums, d);
    if (i < set->nnums && !found)
        return 1;
    if (i < set->nnums && !found[set->rep[set->nums[i].lit]]) {
        found[set->rep[set->nums[i].lit]] = 1; /* equal numbers share one representative */
        marked++;
    }
    return marked;
}

/* in_elem for a whole value; JSON text is hashed in the same pass that finds its end. */
static inline size_t in_value(const struct rql_node *n, const struct rv *v, uint8_t *found)
{
    struct sc e;
    if (v->kind == RV_JSON && RQL_IS_STRING(v->u.j) && v->u.j->valuestring) {
        e.t = SC_STR;
        e.s = v->u.j->valuestring;
        uint64_t h = rql_hash_cstr(e.s, &e.n);
        return in_elem(n, &e, h, 1, found);
    }
    rql_sc_of(v, &e);
    return in_elem(n, &e, 0, 0, found);
}

static int op_in(struct rql_ctx *x, const struct rql_node *n, const struct rv *v)
{
    struct rv_iter it = {0};
    struct rv item;
    if (!n->all) {
        if (!rv_is_list(v))
            return in_value(n, v, NULL) > 0;
        rv_iter_init(&it, v);
        while (rv_iter_next(&it, &item))
            if (in_value(n, &item, NULL))
                return 1;
        return 0;
    }
    /* |all: every distinct array value equals the value or some element. */
    size_t nl = n->nlits, left = n->set.nunique;
    uint8_t stackmark[256];
    uint8_t *found = nl <= sizeof(stackmark) ? stackmark : rql_alloc(x, nl);
    if (!found || nl == 0)
        return 0;
    memset(found, 0, nl);
    if (!rv_is_list(v))
        return in_value(n, v, found) == left;
    rv_iter_init(&it, v);
    while (left && rv_iter_next(&it, &item))
        left -= in_value(n, &item, found);
    return left == 0;
}

/* Lowercases e into buf (or scratch when it does not fit); returns the text or NULL. */
static const char *fold(struct rql_ctx *x, const struct sc *e, char *buf, size_t cap)
{
    char *o = e->n <= cap ? buf : rql_alloc(x, e->n);
    if (o)
        rql_case_map(e->s, e->n, o, 0);
    return o;
}

static int op_contains(struct rql_ctx *x, const struct rql_node *n, const struct rv *v, int ci)
{
    int list = rv_is_list(v);
    struct sc self;
    rql_sc_of(v, &self);
    if (!list && self.t != SC_STR)
        return 0;
    size_t nl = n->nlits, left = nl;
    uint8_t stackmark[64];
    uint8_t *found = NULL;
    if (n->all && nl) {
        found = nl <= sizeof(stackmark) ? stackmark : rql_alloc(x, nl);
        if (!found)
            return 0;
        memset(found, 0, nl);
    }
    struct rv_iter it = {0};
    struct rv item;
    struct sc e;
    char buf[512];
    if (list)
        rv_iter_init(&it, v);
    for (;;) {
        if (list) {
            if (!rv_iter_next(&it, &item))
                break;
            rql_sc_of(&item, &e);
            if (e.t != SC_STR)
                continue;
        } else {
            e = self;
        }
        const char *hay = ci ? fold(x, &e, buf, sizeof(buf)) : e.s;
        if (!hay)
            return 0;
        for (size_t i = 0; i < nl; i++) {
            const struct rql_lit *l = &n->lits[i];
            if (found && found[i])
                continue;
            const char *needle = ci ? l->low : l->s;
            if (l->n && !memmem(hay, e.n, needle, l->n))
                continue;
            if (!found)
                return 1;
            found[i] = 1;
            if (--left == 0)
                return 1;
        }
        if (!list)
            break;
    }
    return 0;
}

static pcre2_match_data *match_data(struct rql_ctx *x);

static int elem_pred(struct rql_ctx *x, const struct rql_node *n, const struct sc *e)
{
    const struct rql_lit *l = n->lits;
    switch (n->op) {
    case OP_EQ:
        return elem_eq(e, l);
    case OP_IS:
        if (e->t == SC_BOOL)
            return e->b == n->bval;
        if (e->t == SC_STR && e->n == 4 && !strncasecmp(e->s, "true", 4))
            return n->bval == 1;
        if (e->t == SC_STR && e->n == 5 && !strncasecmp(e->s, "false", 5))
            return n->bval == 0;
        return 0;
    case OP_STARTSWITH:
        return e->t == SC_STR && e->n >= l->n && !memcmp(e->s, l->s, l->n);
    case OP_ENDSWITH:
        return e->t == SC_STR && e->n >= l->n && !memcmp(e->s + e->n - l->n, l->s, l->n);
    case OP_REGEXP: {
        if (e->t != SC_STR)
            return 0;
        pcre2_match_data *md = match_data(x);
        if (!md)
            return 0;
        return pcre2_match(n->re, (PCRE2_SPTR)e->s, e->n, 0, 0, md, x->prog->mctx) >= 0;
    }
    case OP_CIDR: {
        uint8_t addr[16];
        int v6;
        if (e->t != SC_STR || rql_ip_parse(e->s, e->n, addr, &v6))
            return 0;
        for (size_t i = 0; i < n->nnets; i++)
            if (rql_net_contains(&n->nets[i], addr, v6))
                return 1;
        return 0;
    }
    case OP_CIDR_INTEL:
        if (e->t != SC_STR || !x->env || !x->env->intel_cidr)
            return 0;
        return x->env->intel_cidr(x->env->ud, x->prog->lists[n->list], e->s, e->n) == 1;
    default:
        return 0;
    }
}

/* Applies elem_pred to the value or, for a list, to its elements: any (default) or all. */
static int each(struct rql_ctx *x, const struct rql_node *n, const struct rv *v,
                int (*pred)(struct rql_ctx *, const struct rql_node *, const struct sc *))
{
    struct sc e;
    if (!rv_is_list(v)) {
        rql_sc_of(v, &e);
        return pred(x, n, &e);
    }
    struct rv_iter it = {0};
    struct rv item;
    size_t count = 0;
    rv_iter_init(&it, v);
    while (rv_iter_next(&it, &item)) {
        rql_sc_of(&item, &e);
        int r = pred(x, n, &e);
        if (r && !n->all)
            return 1;
        if (!r && n->all)
            return 0;
        count++;
    }
    return n->all && count > 0;
}

/* The number a comparison sees: a number, a list's length, a numeric string's value, 1 for any
 * other string. Returns -1 for anything else. */
static int num_view(const struct rv *v, double *d)
{
    if (rv_is_list(v)) {
        *d = (double)rql_list_len(v);
        return 0;
    }
    struct sc e;
    rql_sc_of(v, &e);
    if (e.t == SC_NUM) {
        *d = e.d;
        return 0;
    }
    if (e.t == SC_STR) {
        if (rql_parse_number(e.s, e.n, d))
            *d = 1;
        return 0;
    }
    return -1;
}

static int apply_op(struct rql_ctx *x, const struct rql_node *n, const struct rv *v)
{
    double d;
    switch (n->op) {
    case OP_EXISTS: {
        struct sc e;
        rql_sc_of(v, &e);
        return e.t != SC_NULL && e.t != SC_NONE;
    }
    case OP_CMP:
        if (num_view(v, &d))
            return 0;
        switch (n->cmp) {
        case CMP_GT:
            return d > n->lo;
        case CMP_GTE:
            return d >= n->lo;
        case CMP_LT:
            return d < n->lo;
        default:
            return d <= n->lo;
        }
    case OP_BETWEEN:
        return !num_view(v, &d) && d >= n->lo && d <= n->hi;
    case OP_EQ:
        if (!rv_is_list(v))
            return eq_value(v, n->lits);
        if (n->lits->type == LIT_NUM)
            return (double)rql_list_len(v) == n->lits->num; /* the reference's quirk */
        return eq_list(n, v);
    case OP_IN:
        return op_in(x, n, v);
    case OP_CONTAINS:
        return op_contains(x, n, v, 0);
    case OP_CONTAINSCIS:
        return op_contains(x, n, v, 1);
    default:
        return each(x, n, v, elem_pred);
    }
}

/* ---- regex match data from scratch ---------------------------------------------------------- */

static void *pcre_alloc(size_t n, void *ud)
{
    return rql_alloc(ud, n);
}

static void pcre_free(void *p, void *ud)
{
    (void)p; /* scratch memory goes back in the caller's reset */
    (void)ud;
}

static pcre2_match_data *match_data(struct rql_ctx *x)
{
    if (!x->md) {
        pcre2_general_context *gc = pcre2_general_context_create(pcre_alloc, pcre_free, x);
        if (!gc) {
            x->oom = 1;
            return NULL;
        }
        x->md = pcre2_match_data_create(1, gc);
        if (!x->md)
            x->oom = 1;
    }
    return x->md;
}

/* ---- expressions ---------------------------------------------------------------------------- */

#define RESOLVE_BUF 16

static int eval(struct rql_ctx *x, const struct rql_node *n, const cJSON *root);

static void target_value(struct rql_ctx *x, const struct rql_node *n, const cJSON *root,
                         struct rv *buf, struct rv *v)
{
    resolve(x, root, &n->path, buf, RESOLVE_BUF, v);
    for (int i = 0; i < n->nmut && v->kind != RV_NONE; i++)
        rql_mutate(x, n->mut[i], v, v);
}

static int intel_elem(struct rql_ctx *x, const struct rql_node *n, const struct sc *e)
{
    const struct sl_rql_env *env = x->env;
    const char *dt = NULL;
    if (n->is_value && x->elem) {
        /* Inside expand, lookups of value say which data type the element is. */
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(x->elem, "data_type");
        dt = cJSON_IsString(t) ? t->valuestring : NULL;
    }
    const char *list = x->prog->lists[n->list];
    if (e->t == SC_STR)
        return env->intel_match(env->ud, list, e->s, e->n, dt) == 1;
    if (e->t == SC_NUM) {
        char buf[40];
        size_t len = rql_format_number(e->d, buf, sizeof(buf));
        return env->intel_match(env->ud, list, buf, len, dt) == 1;
    }
    return 0;
}

static int eval_expand(struct rql_ctx *x, const struct rql_node *n, const cJSON *root)
{
    struct rv buf[RESOLVE_BUF], v;
    resolve(x, root, &n->path, buf, RESOLVE_BUF, &v);
    if (v.kind == RV_NONE)
        return 0;
    const cJSON *saved = x->elem;
    int r = 0;
    struct rv_iter it = {0};
    struct rv item;
    int list = rv_is_list(&v);
    if (list)
        rv_iter_init(&it, &v);
    for (;;) {
        if (list) {
            if (!rv_iter_next(&it, &item))
                break;
        } else {
            item = v;
        }
        if (item.kind == RV_JSON && RQL_IS_OBJECT(item.u.j)) {
            x->elem = item.u.j;
            r = eval(x, n->kids[0], item.u.j);
            if (r || x->oom)
                break;
        }
        if (!list)
            break;
    }
    x->elem = saved;
    return r;
}

static int eval(struct rql_ctx *x, const struct rql_node *n, const cJSON *root)
{
    struct rv buf[RESOLVE_BUF], v;
    int r;
    switch (n->kind) {
    case RQL_AND:
        for (size_t i = 0; i < n->nkids; i++)
            if (!eval(x, n->kids[i], root) || x->oom)
                return 0;
        return 1;
    case RQL_OR:
        for (size_t i = 0; i < n->nkids; i++) {
            if (eval(x, n->kids[i], root))
                return 1;
            if (x->oom)
                return 0;
        }
        return 0;
    case RQL_NOT:
        return !eval(x, n->kids[0], root);
    case RQL_EXPAND:
        return eval_expand(x, n, root);
    case RQL_INTEL:
        if (!x->env || !x->env->intel_match)
            return 0;
        target_value(x, n, root, buf, &v);
        return v.kind != RV_NONE && each(x, n, &v, intel_elem);
    default:
        target_value(x, n, root, buf, &v);
        r = v.kind != RV_NONE && !x->oom && apply_op(x, n, &v);
        return n->negate ? !r : r;
    }
}

int sl_rql_match(const struct sl_rql *prog, struct sl_rql_input *in, const struct sl_rql_env *env,
                 struct sl_arena *scratch, int *oom)
{
    if (oom)
        *oom = 0;
    if (!prog || !prog->root || !in || !in->event)
        return 0;
    struct rql_ctx x = {.prog = prog, .in = in, .env = env, .scratch = scratch};
    int r = eval(&x, prog->root, in->event);
    if (x.oom) {
        if (oom)
            *oom = 1;
        return 0;
    }
    return r;
}
