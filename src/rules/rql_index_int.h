/* The rule index's internals (rql_keys.c: the keys of a program; rql_index.c: building the
 * index; rql_scan.c: the candidates of an event, and raw_log read without a parse). The design
 * and why the index never leaves out a rule that matches are at the top of rql_index.c. */
#ifndef SL_RULES_RQL_INDEX_INT_H
#define SL_RULES_RQL_INDEX_INT_H

#include <hs.h>
#include <stdatomic.h>
#include <stdint.h>

#include "rules/rql_internal.h"

struct sl_arena;

#define INF_COST   1e300
#define FOLD_LOWER 1
#define FOLD_UPPER 2
#define RUN_MIN    3   /* shortest regexp literal used as a key */
#define MAX_REGEX  256 /* regexps of one program read for literals */

enum { AT_EQ = 0, AT_SUB, AT_CIDR, AT_INTEL };

struct seg {
    const char *s;
    uint16_t n;
};

/* A built atom (build time: points into the program). */
struct atom {
    uint8_t kind;
    uint8_t fold; /* case maps before the test: fold & 3 first, then fold >> 2 (FOLD_*) */
    uint16_t nseg;
    struct seg *segs;
    const struct rql_lit *lits; /* AT_EQ: string values */
    size_t nlits;
    const char *s; /* AT_SUB: the literal; AT_INTEL: the list name */
    size_t n;
    const struct rql_net *nets; /* AT_CIDR */
    size_t nnets;
    struct atom *next;
};

struct kset {
    double cost; /* INF_COST: no key */
    struct atom *head;
};

/* Counts of (atom, value) over all the rules: a value many rules test ("ip", "Security") is
 * less selective than one few do. */
struct freq {
    uint64_t *keys;
    uint32_t *counts;
    size_t cap, n;
};

struct kctx {
    struct sl_arena *mem;
    struct freq *freq;
    int counting; /* first pass: count values, costs unused */
    int oom;
    const struct sl_rql *prog;
    struct seg pre[RQL_MAX_SEGMENTS]; /* the segments of the enclosing expand paths */
    size_t npre;
    const struct rql_node *rx_node[MAX_REGEX]; /* the program's regexps, in source order */
    const char *rx_pat[MAX_REGEX];
    size_t rx_len[MAX_REGEX];
    size_t nrx;
};

static inline uint64_t mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static inline uint64_t fnv(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define FNV_INIT 0xcbf29ce484222325ULL

/* ---- the index ------------------------------------------------------------------------------- */

/* Rules ix->rules[off..off+n). */
struct post {
    uint32_t off, n;
};

/* A node of the trie of indexed paths: one segment. */
struct tnode {
    char *name;
    uint16_t len;
    uint8_t raw_log; /* the top-level raw_log: a JSON string there is parsed */
    int32_t path;    /* the path ending here, or -1 */
    uint32_t *kids;  /* node numbers */
    uint32_t nkids, kcap;
    uint32_t *byfirst;  /* 256 entries: 1 + the first kid whose name starts with the byte */
    uint32_t next_same; /* 1 + the next kid of the parent with the same first byte, or 0 */
    struct post sub;    /* rules with an atom on a path through this node */
};

struct ix_intel {
    char *list;
    struct post rules;
};

/* The atoms on one path after one case map. */
struct group {
    uint32_t path;
    uint8_t fold;
    uint8_t eq;        /* has AT_EQ entries in ix->eq */
    hs_database_t *db; /* AT_SUB literals, id = literal number */
    struct post *lit;  /* rules of each literal */
    uint32_t nlit;
    size_t minlit; /* the shortest literal: a shorter value holds none */
    struct ix_intel *intel;
    uint32_t nintel;
};

/* An AT_EQ value: while building, one per (value, rule); in the table, one per distinct
 * (group, value) with its rules. */
struct eqent {
    uint64_t hash; /* 0: empty slot */
    const char *s;
    uint32_t n;
    uint32_t group;
    uint32_t rule;     /* while building */
    struct post rules; /* in the table */
    uint8_t canon;     /* the value is a number's canonical text: numbers equal it */
};

struct cidrent {
    uint8_t v6, bits;
    uint8_t addr[16];
    uint32_t rule;
};

struct pfx {
    uint8_t v6, bits;
};

struct ipath {
    uint32_t node;
    uint32_t *groups;
    uint32_t ngroups;
    struct cidrent *cidr; /* sorted by (v6, bits, addr) */
    size_t ncidr;
    struct pfx *pfx; /* the distinct (v6, bits) of cidr */
    size_t npfx;
};

struct sl_rql_index {
    uint64_t id; /* unique: the per-thread Hyperscan scratch knows which indexes it fits */
    size_t nrules, nwords, nunkeyed;
    uint64_t *always;
    struct tnode *nodes; /* nodes[0]: the event */
    size_t nnodes, nodecap;
    struct ipath *paths;
    size_t npaths;
    struct group *groups;
    size_t ngroups;
    struct eqent *eq;
    size_t eqmask; /* eq has eqmask + 1 slots (0 when no AT_EQ atom) */
    uint32_t *rules;
    size_t nposts;
    struct sl_arena *mem;
};

/* The key of a program's node (rql_keys.c): INF_COST when it has none. */
struct kset rql_ix_keyset(struct kctx *k, const struct rql_node *n);
struct kset rql_ix_none(void);
/* Finds the program's regular expressions and their source text in query, for their literals. */
void rql_ix_regex_patterns(struct kctx *k, const char *query);
/* The hash of an AT_EQ value of group (rql_index.c). */
uint64_t rql_ix_eq_hash(uint32_t group, const char *s, size_t n);
/* qsort order of struct cidrent. */
int rql_ix_cmp_cidr(const void *a, const void *b);

#endif
