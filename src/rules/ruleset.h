/* A ruleset: an immutable snapshot of every organization's active Event Rules (compiled RQL,
 * in priority order) and Intel Lists (compiled), with the close reasons the rules' dismiss
 * action names. Workers load one from the store, apply it to each event, and swap in a new one
 * when the store's meta version changes; the api loads one to test queries.
 *
 * Applying it to an event (the worker's rule stage, after sl_event_prepare_tree):
 *   1. every observable is checked against the active lists of the event's organization and
 *      the global lists (values/csv by data type, patterns, ip networks): a match sets the
 *      observable's ioc/safe/spotted from the list's flags, adds the list's name to the
 *      observable's "intel_lists", and with tag_on_match the tag "list: <name>" (lowercased,
 *      spaces as '-') to the event;
 *   2. a muted signature (an earlier mute_event hit) makes the event Dismissed ("Muted");
 *   3. the organization's active, unexpired rules and the global ones run in ascending priority
 *      (then by name); every rule that matches applies its actions, and later rules see the
 *      changes. Each hit appends the rule's uuid to the event's "event_rules". */
#ifndef SL_RULES_RULESET_H
#define SL_RULES_RULESET_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/util.h"
#include "rules/rql.h"

struct sl_arena;
struct sl_store;
struct sl_ruleset;

#define SL_RULES_MAX_HITS 1024 /* rules whose hits are counted per event (all still apply) */

/* Loads every organization's rules, lists (with their values) and close reasons from the store
 * and compiles them. A stored rule that does not compile (written by an older binary, say) is
 * skipped and logged, never fatal. Returns 0, or an error from the store / SL_ENOMEM with a
 * message. */
int sl_ruleset_load(struct sl_store *st, int64_t now_ms, struct sl_ruleset **out, char *err,
                    size_t errlen);

/* Builds a ruleset from documents rather than the store (sluice rules test, unit tests):
 * rules is a JSON array of rule documents (as the API returns them), lists a JSON array of list
 * documents each with a "values" array (strings; csv rows as arrays of strings), and
 * close_reasons an array of close reason documents (may be NULL). default_org is the parent
 * organization (global rules and lists are its own). A rule that does not compile is an
 * error here (SL_EINVAL naming the rule, line and column). */
int sl_ruleset_build(const cJSON *rules, const cJSON *lists, const cJSON *close_reasons,
                     const char *default_org, int64_t now_ms, struct sl_ruleset **out, char *err,
                     size_t errlen);
void sl_ruleset_free(struct sl_ruleset *rs);

/* Rules and list counts, for logs and queue_stats. */
size_t sl_ruleset_rule_count(const struct sl_ruleset *rs);
size_t sl_ruleset_list_count(const struct sl_ruleset *rs);
/* The earliest expire_at (ms) among the loaded rules still in force, or INT64_MAX: a worker
 * reloads at that moment so an expired rule stops firing when it expires. */
int64_t sl_ruleset_next_expiry(const struct sl_ruleset *rs);

/* An RQL environment over the lists org may use (its own and the global ones), for evaluating
 * a query outside the worker (test_rql). env->ud points into rs: valid while rs lives. */
void sl_ruleset_env(const struct sl_ruleset *rs, const char *org, struct sl_rql_env *env);

/* What applying the ruleset did to one event, beyond the edits to its tree. */
struct sl_rules_result {
    const char *rules[SL_RULES_MAX_HITS]; /* uuids of the rules that hit, in order (borrowed
                                           * from rs) */
    size_t nrules;
    size_t nrules_total;             /* hits including those past SL_RULES_MAX_HITS */
    char case_uuid[SL_UUID_LEN + 1]; /* the event's case after the rules ("" if none) */
    int new_case;                    /* case_uuid is a case to create (create_new_case) */
    const char *new_case_rule;       /* the rule that created it, its template (or NULL) */
    const char *new_case_template;
    int64_t mute_until_ms; /* > 0: a mute_event rule hit: mute the signature */
    const char *mute_rule;
    int muted;            /* the event arrived muted: stored as Dismissed ("Muted") */
    unsigned intel_hits;  /* observables that matched a list */
    unsigned dns_misses;  /* DNS mutators evaluated as no value (not cached yet) */
    unsigned rule_errors; /* rules that could not be evaluated (scratch out of memory) */
};

/* Hooks the ruleset cannot answer itself: network lookups (geo, DNS) and mutes. Optional. */
struct sl_rules_hooks {
    void *ud;
    int (*geo)(void *ud, enum sl_rql_geo kind, const char *ip, char *out, size_t outlen);
    int (*dns)(void *ud, enum sl_rql_dns kind, const char *name, char out[][256], int max);
    /* 1 when (org, signature) is muted at now_ms (the rule's uuid into rule), else 0. */
    int (*muted)(void *ud, const char *org, const char *signature, int64_t now_ms,
                 char rule[SL_UUID_LEN + 1]);
};

/* Applies the ruleset to a prepared event tree (it must carry organization, uuid, signature,
 * status), editing it in place: intel marks and tags, then the rules' actions (tags, status,
 * dismissal, severity, case, organization). Temporary memory comes from scratch; new tree nodes
 * from cJSON's allocator. Returns 0, or SL_ENOMEM (the event must be retried, never stored
 * half-processed). Thread-safe for distinct events. */
int sl_ruleset_apply(const struct sl_ruleset *rs, cJSON *event, int64_t now_ms,
                     const struct sl_rules_hooks *hooks, struct sl_arena *scratch,
                     struct sl_rules_result *out);

/* Applies one rule (by uuid; it must be loaded: active and unexpired) to a stored event, as
 * the retroactive task does: evaluates it with the lists of the event's organization and, on a
 * match, applies its actions and records the hit in out (the intel check, mutes and the other
 * rules are not run). Returns 1 (matched and applied), 0 (no match), SL_ENOTFOUND (no such
 * loaded rule, or the event is not of the rule's organization and the rule is not global) or
 * SL_ENOMEM. */
int sl_ruleset_apply_rule(const struct sl_ruleset *rs, const char *rule_uuid, cJSON *event,
                          int64_t now_ms, const struct sl_rules_hooks *hooks,
                          struct sl_arena *scratch, struct sl_rules_result *out);

#endif
