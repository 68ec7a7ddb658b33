/* Intel Lists compiled for matching: building (validation, deduplication) and lookups. The
 * pieces live in intel_set.c (hash set), intel_trie.c (networks), intel_fold.c (case) and
 * intel_pattern.c (Hyperscan, PCRE2); docs/intel.md says how lists match. */
#include "rules/intel.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "rules/intel_internal.h"

struct sl_intel_list {
    struct sl_intel_def def; /* owned copies of the strings */
    int generic;             /* values/patterns of data type "generic": any observable */
    int ip;                  /* values list of data type "ip": addresses and networks */
    size_t size;
    struct sl_vset set;     /* values, csv cells; while building, patterns (deduplication) */
    struct sl_trie trie;    /* networks of an ip list or of csv "ip" columns */
    struct sl_patset *pats; /* patterns, once finished */
    /* csv: the distinct column data types; a cell's key is tagged with its type's index + 1. */
    unsigned ntypes;
    const char *type_name[SL_INTEL_MAX_COLUMNS];
    unsigned char type_ip[SL_INTEL_MAX_COLUMNS];
    unsigned char col_tag[SL_INTEL_MAX_COLUMNS]; /* 0: column not matched */
    unsigned generic_tag, ip_tag;                /* 0: no such column type */
    /* A blocked Bloom filter over the set's keys (large lists only; NULL: none): most lookups
     * miss, and the filter (a byte per key) answers them from cache instead of the slots. */
    uint64_t *bloom;
    unsigned bloom_shift; /* word of a hash: hash >> bloom_shift */
};

struct sl_intel_builder {
    struct sl_intel_list *l;
    struct sl_patbuild *pb;
    struct sl_u64set rows;
    char fold[SL_INTEL_VALUE_MAX];
};

/* A lookup or insert key: a kind (SL_KEY_*) and its bytes. */
struct key {
    unsigned kind;
    const void *p;
    size_t len;
    uint8_t ip[17]; /* address, then the prefix length for a network */
};

/* ---- definition ------------------------------------------------------------------------------ */

static char *dup_str(const char *s, int *failed)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *failed = 1;
    return d;
}

static void list_free(struct sl_intel_list *l)
{
    if (!l)
        return;
    free((char *)l->def.uuid);
    free((char *)l->def.name);
    free((char *)l->def.data_type);
    if (l->def.csv_columns) {
        for (size_t i = 0; i < l->def.ncsv_columns; i++)
            free((char *)l->def.csv_columns[i]);
        free((void *)l->def.csv_columns);
    }
    sl_vset_fini(&l->set);
    sl_trie_fini(&l->trie);
    sl_patset_free(l->pats);
    free(l->bloom);
    free(l);
}

/* Maps each csv column to a type tag; "none", "" and NULL columns are not matched. */
static void csv_types(struct sl_intel_list *l)
{
    for (size_t c = 0; c < l->def.ncsv_columns; c++) {
        const char *t = l->def.csv_columns[c];
        if (!t || !*t || strcmp(t, "none") == 0)
            continue;
        unsigned k = 0;
        while (k < l->ntypes && strcmp(l->type_name[k], t) != 0)
            k++;
        if (k == l->ntypes) {
            l->type_name[k] = t;
            l->type_ip[k] = strcmp(t, "ip") == 0;
            l->ntypes++;
            if (strcmp(t, "generic") == 0)
                l->generic_tag = k + 1;
            if (l->type_ip[k])
                l->ip_tag = k + 1;
        }
        l->col_tag[c] = (unsigned char)(k + 1);
    }
}

struct sl_intel_builder *sl_intel_builder_new(const struct sl_intel_def *def)
{
    if (!def || (def->type != SL_INTEL_VALUES && def->type != SL_INTEL_PATTERNS &&
                 def->type != SL_INTEL_CSV))
        return NULL;
    if (def->type == SL_INTEL_CSV &&
        (!def->csv_columns || def->ncsv_columns == 0 || def->ncsv_columns > SL_INTEL_MAX_COLUMNS))
        return NULL;
    struct sl_intel_builder *b = calloc(1, sizeof(*b));
    struct sl_intel_list *l = calloc(1, sizeof(*l));
    if (!b || !l)
        goto fail;
    b->l = l;
    sl_vset_init(&l->set);
    sl_trie_init(&l->trie);
    int failed = 0;
    l->def.type = def->type;
    l->def.case_sensitive = def->case_sensitive ? 1 : 0;
    l->def.uuid = dup_str(def->uuid, &failed);
    l->def.name = dup_str(def->name, &failed);
    /* A values or patterns list without a data type matches every observable: "generic". */
    const char *dt = def->data_type;
    if (!dt && def->type != SL_INTEL_CSV)
        dt = "generic";
    l->def.data_type = dup_str(dt, &failed);
    if (failed)
        goto fail;
    if (def->type == SL_INTEL_CSV) {
        const char **cols = calloc(def->ncsv_columns, sizeof(*cols));
        if (!cols)
            goto fail;
        l->def.csv_columns = cols;
        l->def.ncsv_columns = def->ncsv_columns;
        for (size_t i = 0; i < def->ncsv_columns; i++)
            cols[i] = dup_str(def->csv_columns[i], &failed);
        if (failed)
            goto fail;
        csv_types(l);
    } else {
        l->generic = strcmp(l->def.data_type, "generic") == 0;
        l->ip = def->type == SL_INTEL_VALUES && strcmp(l->def.data_type, "ip") == 0;
    }
    if (def->type == SL_INTEL_PATTERNS && !(b->pb = sl_patbuild_new(l->def.case_sensitive)))
        goto fail;
    return b;
fail:
    list_free(l);
    free(b);
    return NULL;
}

/* ---- keys ------------------------------------------------------------------------------------ */

/* Text key of v: as it is, or case-folded into buf (SL_INTEL_VALUE_MAX bytes). 0, or -1 when
 * the folded form is longer than SL_INTEL_VALUE_MAX. */
static int text_key(const struct sl_intel_list *l, const char *v, size_t len, char *buf,
                    struct key *k)
{
    k->kind = SL_KEY_TEXT;
    if (l->def.case_sensitive) {
        k->p = v;
        k->len = len;
        return len <= SL_INTEL_VALUE_MAX ? 0 : -1;
    }
    size_t n = sl_intel_fold(v, len, buf, SL_INTEL_VALUE_MAX);
    if (n == (size_t)-1)
        return -1;
    k->p = buf;
    k->len = n;
    return 0;
}

/* Address or network key of v. 0, or -1 when v is neither. A network of one address (/32,
 * /128) is that address. */
static int ip_key(const char *v, size_t len, struct key *k)
{
    int bits;
    if (len == 0 || sl_ip_parse(v, len, 1, k->ip, &bits) != 0)
        return -1;
    k->p = k->ip;
    if (bits == 128) {
        k->kind = SL_KEY_ADDR;
        k->len = 16;
    } else {
        sl_ip_mask(k->ip, bits);
        k->ip[16] = (uint8_t)bits;
        k->kind = SL_KEY_NET;
        k->len = 17;
    }
    return 0;
}

/* The key a value gets when added; ip: with address semantics. 0 or SL_EINVAL. */
static int add_key(const struct sl_intel_list *l, int ip, int strict, const char *v, size_t len,
                   char *buf, struct key *k, const char *what, char *err, size_t errlen)
{
    if (len > SL_INTEL_VALUE_MAX) {
        sl_set_err(err, errlen, "%s of %zu bytes: at most %d accepted", what, len,
                   SL_INTEL_VALUE_MAX);
        return SL_EINVAL;
    }
    if (ip) {
        if (ip_key(v, len, k) == 0)
            return 0;
        if (strict && memchr(v, '/', len)) {
            sl_set_err(err, errlen,
                       "'%.*s' is not a valid network: expected an IPv4 or IPv6 address, '/' "
                       "and a prefix length (0-32 for IPv4, 0-128 for IPv6)",
                       (int)(len > 64 ? 64 : len), v);
            return SL_EINVAL;
        }
    }
    if (text_key(l, v, len, buf, k) != 0) {
        sl_set_err(err, errlen, "%s longer than %d bytes once lowercased", what,
                   SL_INTEL_VALUE_MAX);
        return SL_EINVAL;
    }
    return 0;
}

/* ---- the Bloom filter
 * ---------------------------------------------------------------------------- */

#define BLOOM_MIN_KEYS 4096                  /* smaller sets stay in cache anyway */
#define BLOOM_SEED     0x452821e638d01377ULL /* apart from the set's own hashing */

static uint64_t bloom_hash(unsigned tag, unsigned kind, const void *key, size_t len)
{
    return sl_intel_hash(key, len, BLOOM_SEED ^ ((uint64_t)tag << 8) ^ kind);
}

/* Two bits of one word per key. */
static inline uint64_t bloom_bits(uint64_t h)
{
    return (1ULL << (h & 63)) | (1ULL << ((h >> 6) & 63));
}

/* 0 when the key is certainly not in the list's set; 1 when it may be. */
static inline int bloom_may_hold(const struct sl_intel_list *l, unsigned tag, unsigned kind,
                                 const void *key, size_t len)
{
    if (!l->bloom)
        return 1;
    uint64_t h = bloom_hash(tag, kind, key, len), m = bloom_bits(h);
    return (l->bloom[h >> l->bloom_shift] & m) == m;
}

/* Builds the filter from every key of the finished set (its blob holds each key once, as
 * [tag][kind][len, 2 bytes][bytes]). Without memory there is no filter, which is as correct. */
static void bloom_build(struct sl_intel_list *l)
{
    if (l->set.count < BLOOM_MIN_KEYS)
        return;
    unsigned log2 = 6;
    while ((1ULL << log2) < l->set.count / 8) /* 8 bits per key */
        log2++;
    uint64_t *bloom = calloc((size_t)1 << log2, sizeof(*bloom));
    if (!bloom)
        return;
    for (size_t off = 0; off < l->set.blob_len;) {
        const unsigned char *e = l->set.blob + off;
        size_t len = (size_t)(e[2] | (e[3] << 8));
        uint64_t h = bloom_hash(e[0], e[1], e + SL_VSET_ENTRY_HDR, len);
        bloom[h >> (64 - log2)] |= bloom_bits(h);
        off += SL_VSET_ENTRY_HDR + len;
    }
    l->bloom = bloom;
    l->bloom_shift = 64 - log2;
}

/* ---- adding ---------------------------------------------------------------------------------- */

static int add_value(struct sl_intel_builder *b, const char *value, size_t len, char *err,
                     size_t errlen)
{
    struct sl_intel_list *l = b->l;
    struct key k;
    int rc = add_key(l, l->ip, 1, value, len, b->fold, &k, "value", err, errlen);
    if (rc)
        return rc;
    if (sl_vset_reserve(&l->set, 1, SL_VSET_ENTRY_HDR + k.len) != 0 ||
        (k.kind == SL_KEY_NET && sl_trie_reserve(&l->trie, 1) != 0))
        goto nomem;
    if (sl_vset_insert(&l->set, 0, k.kind, k.p, k.len) && k.kind == SL_KEY_NET)
        sl_trie_insert(&l->trie, k.ip, k.ip[16]);
    return 0;
nomem:
    sl_set_err(err, errlen, "out of memory adding a value");
    return SL_ENOMEM;
}

static int add_pattern(struct sl_intel_builder *b, const char *value, size_t len, char *err,
                       size_t errlen)
{
    struct sl_intel_list *l = b->l;
    if (len > SL_INTEL_VALUE_MAX) {
        sl_set_err(err, errlen, "pattern of %zu bytes: at most %d accepted", len,
                   SL_INTEL_VALUE_MAX);
        return SL_EINVAL;
    }
    if (sl_vset_contains(&l->set, 0, SL_KEY_TEXT, value, len))
        return 0;
    if (sl_vset_reserve(&l->set, 1, SL_VSET_ENTRY_HDR + len) != 0) {
        sl_set_err(err, errlen, "out of memory adding a pattern");
        return SL_ENOMEM;
    }
    int rc = sl_patbuild_add(b->pb, value, len, err, errlen);
    if (rc)
        return rc;
    sl_vset_insert(&l->set, 0, SL_KEY_TEXT, value, len);
    return 0;
}

/* Folds the fingerprint of one cell into a row's. */
static uint64_t row_step(uint64_t h, size_t col, const struct key *k)
{
    return sl_intel_hash(k->p, k->len, h ^ ((uint64_t)col << 8) ^ k->kind);
}

static int add_csv_row(struct sl_intel_builder *b, const char *const *cells, const size_t *lens,
                       size_t ncells, char *err, size_t errlen)
{
    struct sl_intel_list *l = b->l;
    size_t n = ncells < l->def.ncsv_columns ? ncells : l->def.ncsv_columns;
    size_t nkeys = 0, bytes = 0, filled = 0;
    uint64_t fp = 0x6a09e667f3bcc908ULL;
    char msg[256];
    /* First pass: validate every cell and size the row, so that a refused row or a failed
     * allocation leaves the builder as it was. */
    for (size_t c = 0; c < n; c++) {
        size_t len = lens ? lens[c] : (cells[c] ? strlen(cells[c]) : 0);
        if (!cells[c] || len == 0)
            continue;
        struct key k;
        unsigned tag = l->col_tag[c];
        int rc = add_key(l, tag && l->type_ip[tag - 1], 0, cells[c], len, b->fold, &k, "value", msg,
                         sizeof(msg));
        if (rc) {
            sl_set_err(err, errlen, "column %zu: %s", c + 1, msg);
            return rc;
        }
        filled++;
        fp = row_step(fp, c, &k);
        if (!tag)
            continue;
        nkeys++;
        bytes += SL_VSET_ENTRY_HDR + k.len;
    }
    if (filled == 0)
        return 0;
    if (sl_vset_reserve(&l->set, nkeys, bytes) != 0 || sl_u64set_reserve(&b->rows, 1) != 0)
        goto nomem;
    if (l->ip_tag && sl_trie_reserve(&l->trie, nkeys) != 0)
        goto nomem;
    sl_u64set_insert(&b->rows, fp);
    for (size_t c = 0; c < n; c++) {
        size_t len = lens ? lens[c] : (cells[c] ? strlen(cells[c]) : 0);
        unsigned tag = l->col_tag[c];
        if (!cells[c] || len == 0 || !tag)
            continue;
        struct key k;
        add_key(l, l->type_ip[tag - 1], 0, cells[c], len, b->fold, &k, "", NULL, 0);
        if (sl_vset_insert(&l->set, tag, k.kind, k.p, k.len) && k.kind == SL_KEY_NET)
            sl_trie_insert(&l->trie, k.ip, k.ip[16]);
    }
    return 0;
nomem:
    sl_set_err(err, errlen, "out of memory adding a row");
    return SL_ENOMEM;
}

int sl_intel_builder_add(struct sl_intel_builder *b, const char *value, size_t len, char *err,
                         size_t errlen)
{
    if (!b || (!value && len)) {
        sl_set_err(err, errlen, "no value");
        return SL_EINVAL;
    }
    if (len == 0)
        return 0;
    switch (b->l->def.type) {
    case SL_INTEL_VALUES:
        return add_value(b, value, len, err, errlen);
    case SL_INTEL_PATTERNS:
        return add_pattern(b, value, len, err, errlen);
    case SL_INTEL_CSV:
        return add_csv_row(b, &value, &len, 1, err, errlen);
    }
    return SL_EINVAL;
}

int sl_intel_builder_add_row(struct sl_intel_builder *b, const char *const *cells,
                             const size_t *lens, size_t ncells, char *err, size_t errlen)
{
    if (!b || (!cells && ncells)) {
        sl_set_err(err, errlen, "no row");
        return SL_EINVAL;
    }
    if (b->l->def.type == SL_INTEL_CSV)
        return add_csv_row(b, cells, lens, ncells, err, errlen);
    /* A values or patterns list takes a row of one cell as a value. */
    if (ncells == 0)
        return 0;
    if (ncells > 1) {
        sl_set_err(err, errlen, "a row of %zu cells for a list that is not csv", ncells);
        return SL_EINVAL;
    }
    size_t len = lens ? lens[0] : (cells[0] ? strlen(cells[0]) : 0);
    return sl_intel_builder_add(b, cells[0], len, err, errlen);
}

int sl_intel_builder_finish(struct sl_intel_builder *b, struct sl_intel_list **out, char *err,
                            size_t errlen)
{
    *out = NULL;
    if (!b)
        return SL_EINVAL;
    struct sl_intel_list *l = b->l;
    int rc = 0;
    if (l->def.type == SL_INTEL_PATTERNS) {
        l->size = sl_patbuild_count(b->pb);
        rc = sl_patbuild_finish(b->pb, &l->pats, err, errlen);
        b->pb = NULL;
        sl_vset_fini(&l->set);
    } else {
        l->size = l->def.type == SL_INTEL_CSV ? b->rows.count : l->set.count;
        /* A failed compaction keeps the larger table, which is just as correct. */
        (void)sl_vset_compact(&l->set);
        sl_trie_compact(&l->trie);
        bloom_build(l);
    }
    b->l = NULL;
    sl_intel_builder_free(b);
    if (rc) {
        list_free(l);
        return rc;
    }
    *out = l;
    return 0;
}

void sl_intel_builder_free(struct sl_intel_builder *b)
{
    if (!b)
        return;
    list_free(b->l);
    sl_patbuild_free(b->pb);
    sl_u64set_fini(&b->rows);
    free(b);
}

void sl_intel_list_free(struct sl_intel_list *l)
{
    list_free(l);
}

const struct sl_intel_def *sl_intel_list_def(const struct sl_intel_list *l)
{
    return &l->def;
}

size_t sl_intel_list_size(const struct sl_intel_list *l)
{
    return l->size;
}

void sl_intel_list_engines(const struct sl_intel_list *l, size_t *out_hs, size_t *out_pcre)
{
    *out_hs = l->pats ? sl_patset_hs_count(l->pats) : 0;
    *out_pcre = l->pats ? sl_patset_pcre_count(l->pats) : 0;
}

/* ---- matching -------------------------------------------------------------------------------- */

/* Whether v is ASCII without capitals, which sl_intel_fold leaves as it is. */
static int folded_already(const char *v, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, v + i, 8);
        /* A byte of 0x80 or more, or from 'A' to 'Z' (the sums cannot carry: no high bit). */
        if ((w & 0x8080808080808080ULL) ||
            ((w + 0x3f3f3f3f3f3f3f3fULL) & ~(w + 0x2525252525252525ULL) & 0x8080808080808080ULL))
            return 0;
    }
    for (; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c >= 0x80 || (c >= 'A' && c <= 'Z'))
            return 0;
    }
    return 1;
}

/* The text key of a prepared value for list l: as it is, or case-folded (once per value). */
static const struct key *value_text(const struct sl_intel_list *l, struct sl_intel_value *val,
                                    struct key *k)
{
    k->kind = SL_KEY_TEXT;
    if (l->def.case_sensitive) {
        if (val->len > SL_INTEL_VALUE_MAX)
            return NULL;
        k->p = val->v;
        k->len = val->len;
        return k;
    }
    if (val->fold_state == 0) {
        if (val->len <= SL_INTEL_VALUE_MAX && folded_already(val->v, val->len)) {
            val->fold_state = 2; /* folding changes nothing: the value is its own key */
        } else {
            size_t n = sl_intel_fold(val->v, val->len, val->fold, SL_INTEL_VALUE_MAX);
            val->fold_state = n == (size_t)-1 ? -1 : 1;
            val->fold_len = n == (size_t)-1 ? 0 : n;
        }
    }
    if (val->fold_state < 0)
        return NULL;
    k->p = val->fold_state == 2 ? val->v : val->fold;
    k->len = val->fold_state == 2 ? val->len : val->fold_len;
    return k;
}

/* The address or network key of a prepared value (parsed once per value), or NULL. */
static const struct key *value_ip(struct sl_intel_value *val, struct key *k)
{
    if (val->ip_state == 0) {
        struct key ipk;
        val->ip_state = ip_key(val->v, val->len, &ipk) == 0 ? 1 : -1;
        if (val->ip_state > 0) {
            val->ip_kind = ipk.kind;
            val->ip_len = ipk.len;
            memcpy(val->ip, ipk.ip, sizeof(val->ip));
        }
    }
    if (val->ip_state < 0)
        return NULL;
    k->kind = val->ip_kind;
    k->len = val->ip_len;
    memcpy(k->ip, val->ip, sizeof(k->ip));
    k->p = k->ip;
    return k;
}

/* Whether the value is under tag; ip: with address semantics (and the trie). */
static int lookup(const struct sl_intel_list *l, unsigned tag, int ip, struct sl_intel_value *val)
{
    struct key kb;
    const struct key *k;
    if (ip && (k = value_ip(val, &kb)))
        return (bloom_may_hold(l, tag, k->kind, k->p, k->len) &&
                sl_vset_contains(&l->set, tag, k->kind, k->p, k->len)) ||
               (k->kind == SL_KEY_ADDR && sl_trie_contains(&l->trie, k->ip));
    k = value_text(l, val, &kb);
    return k && bloom_may_hold(l, tag, k->kind, k->p, k->len) &&
           sl_vset_contains(&l->set, tag, k->kind, k->p, k->len);
}

static int csv_match(const struct sl_intel_list *l, const char *data_type,
                     struct sl_intel_value *val)
{
    if (!data_type) {
        for (unsigned t = 0; t < l->ntypes; t++)
            if (lookup(l, t + 1, l->type_ip[t], val))
                return 1;
        return 0;
    }
    for (unsigned t = 0; t < l->ntypes; t++)
        if (l->type_name[t][0] == data_type[0] && strcmp(l->type_name[t], data_type) == 0 &&
            lookup(l, t + 1, l->type_ip[t], val))
            return 1;
    return l->generic_tag && lookup(l, l->generic_tag, 0, val);
}

void sl_intel_value_init(struct sl_intel_value *val, const char *value, size_t len)
{
    val->v = value;
    val->len = value ? len : 0;
    val->fold_state = 0;
    val->ip_state = 0;
}

int sl_intel_match_value(const struct sl_intel_list *l, const char *data_type,
                         struct sl_intel_value *val)
{
    if (!l || !val->v || val->len == 0)
        return 0;
    switch (l->def.type) {
    case SL_INTEL_VALUES:
    case SL_INTEL_PATTERNS:
        if (data_type && !l->generic && data_type != l->def.data_type &&
            strcmp(data_type, l->def.data_type) != 0)
            return 0;
        if (l->def.type == SL_INTEL_PATTERNS)
            return l->pats ? sl_patset_match(l->pats, val->v, val->len) : 0;
        return lookup(l, 0, l->ip, val);
    case SL_INTEL_CSV:
        return csv_match(l, data_type, val);
    }
    return 0;
}

int sl_intel_match(const struct sl_intel_list *l, const char *data_type, const char *value,
                   size_t len)
{
    if (!l || !value || len == 0)
        return 0;
    struct sl_intel_value val;
    sl_intel_value_init(&val, value, len);
    return sl_intel_match_value(l, data_type, &val);
}

int sl_intel_match_cidr(const struct sl_intel_list *l, const char *ip, size_t len)
{
    uint8_t addr[16];
    int bits;
    if (!l || !ip || sl_ip_parse(ip, len, 0, addr, &bits) != 0)
        return 0;
    struct sl_intel_value val;
    sl_intel_value_init(&val, ip, len);
    if (l->def.type == SL_INTEL_VALUES && l->ip)
        return lookup(l, 0, 1, &val);
    if (l->def.type == SL_INTEL_CSV && l->ip_tag)
        return lookup(l, l->ip_tag, 1, &val);
    /* Lists without address semantics: the text as written, as intel(field, 'List') does. */
    return sl_intel_match_value(l, NULL, &val);
}
