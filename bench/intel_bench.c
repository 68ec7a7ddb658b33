/* Intel List benchmark: load time, memory and single-core lookup rates of a values list (random
 * ip, domain and sha256 values), an ip list of CIDR networks and a patterns list.
 *
 *   intel_bench [values [networks [patterns [lookups]]]]   defaults 1000000 100000 1000 2000000
 *
 * Memory is the heap in use (mallinfo2) and the resident set growth across the build, after the
 * input strings were generated. Lookups cycle over a fixed set of queries so that generating
 * them is not timed; hits are values of the list (addresses within its networks, strings each
 * pattern matches), misses values of the same shape that are not. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rules/intel.h"
#include "rules/intel_internal.h"

#define QUERIES 200000

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static size_t rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* A set of strings in one buffer. */
struct strs {
    char *buf;
    size_t used, cap;
    size_t *off, *len;
    size_t n;
};

static void strs_init(struct strs *s, size_t n, size_t avg)
{
    s->cap = n * avg + 64;
    s->buf = malloc(s->cap);
    s->off = malloc(n * sizeof(*s->off));
    s->len = malloc(n * sizeof(*s->len));
    s->used = s->n = 0;
    if (!s->buf || !s->off || !s->len) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}

static char *strs_slot(struct strs *s)
{
    if (s->used + 256 > s->cap) {
        s->cap *= 2;
        s->buf = realloc(s->buf, s->cap);
        if (!s->buf) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    return s->buf + s->used;
}

static void strs_commit(struct strs *s, int len)
{
    s->off[s->n] = s->used;
    s->len[s->n] = (size_t)len;
    s->used += (size_t)len + 1;
    s->n++;
}

static void strs_free(struct strs *s)
{
    free(s->buf);
    free(s->off);
    free(s->len);
}

static int gen_domain(char *out, int miss)
{
    static const char *tld[] = {"com", "net", "org", "io", "ru", "info"};
    char label[24];
    int n = 6 + (int)(rng() % 12);
    for (int i = 0; i < n; i++)
        label[i] = (char)('a' + rng() % 26);
    label[n] = '\0';
    return sprintf(out, "%s%s.%s", miss ? "zz-" : "", label, tld[rng() % 6]);
}

static int gen_value(char *out, int miss)
{
    switch (rng() % 3) {
    case 0: /* misses: 10.x.x.x, never generated for the list */
        return sprintf(out, "%u.%u.%u.%u", miss ? 10 : 11 + (unsigned)(rng() % 200),
                       (unsigned)(rng() % 256), (unsigned)(rng() % 256), (unsigned)(rng() % 256));
    case 1:
        return gen_domain(out, miss);
    default:
        for (int i = 0; i < 64; i++)
            out[i] = "0123456789abcdef"[rng() % 16];
        out[64] = '\0';
        return 64;
    }
}

struct result {
    double load_s;
    size_t heap, rss, size;
};

static struct sl_intel_list *build(const struct sl_intel_def *def, const struct strs *in,
                                   struct result *r)
{
    size_t heap0 = heap_bytes(), rss0 = rss_bytes();
    double t0 = now_s();
    struct sl_intel_builder *b = sl_intel_builder_new(def);
    char err[256];
    for (size_t i = 0; i < in->n; i++) {
        if (!b || sl_intel_builder_add(b, in->buf + in->off[i], in->len[i], err, sizeof(err))) {
            fprintf(stderr, "add '%s': %s\n", in->buf + in->off[i], err);
            exit(1);
        }
    }
    struct sl_intel_list *l;
    if (sl_intel_builder_finish(b, &l, err, sizeof(err))) {
        fprintf(stderr, "finish: %s\n", err);
        exit(1);
    }
    r->load_s = now_s() - t0;
    r->heap = heap_bytes() - heap0;
    r->rss = rss_bytes() - rss0;
    r->size = sl_intel_list_size(l);
    return l;
}

/* Lookups per second over queries q, cycled to `lookups` calls; *out_matched counts matches. */
static double rate(const struct sl_intel_list *l, const char *type, const struct strs *q,
                   size_t lookups, size_t *out_matched)
{
    size_t matched = 0;
    double t0 = now_s();
    for (size_t i = 0; i < lookups; i++) {
        size_t k = i % q->n;
        matched += (size_t)sl_intel_match(l, type, q->buf + q->off[k], q->len[k]);
    }
    double dt = now_s() - t0;
    *out_matched = matched;
    return (double)lookups / dt;
}

static void report(const char *name, const struct result *r, size_t items)
{
    printf("%-9s %8zu entries  load %7.3f s (%9.0f /s)  heap %7.1f MiB (%6.1f B/entry)  "
           "rss +%7.1f MiB\n",
           name, r->size, r->load_s, (double)items / r->load_s, (double)r->heap / 1048576.0,
           (double)r->heap / (double)(r->size ? r->size : 1), (double)r->rss / 1048576.0);
}

static void report_rates(const char *name, double hit, size_t nhit, double miss, size_t nmiss,
                         size_t lookups)
{
    printf("%-9s hits %10.0f lookups/s (%zu/%zu matched)   misses %10.0f lookups/s (%zu "
           "matched)\n",
           name, hit, nhit, lookups, miss, nmiss);
}

static void bench_values(size_t n, size_t lookups)
{
    struct strs in, hit, miss;
    strs_init(&in, n, 40);
    for (size_t i = 0; i < n; i++)
        strs_commit(&in, gen_value(strs_slot(&in), 0));
    struct sl_intel_def def = {
        .name = "values", .type = SL_INTEL_VALUES, .data_type = "generic", .case_sensitive = 0};
    struct result r;
    struct sl_intel_list *l = build(&def, &in, &r);
    report("values", &r, n);

    size_t nq = n < QUERIES ? n : QUERIES;
    strs_init(&hit, nq, 40);
    strs_init(&miss, nq, 40);
    for (size_t i = 0; i < nq; i++) {
        size_t k = (size_t)(rng() % n);
        memcpy(strs_slot(&hit), in.buf + in.off[k], in.len[k] + 1);
        strs_commit(&hit, (int)in.len[k]);
        strs_commit(&miss, gen_value(strs_slot(&miss), 1));
    }
    size_t mh, mm;
    double rh = rate(l, "domain", &hit, lookups, &mh);
    double rm = rate(l, "domain", &miss, lookups, &mm);
    report_rates("values", rh, mh, rm, mm, lookups);
    sl_intel_list_free(l);
    strs_free(&in);
    strs_free(&hit);
    strs_free(&miss);
}

static void bench_networks(size_t n, size_t lookups)
{
    struct strs in, hit, miss;
    strs_init(&in, n, 24);
    /* IPv4 networks under 1.0.0.0-126.255.255.255 (/16 to /32) and one in five IPv6 under
     * 2001:db8::/32 (/48 to /128); misses come from 128.0.0.0/2 and 2a00::/16. */
    uint32_t *v4 = malloc(n * sizeof(*v4));
    int *bits = malloc(n * sizeof(*bits));
    if (!v4 || !bits)
        exit(1);
    for (size_t i = 0; i < n; i++) {
        char *o = strs_slot(&in);
        if (i % 5 == 4) {
            bits[i] = -(48 + (int)(rng() % 81));
            v4[i] = (uint32_t)rng();
            strs_commit(&in, sprintf(o, "2001:db8:%x:%x:%x::/%d", v4[i] >> 16, v4[i] & 0xffff,
                                     (unsigned)(rng() % 65536), -bits[i]));
        } else {
            bits[i] = 16 + (int)(rng() % 17);
            uint32_t a = ((uint32_t)(1 + rng() % 126) << 24) | ((uint32_t)rng() & 0xffffff);
            v4[i] = bits[i] == 32 ? a : a & ~((1u << (32 - bits[i])) - 1);
            strs_commit(&in, sprintf(o, "%u.%u.%u.%u/%d", v4[i] >> 24, (v4[i] >> 16) & 255,
                                     (v4[i] >> 8) & 255, v4[i] & 255, bits[i]));
        }
    }
    struct sl_intel_def def = {
        .name = "networks", .type = SL_INTEL_VALUES, .data_type = "ip", .case_sensitive = 0};
    struct result r;
    struct sl_intel_list *l = build(&def, &in, &r);
    report("networks", &r, n);

    size_t nq = n < QUERIES ? n : QUERIES;
    strs_init(&hit, nq, 40);
    strs_init(&miss, nq, 40);
    for (size_t i = 0; i < nq; i++) {
        size_t k;
        do /* an address within 2001:db8:a:b:c::/n shares its first 64 bits only if n <= 64 */
            k = (size_t)(rng() % n);
        while (bits[k] < -64);
        char *o = strs_slot(&hit);
        if (bits[k] < 0) {
            strs_commit(&hit, sprintf(o, "2001:db8:%x:%x::%x", v4[k] >> 16, v4[k] & 0xffff,
                                      (unsigned)(rng() % 65536)));
        } else {
            uint32_t a =
                v4[k] | ((uint32_t)rng() & ((bits[k] == 32) ? 0 : (1u << (32 - bits[k])) - 1));
            strs_commit(
                &hit, sprintf(o, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255));
        }
        o = strs_slot(&miss);
        if (i % 5 == 4)
            strs_commit(&miss, sprintf(o, "2a00:%x::%x", (unsigned)(rng() % 65536),
                                       (unsigned)(rng() % 65536)));
        else
            strs_commit(&miss, sprintf(o, "%u.%u.%u.%u", 128 + (unsigned)(rng() % 64),
                                       (unsigned)(rng() % 256), (unsigned)(rng() % 256),
                                       (unsigned)(rng() % 256)));
    }
    size_t mh, mm;
    double rh = rate(l, "ip", &hit, lookups, &mh);
    double rm = rate(l, "ip", &miss, lookups, &mm);
    report_rates("networks", rh, mh, rm, mm, lookups);
    sl_intel_list_free(l);
    free(v4);
    free(bits);
    strs_free(&in);
    strs_free(&hit);
    strs_free(&miss);
}

static void bench_patterns(size_t n, size_t lookups)
{
    struct strs in, hit, miss;
    strs_init(&in, n, 64);
    /* Each pattern carries a distinct word, so hits can be written for each. */
    for (size_t i = 0; i < n; i++) {
        char word[32];
        snprintf(word, sizeof(word), "w%05zuq", i);
        char *o = strs_slot(&in);
        switch (i % 4) {
        case 0:
            strs_commit(&in, sprintf(o, "[a-z]{2,8}-%s\\.(com|net|org)/[0-9]+", word));
            break;
        case 1:
            strs_commit(&in, sprintf(o, "https?://[^/]+/%s/[a-z0-9]{4,}\\.php", word));
            break;
        case 2:
            strs_commit(&in, sprintf(o, "(?:cmd|powershell)(\\.exe)? .*-enc %s", word));
            break;
        default:
            strs_commit(&in, sprintf(o, "%s[0-9a-f]{16}", word));
        }
    }
    struct sl_intel_def def = {
        .name = "patterns", .type = SL_INTEL_PATTERNS, .data_type = "url", .case_sensitive = 0};
    struct result r;
    struct sl_intel_list *l = build(&def, &in, &r);
    report("patterns", &r, n);
    size_t hs, pcre;
    sl_intel_list_engines(l, &hs, &pcre);
    printf("patterns  %zu in the Hyperscan database, %zu through PCRE2\n", hs, pcre);

    size_t nq = n < QUERIES ? QUERIES : n;
    strs_init(&hit, nq, 64);
    strs_init(&miss, nq, 64);
    for (size_t i = 0; i < nq; i++) {
        size_t k = (size_t)(rng() % n);
        char word[32];
        snprintf(word, sizeof(word), "w%05zuq", k);
        char *o = strs_slot(&hit);
        switch (k % 4) {
        case 0:
            strs_commit(&hit, sprintf(o, "abc-%s.net/%u", word, (unsigned)(rng() % 1000)));
            break;
        case 1:
            strs_commit(&hit, sprintf(o, "http://h.example/%s/x1y2z3.php?a=1", word));
            break;
        case 2:
            strs_commit(&hit, sprintf(o, "powershell.exe -nop -enc %s", word));
            break;
        default:
            strs_commit(&hit, sprintf(o, "%s0123456789abcdef", word));
        }
        o = strs_slot(&miss);
        int len = gen_domain(o, 1);
        strs_commit(&miss, len + sprintf(o + len, "/w%05uq/index.html", (unsigned)(rng() % n)));
    }
    size_t mh, mm;
    double rh = rate(l, "url", &hit, lookups, &mh);
    double rm = rate(l, "url", &miss, lookups, &mm);
    report_rates("patterns", rh, mh, rm, mm, lookups);
    sl_intel_list_free(l);
    strs_free(&in);
    strs_free(&hit);
    strs_free(&miss);
}

static size_t arg(int argc, char **argv, int i, size_t def)
{
    if (argc <= i)
        return def;
    char *end;
    unsigned long long v = strtoull(argv[i], &end, 10);
    if (*end || v == 0) {
        fprintf(stderr, "usage: %s [values [networks [patterns [lookups]]]]\n", argv[0]);
        exit(2);
    }
    return (size_t)v;
}

int main(int argc, char **argv)
{
    size_t nvalues = arg(argc, argv, 1, 1000000);
    size_t nnets = arg(argc, argv, 2, 100000);
    size_t npats = arg(argc, argv, 3, 1000);
    size_t lookups = arg(argc, argv, 4, 2000000);
    bench_values(nvalues, lookups);
    bench_networks(nnets, lookups);
    bench_patterns(npats, lookups);
    return 0;
}
