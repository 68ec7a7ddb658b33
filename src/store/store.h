/* The store interface: organizations, API keys and events, behind a table of backend
 * operations. SQLite (store_sqlite.c) is the default backend; callers never name a backend
 * except sl_store_open, which chooses it. */
#ifndef SL_STORE_STORE_H
#define SL_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define SL_ORG_NAME_MAX 128
#define SL_APIKEY_MAX   80 /* buffer size for a plaintext key, NUL included */

struct sl_store;

struct sl_org {
    char uuid[SL_UUID_LEN + 1];
    char name[SL_ORG_NAME_MAX + 1];
    int64_t created_ms;
    int is_default; /* the first organization ("default"): the parent of every other one */
};

/* Who a request is: resolved from an API key. */
struct sl_principal {
    char org_uuid[SL_UUID_LEN + 1];
    char org_name[SL_ORG_NAME_MAX + 1];
    char role[16];   /* "admin" | "analyst" | "agent" */
    char key_id[24]; /* public, non-secret id of the key (for logs and agent_uuid) */
};

/* A case an event rule creates (create_new_case). Pointers borrowed. */
struct sl_store_case {
    const char *uuid; /* derived from (event uuid, rule uuid), so a redelivery creates it once */
    const char *org;
    const char *title;
    const char *description;
    int severity;
    int tlp;
    const char *tags_json;     /* JSON array of strings, or NULL */
    const char *rule_uuid;     /* the rule that created it */
    const char *template_uuid; /* or NULL */
};

/* What else changes when an event is stored: applied in the same transaction as the event,
 * and only when it is newly stored (not for a duplicate or a redelivery), so a crash and
 * redelivery neither loses nor doubles them. Pointers borrowed. */
struct sl_store_effects {
    const char *const *rule_uuids;        /* event rules that hit: each gets hits += 1 and */
    size_t nrules;                        /* last_hit = the event's created_ms */
    const struct sl_store_case *new_case; /* created (if its uuid is new) before the link */
    const char *case_uuid;                /* the event joins this case (case_events) */
    int64_t mute_until_ms; /* > 0: further events of (org, signature) are muted until then */
    const char *mute_rule; /* the rule that muted */
    const char *mute_org;  /* the organization the mute is for (NULL: the event's); workers
                            * pass the ingest organization, which later events arrive with */
};

/* One event to store. Every pointer is borrowed for the duration of the call. doc is the whole
 * event as compact JSON, already carrying every field below. */
struct sl_store_event {
    const char *uuid;      /* derived from (ingest organization, reference): sl_uuid_from_parts. The
                            * dedup key: unique even when a rule moved the event to another org. */
    const char *org;       /* organization uuid the event belongs to (after set_organization) */
    const char *reference; /* the client's id; unique within the organization */
    const char *title;
    const char *signature; /* organization-scoped signature (md5 hex) */
    const char *status;    /* status name, e.g. "New" */
    int severity;
    int64_t original_date_ms;
    int64_t created_ms;
    uint64_t origin; /* where it came from: (stream partition << 48) | offset */
    const char *doc;
    size_t doc_len;
    const struct sl_store_effects *effects; /* or NULL */
};

/* Metadata objects, kept as JSON documents the api validates and builds, with a few columns the
 * store indexes. Every write bumps the meta version (sl_store_meta_version), which workers
 * poll to reload their rules and lists. */
enum sl_meta_kind {
    SL_META_RULE = 1,     /* event rules */
    SL_META_LIST,         /* intel lists (their values are kept apart: sl_store_list_values_*) */
    SL_META_CLOSE_REASON, /* per organization */
    SL_META_STATUS,       /* event statuses, per organization */
    SL_META_DATA_TYPE,    /* per organization */
    SL_META__N
};

#define SL_META_NAME_MAX 255

struct sl_meta {
    char uuid[SL_UUID_LEN + 1];
    char org[SL_UUID_LEN + 1];
    char name[SL_META_NAME_MAX + 1]; /* unique per (kind, org) */
    int global;                      /* rules and lists of the default org: apply to all orgs */
    int64_t created_ms;
    int64_t updated_ms;
    int64_t hits;        /* rules: events the rule hit (stored ones) */
    int64_t last_hit_ms; /* rules: created_ms of the last of them; 0 if none */
    char *doc;           /* the JSON document (malloc'd when returned by the store) */
};

/* One value of an intel list. csv lists keep a row as a JSON array of strings. */
struct sl_list_value {
    const char *value;
    size_t len;
};

enum sl_put_outcome {
    SL_PUT_STORED = 0,      /* new: written */
    SL_PUT_DUPLICATE = 1,   /* an event with this uuid (ingest org, reference) is stored */
    SL_PUT_REDELIVERED = 2, /* this very record (same origin) was stored by an earlier attempt */
};

/* Filter and page for listing events. Zero/NULL fields do not filter. */
struct sl_event_filter {
    const char *org;    /* required: only this organization's events */
    const char *status; /* status name, case-insensitive */
    int severities[8];  /* any of these severities */
    int nseverities;
    const char *title;      /* case-insensitive substring of the title */
    const char *signature;  /* exact */
    const char *tag;        /* exact tag */
    const char *observable; /* exact observable value */
    int64_t start_ms;       /* original_date >= start (0: open) */
    int64_t end_ms;         /* original_date <= end (0: open) */
    int64_t page;           /* 1-based */
    int64_t page_size;      /* 1..1000 */
    int sort_asc;           /* by original_date; default newest first */
};

#define SL_TASK_KIND_MAX 32

/* A long-running piece of background work (applying a rule to stored events, say) and its
 * progress. Task writes do not change the meta version. */
struct sl_task {
    char id[SL_UUID_LEN + 1];
    char org[SL_UUID_LEN + 1];    /* the organization it acts for */
    char kind[SL_TASK_KIND_MAX];  /* "retro_apply_event_rule", ... */
    char state[16];               /* "pending", "running", "done", "failed" */
    char ref[SL_UUID_LEN + 1];    /* what it is about (the rule), or "" */
    int64_t total, done, matched; /* progress: items to look at, looked at, changed */
    int64_t created_ms, started_ms, finished_ms, updated_ms; /* 0: not yet */
    char error[256];
};

struct sl_store_ops {
    const char *name;
    void (*close)(struct sl_store *st);
    int (*org_create)(struct sl_store *st, const char *name, struct sl_org *out);
    int (*org_get)(struct sl_store *st, const char *uuid, const char *name, struct sl_org *out);
    int (*org_count)(struct sl_store *st, int64_t *out_count);
    int (*apikey_create)(struct sl_store *st, const char *org_uuid, const char *role,
                         char out_key[SL_APIKEY_MAX]);
    int (*apikey_lookup)(struct sl_store *st, const char *key, struct sl_principal *out);
    int (*put_events)(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                      enum sl_put_outcome *out_outcomes);
    int (*event_get)(struct sl_store *st, const char *org, const char *uuid, char **out_doc);
    int (*event_list)(struct sl_store *st, const struct sl_event_filter *f, char **out_json,
                      int64_t *out_total);
    int (*event_count)(struct sl_store *st, const char *org, int64_t *out_count);
    int (*org_list)(struct sl_store *st, struct sl_org **out, size_t *out_n);
    int (*meta_put)(struct sl_store *st, enum sl_meta_kind kind, const struct sl_meta *m,
                    int create);
    int (*meta_get)(struct sl_store *st, enum sl_meta_kind kind, const char *uuid,
                    struct sl_meta *out);
    int (*meta_list)(struct sl_store *st, enum sl_meta_kind kind, const char *org, int with_global,
                     struct sl_meta **out, size_t *out_n);
    int (*meta_delete)(struct sl_store *st, enum sl_meta_kind kind, const char *uuid);
    int (*meta_version)(struct sl_store *st, int64_t *out);
    int (*list_values_add)(struct sl_store *st, const char *list_uuid,
                           const struct sl_list_value *v, size_t n, int64_t expire_at_ms,
                           size_t *out_added);
    int (*list_values_delete)(struct sl_store *st, const char *list_uuid,
                              const struct sl_list_value *v, size_t n, size_t *out_deleted);
    int (*list_values_expire)(struct sl_store *st, const char *list_uuid, int64_t now_ms,
                              size_t *out_deleted);
    int (*list_values_page)(struct sl_store *st, const char *list_uuid, int64_t after_id,
                            size_t limit, char **out_json, int64_t *out_next);
    int (*list_values_iter)(struct sl_store *st, const char *list_uuid,
                            int (*cb)(void *ud, const char *value, size_t len), void *ud);
    int (*list_values_count)(struct sl_store *st, const char *list_uuid, int64_t *out);
    int (*mute_active)(struct sl_store *st, int64_t now_ms, int64_t *out_count);
    int (*mute_get)(struct sl_store *st, const char *org, const char *signature, int64_t now_ms,
                    int64_t *out_until_ms, char out_rule[SL_UUID_LEN + 1]);
    int (*case_get)(struct sl_store *st, const char *org, const char *uuid, char **out_doc);
    int (*case_events)(struct sl_store *st, const char *case_uuid, char **out_json);
    int (*task_put)(struct sl_store *st, const struct sl_task *t);
    int (*task_get)(struct sl_store *st, const char *id, struct sl_task *out);
    int (*task_list)(struct sl_store *st, const char *state, size_t limit, struct sl_task **out,
                     size_t *out_n);
    int (*event_scan)(struct sl_store *st, const char *org, const char *status, int64_t after_seq,
                      size_t limit, int (*cb)(void *ud, int64_t seq, const char *doc, size_t len),
                      void *ud, int64_t *out_last);
    int (*event_update)(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                        size_t *out_updated);
};

/* Every backend's store object starts with this. */
struct sl_store {
    const struct sl_store_ops *ops;
};

/* Opens the store: SQLite at <data_dir>/sluice.db (created with its schema if absent). Several
 * processes may open it at once; each opens its own handle (never share one across fork()).
 * A handle may be used by one thread at a time. Returns NULL and a message in err. */
struct sl_store *sl_store_open(const char *data_dir, char *err, size_t errlen);
void sl_store_close(struct sl_store *st);

/* Creates an organization. name: 1..128 printable characters, unique (case-sensitive).
 * Errors: SL_EINVAL (bad name), SL_EEXIST. out (may be NULL) receives the new row. */
int sl_store_org_create(struct sl_store *st, const char *name, struct sl_org *out);
/* Looks an organization up by uuid (if non-NULL) or else by name. SL_ENOTFOUND if absent. */
int sl_store_org_get(struct sl_store *st, const char *uuid, const char *name, struct sl_org *out);
int sl_store_org_count(struct sl_store *st, int64_t *out_count);

/* Creates an API key for the organization with role "admin", "analyst" or "agent". The
 * plaintext key is written to out_key once and never stored (only its SHA-256 is).
 * Errors: SL_EINVAL (bad role), SL_ENOTFOUND (no such organization). */
int sl_store_apikey_create(struct sl_store *st, const char *org_uuid, const char *role,
                           char out_key[SL_APIKEY_MAX]);
/* Resolves a plaintext key. SL_ENOTFOUND if it is not a valid key. */
int sl_store_apikey_lookup(struct sl_store *st, const char *key, struct sl_principal *out);

/* Writes n events in one transaction, idempotently: an event whose uuid (derived from the ingest
 * organization and the reference) is already stored is not written again. out_outcomes[i] says what
 * happened to evs[i]. All or nothing: on error (SL_EBUSY, SL_EIO) nothing is written and the caller
 * may retry the whole batch. */
int sl_store_put_events(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                        enum sl_put_outcome *out_outcomes);
/* The stored document of one event of org, as a malloc'd JSON string the caller frees.
 * SL_ENOTFOUND if absent or in another organization. */
int sl_store_event_get(struct sl_store *st, const char *org, const char *uuid, char **out_doc);
/* One page of events matching f, as a malloc'd JSON array string the caller frees, and the
 * total number of matches. Errors: SL_EINVAL for a bad page or page_size (or an offset that
 * overflows); SL_EFULL when the page's documents exceed the size limit of one page (32 MiB on
 * SQLite; a smaller page_size may fit); SL_ETIMEDOUT when the count or the page took longer than
 * the read deadline (10 s on SQLite; narrower filters or a shorter time range may fit);
 * SL_EBUSY, SL_EIO, SL_ENOMEM. On error *out_json is NULL. */
int sl_store_event_list(struct sl_store *st, const struct sl_event_filter *f, char **out_json,
                        int64_t *out_total);
/* Stored events of org (NULL: all organizations). */
int sl_store_event_count(struct sl_store *st, const char *org, int64_t *out_count);
/* Calls cb for stored events of org (NULL: every organization) whose status is status (NULL: any;
 * compared case-insensitively), in storage order after the cursor after_seq (0: from the start),
 * at most limit (1..100000) of them; cb gets the event's cursor and its document (borrowed for
 * the call). Returns 0 and *out_last (the cursor of the last event passed to cb, or after_seq
 * when none), cb's non-zero value (*out_last is then the event cb stopped at), or a store error:
 * SL_EINVAL (limit, a negative after_seq, no cb), SL_ENOTFOUND (org is not an organization),
 * SL_EBUSY, SL_EIO. Reads one snapshot. The callback may not use the same store handle. */
int sl_store_event_scan(struct sl_store *st, const char *org, const char *status, int64_t after_seq,
                        size_t limit, int (*cb)(void *ud, int64_t seq, const char *doc, size_t len),
                        void *ud, int64_t *out_last);
/* Rewrites stored events in one transaction: for each evs[i] (found by its uuid, in whichever
 * organization), the document, organization, status and severity are replaced with evs[i]'s, and
 * evs[i].effects (when non-NULL) are applied exactly as put_events applies them for a newly
 * stored event (hits with last_hit = evs[i].created_ms, new case, case link, a mute of
 * evs[i].signature); reference, title, signature, dates and origin are not written. An event
 * that is no longer stored is skipped (out_updated counts the rest). The per-organization event
 * counts follow a change of organization. All or nothing on error: SL_EINVAL (a malformed
 * event), SL_ENOTFOUND (an organization that does not exist), SL_EBUSY, SL_EIO. */
int sl_store_event_update(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                          size_t *out_updated);

/* Every organization, default first then by creation. *out is malloc'd (free it). */
int sl_store_org_list(struct sl_store *st, struct sl_org **out, size_t *out_n);

/* Creating an organization also creates its default event statuses (New, Open, Dismissed,
 * Closed, Acknowledged), close reasons (False positive, True positive, Duplicate, Other) and
 * data types (ip, domain, fqdn, host, email, email_subject, url, user, md5hash, sha1hash,
 * sha256hash, imphash, process, command, filepath, pid, port, sid, mac, detection_id,
 * generic), in the same transaction. */

/* Inserts (create = 1; uuid, org and name required; SL_EEXIST when (kind, org, name) is taken,
 * SL_ENOTFOUND when org is not an organization) or replaces (create = 0: name, global and doc
 * of the object with m->uuid; SL_ENOTFOUND if absent) a metadata object. created_ms and
 * updated_ms are set by the store; hits and last_hit_ms are ignored. */
int sl_store_meta_put(struct sl_store *st, enum sl_meta_kind kind, const struct sl_meta *m,
                      int create);
/* One object by uuid (whatever its organization: the caller checks). out->doc is malloc'd.
 * SL_ENOTFOUND. */
int sl_store_meta_get(struct sl_store *st, enum sl_meta_kind kind, const char *uuid,
                      struct sl_meta *out);
/* Objects of org (NULL: of every organization), plus, with with_global, the global ones of any
 * organization; ordered by name. *out is a malloc'd array; release with sl_store_meta_free. */
int sl_store_meta_list(struct sl_store *st, enum sl_meta_kind kind, const char *org,
                       int with_global, struct sl_meta **out, size_t *out_n);
void sl_store_meta_free(struct sl_meta *m, size_t n);
/* Deletes an object (a list's values with it). SL_ENOTFOUND. */
int sl_store_meta_delete(struct sl_store *st, enum sl_meta_kind kind, const char *uuid);
/* A number that changes whenever a metadata object or a list's values change. */
int sl_store_meta_version(struct sl_store *st, int64_t *out);

/* Inserts a task or replaces the one with the same id (updated_ms set by the store; created_ms
 * 0 lets the store set it: now on insert, kept on replace). kind: 1..31 printable characters;
 * ref: "" or a uuid; error: NUL-terminated. SL_EINVAL for a bad id/org/state/kind/ref or a
 * negative number, SL_ENOTFOUND for an unknown org. Does not change the meta version. */
int sl_store_task_put(struct sl_store *st, const struct sl_task *t);
/* SL_ENOTFOUND if absent. */
int sl_store_task_get(struct sl_store *st, const char *id, struct sl_task *out);
/* Tasks in state (NULL: any), oldest first (by created_ms), at most limit (1..10000; SL_EINVAL
 * otherwise, or for an unknown state); *out malloc'd (free()), NULL when none. */
int sl_store_task_list(struct sl_store *st, const char *state, size_t limit, struct sl_task **out,
                       size_t *out_n);

/* Adds values to a list (existing ones are kept; expire_at_ms > 0 sets or refreshes their
 * expiry: a polled feed's values, see sl_store_list_values_expire; 0 makes them permanent).
 * One transaction. SL_ENOTFOUND if the list does not exist. */
int sl_store_list_values_add(struct sl_store *st, const char *list_uuid,
                             const struct sl_list_value *v, size_t n, int64_t expire_at_ms,
                             size_t *out_added);
int sl_store_list_values_delete(struct sl_store *st, const char *list_uuid,
                                const struct sl_list_value *v, size_t n, size_t *out_deleted);
/* Deletes the list's values whose expiry is before now_ms (NULL list_uuid: every list's). */
int sl_store_list_values_expire(struct sl_store *st, const char *list_uuid, int64_t now_ms,
                                size_t *out_deleted);
/* Up to limit values after the cursor after_id (0: from the start), as a malloc'd JSON array of
 * strings, and the cursor of the next page (0: no more). */
int sl_store_list_values_page(struct sl_store *st, const char *list_uuid, int64_t after_id,
                              size_t limit, char **out_json, int64_t *out_next);
/* Calls cb for every value of the list (stops early, returning cb's value, when cb returns
 * non-zero). Reads one snapshot. */
int sl_store_list_values_iter(struct sl_store *st, const char *list_uuid,
                              int (*cb)(void *ud, const char *value, size_t len), void *ud);
int sl_store_list_values_count(struct sl_store *st, const char *list_uuid, int64_t *out);

/* Mutes set by event rules (sl_store_effects.mute_until_ms): how many are in force at now_ms,
 * and whether (org, signature) is muted (1, with its end and rule) or not (0). */
int sl_store_mute_active(struct sl_store *st, int64_t now_ms, int64_t *out_count);
int sl_store_mute_get(struct sl_store *st, const char *org, const char *signature, int64_t now_ms,
                      int64_t *out_until_ms, char out_rule[SL_UUID_LEN + 1]);

/* A case as JSON ({"uuid","organization","title","description","severity","tlp","status",
 * "tags","event_count","created_at","updated_at","event_rule","case_template"}), malloc'd.
 * SL_ENOTFOUND if absent or in another organization (org NULL: any). */
int sl_store_case_get(struct sl_store *st, const char *org, const char *uuid, char **out_doc);
/* The uuids of a case's events, as a malloc'd JSON array. */
int sl_store_case_events(struct sl_store *st, const char *case_uuid, char **out_json);

/* The SQLite backend's constructor (used by sl_store_open). */
struct sl_store *sl_store_sqlite_open(const char *path, char *err, size_t errlen);
/* For unit tests only: sets the SQLite handle's page size limit and read deadline of
 * event_list. 0 restores the built-in value; a negative deadline has passed before the query
 * starts. Does nothing on another backend. */
void sl_store_sqlite_test_limits(struct sl_store *st, size_t list_max_bytes,
                                 int64_t list_deadline_ms);

#endif
