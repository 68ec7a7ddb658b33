/* The candidates of an event in the rule index (see rql_index.c for the design), and raw_log
 * read for the indexed paths without building a tree. */
#include "rules/rql_index_int.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"

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
    uint64_t h = rql_ix_eq_hash(group, s, n);
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
            if (rql_ix_cmp_cidr(&p->cidr[mid], &probe) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < p->ncidr && !rql_ix_cmp_cidr(&p->cidr[lo], &probe); lo++)
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
