/* The hash set behind values and csv Intel Lists: one blob of keys, open addressing over it. */
#include "rules/intel_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/error.h"

/* ---- hashing --------------------------------------------------------------------------------
 * Each 16-byte block is folded into the state with a 64x64->128 multiply whose halves are
 * xored together; the operands are the block's two words xored with keys derived from a
 * per-process secret, so which inputs collide cannot be predicted from outside. Tails are read
 * as (possibly overlapping) words; the length enters the first and last rounds. Constants are
 * hexadecimal digits of pi and e. */

static const uint64_t K_PI0 = 0x243f6a8885a308d3ULL;
static const uint64_t K_PI1 = 0x13198a2e03707345ULL;
static const uint64_t K_E0 = 0xb7e151628aed2a6bULL;
static const uint64_t K_E1 = 0x9cf4f3c762e7160fULL;

static uint64_t hash_key0 = K_PI0, hash_key1 = K_PI1;
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static inline uint64_t fold_mul(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static void hash_init(void)
{
    uint64_t secret[2];
    if (getrandom(secret, sizeof(secret), GRND_NONBLOCK) != (ssize_t)sizeof(secret)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        secret[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32);
        secret[1] = (uint64_t)(uintptr_t)&ts;
    }
    /* Odd keys, never zero: a zero multiplier operand would need the data to equal the key. */
    hash_key0 = (K_PI0 ^ secret[0]) | 1;
    hash_key1 = (K_PI1 ^ secret[1]) | 1;
}

static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

uint64_t sl_intel_hash(const void *data, size_t len, uint64_t seed)
{
    pthread_once(&hash_once, hash_init);
    const unsigned char *p = data;
    size_t n = len;
    uint64_t h = fold_mul(seed ^ hash_key0, (uint64_t)len ^ K_E0);
    while (n > 16) {
        h = fold_mul(rd64(p) ^ hash_key0 ^ h, rd64(p + 8) ^ hash_key1);
        p += 16;
        n -= 16;
    }
    uint64_t a, b;
    if (n > 8) {
        a = rd64(p);
        b = rd64(p + n - 8);
    } else if (n >= 4) {
        a = rd32(p);
        b = rd32(p + n - 4);
    } else if (n > 0) {
        a = ((uint64_t)p[0] << 16) | ((uint64_t)p[n / 2] << 8) | p[n - 1];
        b = 0;
    } else {
        a = b = 0;
    }
    h = fold_mul(a ^ hash_key0 ^ h, b ^ hash_key1 ^ (uint64_t)len);
    return fold_mul(h ^ K_E1, hash_key0 ^ K_E0);
}

/* ---- the set -------------------------------------------------------------------------------- */

#define OFF_BITS  40
#define OFF_MASK  ((1ULL << OFF_BITS) - 1)
#define TAG_OF(h) ((h)&0xffffffULL)

static inline size_t slot_index(uint64_t h, size_t cap)
{
    return (size_t)(((__uint128_t)h * cap) >> 64);
}

static inline uint64_t key_seed(unsigned tag, unsigned kind)
{
    return ((uint64_t)tag << 8) | kind;
}

void sl_vset_init(struct sl_vset *s)
{
    memset(s, 0, sizeof(*s));
}

void sl_vset_fini(struct sl_vset *s)
{
    free(s->slots);
    free(s->blob);
    memset(s, 0, sizeof(*s));
}

static inline int entry_equal(const unsigned char *e, unsigned tag, unsigned kind, const void *key,
                              size_t len)
{
    return e[0] == tag && e[1] == kind && (size_t)(e[2] | (e[3] << 8)) == len &&
           memcmp(e + SL_VSET_ENTRY_HDR, key, len) == 0;
}

/* Puts offset off (hash h) into a free slot of slots[cap]. */
static void place(uint64_t *slots, size_t cap, uint64_t h, size_t off)
{
    size_t i = slot_index(h, cap);
    while (slots[i])
        if (++i == cap)
            i = 0;
    slots[i] = (TAG_OF(h) << OFF_BITS) | ((uint64_t)off + 1);
}

static uint64_t entry_hash(const unsigned char *e)
{
    size_t len = (size_t)(e[2] | (e[3] << 8));
    return sl_intel_hash(e + SL_VSET_ENTRY_HDR, len, key_seed(e[0], e[1]));
}

/* Re-slots every key into a table of cap slots. */
static int rehash(struct sl_vset *s, size_t cap)
{
    uint64_t *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return SL_ENOMEM;
    size_t off = 0;
    while (off < s->blob_len) {
        const unsigned char *e = s->blob + off;
        place(slots, cap, entry_hash(e), off);
        off += SL_VSET_ENTRY_HDR + (size_t)(e[2] | (e[3] << 8));
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return 0;
}

int sl_vset_reserve(struct sl_vset *s, size_t n, size_t extra_bytes)
{
    size_t need = s->blob_len + extra_bytes;
    if (need < s->blob_len || need > OFF_MASK - 1)
        return SL_ENOMEM;
    if (need > s->blob_cap) {
        size_t cap = s->blob_cap ? s->blob_cap : 4096;
        while (cap < need)
            cap *= 2;
        unsigned char *blob = realloc(s->blob, cap);
        if (!blob)
            return SL_ENOMEM;
        s->blob = blob;
        s->blob_cap = cap;
    }
    size_t keys = s->count + n;
    if (keys * SL_VSET_MAX_LOAD_DEN > s->cap * SL_VSET_MAX_LOAD_NUM) {
        size_t cap = s->cap ? s->cap : 16;
        while (keys * SL_VSET_MAX_LOAD_DEN > cap * SL_VSET_MAX_LOAD_NUM)
            cap *= 2;
        return rehash(s, cap);
    }
    return 0;
}

int sl_vset_insert(struct sl_vset *s, unsigned tag, unsigned kind, const void *key, size_t len)
{
    uint64_t h = sl_intel_hash(key, len, key_seed(tag, kind));
    uint64_t want = TAG_OF(h);
    size_t i = slot_index(h, s->cap);
    while (s->slots[i]) {
        uint64_t v = s->slots[i];
        if ((v >> OFF_BITS) == want &&
            entry_equal(s->blob + (v & OFF_MASK) - 1, tag, kind, key, len))
            return 0;
        if (++i == s->cap)
            i = 0;
    }
    size_t off = s->blob_len;
    unsigned char *e = s->blob + off;
    e[0] = (unsigned char)tag;
    e[1] = (unsigned char)kind;
    e[2] = (unsigned char)(len & 0xff);
    e[3] = (unsigned char)(len >> 8);
    memcpy(e + SL_VSET_ENTRY_HDR, key, len);
    s->blob_len += SL_VSET_ENTRY_HDR + len;
    s->slots[i] = (want << OFF_BITS) | ((uint64_t)off + 1);
    s->count++;
    return 1;
}

int sl_vset_contains(const struct sl_vset *s, unsigned tag, unsigned kind, const void *key,
                     size_t len)
{
    if (s->count == 0)
        return 0;
    uint64_t h = sl_intel_hash(key, len, key_seed(tag, kind));
    uint64_t want = TAG_OF(h);
    size_t i = slot_index(h, s->cap);
    for (;;) {
        uint64_t v = s->slots[i];
        if (!v)
            return 0;
        if ((v >> OFF_BITS) == want &&
            entry_equal(s->blob + (v & OFF_MASK) - 1, tag, kind, key, len))
            return 1;
        if (++i == s->cap)
            i = 0;
    }
}

int sl_vset_compact(struct sl_vset *s)
{
    if (s->count == 0) {
        sl_vset_fini(s);
        return 0;
    }
    /* 3/2 slots per key: a load of 2/3, under the 7/10 bound with room for short probes. */
    size_t cap = s->count + s->count / 2 + 1;
    if (cap != s->cap) {
        int rc = rehash(s, cap);
        if (rc)
            return rc;
    }
    if (s->blob_cap > s->blob_len) {
        unsigned char *blob = realloc(s->blob, s->blob_len);
        if (blob) {
            s->blob = blob;
            s->blob_cap = s->blob_len;
        }
    }
    return 0;
}

size_t sl_vset_bytes(const struct sl_vset *s)
{
    return s->cap * sizeof(*s->slots) + s->blob_cap;
}

/* ---- fingerprint set ------------------------------------------------------------------------ */

int sl_u64set_reserve(struct sl_u64set *s, size_t n)
{
    size_t keys = s->count + n;
    if (keys * SL_VSET_MAX_LOAD_DEN <= s->cap * SL_VSET_MAX_LOAD_NUM)
        return 0;
    size_t cap = s->cap ? s->cap : 16;
    while (keys * SL_VSET_MAX_LOAD_DEN > cap * SL_VSET_MAX_LOAD_NUM)
        cap *= 2;
    uint64_t *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return SL_ENOMEM;
    for (size_t i = 0; i < s->cap; i++) {
        uint64_t v = s->slots[i];
        if (!v)
            continue;
        size_t j = (size_t)(v & (cap - 1));
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = v;
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return 0;
}

int sl_u64set_insert(struct sl_u64set *s, uint64_t v)
{
    if (!v)
        v = 1;
    size_t j = (size_t)(v & (s->cap - 1));
    while (s->slots[j]) {
        if (s->slots[j] == v)
            return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = v;
    s->count++;
    return 1;
}

void sl_u64set_fini(struct sl_u64set *s)
{
    free(s->slots);
    memset(s, 0, sizeof(*s));
}
