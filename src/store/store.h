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
struct sl_case_fields;
struct sl_case_filter;
struct sl_event_selection;
struct sl_event_action_args;

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
    const char *template_uuid; /* or NULL: applied by the store (tags added, tasks, severity and
                                * tlp taken); a template that no longer exists is skipped */
};

/* What else changes when an event is stored: applied in the same transaction as the event,
 * and only when it is newly stored (not for a duplicate or a redelivery), so a crash and
 * redelivery neither loses nor doubles them. Pointers borrowed. */
struct sl_store_effects {
    const char *const *rule_uuids;        /* event rules that hit: each gets hits += 1 and */
    size_t nrules;                        /* last_hit = the event's created_ms */
    const struct sl_store_case *new_case; /* created (if its uuid is new) before the link */
    const char *case_uuid;                /* the event joins this case (see Cases) */
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
    /* The bulk request the event came in (put_events only; NULL: none) and its position there.
     * When the event is newly stored and outcome is not SL_OUT_STORED, or when the uuid was
     * stored already (SL_OUT_DUPLICATE), put_events records that outcome for the request's
     * ingest task (sl_store_ingest_task_get) in the same transaction. */
    const char *ingest_task;
    const char *ingest_org; /* the sender's organization (before a rule moved the event): the
                             * request's owner, whose keys read its outcomes */
    int64_t ingest_index;
    int outcome; /* enum sl_ingest_outcome: SL_OUT_STORED, SL_OUT_DISMISSED or SL_OUT_MERGED */
    /* event_update only: rewrite the event only if its status is still this one (NULL: any), so
     * a retro task does not undo what an analyst did between its read and its write. */
    const char *expect_status;
};

/* What became of one event of a bulk request. */
enum sl_ingest_outcome {
    SL_OUT_STORED = 0,    /* stored (the default: not recorded per event) */
    SL_OUT_DUPLICATE = 1, /* an event with its reference was stored before */
    SL_OUT_REJECTED = 2,  /* refused by the api's validation or the worker's */
    SL_OUT_DISMISSED = 3, /* stored, dismissed by an event rule */
    SL_OUT_MERGED = 4,    /* stored, merged into a case by an event rule */
    SL_OUT_MUTED = 5,     /* stored as Dismissed: its signature was muted by an event rule */
};

/* An outcome to record beside the events passed to put_events: a record the worker rejected,
 * the api's rejections, or a mute (recorded only when the event it names is newly stored).
 * Pointers borrowed; NULL strings are omitted. */
struct sl_store_outcome {
    const char *task; /* the ingest task */
    const char *org;  /* the sender's organization (NULL: taken from the batch) */
    int64_t index;    /* the event's position in the request */
    int outcome;      /* enum sl_ingest_outcome */
    const char *reference;
    const char *event_uuid;
    const char *case_uuid;
    const char *detail; /* why (rejected: the error; muted: the rule) */
};

/* The end of a bulk request's events in the stream: once recorded, every event of the request
 * has been processed. */
struct sl_store_ingest_done {
    const char *task;
    const char *org;
    int64_t accepted, rejected; /* as the api answered */
    int64_t received_ms;
};

/* What put_events writes besides events, in the same transaction. Recording is idempotent:
 * an outcome is keyed by (task, index) and a task's end by the task, and the first write wins,
 * so a redelivered batch records nothing twice. */
struct sl_store_batch {
    const struct sl_store_outcome *outcomes;
    size_t noutcomes;
    const struct sl_store_ingest_done *done;
    size_t ndone;
};

/* Metadata objects, kept as JSON documents the api validates and builds, with a few columns the
 * store indexes. Every write bumps the meta version (sl_store_meta_version), which workers
 * poll to reload their rules and lists. */
enum sl_meta_kind {
    SL_META_RULE = 1,      /* event rules */
    SL_META_LIST,          /* intel lists (their values are kept apart: sl_store_list_values_*) */
    SL_META_CLOSE_REASON,  /* per organization */
    SL_META_STATUS,        /* event statuses, per organization */
    SL_META_DATA_TYPE,     /* per organization */
    SL_META_CASE_TEMPLATE, /* per organization: tags, tasks, severity, tlp a new case takes */
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
    int64_t cursor;     /* where a resumable task got to (its own meaning; 0: the start) */
    const char *params; /* task_put: JSON written with the task (NULL keeps the stored ones);
                         * task_get/task_list leave it NULL: see sl_store_task_params */
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
                      const struct sl_store_batch *batch, enum sl_put_outcome *out_outcomes);
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
    int (*case_event_docs)(struct sl_store *st, const char *org, const char *case_uuid,
                           int64_t offset, size_t limit, char **out_json, int64_t *out_total);
    int (*task_put)(struct sl_store *st, const struct sl_task *t);
    int (*task_get)(struct sl_store *st, const char *id, struct sl_task *out);
    int (*task_list)(struct sl_store *st, const char *state, size_t limit, struct sl_task **out,
                     size_t *out_n);
    int (*event_scan)(struct sl_store *st, const char *org, const char *status, int64_t after_seq,
                      size_t limit, int (*cb)(void *ud, int64_t seq, const char *doc, size_t len),
                      void *ud, int64_t *out_last);
    int (*event_update)(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                        size_t *out_updated);
    int (*case_create)(struct sl_store *st, const char *org, const char *uuid,
                       const struct sl_case_fields *f);
    int (*case_update)(struct sl_store *st, const char *org, const char *uuid,
                       const struct sl_case_fields *f);
    int (*case_close)(struct sl_store *st, const char *org, const char *uuid,
                      const char *close_reason, const char *comment, const char *by,
                      int64_t *out_events);
    int (*case_reopen)(struct sl_store *st, const char *org, const char *uuid, const char *by,
                       int64_t *out_events);
    int (*case_delete)(struct sl_store *st, const char *org, const char *uuid, int64_t *out_events);
    int (*case_list)(struct sl_store *st, const struct sl_case_filter *f, char **out_json,
                     int64_t *out_total);
    int (*case_observables)(struct sl_store *st, const char *org, const char *uuid, size_t limit,
                            char **out_json);
    int (*case_comment_add)(struct sl_store *st, const char *org, const char *case_uuid,
                            const char *author, const char *text, char **out_doc);
    int (*case_comment_list)(struct sl_store *st, const char *org, const char *case_uuid,
                             char **out_json);
    int (*case_comment_delete)(struct sl_store *st, const char *org, const char *case_uuid,
                               const char *comment_uuid);
    int (*event_grouped)(struct sl_store *st, const struct sl_event_filter *f, char **out_json,
                         int64_t *out_total);
    int (*event_stats)(struct sl_store *st, const struct sl_event_filter *f, size_t top,
                       char **out_json);
    int (*event_select_check)(struct sl_store *st, const struct sl_event_selection *sel,
                              char missing[SL_UUID_LEN + 1]);
    int (*event_act)(struct sl_store *st, const struct sl_event_selection *sel,
                     const struct sl_event_action_args *a, int64_t *cursor, size_t limit,
                     int64_t *out_seen, int64_t *out_changed, int *out_more);
    int (*event_select_ids)(struct sl_store *st, const struct sl_event_selection *sel, size_t max,
                            char **out_json, int64_t *out_total);
    int (*event_export)(struct sl_store *st, const struct sl_event_selection *sel, int64_t *cursor,
                        size_t limit, int (*cb)(void *ud, const char *doc, size_t len), void *ud,
                        int *out_more);
    int (*ingest_task_get)(struct sl_store *st, const char *org, const char *task, int *out_done,
                           int64_t *out_accepted, int64_t *out_rejected, int64_t *out_received_ms,
                           int64_t *out_done_ms, char out_org[SL_UUID_LEN + 1],
                           char **out_outcomes);
    int (*ingest_task_expire)(struct sl_store *st, int64_t before_ms, size_t *out_deleted);
    int (*task_params)(struct sl_store *st, const char *id, char **out_json);
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
 * that is no longer stored, or whose status is no longer evs[i].expect_status (when set), is
 * skipped (out_updated counts the rest). The per-organization event
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
 * "closed","owner","tags","tasks","event_count","observable_count","created_at","updated_at",
 * "closed_at","close_reason","closure_comment","event_rule","case_template"}), malloc'd.
 * SL_ENOTFOUND if absent or in another organization (org NULL: any). */
int sl_store_case_get(struct sl_store *st, const char *org, const char *uuid, char **out_doc);
/* The uuids of a case's events, as a malloc'd JSON array (storage order). */
int sl_store_case_events(struct sl_store *st, const char *case_uuid, char **out_json);
/* One page of a case's event documents (storage order): a malloc'd JSON array of at most limit
 * (1..1000) documents after skipping offset, and the case's number of events. SL_ENOTFOUND if
 * the case is absent or another organization's (org NULL: any); SL_EFULL past 32 MiB. */
int sl_store_case_event_docs(struct sl_store *st, const char *org, const char *case_uuid,
                             int64_t offset, size_t limit, char **out_json, int64_t *out_total);

/* ---- Cases (issue 4) ----
 *
 * A case belongs to one organization. An event is in at most one case: the link is kept on the
 * event (its "case" member and the store's own column), so a case's events, its event_count
 * and its observables (the distinct (value, data_type) pairs of its events' observables) are
 * always read from the events themselves and cannot drift from them, whichever way events
 * arrive (sl_store_event_act with SL_ACT_ADD_TO_CASE, a rule's effects, a retro task). A link whose
 * case does not exist (deleted) or is in another organization is not made: the event is stored
 * without "case", and a status of Open goes back to New. */

#define SL_CASE_TITLE_MAX 1024
#define SL_CASE_TEXT_MAX  (64 * 1024)

/* Case statuses: "New", "In Progress", "Hold", "Closed" (only Closed is closed). */

/* The fields of a case a create or an update writes. NULL pointers (and negative numbers)
 * leave the field as it is on update and take the default on create. Borrowed. */
struct sl_case_fields {
    const char *title;       /* 1..1024 bytes; required on create */
    const char *description; /* [""] */
    int severity;            /* 0..4 [1]; -1: unchanged */
    int tlp;                 /* 0..4 [2]; -1: unchanged */
    const char *status;      /* one of the statuses above [New]; update only through close/reopen */
    const char *owner;       /* 0..255 bytes [""] */
    const char *tags_json;   /* JSON array of strings [[]] */
    const char *tasks_json;  /* JSON array of {"title","description","status"} [[]] (templates) */
    const char *template_uuid; /* create: a case template of the organization (or of the default
                                * one) applied by the store: its tags are added and its tasks
                                * taken; its severity and tlp apply unless the caller gave them
                                * (>= 0). SL_ENOTFOUND when there is none. */
    const char *rule_uuid;     /* the event rule that made it, or NULL */
};

/* Filter and page of case lists (NULL strings and severity -1: no filter). */
struct sl_case_filter {
    const char *org;         /* NULL: every organization (keys of the default organization) */
    const char *status;      /* exact */
    const char *title;       /* case-insensitive substring */
    const char *tag;         /* exact */
    const char *owner;       /* exact */
    int severity;            /* -1: any */
    int64_t page, page_size; /* 1-based; 1..1000 */
};

/* Creates a case with uuid in org. SL_EINVAL (a field out of range), SL_ENOTFOUND (org),
 * SL_EEXIST (uuid taken). */
int sl_store_case_create(struct sl_store *st, const char *org, const char *uuid,
                         const struct sl_case_fields *f);
/* Changes the given fields of a case; status only to New, In Progress or Hold, and not while
 * the case is Closed (SL_EINVAL: closing is sl_store_case_close). SL_ENOTFOUND if absent or in
 * another organization (org NULL: any). */
int sl_store_case_update(struct sl_store *st, const char *org, const char *uuid,
                         const struct sl_case_fields *f);
/* Closes a case (status Closed, closed_at, close_reason uuid or NULL, comment or NULL) and sets
 * its events that are Open (or New, Acknowledged) to Closed, a dismissed one stays dismissed;
 * reopens (status In Progress, events Closed -> Open). One
 * transaction each; *out_events (may be NULL) is how many events changed. SL_ENOTFOUND;
 * SL_EEXIST when already in that state. */
int sl_store_case_close(struct sl_store *st, const char *org, const char *uuid,
                        const char *close_reason, const char *comment, const char *by,
                        int64_t *out_events);
int sl_store_case_reopen(struct sl_store *st, const char *org, const char *uuid, const char *by,
                         int64_t *out_events);
/* Deletes a case, its comments and its links: its events leave it (without "case"), the Open
 * and Closed ones back to New, dismissed ones staying dismissed.
 * Events are released in transactions of at most 5000, so a large case does not hold the
 * write lock long; the case disappears from reads at once. SL_ENOTFOUND. */
int sl_store_case_delete(struct sl_store *st, const char *org, const char *uuid,
                         int64_t *out_events);
/* One page of cases as a malloc'd JSON array of case documents (as sl_store_case_get, without
 * observables), and the total. SL_EINVAL for a bad page. */
int sl_store_case_list(struct sl_store *st, const struct sl_case_filter *f, char **out_json,
                       int64_t *out_total);
/* The case's observables: a malloc'd JSON array of {"value","data_type","events": n}, most
 * frequent first, at most limit (1..10000). SL_ENOTFOUND. */
int sl_store_case_observables(struct sl_store *st, const char *org, const char *uuid, size_t limit,
                              char **out_json);
/* Comments: add (text 1..65536 bytes, author a key id; *out_doc the new comment), list (JSON
 * array, oldest first), delete. SL_ENOTFOUND for an unknown case or comment. */
int sl_store_case_comment_add(struct sl_store *st, const char *org, const char *case_uuid,
                              const char *author, const char *text, char **out_doc);
int sl_store_case_comment_list(struct sl_store *st, const char *org, const char *case_uuid,
                               char **out_json);
int sl_store_case_comment_delete(struct sl_store *st, const char *org, const char *case_uuid,
                                 const char *comment_uuid);

/* ---- Selecting stored events and acting on them (issue 4) ---- */

/* Cards of GET /event?grouped=true: one per signature of the events matching f (f->page and
 * f->page_size page the signatures, newest signature first by its newest original_date, or
 * oldest first with sort_asc): a malloc'd JSON array of {"signature", "occurrences": n,
 * "event": <the newest matching event's document>}, and the number of signatures. Same errors
 * and limits as event_list. */
int sl_store_event_grouped(struct sl_store *st, const struct sl_event_filter *f, char **out_json,
                           int64_t *out_total);
/* Buckets of the events matching f (page ignored): a malloc'd JSON object with one member per
 * metric ("title", "observable", "source", "tag", "status", "severity", "data_type",
 * "event_rule", "signature"), each an object {value: count} of its top `top` (1..1000) values,
 * most frequent first. Same deadline as event_list (SL_ETIMEDOUT). */
int sl_store_event_stats(struct sl_store *st, const struct sl_event_filter *f, size_t top,
                         char **out_json);

/* Which events an action takes. */
struct sl_event_selection {
    const char *org;          /* the organization acted on (required) */
    const char *const *uuids; /* explicit events (any case), or NULL */
    size_t nuuids;
    const struct sl_event_filter *filter; /* or every event matching this (f->org == org) */
    int include_related; /* also the New and Acknowledged events sharing a signature
                          * with a selected event */
};

enum sl_event_action {
    SL_ACT_DISMISS = 1, /* not in a case, not closed -> Dismissed (+ reason, comment) */
    SL_ACT_ACK,         /* New -> Acknowledged */
    SL_ACT_UNACK,       /* Acknowledged -> New */
    SL_ACT_REOPEN,      /* Dismissed -> New (dismiss fields removed) */
    SL_ACT_ADD_TO_CASE, /* -> in case (status Open; Closed when the case is) */
    SL_ACT_DELETE,      /* removed (its reference stays known: a resend is a duplicate) */
};

struct sl_event_action_args {
    enum sl_event_action action;
    const char *by;          /* who: a key id (recorded in the document) */
    const char *reason;      /* dismiss: the close reason's title */
    const char *reason_uuid; /* dismiss: its uuid */
    const char *comment;     /* dismiss: or NULL */
    const char *case_uuid;   /* add_to_case: the case (of sel->org) */
    int64_t now_ms;
};

/* Resolves the explicit uuids of sel: each must be an event of sel->org. Returns 0, or
 * SL_ENOTFOUND with the first missing one copied to missing (so another organization's event
 * is indistinguishable from none). */
int sl_store_event_select_check(struct sl_store *st, const struct sl_event_selection *sel,
                                char missing[SL_UUID_LEN + 1]);
/* Applies an action to the next part of a selection: events after *cursor (0: the start) in
 * storage order, at most limit (1..5000) of them looked at, in one write transaction. Up to
 * limit explicit uuids are done in the first call (last, for delete with related events);
 * related events and filter matches are paged.
 * *cursor advances (0 with *out_more = 0 when the selection is exhausted); *out_seen counts
 * events looked at, *out_changed those the action changed. An event the action does not apply
 * to (dismissing one in a case, say) is left as it is. SL_ENOTFOUND: the case of add_to_case
 * (or sel->org) does not exist. */
int sl_store_event_act(struct sl_store *st, const struct sl_event_selection *sel,
                       const struct sl_event_action_args *a, int64_t *cursor, size_t limit,
                       int64_t *out_seen, int64_t *out_changed, int *out_more);
/* The uuids of the events a selection takes (related ones included), at most max (1..100000):
 * a malloc'd JSON array, and the total (which may exceed max). */
int sl_store_event_select_ids(struct sl_store *st, const struct sl_event_selection *sel, size_t max,
                              char **out_json, int64_t *out_total);
/* Export: calls cb with the documents of the events of sel after *cursor in storage order, at
 * most limit (1..5000) per call; *cursor advances, *out_more says whether more remain. Each
 * call is one read snapshot. */
int sl_store_event_export(struct sl_store *st, const struct sl_event_selection *sel,
                          int64_t *cursor, size_t limit,
                          int (*cb)(void *ud, const char *doc, size_t len), void *ud,
                          int *out_more);

/* ---- Ingest tasks ---- */

/* A bulk request's task: whether its end was recorded (*out_done, with the figures in *out, its
 * strings pointing into out_org/...), and the recorded outcomes (a malloc'd JSON array of
 * {"index","outcome":"duplicate"|...,"reference","uuid","case","detail"} by index).
 * SL_ENOTFOUND when neither its end nor any outcome is recorded (or it is another
 * organization's; org NULL: any). */
int sl_store_ingest_task_get(struct sl_store *st, const char *org, const char *task, int *out_done,
                             int64_t *out_accepted, int64_t *out_rejected, int64_t *out_received_ms,
                             int64_t *out_done_ms, char out_org[SL_UUID_LEN + 1],
                             char **out_outcomes);
/* Deletes ingest tasks (and their outcomes) recorded before before_ms; *out_deleted tasks. */
int sl_store_ingest_task_expire(struct sl_store *st, int64_t before_ms, size_t *out_deleted);
/* put_events with what else the batch records (batch may be NULL). */
int sl_store_put_batch(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                       const struct sl_store_batch *batch, enum sl_put_outcome *out_outcomes);

/* A task's params (malloc'd JSON, "{}" when none were written). SL_ENOTFOUND. */
int sl_store_task_params(struct sl_store *st, const char *id, char **out_json);

/* The SQLite backend's constructor (used by sl_store_open). */
struct sl_store *sl_store_sqlite_open(const char *path, char *err, size_t errlen);
/* For unit tests only: sets the SQLite handle's page size limit and read deadline of
 * event_list. 0 restores the built-in value; a negative deadline has passed before the query
 * starts. Does nothing on another backend. */
void sl_store_sqlite_test_limits(struct sl_store *st, size_t list_max_bytes,
                                 int64_t list_deadline_ms);

#endif
