/* Internals shared by the files of the SQLite store backend (store_sqlite*.c): the handle,
 * its prepared statements and a few helpers. Not for use outside src/store/. */
#ifndef SL_STORE_SQLITE_INT_H
#define SL_STORE_SQLITE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "store/store.h"

#define SL_SQLITE_SCHEMA_VERSION 2
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

/* Statements of store_sqlite_meta.c: metadata, list values, mutes, cases, event effects. */
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
    MST_CASE_INSERT,
    MST_CASE_LINK,
    MST_CASE_GET,
    MST_CASE_ID,
    MST_CASE_EVENTS,
    MST__N
};

/* Statements of store_sqlite_tasks.c: tasks and the ordered scan of stored events. */
enum task_stmt_id {
    TST_TASK_PUT,
    TST_TASK_GET,
    TST_TASK_LIST,
    TST_TASK_LIST_STATE,
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
/* Applies the effects of ev (newly stored in org_id); rule hits are gathered in hits. */
int sl_sqlite_effects_apply(struct sqlite_store *s, const struct sl_store_event *ev, int64_t org_id,
                            struct sl_sqlite_hits *hits);
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
int sl_sqlite_case_get(struct sl_store *st, const char *org, const char *uuid, char **out_doc);
int sl_sqlite_case_events(struct sl_store *st, const char *case_uuid, char **out_json);

/* ---- tasks, scanning events (store_sqlite_tasks.c) ---- */

int sl_sqlite_task_put(struct sl_store *st, const struct sl_task *t);
int sl_sqlite_task_get(struct sl_store *st, const char *id, struct sl_task *out);
int sl_sqlite_task_list(struct sl_store *st, const char *state, size_t limit, struct sl_task **out,
                        size_t *out_n);
int sl_sqlite_event_scan(struct sl_store *st, const char *org, const char *status,
                         int64_t after_seq, size_t limit,
                         int (*cb)(void *ud, int64_t seq, const char *doc, size_t len), void *ud,
                         int64_t *out_last);

#endif
