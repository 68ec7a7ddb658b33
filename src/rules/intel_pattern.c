/* Pattern Intel Lists: one Hyperscan block-mode database for the patterns it can take, PCRE2
 * (JIT) for the others; both anchored at the start of the value, as Python's re.match. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "rules/intel_internal.h"

#include <hs.h>
#include <limits.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"

/* Bounds the work of one PCRE2 match (backtracking patterns against long values). */
#define PCRE_MATCH_LIMIT   1000000
#define PCRE_JIT_STACK_MIN (32 * 1024)
#define PCRE_JIT_STACK_MAX (1024 * 1024)

/* A compiled pattern; bsk: its text has \K, so a match may be reported past offset 0. */
struct pcode {
    pcre2_code *code;
    int bsk;
};

struct pattern {
    pcre2_code *code;
    char *text; /* NUL-terminated copy (Hyperscan takes C strings) */
    size_t len;
    int utf; /* the pattern is valid UTF-8: compiled in UTF mode */
};

struct sl_patbuild {
    int case_sensitive;
    struct pattern *p;
    size_t n, cap;
};

struct sl_patset {
    uint64_t id; /* unique per database, for the per-thread scratch check */
    hs_database_t *db;
    int hs_utf8;            /* some database pattern is UTF-8: invalid UTF-8 values go to PCRE2 */
    struct pcode *hs_codes; /* the database's patterns, for those values */
    size_t nhs;
    struct pcode *codes; /* the patterns Hyperscan does not hold (JIT-compiled) */
    size_t ncodes;
};

static atomic_uint_fast64_t next_db_id = 1;

/* ---- per-thread state ------------------------------------------------------------------------ */

struct tls_state {
    hs_scratch_t *scratch;
    uint64_t scratch_for; /* id of the last database the scratch was checked against */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
};

static _Thread_local struct tls_state *tls;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_key_ok;

static void tls_destroy(void *p)
{
    struct tls_state *st = p;
    if (!st)
        return;
    if (st->scratch)
        hs_free_scratch(st->scratch);
    pcre2_match_data_free(st->md);
    pcre2_match_context_free(st->mctx);
    pcre2_jit_stack_free(st->jit);
    free(st);
    if (tls == st)
        tls = NULL;
}

static void tls_init_key(void)
{
    tls_key_ok = pthread_key_create(&tls_key, tls_destroy) == 0;
}

/* This thread's state, created on its first pattern match; NULL when out of memory. */
static struct tls_state *tls_get(void)
{
    if (tls)
        return tls;
    pthread_once(&tls_once, tls_init_key);
    struct tls_state *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->md = pcre2_match_data_create(1, NULL);
    st->mctx = pcre2_match_context_create(NULL);
    st->jit = pcre2_jit_stack_create(PCRE_JIT_STACK_MIN, PCRE_JIT_STACK_MAX, NULL);
    if (!st->md || !st->mctx) {
        tls_destroy(st);
        return NULL;
    }
    pcre2_set_match_limit(st->mctx, PCRE_MATCH_LIMIT);
    if (st->jit)
        pcre2_jit_stack_assign(st->mctx, NULL, st->jit);
    if (!tls_key_ok || pthread_setspecific(tls_key, st) != 0) {
        tls_destroy(st);
        return NULL;
    }
    tls = st;
    return st;
}

/* ---- compiling --------------------------------------------------------------------------------
 */

static uint32_t pcre_options(int case_sensitive, int utf)
{
    uint32_t o = PCRE2_ANCHORED | PCRE2_NEVER_BACKSLASH_C;
    if (!case_sensitive)
        o |= PCRE2_CASELESS;
    if (utf)
        o |= PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    return o;
}

static pcre2_code *pcre_compile(const char *pattern, size_t len, int case_sensitive, int utf,
                                char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, pcre_options(case_sensitive, utf),
                                   &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        if (code == PCRE2_ERROR_NOMEMORY) {
            sl_set_err(err, errlen, "out of memory compiling a pattern");
            return NULL;
        }
        if (pcre2_get_error_message(code, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", code);
        sl_set_err(err, errlen, "pattern does not compile at offset %zu: %s", (size_t)off,
                   (const char *)msg);
    }
    return re;
}

int sl_pattern_compile_check(const char *pattern, size_t len, int case_sensitive, char *err,
                             size_t errlen)
{
    if (len > SL_INTEL_VALUE_MAX) {
        sl_set_err(err, errlen, "pattern of %zu bytes: at most %d accepted", len,
                   SL_INTEL_VALUE_MAX);
        return SL_EINVAL;
    }
    char msg[320];
    msg[0] = '\0';
    pcre2_code *re = pcre_compile(pattern, len, case_sensitive, sl_intel_utf8_valid(pattern, len),
                                  msg, sizeof(msg));
    if (!re) {
        sl_set_err(err, errlen, "%s", msg);
        return strstr(msg, "out of memory") == msg ? SL_ENOMEM : SL_EINVAL;
    }
    pcre2_code_free(re);
    return 0;
}

int sl_intel_pattern_check(const char *pattern, size_t len, int case_sensitive, char *err,
                           size_t errlen)
{
    if (!pattern) {
        sl_set_err(err, errlen, "no pattern");
        return SL_EINVAL;
    }
    int rc = sl_pattern_compile_check(pattern, len, case_sensitive, err, errlen);
    return rc == SL_ENOMEM ? SL_EINVAL : rc;
}

struct sl_patbuild *sl_patbuild_new(int case_sensitive)
{
    struct sl_patbuild *pb = calloc(1, sizeof(*pb));
    if (pb)
        pb->case_sensitive = case_sensitive;
    return pb;
}

int sl_patbuild_add(struct sl_patbuild *pb, const char *pattern, size_t len, char *err,
                    size_t errlen)
{
    if (pb->n == pb->cap) {
        size_t cap = pb->cap ? pb->cap * 2 : 16;
        struct pattern *p = realloc(pb->p, cap * sizeof(*p));
        if (!p)
            return SL_ENOMEM;
        pb->p = p;
        pb->cap = cap;
    }
    char *text = malloc(len + 1);
    if (!text)
        return SL_ENOMEM;
    memcpy(text, pattern, len);
    text[len] = '\0';
    int utf = sl_intel_utf8_valid(pattern, len);
    char msg[320];
    msg[0] = '\0';
    pcre2_code *re = pcre_compile(pattern, len, pb->case_sensitive, utf, msg, sizeof(msg));
    if (!re) {
        free(text);
        sl_set_err(err, errlen, "%s", msg);
        return strstr(msg, "out of memory") == msg ? SL_ENOMEM : SL_EINVAL;
    }
    pb->p[pb->n++] = (struct pattern){.code = re, .text = text, .len = len, .utf = utf};
    return 0;
}

size_t sl_patbuild_count(const struct sl_patbuild *pb)
{
    return pb->n;
}

void sl_patbuild_free(struct sl_patbuild *pb)
{
    if (!pb)
        return;
    for (size_t i = 0; i < pb->n; i++) {
        pcre2_code_free(pb->p[i].code);
        free(pb->p[i].text);
    }
    free(pb->p);
    free(pb);
}

static unsigned hs_flags(int case_sensitive, int utf)
{
    unsigned f = HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY;
    if (!case_sensitive)
        f |= HS_FLAG_CASELESS;
    if (utf)
        f |= HS_FLAG_UTF8;
    return f;
}

/* Skips a PCRE2 escape starting at p[i] == '\\'; returns the index after it. */
static size_t skip_escape(const char *p, size_t n, size_t i)
{
    if (i + 1 >= n)
        return n;
    if (p[i + 1] == 'Q') { /* \Q...\E: literal text */
        for (size_t j = i + 2; j + 1 < n; j++)
            if (p[j] == '\\' && p[j + 1] == 'E')
                return j + 2;
        return n;
    }
    int braced =
        p[i + 1] && strchr("xopPgkN", p[i + 1]) != NULL; /* \x{41}, \p{L}, \g{1}; not \d{3} */
    i += 2;
    if (braced && i < n && p[i] == '{') {
        while (i < n && p[i] != '}')
            i++;
        return i < n ? i + 1 : n;
    }
    return i;
}

/* Skips a character class starting at p[i] == '['. */
static size_t skip_class(const char *p, size_t n, size_t i)
{
    i++;
    if (i < n && p[i] == '^')
        i++;
    if (i < n && p[i] == ']')
        i++; /* a leading ']' is literal */
    while (i < n && p[i] != ']') {
        if (p[i] == '\\') {
            i = skip_escape(p, n, i);
            continue;
        }
        if (p[i] == '[' && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
            const char *end = memmem(p + i + 2, n - i - 2, ":]", 2);
            i = end ? (size_t)(end - p) + 2 : n;
            continue;
        }
        i++;
    }
    return i < n ? i + 1 : n;
}

/* Parses a {n}, {n,} or {n,m} quantifier at p[i]; returns the index after it and its bound
 * (m, or n when open), or 0 when p[i] does not start one (then '{' is a literal). */
static size_t parse_bound(const char *p, size_t n, size_t i, double *out)
{
    double lo = 0, hi = -1;
    size_t j = i + 1, d = 0;
    while (j < n && p[j] >= '0' && p[j] <= '9')
        lo = lo * 10 + (p[j++] - '0'), d++;
    if (d == 0)
        return 0;
    if (j < n && p[j] == ',') {
        j++;
        d = 0;
        double m = 0;
        while (j < n && p[j] >= '0' && p[j] <= '9')
            m = m * 10 + (p[j++] - '0'), d++;
        if (d)
            hi = m;
    } else {
        hi = lo;
    }
    if (j >= n || p[j] != '}')
        return 0;
    *out = hi >= 0 ? hi : (lo > 1 ? lo : 1);
    return j + 1;
}

/* Hyperscan compiles large bounded repeats into large automata: (?:a.{0,500}b){4} takes it
 * minutes, during which the list is not ready. The weight of a pattern is its length with
 * every bounded repeat expanded (nested ones multiplied); past this, PCRE2 takes the
 * pattern. Unbounded repeats (*, +, {n,}) count once (as n): Hyperscan loops on them. */
#define HS_MAX_REPEAT_WEIGHT 512
#define HS_MAX_DEPTH         64

static int hs_weight_ok(const char *p, size_t n)
{
    double sum[HS_MAX_DEPTH];
    int depth = 0;
    double last = 0; /* weight of the last atom, which a quantifier multiplies */
    sum[0] = 0;
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        double bound;
        size_t next;
        if (c == '\\') {
            i = skip_escape(p, n, i);
            last = 1;
            sum[depth] += 1;
        } else if (c == '[') {
            i = skip_class(p, n, i);
            last = 1;
            sum[depth] += 1;
        } else if (c == '(') {
            if (++depth == HS_MAX_DEPTH)
                return 0;
            sum[depth] = 0;
            i++;
        } else if (c == ')' && depth > 0) {
            last = sum[depth--];
            sum[depth] += last;
            i++;
        } else if (c == '{' && (next = parse_bound(p, n, i, &bound)) != 0) {
            sum[depth] += last * (bound - 1);
            last *= bound;
            i = next;
        } else if (c == '*' || c == '+' || c == '?' || c == '|') {
            i++;
        } else {
            last = 1;
            sum[depth] += 1;
            i++;
        }
        if (sum[depth] > HS_MAX_REPEAT_WEIGHT)
            return 0;
    }
    return sum[0] <= HS_MAX_REPEAT_WEIGHT;
}

/* Whether Hyperscan takes the pattern on its own (expr is the anchored form). */
static int hs_accepts(const char *expr, unsigned flags)
{
    hs_expr_info_t *info = NULL;
    hs_compile_error_t *cerr = NULL;
    if (hs_expression_info(expr, flags, &info, &cerr) != HS_SUCCESS) {
        hs_free_compile_error(cerr);
        return 0;
    }
    free(info);
    return 1;
}

/* Compiles the patterns marked in use[] into one database; a pattern the whole compile refuses
 * is unmarked and the rest compiled again. Returns the database or NULL (none left, or
 * Hyperscan failed as a whole: every pattern then goes to PCRE2). */
static hs_database_t *hs_build(struct sl_patbuild *pb, char **exprs, unsigned *flags, unsigned *ids,
                               unsigned char *use)
{
    const char **e = malloc(pb->n * sizeof(*e));
    unsigned *f = malloc(pb->n * sizeof(*f));
    unsigned *id = malloc(pb->n * sizeof(*id));
    hs_database_t *db = NULL;
    if (!e || !f || !id)
        goto out;
    for (size_t attempt = 0; attempt <= pb->n; attempt++) {
        unsigned n = 0;
        for (size_t i = 0; i < pb->n; i++) {
            if (!use[i])
                continue;
            e[n] = exprs[i];
            f[n] = flags[i];
            id[n] = ids[i];
            n++;
        }
        if (n == 0)
            goto out;
        hs_compile_error_t *cerr = NULL;
        if (hs_compile_multi(e, f, id, n, HS_MODE_BLOCK, NULL, &db, &cerr) == HS_SUCCESS)
            goto out;
        db = NULL;
        int bad = cerr ? cerr->expression : -1;
        if (bad < 0 || (unsigned)bad >= n) {
            SL_WARN("intel: Hyperscan refused the pattern set (%s); PCRE2 matches all of it",
                    cerr && cerr->message ? cerr->message : "unknown error");
            hs_free_compile_error(cerr);
            memset(use, 0, pb->n);
            goto out;
        }
        hs_free_compile_error(cerr);
        use[id[bad]] = 0;
    }
out:
    free(e);
    free(f);
    free(id);
    return db;
}

/* Decides which patterns go into the Hyperscan database (use[i] = 1) and builds it. */
static int hs_choose(struct sl_patbuild *pb, struct sl_patset *ps, unsigned char *use)
{
    int rc = 0;
    char **exprs = calloc(pb->n, sizeof(*exprs));
    unsigned *flags = calloc(pb->n, sizeof(*flags));
    unsigned *ids = calloc(pb->n, sizeof(*ids));
    if (!exprs || !flags || !ids) {
        rc = SL_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < pb->n; i++) {
        const struct pattern *p = &pb->p[i];
        ids[i] = (unsigned)i;
        flags[i] = hs_flags(pb->case_sensitive, p->utf);
        if (memchr(p->text, '\0', p->len) || !hs_weight_ok(p->text, p->len))
            continue; /* Hyperscan takes C strings; heavy repeats compile too slowly */
        exprs[i] = malloc(p->len + 8);
        if (!exprs[i]) {
            rc = SL_ENOMEM;
            goto out;
        }
        /* The group keeps a top-level alternation under the anchor: ^(?:a|b). */
        snprintf(exprs[i], p->len + 8, "^(?:%s)", p->text);
        use[i] = (unsigned char)hs_accepts(exprs[i], flags[i]);
    }
    ps->db = hs_build(pb, exprs, flags, ids, use);
    if (!ps->db)
        memset(use, 0, pb->n);
out:
    if (exprs)
        for (size_t i = 0; i < pb->n; i++)
            free(exprs[i]);
    free(exprs);
    free(flags);
    free(ids);
    return rc;
}

int sl_patbuild_finish(struct sl_patbuild *pb, struct sl_patset **out, char *err, size_t errlen)
{
    int rc = 0;
    unsigned char *use = NULL;
    struct sl_patset *ps = calloc(1, sizeof(*ps));
    if (!ps)
        goto nomem;
    ps->id = atomic_fetch_add(&next_db_id, 1);
    use = calloc(pb->n ? pb->n : 1, 1);
    ps->codes = malloc((pb->n ? pb->n : 1) * sizeof(*ps->codes));
    ps->hs_codes = malloc((pb->n ? pb->n : 1) * sizeof(*ps->hs_codes));
    if (!use || !ps->codes || !ps->hs_codes)
        goto nomem;
    if (pb->n >= SL_INTEL_HS_MIN_PATTERNS && hs_valid_platform() == HS_SUCCESS) {
        rc = hs_choose(pb, ps, use);
        if (rc)
            goto nomem;
    }
    for (size_t i = 0; i < pb->n; i++) {
        struct pattern *p = &pb->p[i];
        struct pcode pc = {.code = p->code, .bsk = strstr(p->text, "\\K") != NULL};
        if (use[i]) {
            ps->hs_codes[ps->nhs++] = pc;
            ps->hs_utf8 |= p->utf;
        } else {
            /* A JIT failure (no JIT on this CPU, too large) leaves the interpreter: still right. */
            pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE);
            ps->codes[ps->ncodes++] = pc;
        }
        p->code = NULL;
    }
    sl_patbuild_free(pb);
    free(use);
    *out = ps;
    return 0;
nomem:
    sl_set_err(err, errlen, "out of memory compiling %zu patterns", pb->n);
    sl_patbuild_free(pb);
    sl_patset_free(ps);
    free(use);
    *out = NULL;
    return SL_ENOMEM;
}

void sl_patset_free(struct sl_patset *ps)
{
    if (!ps)
        return;
    if (ps->db)
        hs_free_database(ps->db);
    for (size_t i = 0; i < ps->nhs; i++)
        pcre2_code_free(ps->hs_codes[i].code);
    for (size_t i = 0; i < ps->ncodes; i++)
        pcre2_code_free(ps->codes[i].code);
    free(ps->hs_codes);
    free(ps->codes);
    free(ps);
}

size_t sl_patset_hs_count(const struct sl_patset *ps)
{
    return ps->db ? ps->nhs : 0;
}

size_t sl_patset_pcre_count(const struct sl_patset *ps)
{
    return ps->ncodes;
}

/* ---- matching ---------------------------------------------------------------------------------
 */

static int on_hs_match(unsigned int id, unsigned long long from, unsigned long long to,
                       unsigned int flags, void *ctx)
{
    (void)id, (void)from, (void)to, (void)flags, (void)ctx;
    return 1; /* one match is enough: stop the scan */
}

static int pcre_any(const struct pcode *codes, size_t n, const char *value, size_t len,
                    struct tls_state *st)
{
    int valid = -1; /* value is UTF-8: not known yet */
    for (size_t i = 0; i < n; i++) {
        /* Errors (the match limit) count as no match. */
        if (pcre2_match(codes[i].code, (PCRE2_SPTR)value, len, 0, 0, st->md, st->mctx) < 0)
            continue;
        /* With PCRE2_MATCH_INVALID_UTF, PCRE2 10.42 may restart an anchored match after a
         * sequence that is not UTF-8 ("ab" found in "a\xffab"). The leftmost match is tried
         * first, so a match reported past offset 0 is one of those, unless \K moved its start
         * (or the value is valid UTF-8, where the restart cannot happen). */
        if (pcre2_get_ovector_pointer(st->md)[0] != 0 && !codes[i].bsk) {
            if (valid < 0)
                valid = sl_intel_utf8_valid(value, len);
            if (!valid)
                continue;
        }
        return 1;
    }
    return 0;
}

int sl_patset_match(const struct sl_patset *ps, const char *value, size_t len)
{
    struct tls_state *st = tls_get();
    if (!st) {
        SL_WARN("intel: out of memory for pattern matching state; value not matched");
        return 0;
    }
    if (ps->db) {
        int scan = len <= UINT_MAX && !(ps->hs_utf8 && !sl_intel_utf8_valid(value, len));
        if (scan && st->scratch_for != ps->id) {
            /* Grows this thread's scratch to fit the database (no-op when it already does). */
            if (hs_alloc_scratch(ps->db, &st->scratch) == HS_SUCCESS)
                st->scratch_for = ps->id;
            else
                scan = 0;
        }
        if (scan) {
            hs_error_t r = hs_scan(ps->db, value, (unsigned)len, 0, st->scratch, on_hs_match, NULL);
            if (r == HS_SCAN_TERMINATED)
                return 1;
            if (r != HS_SUCCESS && pcre_any(ps->hs_codes, ps->nhs, value, len, st))
                return 1;
        } else if (pcre_any(ps->hs_codes, ps->nhs, value, len, st)) {
            return 1;
        }
    }
    return pcre_any(ps->codes, ps->ncodes, value, len, st);
}
