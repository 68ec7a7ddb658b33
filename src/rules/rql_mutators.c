/* RQL mutators (|lowercase, |b64decode, |geo_country, ...) and the value helpers the compiler
 * and evaluator share: numbers and their canonical text, IP addresses and networks, UTF-8 case
 * mapping, hashing. Mutator results live in the evaluation's scratch memory. */
#include "rules/rql_internal.h"

#include "core/util.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "rules/intel.h"

/* ---- names -------------------------------------------------------------------------------- */

static const char *const mutator_names[MUT__COUNT] = {
    [MUT_COUNT] = "count",
    [MUT_LENGTH] = "length",
    [MUT_LOWERCASE] = "lowercase",
    [MUT_UPPERCASE] = "uppercase",
    [MUT_REFANG] = "refang",
    [MUT_B64DECODE] = "b64decode",
    [MUT_B64EXTRACT] = "b64extract",
    [MUT_URLDECODE] = "urldecode",
    [MUT_ANY] = "any",
    [MUT_ALL] = "all",
    [MUT_AVG] = "avg",
    [MUT_MAX] = "max",
    [MUT_MIN] = "min",
    [MUT_SUM] = "sum",
    [MUT_SPLIT] = "split",
    [MUT_GEO_COUNTRY] = "geo_country",
    [MUT_GEO_CONTINENT] = "geo_continent",
    [MUT_GEO_TIMEZONE] = "geo_timezone",
    [MUT_REVERSE_LOOKUP] = "reverse_lookup",
    [MUT_NS_A] = "ns_lookup_a",
    [MUT_NS_AAAA] = "ns_lookup_aaaa",
    [MUT_NS_MX] = "ns_lookup_mx",
    [MUT_NS_NS] = "ns_lookup_ns",
    [MUT_NS_PTR] = "ns_lookup_ptr",
    [MUT_IS_PRIVATE] = "is_private",
    [MUT_IS_GLOBAL] = "is_global",
    [MUT_IS_MULTICAST] = "is_multicast",
    [MUT_IS_IPV6] = "is_ipv6",
    [MUT_TO_INTEGER] = "to_integer",
    [MUT_TO_STRING] = "to_string",
};

int rql_mutator_find(const char *name, size_t len)
{
    char buf[32];
    if (len >= sizeof(buf))
        return -1;
    /* nslookup_* is the spelling of the reference's documentation. */
    if (len > 9 && !strncasecmp(name, "nslookup_", 9)) {
        memcpy(buf, "ns_lookup_", 10);
        if (len + 1 >= sizeof(buf))
            return -1;
        memcpy(buf + 10, name + 9, len - 9);
        len++;
        name = buf;
    }
    for (int m = 0; m < MUT__COUNT; m++)
        if (strlen(mutator_names[m]) == len && !strncasecmp(mutator_names[m], name, len))
            return m;
    return -1;
}

const char *rql_mutator_name(int m)
{
    return m >= 0 && m < MUT__COUNT ? mutator_names[m] : "?";
}

/* ---- numbers ------------------------------------------------------------------------------ */

int rql_parse_number(const char *s, size_t n, double *out)
{
    size_t i = 0, digits = 0;
    if (n == 0 || n > 128)
        return -1;
    if (s[i] == '+' || s[i] == '-')
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
        digits++;
    }
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            digits++;
        }
    }
    if (!digits)
        return -1;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t ed = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            ed++;
        }
        if (!ed)
            return -1;
    }
    if (i != n)
        return -1;
    char buf[130];
    memcpy(buf, s, n);
    buf[n] = '\0';
    *out = strtod(buf, NULL);
    return 0;
}

size_t rql_format_number(double d, char *out, size_t outlen)
{
    int k;
    if (isnan(d))
        k = snprintf(out, outlen, "nan");
    else if (isinf(d))
        k = snprintf(out, outlen, d < 0 ? "-inf" : "inf");
    else if (d == 0)
        k = snprintf(out, outlen, "0");
    else if (d == trunc(d) && fabs(d) < 1e16)
        k = snprintf(out, outlen, "%.0f", d);
    else {
        k = 0;
        for (int prec = 1; prec <= 17; prec++) {
            k = snprintf(out, outlen, "%.*g", prec, d);
            if (strtod(out, NULL) == d)
                break;
        }
    }
    if (k < 0)
        k = 0;
    return (size_t)k < outlen ? (size_t)k : outlen - 1;
}

/* ---- IP addresses --------------------------------------------------------------------------- */

int rql_ip_parse(const char *s, size_t n, uint8_t addr[16], int *v6)
{
    char buf[64];
    if (n == 0 || n >= sizeof(buf))
        return -1;
    if (!memchr(s, ':', n)) {
        /* The common case, and text that is no address at all, without a copy. */
        memset(addr, 0, 16);
        *v6 = 0;
        return sl_ipv4_parse(s, n, addr);
    }
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (strlen(buf) != n)
        return -1;
    memset(addr, 0, 16);
    if (memchr(buf, ':', n)) {
        *v6 = 1;
        return inet_pton(AF_INET6, buf, addr) == 1 ? 0 : -1;
    }
    *v6 = 0;
    return inet_pton(AF_INET, buf, addr) == 1 ? 0 : -1;
}

int rql_net_parse(const char *s, size_t n, struct rql_net *out)
{
    const char *slash = memchr(s, '/', n);
    size_t alen = slash ? (size_t)(slash - s) : n;
    int v6;
    memset(out, 0, sizeof(*out));
    if (rql_ip_parse(s, alen, out->addr, &v6))
        return -1;
    int max = v6 ? 128 : 32, bits = max;
    if (slash) {
        const char *b = slash + 1;
        size_t bl = n - alen - 1;
        if (bl == 0 || bl > 3)
            return -1;
        bits = 0;
        for (size_t i = 0; i < bl; i++) {
            if (b[i] < '0' || b[i] > '9')
                return -1;
            bits = bits * 10 + (b[i] - '0');
        }
        if (bits > max)
            return -1;
    }
    out->v6 = (uint8_t)v6;
    out->bits = (uint8_t)bits;
    /* Host bits are cleared: "10.1.2.3/8" is the network 10.0.0.0/8. */
    for (int i = 0; i < 16; i++) {
        int keep = bits - i * 8;
        if (keep <= 0)
            out->addr[i] = 0;
        else if (keep < 8)
            out->addr[i] &= (uint8_t)(0xff << (8 - keep));
    }
    return 0;
}

int rql_net_contains(const struct rql_net *net, const uint8_t addr[16], int v6)
{
    if (net->v6 != v6)
        return 0;
    int full = net->bits / 8, rem = net->bits % 8;
    if (memcmp(net->addr, addr, (size_t)full))
        return 0;
    if (rem && ((addr[full] ^ net->addr[full]) & (uint8_t)(0xff << (8 - rem))))
        return 0;
    return 1;
}

/* Address classes as Python's ipaddress (3.11) defines them. */
static const char *const private_nets[] = {
    "0.0.0.0/8",
    "10.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/29",
    "192.0.0.170/31",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "240.0.0.0/4",
    "255.255.255.255",
    "::1",
    "::",
    "::ffff:0:0/96",
    "100::/64",
    "2001::/23",
    "2001:2::/48",
    "2001:db8::/32",
    "2001:10::/28",
    "fc00::/7",
    "fe80::/10",
};

static int in_nets(const char *const *nets, size_t n, const uint8_t addr[16], int v6)
{
    for (size_t i = 0; i < n; i++) {
        struct rql_net net;
        if (!rql_net_parse(nets[i], strlen(nets[i]), &net) && rql_net_contains(&net, addr, v6))
            return 1;
    }
    return 0;
}

static int ip_class(int m, const char *s, size_t n)
{
    uint8_t addr[16];
    int v6;
    if (rql_ip_parse(s, n, addr, &v6))
        return 0;
    size_t np = sizeof(private_nets) / sizeof(private_nets[0]);
    switch (m) {
    case MUT_IS_IPV6:
        return v6;
    case MUT_IS_MULTICAST:
        return v6 ? addr[0] == 0xff : (addr[0] & 0xf0) == 0xe0;
    case MUT_IS_PRIVATE:
        return in_nets(private_nets, np, addr, v6);
    case MUT_IS_GLOBAL: {
        static const char *const shared[] = {"100.64.0.0/10"};
        return !in_nets(private_nets, np, addr, v6) && !in_nets(shared, 1, addr, v6);
    }
    default:
        return 0;
    }
}

/* ---- case mapping --------------------------------------------------------------------------- */

static uint32_t lower_cp(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if (c >= 0xc0 && c <= 0xde && c != 0xd7)
        return c + 32;
    if ((c >= 0x100 && c <= 0x12f) || (c >= 0x132 && c <= 0x137) || (c >= 0x14a && c <= 0x177) ||
        (c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || (c >= 0x4d0 && c <= 0x52f) ||
        (c >= 0x1e00 && c <= 0x1e95) || (c >= 0x1ea0 && c <= 0x1eff))
        return c % 2 == 0 ? c + 1 : c;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e) || (c >= 0x4c1 && c <= 0x4ce))
        return c % 2 == 1 ? c + 1 : c;
    if (c == 0x178)
        return 0xff;
    if (c == 0x386)
        return 0x3ac;
    if (c >= 0x388 && c <= 0x38a)
        return c + 37;
    if (c == 0x38c)
        return 0x3cc;
    if (c == 0x38e || c == 0x38f)
        return c + 63;
    if (c >= 0x391 && c <= 0x3a9 && c != 0x3a2)
        return c + 32;
    if (c >= 0x400 && c <= 0x40f)
        return c + 80;
    if (c >= 0x410 && c <= 0x42f)
        return c + 32;
    if (c == 0x4c0)
        return 0x4cf;
    if (c >= 0x531 && c <= 0x556)
        return c + 48;
    if (c >= 0xff21 && c <= 0xff3a)
        return c + 32;
    return c;
}

static uint32_t upper_cp(uint32_t c)
{
    if (c < 0x80)
        return c >= 'a' && c <= 'z' ? c - 32 : c;
    if (c >= 0xe0 && c <= 0xfe && c != 0xf7)
        return c - 32;
    if (c == 0xff)
        return 0x178;
    if (c == 0xb5)
        return 0x39c;
    if ((c >= 0x101 && c <= 0x12f) || (c >= 0x133 && c <= 0x137) || (c >= 0x14b && c <= 0x177) ||
        (c >= 0x461 && c <= 0x481) || (c >= 0x48b && c <= 0x4bf) || (c >= 0x4d1 && c <= 0x52f) ||
        (c >= 0x1e01 && c <= 0x1e95) || (c >= 0x1ea1 && c <= 0x1eff))
        return c % 2 == 1 ? c - 1 : c;
    if ((c >= 0x13a && c <= 0x148) || (c >= 0x17a && c <= 0x17e) || (c >= 0x4c2 && c <= 0x4ce))
        return c % 2 == 0 ? c - 1 : c;
    if (c == 0x3ac)
        return 0x386;
    if (c >= 0x3ad && c <= 0x3af)
        return c - 37;
    if (c == 0x3cc)
        return 0x38c;
    if (c == 0x3cd || c == 0x3ce)
        return c - 63;
    if (c == 0x3c2)
        return 0x3a3;
    if (c >= 0x3b1 && c <= 0x3c9)
        return c - 32;
    if (c >= 0x430 && c <= 0x44f)
        return c - 32;
    if (c >= 0x450 && c <= 0x45f)
        return c - 80;
    if (c == 0x4cf)
        return 0x4c0;
    if (c >= 0x561 && c <= 0x586)
        return c - 48;
    if (c >= 0xff41 && c <= 0xff5a)
        return c - 32;
    return c;
}

static size_t utf8_len_of(uint32_t cp)
{
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

static void utf8_put(unsigned char *o, uint32_t cp, size_t len)
{
    switch (len) {
    case 1:
        o[0] = (unsigned char)cp;
        break;
    case 2:
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        break;
    case 3:
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        break;
    default:
        o[0] = (unsigned char)(0xf0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[3] = (unsigned char)(0x80 | (cp & 0x3f));
        break;
    }
}

/* Eight ASCII bytes case-mapped at once: the letters of the other case (from lo to lo + 25)
 * get bit 0x20 flipped. The sums cannot carry between bytes, which are all below 0x80. */
static inline uint64_t case8(uint64_t w, int upper)
{
    const uint64_t ones = 0x0101010101010101ULL;
    uint64_t lo = upper ? 'a' : 'A';
    uint64_t in = (w + (0x80 - lo) * ones) & ~(w + (0x80 - lo - 26) * ones);
    return w ^ ((in & 0x8080808080808080ULL) >> 2);
}

void rql_case_map(const char *s, size_t n, char *out, int upper)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char *o = (unsigned char *)out;
    size_t i = 0;
    while (i + 8 <= n) { /* ASCII eight bytes at a time while it lasts */
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ULL)
            break;
        w = case8(w, upper);
        memcpy(o + i, &w, 8);
        i += 8;
    }
    if (i < n && n >= 8 && i + 8 > n) {
        /* An ASCII tail: the last eight bytes at once (those before it are mapped again, to
         * the same bytes). */
        uint64_t w;
        memcpy(&w, p + n - 8, 8);
        if (!(w & 0x8080808080808080ULL)) {
            w = case8(w, upper);
            memcpy(o + n - 8, &w, 8);
            return;
        }
    }
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80 && i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ULL)) {
                w = case8(w, upper);
                memcpy(o + i, &w, 8);
                i += 8;
                continue;
            }
        }
        if (c < 0x80) {
            o[i] =
                upper ? (c >= 'a' && c <= 'z' ? c - 32 : c) : (c >= 'A' && c <= 'Z' ? c + 32 : c);
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = sl_utf8_decode(p + i, n - i, &cp);
        if (!len) {
            o[i] = c; /* not UTF-8: kept as it is */
            i++;
            continue;
        }
        uint32_t m = upper ? upper_cp(cp) : lower_cp(cp);
        if (utf8_len_of(m) == len)
            utf8_put(o + i, m, len);
        else
            memcpy(o + i, p + i, len);
        i += len;
    }
}

static int utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t len = sl_utf8_decode(p + i, n - i, &cp);
        if (!len)
            return 0;
        i += len;
    }
    return 1;
}

uint64_t rql_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

/* ---- values --------------------------------------------------------------------------------- */

size_t rql_list_len(const struct rv *v)
{
    if (v->kind == RV_LIST)
        return v->n;
    size_t n = 0;
    if (v->kind == RV_JSON && RQL_IS_ARRAY(v->u.j))
        for (const cJSON *c = v->u.j->child; c; c = c->next)
            n++;
    return n;
}

static void set_str(struct rv *out, const char *s, size_t n)
{
    out->kind = RV_STR;
    out->b = 0;
    out->n = n;
    out->u.s = s;
}

static void set_num(struct rv *out, double d)
{
    out->kind = RV_NUM;
    out->b = 0;
    out->n = 0;
    out->u.d = d;
}

static void set_bool(struct rv *out, int b)
{
    out->kind = RV_BOOL;
    out->b = (uint8_t)(b != 0);
    out->n = 0;
    out->u.d = 0;
}

static void set_none(struct rv *out)
{
    memset(out, 0, sizeof(*out));
}

/* Copies n bytes into scratch with a NUL after them. */
static char *dup_bytes(struct rql_ctx *x, const char *s, size_t n)
{
    char *o = rql_alloc(x, n + 1);
    if (o) {
        memcpy(o, s, n);
        o[n] = '\0';
    }
    return o;
}

/* A growable list of values in scratch memory. */
struct vec {
    struct rv *items;
    size_t n, cap;
};

static int vec_push(struct rql_ctx *x, struct vec *v, const struct rv *item)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        struct rv *m = rql_alloc(x, cap * sizeof(*m));
        if (!m)
            return -1;
        if (v->n)
            memcpy(m, v->items, v->n * sizeof(*m));
        v->items = m;
        v->cap = cap;
    }
    v->items[v->n++] = *item;
    return 0;
}

/* Appends r to v, splicing the elements of a list. */
static int vec_add(struct rql_ctx *x, struct vec *v, const struct rv *r)
{
    if (r->kind == RV_NONE)
        return 0;
    if (r->kind == RV_LIST) {
        for (size_t i = 0; i < r->n; i++)
            if (vec_push(x, v, &r->u.items[i]))
                return -1;
        return 0;
    }
    return vec_push(x, v, r);
}

static void set_list(struct rv *out, struct vec *v)
{
    out->kind = RV_LIST;
    out->b = 0;
    out->n = v->n;
    out->u.items = v->items;
}

/* ---- string mutators ------------------------------------------------------------------------ */

static void mut_case(struct rql_ctx *x, const struct sc *e, int upper, struct rv *out)
{
    char *o = rql_alloc(x, e->n + 1);
    if (!o)
        return;
    rql_case_map(e->s, e->n, o, upper);
    o[e->n] = '\0';
    set_str(out, o, e->n);
}

static void mut_refang(struct rql_ctx *x, const struct sc *e, struct rv *out)
{
    char *o = rql_alloc(x, e->n + 1);
    if (!o)
        return;
    const char *s = e->s;
    size_t n = e->n, k = 0;
    for (size_t i = 0; i < n;) {
        if (i + 4 <= n && s[i] == 'h' && (s[i + 1] == 'X' || s[i + 1] == 'x') &&
            s[i + 2] == s[i + 1] && s[i + 3] == 'p') {
            memcpy(o + k, "http", 4);
            k += 4;
            i += 4;
        } else if (i + 3 <= n &&
                   ((s[i] == '[' && s[i + 2] == ']') ||
                    (s[i] == '(' && s[i + 1] == '.' && s[i + 2] == ')')) &&
                   (s[i + 1] == '.' || (s[i + 1] == ':' && s[i] == '['))) {
            o[k++] = s[i + 1];
            i += 3;
        } else {
            o[k++] = s[i++];
        }
    }
    o[k] = '\0';
    set_str(out, o, k);
}

static void mut_urldecode(struct rql_ctx *x, const struct sc *e, struct rv *out)
{
    char *o = rql_alloc(x, e->n + 1);
    if (!o)
        return;
    const char *s = e->s;
    size_t k = 0;
    for (size_t i = 0; i < e->n; i++) {
        int h1, h2;
        if (s[i] == '%' && i + 2 < e->n) {
            h1 = s[i + 1] >= '0' && s[i + 1] <= '9'   ? s[i + 1] - '0'
                 : s[i + 1] >= 'a' && s[i + 1] <= 'f' ? s[i + 1] - 'a' + 10
                 : s[i + 1] >= 'A' && s[i + 1] <= 'F' ? s[i + 1] - 'A' + 10
                                                      : -1;
            h2 = s[i + 2] >= '0' && s[i + 2] <= '9'   ? s[i + 2] - '0'
                 : s[i + 2] >= 'a' && s[i + 2] <= 'f' ? s[i + 2] - 'a' + 10
                 : s[i + 2] >= 'A' && s[i + 2] <= 'F' ? s[i + 2] - 'A' + 10
                                                      : -1;
            if (h1 >= 0 && h2 >= 0) {
                o[k++] = (char)(h1 * 16 + h2);
                i += 2;
                continue;
            }
        }
        o[k++] = s[i];
    }
    o[k] = '\0';
    set_str(out, o, k);
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes the base64 alphabet characters of s (others skipped, as Python's non-strict
 * b64decode does) into o; pad says how many '=' follow the data. Returns the decoded length,
 * or -1 when the padding is wrong. */
static long b64_decode(const char *s, size_t n, int lenient_pad, unsigned char *o)
{
    size_t k = 0, count = 0, pad = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64val(c);
        if (v < 0)
            continue;
        if (pad)
            break; /* data after the padding ends the input */
        acc = (acc << 6) | (uint32_t)v;
        if (++count % 4 == 0) {
            o[k++] = (unsigned char)(acc >> 16);
            o[k++] = (unsigned char)(acc >> 8);
            o[k++] = (unsigned char)acc;
            acc = 0;
        }
    }
    size_t rem = count % 4;
    if (rem == 1)
        return -1;
    if (rem == 2) {
        if (pad < 2 && !lenient_pad)
            return -1;
        o[k++] = (unsigned char)(acc >> 4);
    } else if (rem == 3) {
        if (pad < 1 && !lenient_pad)
            return -1;
        o[k++] = (unsigned char)(acc >> 10);
        o[k++] = (unsigned char)(acc >> 2);
    }
    return (long)k;
}

static void mut_b64decode(struct rql_ctx *x, const struct sc *e, const struct rv *in,
                          struct rv *out)
{
    unsigned char *o = rql_alloc(x, e->n + 1);
    if (!o)
        return;
    long k = b64_decode(e->s, e->n, 0, o);
    if (k < 0 || !utf8_valid((const char *)o, (size_t)k)) {
        *out = *in; /* unchanged on failure */
        return;
    }
    o[k] = '\0';
    set_str(out, (const char *)o, (size_t)k);
}

/* UTF-16LE bytes to UTF-8 (unpaired surrogates become U+FFFD). */
static char *utf16le_to_utf8(struct rql_ctx *x, const unsigned char *b, size_t n, size_t *outn)
{
    char *o = rql_alloc(x, n / 2 * 3 + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i + 1 < n; i += 2) {
        uint32_t u = (uint32_t)b[i] | ((uint32_t)b[i + 1] << 8);
        if (u >= 0xd800 && u <= 0xdbff && i + 3 < n) {
            uint32_t lo = (uint32_t)b[i + 2] | ((uint32_t)b[i + 3] << 8);
            if (lo >= 0xdc00 && lo <= 0xdfff) {
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                i += 2;
            } else {
                u = 0xfffd;
            }
        } else if (u >= 0xd800 && u <= 0xdfff) {
            u = 0xfffd;
        }
        size_t len = utf8_len_of(u);
        utf8_put((unsigned char *)o + k, u, len);
        k += len;
    }
    o[k] = '\0';
    *outn = k;
    return o;
}

static void mut_b64extract(struct rql_ctx *x, const struct sc *e, const struct rv *in,
                           struct rv *out)
{
    struct vec v = {0};
    const char *s = e->s;
    size_t n = e->n;
    unsigned char *buf = NULL;
    for (size_t i = 0; i < n;) {
        if (b64val((unsigned char)s[i]) < 0) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < n && b64val((unsigned char)s[i]) >= 0)
            i++;
        size_t run = i - start;
        while (i < n && s[i] == '=' && i - start - run < 2)
            i++;
        if (run < 20)
            continue;
        if (!buf && !(buf = rql_alloc(x, n + 1)))
            return;
        long k = b64_decode(s + start, i - start, 1, buf);
        if (k <= 0)
            continue;
        struct rv r;
        if (memchr(buf, 0, (size_t)k)) {
            size_t on;
            char *o = utf16le_to_utf8(x, buf, (size_t)k, &on);
            if (!o)
                return;
            set_str(&r, o, on);
        } else {
            if (!utf8_valid((const char *)buf, (size_t)k))
                continue;
            char *o = dup_bytes(x, (const char *)buf, (size_t)k);
            if (!o)
                return;
            set_str(&r, o, (size_t)k);
        }
        if (vec_push(x, &v, &r))
            return;
    }
    if (v.n == 0)
        *out = *in;
    else
        set_list(out, &v);
}

static void mut_split(struct rql_ctx *x, const struct sc *e, struct rv *out)
{
    struct vec v = {0};
    const char *s = e->s;
    size_t n = e->n;
    for (size_t i = 0; i < n;) {
        while (i < n && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')))
            i++;
        size_t start = i;
        while (i < n && !(s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')))
            i++;
        if (i > start) {
            struct rv r;
            set_str(&r, s + start, i - start);
            if (vec_push(x, &v, &r))
                return;
        }
    }
    set_list(out, &v);
}

static size_t utf8_count(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xc0) != 0x80;
    return k;
}

/* ---- lookups -------------------------------------------------------------------------------- */

static void mut_geo(struct rql_ctx *x, int m, const struct sc *e, struct rv *out)
{
    const struct sl_rql_env *env = x->env;
    char ip[64], ans[128];
    if (!env || !env->geo || e->n >= sizeof(ip) || memchr(e->s, 0, e->n))
        return;
    memcpy(ip, e->s, e->n);
    ip[e->n] = '\0';
    enum sl_rql_geo kind = m == MUT_GEO_COUNTRY     ? SL_RQL_GEO_COUNTRY
                           : m == MUT_GEO_CONTINENT ? SL_RQL_GEO_CONTINENT
                                                    : SL_RQL_GEO_TIMEZONE;
    ans[0] = '\0';
    if (env->geo(env->ud, kind, ip, ans, sizeof(ans)) != 1)
        return;
    ans[sizeof(ans) - 1] = '\0';
    size_t len = strlen(ans);
    char *o = dup_bytes(x, ans, len);
    if (o)
        set_str(out, o, len);
}

static void mut_dns(struct rql_ctx *x, int m, const struct sc *e, struct rv *out)
{
    const struct sl_rql_env *env = x->env;
    char name[256];
    char ans[RQL_MAX_DNS][256];
    if (!env || !env->dns || e->n == 0 || e->n >= sizeof(name) || memchr(e->s, 0, e->n))
        return;
    memcpy(name, e->s, e->n);
    name[e->n] = '\0';
    enum sl_rql_dns kind;
    switch (m) {
    case MUT_REVERSE_LOOKUP:
        kind = SL_RQL_DNS_REVERSE;
        break;
    case MUT_NS_A:
        kind = SL_RQL_DNS_A;
        break;
    case MUT_NS_AAAA:
        kind = SL_RQL_DNS_AAAA;
        break;
    case MUT_NS_MX:
        kind = SL_RQL_DNS_MX;
        break;
    case MUT_NS_NS:
        kind = SL_RQL_DNS_NS;
        break;
    default:
        kind = SL_RQL_DNS_PTR;
        break;
    }
    int k = env->dns(env->ud, kind, name, ans, RQL_MAX_DNS);
    if (k < 0)
        return; /* not cached yet: no value */
    if (k > RQL_MAX_DNS)
        k = RQL_MAX_DNS;
    struct vec v = {0};
    for (int i = 0; i < k; i++) {
        ans[i][255] = '\0';
        struct rv r;
        size_t len = strlen(ans[i]);
        char *o = dup_bytes(x, ans[i], len);
        if (!o)
            return;
        set_str(&r, o, len);
        if (vec_push(x, &v, &r))
            return;
    }
    if (m == MUT_REVERSE_LOOKUP) {
        if (v.n)
            *out = v.items[0];
        return;
    }
    set_list(out, &v);
}

/* ---- dispatch ------------------------------------------------------------------------------- */

static int num_of(const struct sc *e, double *d)
{
    if (e->t == SC_NUM) {
        *d = e->d;
        return 0;
    }
    if (e->t == SC_STR)
        return rql_parse_number(e->s, e->n, d);
    return -1;
}

static void mut_aggregate(int m, const struct rv *v, const struct sc *self, struct rv *out)
{
    double acc = 0, d;
    size_t k = 0;
    if (!rv_is_list(v)) {
        if (num_of(self, &d) == 0)
            set_num(out, d);
        else
            set_none(out);
        return;
    }
    struct rv_iter it;
    struct rv e;
    rv_iter_init(&it, v);
    while (rv_iter_next(&it, &e)) {
        struct sc s;
        rql_sc_of(&e, &s);
        if (num_of(&s, &d))
            continue;
        if (k == 0)
            acc = m == MUT_SUM || m == MUT_AVG ? 0 : d;
        if (m == MUT_SUM || m == MUT_AVG)
            acc += d;
        else if (m == MUT_MAX && d > acc)
            acc = d;
        else if (m == MUT_MIN && d < acc)
            acc = d;
        k++;
    }
    if (k == 0 && m != MUT_SUM)
        set_none(out);
    else
        set_num(out, m == MUT_AVG ? acc / (double)k : acc);
}

/* Applies an element-wise mutator to one scalar e (whose value is in). */
static void mut_scalar(struct rql_ctx *x, int m, const struct rv *in, const struct sc *e,
                       struct rv *out)
{
    *out = *in;
    if (e->t == SC_NULL || e->t == SC_NONE)
        return;
    int is_str = e->t == SC_STR;
    switch (m) {
    case MUT_LOWERCASE:
    case MUT_UPPERCASE:
        if (is_str)
            mut_case(x, e, m == MUT_UPPERCASE, out);
        return;
    case MUT_REFANG:
        if (is_str)
            mut_refang(x, e, out);
        return;
    case MUT_B64DECODE:
        if (is_str)
            mut_b64decode(x, e, in, out);
        return;
    case MUT_B64EXTRACT:
        if (is_str)
            mut_b64extract(x, e, in, out);
        return;
    case MUT_URLDECODE:
        if (is_str)
            mut_urldecode(x, e, out);
        return;
    case MUT_SPLIT:
        if (is_str)
            mut_split(x, e, out);
        return;
    case MUT_GEO_COUNTRY:
    case MUT_GEO_CONTINENT:
    case MUT_GEO_TIMEZONE:
        set_none(out);
        if (is_str)
            mut_geo(x, m, e, out);
        return;
    case MUT_REVERSE_LOOKUP:
    case MUT_NS_A:
    case MUT_NS_AAAA:
    case MUT_NS_MX:
    case MUT_NS_NS:
    case MUT_NS_PTR:
        set_none(out);
        if (is_str)
            mut_dns(x, m, e, out);
        return;
    case MUT_IS_PRIVATE:
    case MUT_IS_GLOBAL:
    case MUT_IS_MULTICAST:
    case MUT_IS_IPV6:
        set_bool(out, is_str && ip_class(m, e->s, e->n));
        return;
    case MUT_TO_INTEGER: {
        double d;
        if (e->t == SC_BOOL)
            set_num(out, e->b);
        else if (e->t == SC_NUM)
            set_num(out, trunc(e->d));
        else if (is_str) {
            size_t a = 0, b = e->n;
            while (a < b && (e->s[a] == ' ' || e->s[a] == '\t'))
                a++;
            while (b > a && (e->s[b - 1] == ' ' || e->s[b - 1] == '\t'))
                b--;
            if (!rql_parse_number(e->s + a, b - a, &d) && isfinite(d))
                set_num(out, trunc(d));
        }
        return;
    }
    case MUT_TO_STRING: {
        char buf[40];
        size_t n;
        if (e->t == SC_NUM) {
            n = rql_format_number(e->d, buf, sizeof(buf));
        } else if (e->t == SC_BOOL) {
            n = (size_t)snprintf(buf, sizeof(buf), "%s", e->b ? "true" : "false");
        } else {
            return;
        }
        char *o = dup_bytes(x, buf, n);
        if (o)
            set_str(out, o, n);
        return;
    }
    default:
        return;
    }
}

void rql_mutate(struct rql_ctx *x, int m, const struct rv *v, struct rv *out)
{
    struct sc self;
    if (v->kind == RV_NONE || x->oom) {
        set_none(out);
        return;
    }
    rql_sc_of(v, &self);
    if (self.t == SC_NULL) {
        *out = *v;
        return;
    }
    int list = rv_is_list(v);
    switch (m) {
    case MUT_ANY:
    case MUT_ALL:
        *out = *v;
        return;
    case MUT_COUNT:
        set_num(out, list ? (double)rql_list_len(v) : 0);
        return;
    case MUT_LENGTH:
        set_num(out, list               ? (double)rql_list_len(v)
                     : self.t == SC_STR ? (double)utf8_count(self.s, self.n)
                                        : 0);
        return;
    case MUT_AVG:
    case MUT_MAX:
    case MUT_MIN:
    case MUT_SUM:
        mut_aggregate(m, v, &self, out);
        return;
    default:
        break;
    }
    if (!list) {
        struct rv in = *v;
        mut_scalar(x, m, &in, &self, out);
        return;
    }
    /* Element-wise over a list; results that are lists are spliced, no-values dropped. */
    struct vec res = {0};
    struct rv_iter it;
    struct rv e;
    size_t seen = 0;
    rv_iter_init(&it, v);
    while (rv_iter_next(&it, &e)) {
        struct sc s;
        struct rv r;
        rql_sc_of(&e, &s);
        seen++;
        mut_scalar(x, m, &e, &s, &r);
        if (x->oom || vec_add(x, &res, &r)) {
            set_none(out);
            return;
        }
    }
    if (seen && !res.n)
        set_none(out);
    else
        set_list(out, &res);
}
