/* Internals of the compiled Intel Lists (intel.c): the value hash set (intel_set.c), the IP
 * prefix trie (intel_trie.c), case folding (intel_fold.c) and the pattern matchers
 * (intel_pattern.c). Not for use outside src/rules/intel*.c. */
#ifndef SL_RULES_INTEL_INTERNAL_H
#define SL_RULES_INTEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "rules/intel.h"

/* ---- hashing (intel_set.c) ---------------------------------------------------------------- */

/* 64-bit hash of data keyed by seed (a per-process secret is mixed in: do not persist it). */
uint64_t sl_intel_hash(const void *data, size_t len, uint64_t seed);

/* ---- value hash set (intel_set.c) --------------------------------------------------------- */

/* Kinds of key: text, a 16-byte address, a 16-byte network plus its prefix length. */
enum { SL_KEY_TEXT = 0, SL_KEY_ADDR = 1, SL_KEY_NET = 2 };

/* An open-addressing (linear probing) set of keys. Each key lives in one contiguous blob as
 * [u8 tag][u8 kind][u16 len little-endian][len bytes]; a slot is one uint64_t: the low 40 bits
 * are the key's blob offset + 1 (0: empty slot), the high 24 bits a fragment of its hash, so a
 * probe compares bytes only when the fragment agrees. The index of a hash is
 * (hash * cap) >> 64, so cap need not be a power of two. tag separates csv column types. */
struct sl_vset {
    uint64_t *slots;
    size_t cap;   /* slots */
    size_t count; /* keys */
    unsigned char *blob;
    size_t blob_len, blob_cap;
};

#define SL_VSET_ENTRY_HDR    4
#define SL_VSET_MAX_LOAD_NUM 7 /* the load factor never exceeds 7/10 */
#define SL_VSET_MAX_LOAD_DEN 10

void sl_vset_init(struct sl_vset *s);
void sl_vset_fini(struct sl_vset *s);
/* Makes room for n more keys of extra blob bytes in all, so that the next n inserts of that
 * size cannot fail. 0 or SL_ENOMEM (the set is unchanged). */
int sl_vset_reserve(struct sl_vset *s, size_t n, size_t extra_bytes);
/* Inserts a key (room must have been reserved). Returns 1 when added, 0 when already there. */
int sl_vset_insert(struct sl_vset *s, unsigned tag, unsigned kind, const void *key, size_t len);
/* 1 when the key is in the set. No allocation; safe from any number of threads at once. */
int sl_vset_contains(const struct sl_vset *s, unsigned tag, unsigned kind, const void *key,
                     size_t len);
/* Rebuilds the slots at the final load (about 2/3) and trims the blob. 0 or SL_ENOMEM (the set
 * is then unchanged and still usable). */
int sl_vset_compact(struct sl_vset *s);
/* Bytes held by the set (slots and blob). */
size_t sl_vset_bytes(const struct sl_vset *s);

/* A set of 64-bit fingerprints (csv row deduplication while building; 0 is mapped to 1). */
struct sl_u64set {
    uint64_t *slots;
    size_t cap, count; /* cap is 0 or a power of two */
};
int sl_u64set_reserve(struct sl_u64set *s, size_t n);
int sl_u64set_insert(struct sl_u64set *s, uint64_t v); /* 1 added, 0 present; reserved */
void sl_u64set_fini(struct sl_u64set *s);

/* ---- prefix trie (intel_trie.c) ----------------------------------------------------------- */

/* A binary path-compressed trie of 128-bit prefixes, its nodes in one array. A node covered by
 * a shorter terminal prefix is never kept: a lookup stops at the first terminal that holds. */
struct sl_trie_node {
    uint64_t hi, lo;  /* the prefix, host order, bits past `bits` are zero */
    int32_t child[2]; /* -1: none */
    uint8_t bits;     /* prefix length, 0..128 */
    uint8_t terminal; /* a network of the list ends here */
};

struct sl_trie {
    struct sl_trie_node *nodes;
    size_t count, cap;
    int32_t root; /* -1: empty */
    size_t networks;
};

void sl_trie_init(struct sl_trie *t);
void sl_trie_fini(struct sl_trie *t);
/* Room for n more inserts (each adds at most two nodes). 0 or SL_ENOMEM. */
int sl_trie_reserve(struct sl_trie *t, size_t n);
/* Inserts addr/bits (room reserved). */
void sl_trie_insert(struct sl_trie *t, const uint8_t addr[16], int bits);
/* 1 when addr is within one of the networks. No allocation; thread-safe once built. */
int sl_trie_contains(const struct sl_trie *t, const uint8_t addr[16]);
void sl_trie_compact(struct sl_trie *t);
size_t sl_trie_bytes(const struct sl_trie *t);

/* Clears the bits of addr past the prefix length bits. */
void sl_ip_mask(uint8_t addr[16], int bits);

/* ---- case folding (intel_fold.c) ---------------------------------------------------------- */

/* Lowercases in[0..len) into out (cap bytes): ASCII directly, other valid UTF-8 characters
 * with towlower_l in the C.UTF-8 locale; bytes that are not valid UTF-8 are copied as they
 * are. Returns the folded length, or (size_t)-1 when it would not fit in cap. No allocation
 * after the first call in the process (which opens the locale). Thread-safe. */
size_t sl_intel_fold(const char *in, size_t len, char *out, size_t cap);
/* 1 when s[0..len) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int sl_intel_utf8_valid(const char *s, size_t len);

/* ---- patterns (intel_pattern.c) ----------------------------------------------------------- */

struct sl_patset; /* the compiled patterns of one list */
struct sl_patbuild;

struct sl_patbuild *sl_patbuild_new(int case_sensitive);
/* Compiles and keeps a pattern (already deduplicated). 0, SL_EINVAL with a message, or
 * SL_ENOMEM; on failure the builder is unchanged. */
int sl_patbuild_add(struct sl_patbuild *pb, const char *pattern, size_t len, char *err,
                    size_t errlen);
size_t sl_patbuild_count(const struct sl_patbuild *pb);
/* Chooses PCRE2-JIT or Hyperscan per pattern and compiles. Frees pb in every case. */
int sl_patbuild_finish(struct sl_patbuild *pb, struct sl_patset **out, char *err, size_t errlen);
void sl_patbuild_free(struct sl_patbuild *pb);
/* 1 when one of the patterns matches value anchored at its start. Thread-safe. */
int sl_patset_match(const struct sl_patset *ps, const char *value, size_t len);
void sl_patset_free(struct sl_patset *ps);
/* Patterns compiled into the Hyperscan database, and matched by PCRE2 (for the tests, docs). */
size_t sl_patset_hs_count(const struct sl_patset *ps);
size_t sl_patset_pcre_count(const struct sl_patset *ps);

/* Compile flags and checking shared by sl_intel_pattern_check and the builder. */
int sl_pattern_compile_check(const char *pattern, size_t len, int case_sensitive, char *err,
                             size_t errlen);

/* How many of a patterns list's patterns the Hyperscan database holds and PCRE2 matches (0 and
 * 0 for other lists). For the tests. */
void sl_intel_list_engines(const struct sl_intel_list *l, size_t *out_hs, size_t *out_pcre);

/* Patterns below this count never use Hyperscan. */
#define SL_INTEL_HS_MIN_PATTERNS 8

#endif
