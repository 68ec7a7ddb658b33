/* RQL, the Reflex Query Language: a rule's query is lexed, parsed and compiled once into an
 * immutable program (struct sl_rql) that any number of threads may evaluate at once against
 * events (cJSON trees). Evaluation keeps no state in the program: everything it needs per
 * event lives in the caller's struct sl_rql_input and scratch arena.
 *
 * The language, its operators, mutators and quirks are in docs/rql.md (the reference's are in
 * ../shared/reference/reflex-event-processing.md §4). Deliberate differences from the
 * reference: any field path is addressable (entity.*, nested raw_log.*, any top-level key);
 * a prefix `not (...)` negates a group; CSV-less intel lookups go through the caller. */
#ifndef SL_RULES_RQL_H
#define SL_RULES_RQL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

struct sl_arena;
struct sl_rql;

#define SL_RQL_MAX_QUERY     (64 * 1024) /* bytes of query text */
#define SL_RQL_MAX_MUTATORS  5           /* chained after one field */
#define SL_RQL_MAX_DEPTH     64          /* nesting of parentheses, expand and not */
#define SL_RQL_MAX_LIST_REFS 64          /* distinct intel lists one query may name */

/* Where and why a query did not compile. line and col are 1-based and point at the offending
 * token (col counts bytes); msg says what was found and what was expected, e.g.
 * "unexpected 'and' (expected an operator: =, !=, contains, in, ...)". */
struct sl_rql_error {
    int line;
    int col;
    char msg[256];
};

/* Compiles query text. Returns 0 and *out (free with sl_rql_free), or SL_EINVAL with *err
 * filled (an unknown field is not an error: any path is addressable; an unknown mutator, a bad
 * regex, a bad CIDR, a Between range that is not "lo,hi" integers, more than
 * SL_RQL_MAX_MUTATORS mutators, nesting deeper than SL_RQL_MAX_DEPTH or text longer than
 * SL_RQL_MAX_QUERY are), or SL_ENOMEM. Never reads past len; text need not be NUL-terminated. */
int sl_rql_compile(const char *text, size_t len, struct sl_rql **out, struct sl_rql_error *err);
void sl_rql_free(struct sl_rql *prog);

/* The intel list names the query refers to (intel(...) and InCIDR intel(...)), each once, in
 * order of first use. The pointers live as long as prog. */
size_t sl_rql_list_refs(const struct sl_rql *prog, const char *const **out_names);

/* Whether the query reads raw_log.* (so the caller knows whether raw_log will be parsed). */
int sl_rql_uses_raw_log(const struct sl_rql *prog);

/* Network lookups a mutator may ask for. */
enum sl_rql_geo {
    SL_RQL_GEO_COUNTRY = 0, /* ISO 3166-1 alpha-2 code */
    SL_RQL_GEO_CONTINENT,   /* two-letter continent code */
    SL_RQL_GEO_TIMEZONE,    /* IANA time zone name */
};
enum sl_rql_dns {
    SL_RQL_DNS_REVERSE = 0, /* |reverse_lookup: PTR of an IP address */
    SL_RQL_DNS_A,
    SL_RQL_DNS_AAAA,
    SL_RQL_DNS_MX,
    SL_RQL_DNS_NS,
    SL_RQL_DNS_PTR,
};

/* What evaluation asks of its caller. Every callback is optional: a missing one makes the
 * construct that needs it evaluate as "no value" (so intel(...) is false and a geo mutator
 * yields nothing). Callbacks must be safe from the evaluating thread. */
struct sl_rql_env {
    void *ud;
    /* intel(field, 'List'): 1 when value is in the list named list, else 0 (also when no such
     * list exists). data_type is the observable's data type when the value came from an
     * observable's "value" inside expand, else NULL. */
    int (*intel_match)(void *ud, const char *list, const char *value, size_t len,
                       const char *data_type);
    /* InCIDR intel('List'): 1 when the IP address text ip is within any CIDR (or equal to any
     * address) of the list, else 0. */
    int (*intel_cidr)(void *ud, const char *list, const char *ip, size_t len);
    /* |geo_*: writes the answer (NUL-terminated) to out and returns 1, or returns 0 when the
     * address is unknown or no database is configured. */
    int (*geo)(void *ud, enum sl_rql_geo kind, const char *ip, char *out, size_t outlen);
    /* DNS mutators: never block. Returns the number of answers (each NUL-terminated, written
     * to out[i], at most max, each at most 256 bytes), 0 for a known "no answer", or -1 when
     * the answer is not cached yet (the lookup is started in the background and the construct
     * evaluates as no value; the caller counts these misses). */
    int (*dns)(void *ud, enum sl_rql_dns kind, const char *name, char out[][256], int max);
};

/* One event being evaluated. Fill event, zero the rest; raw_log is parsed (from the event's
 * "raw_log" string, when it is JSON) on the first query that reads raw_log.*, kept here for
 * every later query of the same event, and released by sl_rql_input_fini. */
struct sl_rql_input {
    const cJSON *event;
    cJSON *raw_log;    /* parsed raw_log (owned), or NULL */
    int raw_log_state; /* 0: not tried yet; 1: parsed (raw_log set); 2: not JSON */
};
void sl_rql_input_fini(struct sl_rql_input *in);

/* Evaluates prog against in->event. Returns 1 (match) or 0 (no match). Temporary values
 * (mutator results) are allocated from scratch, which the caller resets when it likes (between
 * events, say); when scratch runs out of memory the query evaluates as 0 and *oom (if not NULL)
 * is set, so the caller can tell "no match" from "could not evaluate". Never modifies the
 * event or the program. Thread-safe for distinct inputs and scratch arenas. */
int sl_rql_match(const struct sl_rql *prog, struct sl_rql_input *in, const struct sl_rql_env *env,
                 struct sl_arena *scratch, int *oom);

/* ---- the rule index (rql_keys.c, rql_index.c, rql_scan.c) -----------------------------------
 * Used by the ruleset (ruleset.c), so that an event is evaluated only against the rules it can
 * match: keys taken from each program (equalities, substrings, prefixes, literals every match of a
 * regexp contains, networks, intel lists, under and/or/expand), looked up per event. */

struct sl_rql_index;

/* Indexes progs[0..n): rule i is progs[i], compiled from queries[i] (the text is read again
 * for the literals of regular expressions; queries or an element may be NULL). The index keeps
 * copies of what it needs: progs and queries may go before it. Returns NULL when out of
 * memory. */
struct sl_rql_index *sl_rql_index_build(const struct sl_rql *const *progs,
                                        const char *const *queries, size_t n);
void sl_rql_index_free(struct sl_rql_index *ix);
/* 64-bit words of a bitmap over the index's rules (at least one). */
size_t sl_rql_index_words(const struct sl_rql_index *ix);
/* Rules evaluated for every event (no key found), for logs and tests. */
size_t sl_rql_index_unkeyed(const struct sl_rql_index *ix);
/* Sets in bits (sl_rql_index_words words) every rule whose program could match in->event:
 * never leaves out a rule for which sl_rql_match would return 1. Reads raw_log's text for the
 * indexed paths under it, and parses it into in (as evaluation would) only when that text is
 * not plain JSON. env answers intel(...) keys as evaluation does;
 * scratch holds temporaries (NULL: stack only, and more rules may be set). Thread-safe for
 * distinct inputs and scratch arenas. */
void sl_rql_index_candidates(const struct sl_rql_index *ix, struct sl_rql_input *in,
                             const struct sl_rql_env *env, struct sl_arena *scratch,
                             uint64_t *bits);
/* After an edit of the event's top-level members named members[] (and of no other part of the
 * event), adds to bits (the candidates from before the edit) the rules the edited members may
 * now let match: bits again holds every rule sl_rql_index_candidates would set, and perhaps
 * more. Reads only those members (raw_log is never re-read). */
void sl_rql_index_update(const struct sl_rql_index *ix, struct sl_rql_input *in,
                         const struct sl_rql_env *env, struct sl_arena *scratch,
                         const char *const *members, size_t nmembers, uint64_t *bits);

#endif
