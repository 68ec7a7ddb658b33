/* RQL internals shared by the lexer (rql_lex.c), the parser and compiler (rql_parse.c), the
 * evaluator (rql_eval.c) and the mutators and value helpers (rql_mutators.c). Nothing here is
 * part of the public interface (rules/rql.h). */
#ifndef SL_RULES_RQL_INTERNAL_H
#define SL_RULES_RQL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string.h>

#include "rules/rql.h"

#define RQL_MAX_SEGMENTS   32      /* segments of one field path */
#define RQL_MAX_WALK       4096    /* object visits while resolving one field (flat-key fallback) */
#define RQL_MAX_ARRAY_NEST 16      /* arrays inside arrays flattened while resolving */
#define RQL_MAX_DNS        16      /* answers taken from one DNS callback */
#define RQL_MATCH_LIMIT    1000000 /* PCRE2 match limit: bounds backtracking per subject */
#define RQL_HEAP_LIMIT_KB  4096    /* PCRE2 heap limit for the interpreter */

/* ---- tokens ---------------------------------------------------------------------------- */

enum rql_tok {
    T_EOF = 0,
    T_PATH, /* seg(.seg)*: a field path, or a mutator name after '|' */
    T_STRING,
    T_NUMBER,
    T_LPAREN,
    T_RPAREN,
    T_LBRACK,
    T_RBRACK,
    T_COMMA,
    T_PIPE,
    T_EQ,
    T_NE,
    T_GT,
    T_GTE,
    T_LT,
    T_LTE,
    T_CONTAINS,
    T_CONTAINSCIS,
    T_IN,
    T_IS,
    T_AND,
    T_OR,
    T_NOT,
    T_TRUE,
    T_FALSE,
    T_EXISTS,
    T_REGEXP,
    T_BETWEEN,
    T_CIDR,
    T_STARTSWITH,
    T_ENDSWITH,
    T_EXPAND,
    T_INTEL,
};

struct rql_token {
    enum rql_tok type;
    int line, col;    /* 1-based; col counts bytes */
    const char *text; /* the token's source text */
    size_t len;
    char *str;   /* T_STRING: decoded bytes (program memory, NUL-terminated) */
    size_t slen; /* T_STRING: decoded length (may contain NUL bytes) */
    double num;  /* T_NUMBER */
};

struct rql_lexer {
    const char *p, *end;
    const char *line_start;
    int line;
    struct sl_arena *mem; /* decoded strings live here (the program's memory) */
    struct sl_rql_error *err;
};

void rql_lex_init(struct rql_lexer *lx, const char *text, size_t len, struct sl_arena *mem,
                  struct sl_rql_error *err);
/* Reads the next token into t. Returns 0, SL_EINVAL (err filled) or SL_ENOMEM. */
int rql_lex_next(struct rql_lexer *lx, struct rql_token *t);
/* Fills err with line:col of t and a message. Always returns SL_EINVAL. */
int rql_error_at(struct sl_rql_error *err, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A printable rendering of a token for messages ("'and'", "end of query", ...). */
void rql_token_desc(const struct rql_token *t, char *out, size_t outlen);

/* ---- the compiled program ---------------------------------------------------------------- */

enum rql_kind {
    RQL_AND = 0,
    RQL_OR,
    RQL_NOT,
    RQL_EXPAND,
    RQL_PRED,  /* target|muts [not] op operand */
    RQL_INTEL, /* intel(target|muts, 'List') */
};

enum rql_op {
    OP_EQ = 0,
    OP_CONTAINS,
    OP_CONTAINSCIS,
    OP_IN,
    OP_IS,
    OP_CMP,
    OP_EXISTS,
    OP_REGEXP,
    OP_BETWEEN,
    OP_CIDR,
    OP_CIDR_INTEL,
    OP_STARTSWITH,
    OP_ENDSWITH,
};

enum rql_cmp { CMP_GT = 0, CMP_GTE, CMP_LT, CMP_LTE };

enum rql_mut {
    MUT_COUNT = 0,
    MUT_LENGTH,
    MUT_LOWERCASE,
    MUT_UPPERCASE,
    MUT_REFANG,
    MUT_B64DECODE,
    MUT_B64EXTRACT,
    MUT_URLDECODE,
    MUT_ANY,
    MUT_ALL,
    MUT_AVG,
    MUT_MAX,
    MUT_MIN,
    MUT_SUM,
    MUT_SPLIT,
    MUT_GEO_COUNTRY,
    MUT_GEO_CONTINENT,
    MUT_GEO_TIMEZONE,
    MUT_REVERSE_LOOKUP,
    MUT_NS_A,
    MUT_NS_AAAA,
    MUT_NS_MX,
    MUT_NS_NS,
    MUT_NS_PTR,
    MUT_IS_PRIVATE,
    MUT_IS_GLOBAL,
    MUT_IS_MULTICAST,
    MUT_IS_IPV6,
    MUT_TO_INTEGER,
    MUT_TO_STRING,
    MUT__COUNT
};

/* Looks a mutator name up (any case; nslookup_* is ns_lookup_*). Returns its enum value or -1. */
int rql_mutator_find(const char *name, size_t len);
const char *rql_mutator_name(int m);

/* A field path: the text "a.b.c" and where each segment starts and ends in it. A flat key
 * spanning segments i..j-1 is the text from seg_off[i] to seg_end[j-1]. */
struct rql_path {
    const char *text;
    uint16_t len;
    uint16_t nseg;
    uint16_t *seg_off;
    uint16_t *seg_end;
};

enum rql_lit_type { LIT_STR = 0, LIT_NUM, LIT_BOOL };

struct rql_lit {
    uint8_t type;
    uint8_t canon;   /* LIT_STR whose text is the canonical text of num (so "3" = 3) */
    uint8_t has_nul; /* LIT_STR with a NUL byte (never equal to JSON text) */
    const char *s;   /* LIT_STR: the bytes; LIT_NUM: the source text */
    size_t n;
    const char *low; /* s lowercased (containscis) */
    size_t lown;
    double num;    /* LIT_NUM, or LIT_STR with canon */
    int b;         /* LIT_BOOL */
    uint64_t hash; /* LIT_STR: hash of s (in) */
    int line, col; /* where the literal is in the query (for errors) */
};

/* A number of an `in [...]` array and the literal it came from. */
struct rql_numref {
    double v;
    uint32_t lit;
};

/* The values of an `in [...]` array, for lookups without a scan. Literals that are the same
 * value share a representative (rep), so `|all` counts distinct values. */
struct rql_set {
    uint32_t *slots; /* open addressing over string literals: 1 + index of the first of equals */
    uint32_t mask;
    struct rql_numref *nums; /* number literals by value: match numbers, numeric strings */
    size_t nnums;
    struct rql_numref *canon; /* canonical-number strings by value: match number fields */
    size_t ncanon;
    uint32_t *rep;  /* the representative literal of each literal */
    size_t nunique; /* distinct values */
};

struct rql_net {
    uint8_t v6;
    uint8_t bits;
    uint8_t addr[16];
};

struct rql_node {
    uint8_t kind;
    uint8_t op;
    uint8_t negate; /* the result is inverted (not, !=): a missing field then matches */
    uint8_t all;    /* |all in effect */
    uint8_t cmp;
    uint8_t nmut;
    uint8_t mut[SL_RQL_MAX_MUTATORS];
    uint8_t bval;     /* OP_IS */
    uint8_t is_value; /* path is exactly "value" (intel data_type inside expand) */
    int line, col;
    struct rql_path path;
    struct rql_node **kids; /* AND/OR: nkids; NOT/EXPAND: 1 */
    size_t nkids;
    struct rql_lit *lits; /* operands */
    size_t nlits;
    struct rql_set set;   /* OP_IN */
    pcre2_code *re;       /* OP_REGEXP */
    struct rql_net *nets; /* OP_CIDR */
    size_t nnets;
    double lo, hi; /* OP_CMP: lo; OP_BETWEEN: [lo, hi] */
    int list;      /* RQL_INTEL, OP_CIDR_INTEL: index into prog->lists */
};

struct rql_regex {
    pcre2_code *code;
    struct rql_regex *next;
};

struct sl_rql {
    struct sl_arena *mem; /* every node, string and array of the program */
    struct rql_node *root;
    const char **lists;
    size_t nlists;
    int uses_raw_log;
    struct rql_regex *regexes; /* freed with the program */
    pcre2_match_context *mctx; /* match and heap limits; read-only while matching */
};

/* ---- runtime values ---------------------------------------------------------------------- */

enum rv_kind {
    RV_NONE = 0, /* no value: missing field, failed lookup */
    RV_JSON,     /* a node of the event (any cJSON type) */
    RV_STR,      /* bytes made by a mutator (scratch memory) */
    RV_NUM,
    RV_BOOL,
    RV_NULL,
    RV_LIST, /* items[0..n): scalars or RV_JSON nodes */
};

struct rv {
    uint8_t kind;
    uint8_t b;
    size_t n; /* RV_STR: bytes; RV_LIST: items */
    union {
        const cJSON *j;
        const char *s;
        double d;
        const struct rv *items;
    } u;
};

/* What one element of a value is, for the operators. */
enum sc_type { SC_NONE = 0, SC_STR, SC_NUM, SC_BOOL, SC_NULL, SC_LIST, SC_OBJ };
struct sc {
    int t;
    const char *s;
    size_t n;
    double d;
    int b;
};

/* cJSON type tests without a call into the library (the hot path). */
#define RQL_JTYPE(j)     ((j)->type & 0xff)
#define RQL_IS_ARRAY(j)  (RQL_JTYPE(j) == cJSON_Array)
#define RQL_IS_OBJECT(j) (RQL_JTYPE(j) == cJSON_Object)
#define RQL_IS_NULL(j)   (RQL_JTYPE(j) == cJSON_NULL)
#define RQL_IS_STRING(j) (RQL_JTYPE(j) == cJSON_String)

static inline int rv_is_list(const struct rv *v)
{
    return v->kind == RV_LIST || (v->kind == RV_JSON && RQL_IS_ARRAY(v->u.j));
}

/* Iterates the elements of a list value (RV_LIST or a JSON array). */
struct rv_iter {
    const struct rv *items;
    size_t i, n;
    const cJSON *c;
};

static inline void rv_iter_init(struct rv_iter *it, const struct rv *v)
{
    it->i = 0;
    it->c = NULL;
    it->items = NULL;
    it->n = 0;
    if (v->kind == RV_LIST) {
        it->items = v->u.items;
        it->n = v->n;
    } else if (v->kind == RV_JSON && RQL_IS_ARRAY(v->u.j)) {
        it->c = v->u.j->child;
    }
}

static inline int rv_iter_next(struct rv_iter *it, struct rv *out)
{
    if (it->items) {
        if (it->i >= it->n)
            return 0;
        *out = it->items[it->i++];
        return 1;
    }
    if (!it->c)
        return 0;
    out->kind = RV_JSON;
    out->n = 0;
    out->u.j = it->c;
    it->c = it->c->next;
    return 1;
}

/* The scalar view of a value (strings get their length). */
static inline void rql_sc_of(const struct rv *v, struct sc *o)
{
    o->s = NULL;
    o->n = 0;
    o->d = 0;
    o->b = 0;
    o->t = SC_NONE;
    switch (v->kind) {
    case RV_JSON: {
        const cJSON *j = v->u.j;
        switch (RQL_JTYPE(j)) {
        case cJSON_String:
            o->t = SC_STR;
            o->s = j->valuestring ? j->valuestring : "";
            o->n = strlen(o->s);
            break;
        case cJSON_Number:
            o->t = SC_NUM;
            o->d = j->valuedouble;
            break;
        case cJSON_True:
        case cJSON_False:
            o->t = SC_BOOL;
            o->b = RQL_JTYPE(j) == cJSON_True;
            break;
        case cJSON_NULL:
            o->t = SC_NULL;
            break;
        case cJSON_Array:
            o->t = SC_LIST;
            break;
        case cJSON_Object:
            o->t = SC_OBJ;
            break;
        default:
            break;
        }
        break;
    }
    case RV_STR:
        o->t = SC_STR;
        o->s = v->u.s;
        o->n = v->n;
        break;
    case RV_NUM:
        o->t = SC_NUM;
        o->d = v->u.d;
        break;
    case RV_BOOL:
        o->t = SC_BOOL;
        o->b = v->b;
        break;
    case RV_NULL:
        o->t = SC_NULL;
        break;
    case RV_LIST:
        o->t = SC_LIST;
        break;
    default:
        break;
    }
}
size_t rql_list_len(const struct rv *v);

/* Evaluation state for one sl_rql_match call. */
struct rql_ctx {
    const struct sl_rql *prog;
    struct sl_rql_input *in;
    const struct sl_rql_env *env;
    struct sl_arena *scratch;
    int oom;
    const cJSON *elem;    /* the innermost expand element, or NULL */
    pcre2_match_data *md; /* made on first use, from scratch */
};

/* Scratch memory; sets ctx->oom and returns NULL when it runs out. */
void *rql_alloc(struct rql_ctx *x, size_t n);

/* Applies mutator m to v, writing the result to out (which may be v). */
void rql_mutate(struct rql_ctx *x, int m, const struct rv *v, struct rv *out);

/* ---- helpers shared by the compiler and the evaluator ------------------------------------- */

/* Parses text that is wholly a number ([+-]digits[.digits][e[+-]digits], or .digits). */
int rql_parse_number(const char *s, size_t n, double *out);
/* Formats d as its canonical text (integers without a fraction, else the shortest text that
 * reads back as d) into out (at least 32 bytes); returns the length. */
size_t rql_format_number(double d, char *out, size_t outlen);
/* Parses an IPv4 or IPv6 address (no prefix). Returns 0 and the 16 bytes (IPv4 in the first 4)
 * and *v6, or -1. */
int rql_ip_parse(const char *s, size_t n, uint8_t addr[16], int *v6);
/* Parses a network "addr[/bits]"; host bits are cleared. 0 or -1. */
int rql_net_parse(const char *s, size_t n, struct rql_net *out);
int rql_net_contains(const struct rql_net *net, const uint8_t addr[16], int v6);
/* Case mapping of UTF-8 text (ASCII, Latin-1, Latin Extended-A and Additional, Greek, Cyrillic,
 * Armenian, fullwidth Latin): the output has the same length as the input. */
void rql_case_map(const char *s, size_t n, char *out, int upper);
uint64_t rql_hash(const char *s, size_t n);
/* rql_hash of a NUL-terminated string, and its length, in one pass. */
static inline uint64_t rql_hash_cstr(const char *s, size_t *len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    const unsigned char *p = (const unsigned char *)s;
    for (; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    *len = (size_t)(p - (const unsigned char *)s);
    return h ^ (h >> 29);
}

/* ---- raw_log (rql_eval.c) ---------------------------------------------------------------- */

/* The tree of the event's raw_log string str (the event's first "raw_log" member): parsed on
 * the first call for in, kept there for every later query of the same event; NULL when it is not
 * JSON. */
const cJSON *rql_raw_log_tree(struct sl_rql_input *in, const cJSON *str);

#endif
