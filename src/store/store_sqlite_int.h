/* Internals shared by the files of the SQLite store backend (store_sqlite*.c): the handle,
 * its prepared statements and a few helpers. Not for use outside src/store/. */
#ifndef SL_STORE_SQLITE_INT_H
#define SL_STORE_SQLITE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store/store.h"

#define SL_SQLITE_SCHEMA_VERSION 3
#define SL_SQLITE_HIT_SLOTS      32 /* distinct rules whose hits one put_events call gathers */

/* Statements of store_sqlite.c (handle, organizations, keys, events) and of the shared
 * transaction helpers. */
enum stmt_id {
    ST_BEGIN,
    ST_BEGIN_WRITE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_ORG_INSERT,
    ST_ORG_BY_UUID,
    ST_ORG_BY_NAME,
    ST_ORG_COUNT,
    ST_ORG_LIST,
    ST_KEY_INSERT,
    ST_KEY_LOOKUP,
    ST_SLOT_READ,
    ST_SLOT_DOC,
    ST_EVENT_INSERT,
    ST_EVENT_UPDATE,
    ST_SLOT_PUT,
    ST_RECENT_ADD,
    ST_MERGE_COPY,
    ST_MERGE_CLEAR,
    ST_MERGE_RESET,
    ST_COUNT_ADD,
    ST_COUNT_ORG,
    ST_COUNT_ALL,
    ST_LIST_DESC,
    ST_LIST_ASC,
    ST_LIST_COUNT,
    ST_META_DEFAULT, /* sl_sqlite_org_defaults' insert */
    ST_VERSION_BUMP,
    ST_VERSION_GET,
    ST__N
};

/* Statements of store_sqlite_meta.c (metadata, list values, mutes, event effects) and of
 * store_sqlite_cases.c (cases, their events and comments; their SQL is in store_sqlite_meta.c
 * too, so that one array holds it). */
enum meta_stmt_id {
    MST_JSON_OBJECT,
    MST_META_INSERT,
    MST_META_UPDATE,
    MST_META_GET,
    MST_META_LIST,
    MST_META_ID,
    MST_META_DELETE,
    MST_VALUE_PUT,
    MST_VALUE_DELETE,
    MST_VALUES_CLEAR,
    MST_VALUES_EXPIRE,
    MST_VALUES_PAGE,
    MST_VALUES_ALL,
    MST_VALUES_COUNT,
    MST_MUTE_PUT,
    MST_MUTE_GET,
    MST_MUTE_ACTIVE,
    MST_HIT_ADD,
    MST_CASE_FIND,
    MST_CASE_GET,
    MST_CASE_INSERT,
    MST_CASE_UPDATE,
    MST_CASE_CLOSE,
    MST_CASE_REOPEN,
    MST_CASE_DELETE,
    MST_CASE_TEMPLATE,
    MST_CASE_JSON_OK,
    MST_CASE_OBS_COUNT,
    MST_CASE_OBSERVABLES,
    MST_CASE_EVENTS,
    MST_CASE_EVENT_COUNT,
    MST_CASE_LIST_ORG,
    MST_CASE_LIST_ALL,
    MST_CASE_COUNT_ORG,
    MST_CASE_COUNT_ALL,
    MST_CASE_LINK,
    MST_CASE_UNLINK,
    MST_CASE_EVENTS_CLOSE,
    MST_CASE_EVENTS_REOPEN,
    MST_CASE_RELEASE,
    MST_RELEASE_PUT,
    MST_RELEASE_NEXT,
    MST_RELEASE_DONE,
    MST_COMMENT_ADD,
    MST_COMMENT_LIST,
    MST_COMMENT_DELETE,
    MST_COMMENTS_CLEAR,
    MST__N
};

/* Statements of store_sqlite_tasks.c: tasks and the ordered scan of stored events. */
enum task_stmt_id {
    TST_TASK_PUT,
    TST_TASK_GET,
    TST_TASK_LIST,
    TST_TASK_LIST_STATE,
    TST_TASK_PARAMS,
    TST_PARAMS_VALID,
    TST_SCAN_ALL,
    TST_SCAN_ORG_SEQ,
    TST_SCAN_ORG_INDEX,
    TST_COUNT_ORG_ID,
    TST__N
};

extern const char *const sl_sqlite_stmt_sql[ST__N];
extern const char *const sl_sqlite_meta_sql[MST__N];
extern const char *const sl_sqlite_task_sql[TST__N];

struct sqlite_store {
    struct sl_store base;
    sqlite3 *db;
    sqlite3_stmt *st[ST__N];
    sqlite3_stmt *mst[MST__N];
    sqlite3_stmt *tst[TST__N];
    /* The last organization put_events resolved. Organizations are never deleted or renumbered,
     * so the mapping stays valid across transactions and processes. */
    char org_uuid[SL_UUID_LEN + 1];
    int64_t org_id;
    /* event_list's limits (LIST_MAX_BYTES, LIST_DEADLINE_MS unless a test changed them) and
     * the state of the running one's progress handler. */
    size_t list_max_bytes;
    int64_t list_deadline_ms;
    int64_t deadline; /* sl_mono_ms() after which the progress handler interrupts */
    int deadline_hit; /* the handler interrupted the current statement */
};

/* Rule hits gathered over one put_events call, written as one UPDATE per rule. */
struct sl_sqlite_hits {
    char uuid[SL_SQLITE_HIT_SLOTS][SL_UUID_LEN + 1];
    int64_t n[SL_SQLITE_HIT_SLOTS];
    int64_t last_ms[SL_SQLITE_HIT_SLOTS];
    int len;
};

/* A growable output buffer with a hard maximum (p is malloc'd, NUL-terminated). */
struct sl_sqlite_buf {
    char *p;
    size_t len, cap, max;
};

/* The filter of event_list over parameters ?1..?17 (sl_sqlite_bind_filter binds them), shared
 * by every statement that selects events the way GET /event does. Every optional filter is
 * written as "(param IS NULL OR ...)" so one prepared statement serves every combination; the
 * range on original_date_ms is always bound (open ends become INT64_MIN/MAX) so the index
 * events_org_date applies. SL_SQLITE_LIST_COND is the part after the organization, written
 * against the table name events (no alias). */
#define SL_SQLITE_LIST_COND                                                                        \
    " original_date_ms BETWEEN ?2 AND ?3"                                                          \
    " AND (?4 IS NULL OR status = ?4 COLLATE NOCASE)"                                              \
    " AND (?5 = 0 OR severity IN (?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13))"                            \
    " AND (?14 IS NULL OR instr(lower(title), lower(?14)) > 0)"                                    \
    " AND (?15 IS NULL OR signature = ?15)"                                                        \
    " AND (?16 IS NULL OR EXISTS (SELECT 1 FROM json_each(events.doc, '$.tags') t"                 \
    "      WHERE t.value = ?16))"                                                                  \
    " AND (?17 IS NULL OR EXISTS (SELECT 1 FROM json_each(events.doc, '$.observables') o"          \
    "      WHERE json_extract(o.value, '$.value') = ?17))"
#define SL_SQLITE_LIST_WHERE                                                                       \
    " WHERE org_id = (SELECT id FROM orgs WHERE uuid = ?1) AND" SL_SQLITE_LIST_COND

/* ---- helpers (store_sqlite.c) ---- */

/* Maps a failed SQLite call to SL_EBUSY, SL_ETIMEDOUT (the read deadline) or SL_EIO; logs. */
int sl_sqlite_fail(struct sqlite_store *s, int rc, const char *what);
/* Resets a statement and clears its bindings, so it holds no read snapshot open. */
void sl_sqlite_done(sqlite3_stmt *st);
/* Steps a statement that returns no row, then resets it. 0 or an error from sl_sqlite_fail. */
int sl_sqlite_step_done(struct sqlite_store *s, sqlite3_stmt *st, const char *what);
/* BEGIN (read), BEGIN IMMEDIATE (write), COMMIT; rollback of whatever transaction is open. */
int sl_sqlite_begin(struct sqlite_store *s, int write);
int sl_sqlite_commit(struct sqlite_store *s);
void sl_sqlite_rollback(struct sqlite_store *s);
/* Bumps the meta version; inside the caller's write transaction. */
int sl_sqlite_version_bump(struct sqlite_store *s);
/* Copies a valid uuid (any case) in the canonical lowercase form the tables hold. */
void sl_sqlite_uuid_lower(const char *uuid, char out[SL_UUID_LEN + 1]);
void sl_sqlite_copy_col(char *dst, size_t cap, sqlite3_stmt *st, int col);
void sl_sqlite_bind_opt_text(sqlite3_stmt *q, int i, const char *v);
/* The row id of organization uuid (any case): 0, SL_ENOTFOUND (also for a malformed uuid). */
int sl_sqlite_org_resolve(struct sqlite_store *s, const char *org, int64_t *out_id);
/* Length of the UTF-8 sequence at p (at most n bytes) and its code point, or 0 if invalid. */
size_t sl_sqlite_utf8_decode(const unsigned char *p, size_t n, uint32_t *out);
/* 1..max bytes (NUL-terminated) of valid UTF-8 without control characters (C0, DEL, C1). */
int sl_sqlite_name_valid(const char *name, size_t max);
/* Binds parameters ?1..?17 of SL_SQLITE_LIST_WHERE from f (borrowed until the statement is
 * reset). Empty strings do not filter. */
void sl_sqlite_bind_filter(sqlite3_stmt *q, const struct sl_event_filter *f);
/* Whether f is a valid event_list filter: org set, 0..8 severities, page >= 1, page_size
 * 1..1000, an offset that does not overflow. */
int sl_sqlite_filter_valid(const struct sl_event_filter *f);
/* The read deadline of event_list (list_deadline_ms from now) on the handle: start arms the
 * progress handler, which interrupts the running statement once the deadline passed (its
 * failure then maps to SL_ETIMEDOUT); pause (1) takes the handler off for statements that must
 * not be interrupted and (0) puts it back with the same deadline; stop takes it off for good.
 * Stop before COMMIT or ROLLBACK and before the handle's next call. */
void sl_sqlite_deadline_start(struct sqlite_store *s);
void sl_sqlite_deadline_pause(struct sqlite_store *s, int paused);
void sl_sqlite_deadline_stop(struct sqlite_store *s);
/* The seq of the stored event with uuid (any case) in org_id (negative: any organization, a
 * tombstone's 0 included), through the dedup keys. SL_ENOTFOUND. */
int sl_sqlite_event_find(struct sqlite_store *s, const char *uuid, int64_t org_id,
                         int64_t *out_seq);
/* Appends n bytes; SL_EFULL past b->max, SL_ENOMEM. */
int sl_sqlite_buf_put(struct sl_sqlite_buf *b, const char *data, size_t n);
/* Appends s[0..len) as a JSON string (invalid UTF-8 becomes U+FFFD); NULL appends null. */
int sl_sqlite_buf_json_str(struct sl_sqlite_buf *b, const char *s, size_t len);

/* ---- schema (store_sqlite_schema.c) ---- */

/* Creates the schema in a new file, migrates an older one (one transaction) or checks that the
 * file's schema is ours and not newer than this binary. 0, or -1 and a message in err. */
int sl_sqlite_schema_ensure(sqlite3 *db, const char *path, char *err, size_t errlen);
/* Inserts organization org_id's default statuses, close reasons and data types (those it lacks)
 * with ins, a statement prepared from sl_sqlite_stmt_sql[ST_META_DEFAULT]. Returns an SQLite
 * result code (SQLITE_OK). */
int sl_sqlite_org_defaults(sqlite3_stmt *ins, int64_t org_id, const char *org_uuid, int64_t now_ms);

/* ---- metadata, lists, mutes, cases (store_sqlite_meta.c) ---- */

/* Whether an event's effects are well-formed (checked before put_events' transaction). */
int sl_sqlite_effects_valid(const struct sl_store_effects *fx);
/* Applies the effects of ev (newly stored, or rewritten by event_update, as events row seq of
 * org_id); rule hits are gathered in hits. Inside the caller's write transaction. */
int sl_sqlite_effects_apply(struct sqlite_store *s, const struct sl_store_event *ev, int64_t seq,
                            int64_t org_id, struct sl_sqlite_hits *hits);
/* Writes the gathered hits and empties hits. */
int sl_sqlite_hits_flush(struct sqlite_store *s, struct sl_sqlite_hits *hits);

int sl_sqlite_meta_put(struct sl_store *st, enum sl_meta_kind kind, const struct sl_meta *m,
                       int create);
int sl_sqlite_meta_get(struct sl_store *st, enum sl_meta_kind kind, const char *uuid,
                       struct sl_meta *out);
int sl_sqlite_meta_list(struct sl_store *st, enum sl_meta_kind kind, const char *org,
                        int with_global, struct sl_meta **out, size_t *out_n);
int sl_sqlite_meta_delete(struct sl_store *st, enum sl_meta_kind kind, const char *uuid);
int sl_sqlite_meta_version(struct sl_store *st, int64_t *out);
int sl_sqlite_list_values_add(struct sl_store *st, const char *list_uuid,
                              const struct sl_list_value *v, size_t n, int64_t expire_at_ms,
                              size_t *out_added);
int sl_sqlite_list_values_delete(struct sl_store *st, const char *list_uuid,
                                 const struct sl_list_value *v, size_t n, size_t *out_deleted);
int sl_sqlite_list_values_expire(struct sl_store *st, const char *list_uuid, int64_t now_ms,
                                 size_t *out_deleted);
int sl_sqlite_list_values_page(struct sl_store *st, const char *list_uuid, int64_t after_id,
                               size_t limit, char **out_json, int64_t *out_next);
int sl_sqlite_list_values_iter(struct sl_store *st, const char *list_uuid,
                               int (*cb)(void *ud, const char *value, size_t len), void *ud);
int sl_sqlite_list_values_count(struct sl_store *st, const char *list_uuid, int64_t *out);
int sl_sqlite_mute_active(struct sl_store *st, int64_t now_ms, int64_t *out_count);
int sl_sqlite_mute_get(struct sl_store *st, const char *org, const char *signature, int64_t now_ms,
                       int64_t *out_until_ms, char out_rule[SL_UUID_LEN + 1]);

/* ---- cases and their comments (store_sqlite_cases.c) ---- */

/* The case row id an event of org_id may join (the case exists and is in org_id), 0 when it may
 * not (absent, deleted, another organization's), or an error. *out_closed: the case is Closed.
 * Inside the caller's transaction. */
int sl_sqlite_case_resolve(struct sqlite_store *s, const char *case_uuid, int64_t org_id,
                           int64_t *out_case_id, int *out_closed);
/* Creates the case an event rule made (status New, its template applied when it exists) unless
 * its uuid exists. Inside the caller's write transaction (an effect). SL_ENOTFOUND: c->org. */
int sl_sqlite_case_from_rule(struct sqlite_store *s, const struct sl_store_case *c);
/* Makes the case link of events row seq (of org_id) consistent, inside the caller's write
 * transaction. With case_uuid: the event joins that case when it resolves (its "case" set, an
 * Open status becoming Closed when the case is), and otherwise loses "case" (Open back to New).
 * Without: a link to a case that no longer resolves (deleted, another organization's) is
 * dropped the same way, and a valid one is kept. */
int sl_sqlite_case_link(struct sqlite_store *s, int64_t seq, int64_t org_id, const char *case_uuid);
/* Finishes releasing the events of cases whose deletion was interrupted (a crash between two of
 * case_delete's transactions). Cheap when there are none; called when the store is opened. */
int sl_sqlite_case_release_pending(struct sqlite_store *s);
int sl_sqlite_case_get(struct sl_store *st, const char *org, const char *uuid, char **out_doc);
int sl_sqlite_case_events(struct sl_store *st, const char *case_uuid, char **out_json);
int sl_sqlite_case_event_docs(struct sl_store *st, const char *org, const char *case_uuid,
                              int64_t offset, size_t limit, char **out_json, int64_t *out_total);
int sl_sqlite_case_create(struct sl_store *st, const char *org, const char *uuid,
                          const struct sl_case_fields *f);
int sl_sqlite_case_update(struct sl_store *st, const char *org, const char *uuid,
                          const struct sl_case_fields *f);
int sl_sqlite_case_close(struct sl_store *st, const char *org, const char *uuid,
                         const char *close_reason, const char *comment, const char *by,
                         int64_t *out_events);
int sl_sqlite_case_reopen(struct sl_store *st, const char *org, const char *uuid, const char *by,
                          int64_t *out_events);
int sl_sqlite_case_delete(struct sl_store *st, const char *org, const char *uuid,
                          int64_t *out_events);
int sl_sqlite_case_list(struct sl_store *st, const struct sl_case_filter *f, char **out_json,
                        int64_t *out_total);
int sl_sqlite_case_observables(struct sl_store *st, const char *org, const char *uuid, size_t limit,
                               char **out_json);
int sl_sqlite_case_comment_add(struct sl_store *st, const char *org, const char *case_uuid,
                               const char *author, const char *text, char **out_doc);
int sl_sqlite_case_comment_list(struct sl_store *st, const char *org, const char *case_uuid,
                                char **out_json);
int sl_sqlite_case_comment_delete(struct sl_store *st, const char *org, const char *case_uuid,
                                  const char *comment_uuid);

/* ---- grouping, stats, selections and actions on events (store_sqlite_events.c) ---- */

int sl_sqlite_event_grouped(struct sl_store *st, const struct sl_event_filter *f, char **out_json,
                            int64_t *out_total);
int sl_sqlite_event_stats(struct sl_store *st, const struct sl_event_filter *f, size_t top,
                          char **out_json);
int sl_sqlite_event_select_check(struct sl_store *st, const struct sl_event_selection *sel,
                                 char missing[SL_UUID_LEN + 1]);
int sl_sqlite_event_act(struct sl_store *st, const struct sl_event_selection *sel,
                        const struct sl_event_action_args *a, int64_t *cursor, size_t limit,
                        int64_t *out_seen, int64_t *out_changed, int *out_more);
int sl_sqlite_event_select_ids(struct sl_store *st, const struct sl_event_selection *sel,
                               size_t max, char **out_json, int64_t *out_total);
int sl_sqlite_event_export(struct sl_store *st, const struct sl_event_selection *sel,
                           int64_t *cursor, size_t limit,
                           int (*cb)(void *ud, const char *doc, size_t len), void *ud,
                           int *out_more);

/* ---- ingest tasks (store_sqlite_ingest.c) ---- */

/* Records, inside put_events' transaction, the outcomes of evs (by out_outcomes: a newly stored
 * event whose outcome is not SL_OUT_STORED, and every SL_PUT_DUPLICATE; nothing for
 * SL_PUT_REDELIVERED) for their ingest tasks, and batch's outcomes and ends (batch may be
 * NULL). Idempotent: the first record of (task, index) and of a task's end wins. */
int sl_sqlite_batch_record(struct sqlite_store *s, const struct sl_store_event *evs, size_t n,
                           const enum sl_put_outcome *out_outcomes,
                           const struct sl_store_batch *batch);
/* Whether batch is well-formed (checked before the transaction). */
int sl_sqlite_batch_valid(const struct sl_store_batch *batch);
int sl_sqlite_ingest_task_get(struct sl_store *st, const char *org, const char *task, int *out_done,
                              int64_t *out_accepted, int64_t *out_rejected,
                              int64_t *out_received_ms, int64_t *out_done_ms,
                              char out_org[SL_UUID_LEN + 1], char **out_outcomes);
int sl_sqlite_ingest_task_expire(struct sl_store *st, int64_t before_ms, size_t *out_deleted);

/* ---- tasks, scanning events (store_sqlite_tasks.c) ---- */

int sl_sqlite_task_params(struct sl_store *st, const char *id, char **out_json);

int sl_sqlite_task_put(struct sl_store *st, const struct sl_task *t);
int sl_sqlite_task_get(struct sl_store *st, const char *id, struct sl_task *out);
int sl_sqlite_task_list(struct sl_store *st, const char *state, size_t limit, struct sl_task **out,
                        size_t *out_n);
int sl_sqlite_event_scan(struct sl_store *st, const char *org, const char *status,
                         int64_t after_seq, size_t limit,
                         int (*cb)(void *ud, int64_t seq, const char *doc, size_t len), void *ud,
                         int64_t *out_last);

#endif
