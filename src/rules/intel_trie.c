/* IP address parsing and the prefix trie that matches addresses against an ip list's networks. */
#include "rules/intel_internal.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* ---- parsing -------------------------------------------------------------------------------- */

/* Longest text accepted: a full IPv6 address with an embedded IPv4 one and a "/128". */
#define IP_TEXT_MAX 63

int sl_ipv4_parse(const char *s, size_t n, uint8_t out[4])
{
    unsigned octets = 0, val = 0;
    int saw_digit = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= '0' && c <= '9') {
            if (saw_digit && val == 0)
                return -1;
            val = val * 10 + (c - '0');
            if (val > 255)
                return -1;
            if (!saw_digit) {
                if (++octets > 4)
                    return -1;
                saw_digit = 1;
            }
        } else if (c == '.' && saw_digit) {
            if (octets == 4)
                return -1;
            out[octets - 1] = (uint8_t)val;
            val = 0;
            saw_digit = 0;
        } else {
            return -1;
        }
    }
    if (octets < 4 || !saw_digit)
        return -1;
    out[3] = (uint8_t)val;
    return 0;
}

int sl_ip_parse(const char *text, size_t len, int allow_prefix, uint8_t out[16], int *out_bits)
{
    char buf[IP_TEXT_MAX + 1];
    if (!text || len == 0 || len > IP_TEXT_MAX)
        return SL_EINVAL;
    if (!memchr(text, ':', len) && !memchr(text, '/', len)) {
        /* An IPv4 address (the common case), or no address, without a copy. */
        uint8_t v4[4];
        if (sl_ipv4_parse(text, len, v4))
            return SL_EINVAL;
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, v4, 4);
        if (out_bits)
            *out_bits = 128;
        return 0;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (memchr(buf, '\0', len))
        return SL_EINVAL;

    int prefix = -1;
    char *slash = strchr(buf, '/');
    if (slash) {
        if (!allow_prefix)
            return SL_EINVAL;
        const char *d = slash + 1;
        size_t nd = strlen(d);
        /* 1-3 decimal digits, no sign, no leading zero (as inet_pton refuses them in octets). */
        if (nd == 0 || nd > 3 || (nd > 1 && d[0] == '0'))
            return SL_EINVAL;
        prefix = 0;
        for (size_t i = 0; i < nd; i++) {
            if (d[i] < '0' || d[i] > '9')
                return SL_EINVAL;
            prefix = prefix * 10 + (d[i] - '0');
        }
        *slash = '\0';
    }

    uint8_t a[16];
    int bits;
    if (inet_pton(AF_INET, buf, a + 12) == 1) {
        if (prefix > 32)
            return SL_EINVAL;
        memset(a, 0, 10);
        a[10] = a[11] = 0xff;
        bits = prefix < 0 ? 128 : 96 + prefix;
    } else if (inet_pton(AF_INET6, buf, a) == 1) {
        if (prefix > 128)
            return SL_EINVAL;
        bits = prefix < 0 ? 128 : prefix;
    } else {
        return SL_EINVAL;
    }
    memcpy(out, a, 16);
    if (out_bits)
        *out_bits = bits;
    return 0;
}

void sl_ip_mask(uint8_t addr[16], int bits)
{
    for (int i = 0; i < 16; i++) {
        int keep = bits - i * 8;
        if (keep >= 8)
            continue;
        addr[i] = keep <= 0 ? 0 : (uint8_t)(addr[i] & (0xff00 >> keep));
    }
}

/* ---- trie ----------------------------------------------------------------------------------- */

static inline void load128(const uint8_t a[16], uint64_t *hi, uint64_t *lo)
{
    uint64_t h = 0, l = 0;
    for (int i = 0; i < 8; i++) {
        h = (h << 8) | a[i];
        l = (l << 8) | a[8 + i];
    }
    *hi = h;
    *lo = l;
}

static inline uint64_t mask_hi(int bits)
{
    return bits >= 64 ? ~0ULL : bits <= 0 ? 0 : ~0ULL << (64 - bits);
}

static inline uint64_t mask_lo(int bits)
{
    return bits <= 64 ? 0 : bits >= 128 ? ~0ULL : ~0ULL << (128 - bits);
}

/* Bit i (0: the most significant) of hi:lo. */
static inline int bit_at(uint64_t hi, uint64_t lo, int i)
{
    return i < 64 ? (int)((hi >> (63 - i)) & 1) : (int)((lo >> (127 - i)) & 1);
}

/* Length of the common leading bits of two 128-bit values. */
static inline int common_bits(uint64_t h1, uint64_t l1, uint64_t h2, uint64_t l2)
{
    if (h1 != h2)
        return __builtin_clzll(h1 ^ h2);
    if (l1 != l2)
        return 64 + __builtin_clzll(l1 ^ l2);
    return 128;
}

void sl_trie_init(struct sl_trie *t)
{
    memset(t, 0, sizeof(*t));
    t->root = -1;
}

void sl_trie_fini(struct sl_trie *t)
{
    free(t->nodes);
    sl_trie_init(t);
}

int sl_trie_reserve(struct sl_trie *t, size_t n)
{
    if (n > INT32_MAX / 4)
        return SL_ENOMEM;
    if (t->count + 2 * n <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 64;
    while (cap < t->count + 2 * n)
        cap *= 2;
    if (cap > INT32_MAX)
        return SL_ENOMEM;
    struct sl_trie_node *nodes = realloc(t->nodes, cap * sizeof(*nodes));
    if (!nodes)
        return SL_ENOMEM;
    t->nodes = nodes;
    t->cap = cap;
    return 0;
}

static int32_t new_node(struct sl_trie *t, uint64_t hi, uint64_t lo, int bits, int terminal)
{
    struct sl_trie_node *n = &t->nodes[t->count];
    n->hi = hi & mask_hi(bits);
    n->lo = lo & mask_lo(bits);
    n->bits = (uint8_t)bits;
    n->terminal = (uint8_t)terminal;
    n->child[0] = n->child[1] = -1;
    return (int32_t)t->count++;
}

void sl_trie_insert(struct sl_trie *t, const uint8_t addr[16], int bits)
{
    uint64_t hi, lo;
    load128(addr, &hi, &lo);
    hi &= mask_hi(bits);
    lo &= mask_lo(bits);
    t->networks++;
    int32_t *link = &t->root;
    for (;;) {
        if (*link < 0) {
            *link = new_node(t, hi, lo, bits, 1);
            return;
        }
        struct sl_trie_node *n = &t->nodes[*link];
        int c = common_bits(hi, lo, n->hi, n->lo);
        if (c > bits)
            c = bits;
        if (c > n->bits)
            c = n->bits;
        if (c < n->bits) {
            int32_t old = *link;
            if (c == bits) {
                /* The new network covers the whole subtree: it replaces it. */
                *link = new_node(t, hi, lo, bits, 1);
                return;
            }
            int side = bit_at(hi, lo, c);
            int32_t split = new_node(t, hi, lo, c, 0);
            int32_t leaf = new_node(t, hi, lo, bits, 1);
            t->nodes[split].child[side] = leaf;
            t->nodes[split].child[!side] = old;
            *link = split;
            return;
        }
        if (n->terminal)
            return; /* already covered by a shorter (or equal) network */
        if (bits == n->bits) {
            n->terminal = 1;
            n->child[0] = n->child[1] = -1;
            return;
        }
        link = &n->child[bit_at(hi, lo, n->bits)];
    }
}

int sl_trie_contains(const struct sl_trie *t, const uint8_t addr[16])
{
    uint64_t hi, lo;
    load128(addr, &hi, &lo);
    int32_t i = t->root;
    while (i >= 0) {
        const struct sl_trie_node *n = &t->nodes[i];
        if (((hi ^ n->hi) & mask_hi(n->bits)) || ((lo ^ n->lo) & mask_lo(n->bits)))
            return 0;
        if (n->terminal)
            return 1;
        i = n->child[bit_at(hi, lo, n->bits)];
    }
    return 0;
}

void sl_trie_compact(struct sl_trie *t)
{
    if (t->count == 0) {
        free(t->nodes);
        t->nodes = NULL;
        t->cap = 0;
        return;
    }
    struct sl_trie_node *n = realloc(t->nodes, t->count * sizeof(*n));
    if (n) {
        t->nodes = n;
        t->cap = t->count;
    }
}

size_t sl_trie_bytes(const struct sl_trie *t)
{
    return t->cap * sizeof(*t->nodes);
}
