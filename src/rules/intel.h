/* Intel Lists compiled for matching: exact values in hash sets, IP networks in a prefix trie,
 * patterns in one Hyperscan database (PCRE2-JIT for the patterns Hyperscan cannot take). A
 * compiled list is immutable: any number of threads may match against it at once.
 *
 * List types (docs/intel.md):
 *   values   — exact values of one data type. An "ip" list's entries may be CIDR networks
 *              ("10.0.0.0/8", "2001:db8::/32"), which match every address within them.
 *   patterns — regular expressions (PCRE2 syntax), matched anchored at the start of the value
 *              as the reference's re.match does.
 *   csv      — rows of columns; csv_columns maps each column to a data type name (or "none":
 *              not matched). An observable of data type T matches when its value equals a cell
 *              of a column mapped to T.
 * case_sensitive = 0 folds ASCII and UTF-8 case of values and patterns alike. */
#ifndef SL_RULES_INTEL_H
#define SL_RULES_INTEL_H

#include <stddef.h>
#include <stdint.h>

enum sl_intel_type {
    SL_INTEL_VALUES = 0,
    SL_INTEL_PATTERNS,
    SL_INTEL_CSV,
};

#define SL_INTEL_MAX_COLUMNS 64
#define SL_INTEL_VALUE_MAX   8192 /* bytes of one value or pattern */

/* What a list is (everything but its values). Strings are copied by sl_intel_builder_new. */
struct sl_intel_def {
    const char *uuid;
    const char *name;
    enum sl_intel_type type;
    const char *data_type; /* values/patterns: the list's data type ("generic": any type) */
    int case_sensitive;
    /* csv only: the data type of each column ("none" or NULL: the column is not matched). */
    const char *const *csv_columns;
    size_t ncsv_columns;
};

struct sl_intel_builder;
struct sl_intel_list;

/* Starts a list. Returns NULL when out of memory or def is invalid (a csv list without columns,
 * more than SL_INTEL_MAX_COLUMNS). */
struct sl_intel_builder *sl_intel_builder_new(const struct sl_intel_def *def);
/* Adds one value (values, patterns) or one row (csv: cells[0..ncells), one per column; extra
 * cells are ignored, missing ones are empty). Empty values are ignored. Returns 0, SL_EINVAL
 * with a message (a value longer than SL_INTEL_VALUE_MAX; in an "ip" values list, text that
 * looks like a network but is not a valid CIDR; a pattern that does not compile, with PCRE2's
 * message and offset), or SL_ENOMEM. A refused value leaves the builder as it was. */
int sl_intel_builder_add(struct sl_intel_builder *b, const char *value, size_t len, char *err,
                         size_t errlen);
int sl_intel_builder_add_row(struct sl_intel_builder *b, const char *const *cells,
                             const size_t *lens, size_t ncells, char *err, size_t errlen);
/* Compiles what was added (hash sets sized to fit, the trie, the pattern database) and frees
 * the builder (also on failure). Returns 0 and *out, or SL_ENOMEM / SL_EINVAL with a message. */
int sl_intel_builder_finish(struct sl_intel_builder *b, struct sl_intel_list **out, char *err,
                            size_t errlen);
void sl_intel_builder_free(struct sl_intel_builder *b);
void sl_intel_list_free(struct sl_intel_list *l);

const struct sl_intel_def *sl_intel_list_def(const struct sl_intel_list *l);
/* Values (or rows, or patterns) the list holds, after deduplication. */
size_t sl_intel_list_size(const struct sl_intel_list *l);

/* Whether an observable matches the list, as the ingest check does: values and patterns lists
 * match observables of their data type (any type for "generic"); csv lists match the columns
 * mapped to data_type. data_type NULL means "any": every column and list type is tried (RQL's
 * intel(field, 'List')). Returns 1 or 0. O(1) expected for values and csv; one scan of the
 * pattern database for patterns. */
int sl_intel_match(const struct sl_intel_list *l, const char *data_type, const char *value,
                   size_t len);

/* One value to be matched against several lists (the ingest check of an observable): what the
 * lookups derive from it (its case-folded text, its address) is computed once, on first need.
 * Lives on the caller's stack (it holds a SL_INTEL_VALUE_MAX buffer); value is borrowed. */
struct sl_intel_value {
    const char *v;
    size_t len;
    int fold_state; /* 0: not folded yet, 1: fold[0..fold_len), 2: v is folded already, -1: too
                     * long once folded */
    int ip_state;   /* 0: not parsed yet, 1: ip/ip_kind/ip_len, -1: not an address */
    size_t fold_len;
    unsigned ip_kind;
    size_t ip_len;
    uint8_t ip[17];
    char fold[SL_INTEL_VALUE_MAX];
};
void sl_intel_value_init(struct sl_intel_value *val, const char *value, size_t len);
/* sl_intel_match of a prepared value. Thread-safe for distinct values. */
int sl_intel_match_value(const struct sl_intel_list *l, const char *data_type,
                         struct sl_intel_value *val);

/* Whether the IP address text ip (IPv4 or IPv6) is one of the list's addresses or within one of
 * its networks (RQL's InCIDR intel('List')). 0 for text that is not an address. */
int sl_intel_match_cidr(const struct sl_intel_list *l, const char *ip, size_t len);

/* Checks a pattern as sl_intel_builder_add would (for the API's validation). 0 or SL_EINVAL. */
int sl_intel_pattern_check(const char *pattern, size_t len, int case_sensitive, char *err,
                           size_t errlen);

/* Parses IPv4/IPv6 text (address, or network when allow_prefix) into 16 bytes (IPv4 as
 * ::ffff:a.b.c.d) and a prefix length counted on those 128 bits. 0 or SL_EINVAL. Pure. */
int sl_ip_parse(const char *text, size_t len, int allow_prefix, uint8_t out[16], int *out_bits);

/* Parses dotted-quad IPv4 text exactly as inet_pton(AF_INET) does (four decimal octets up to 255,
 * no leading zeros, nothing else), without a copy, into out. 0 or -1 (out may be written). */
int sl_ipv4_parse(const char *text, size_t len, uint8_t out[4]);

#endif
