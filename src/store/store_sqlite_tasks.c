/* The SQLite store's tasks (background work such as applying a rule to stored events, with its
 * progress) and the ordered scan of stored events such work pages through.
 *
 * A task keeps its params (JSON: what a bulk action acts on) apart from its progress: task_put
 * writes them only when given, task_get and task_list never read them (a selection of many
 * uuids is large, and progress is polled), sl_store_task_params does. Its cursor is where a
 * resumable task got to, so it resumes after a restart.
 *
 * A scan walks events in seq order (the rowid, storage order) from a cursor. Without an
 * organization that is a range scan of the table, filtering the status per row. With one, two
 * plans use what exists, so no index has to be built over every event (which would make the
 * migration of a large version 1 file slow):
 * - the range scan filtering org_id per row, which reads about limit * total / n_org rows;
 * - the org's entries of events_org_date (org_id, original_date_ms, seq), whose seqs are not in
 *   order: the smallest limit of them after the cursor are picked from all n_org entries, then
 *   their rows fetched.
 * Each call takes the cheaper one from event_counts: the index when n_org^2 < limit * total, so
 * one call costs at most about sqrt(limit * total) rows or entries, and a whole scan about one
 * pass over the table. A deleted event's tombstone (organization 0, store_sqlite_events.c) is in
 * no organization, and the scan of all of them passes over it. */
#include "store/store_sqlite_int.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

#define TASK_LIST_MAX   10000
#define SCAN_MAX        100000     /* events per event_scan */
#define TASK_PARAMS_MAX (16 << 20) /* bytes of a task's params (a bulk action's uuid list) */

#define TASK_COLS                                                                                  \
    "t.uuid, o.uuid, t.kind, t.state, t.ref, t.total, t.done, t.matched, t.created_ms,"            \
    " t.started_ms, t.finished_ms, t.updated_ms, t.error, t.cursor"

/* The status filter of the scans (?2 NULL: any status). */
#define SCAN_STATUS " AND (?2 IS NULL OR status = ?2 COLLATE NOCASE)"

const char *const sl_sqlite_task_sql[TST__N] = {
    /* created_ms ?9 of 0: now (?12) on insert, the stored one on replace; params ?15 NULL:
     * '{}' on insert, the stored ones on replace. */
    [TST_TASK_PUT] =
        "INSERT INTO tasks (uuid, org_id, kind, state, ref, total, done, matched, created_ms,"
        " started_ms, finished_ms, updated_ms, error, cursor, params)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, CASE WHEN ?9 > 0 THEN ?9 ELSE ?12 END,"
        " ?10, ?11, ?12, ?13, ?14, coalesce(?15, '{}'))"
        " ON CONFLICT (uuid) DO UPDATE SET org_id = excluded.org_id, kind = excluded.kind,"
        " state = excluded.state, ref = excluded.ref, total = excluded.total,"
        " done = excluded.done, matched = excluded.matched,"
        " created_ms = CASE WHEN ?9 > 0 THEN ?9 ELSE tasks.created_ms END,"
        " started_ms = excluded.started_ms, finished_ms = excluded.finished_ms,"
        " updated_ms = excluded.updated_ms, error = excluded.error, cursor = excluded.cursor,"
        " params = coalesce(?15, tasks.params)",
    [TST_TASK_GET] = "SELECT " TASK_COLS " FROM tasks t JOIN orgs o ON o.id = t.org_id"
                     " WHERE t.uuid = ?1",
    [TST_TASK_LIST] = "SELECT " TASK_COLS " FROM tasks t JOIN orgs o ON o.id = t.org_id"
                      " ORDER BY t.created_ms, t.id LIMIT ?2",
    [TST_TASK_LIST_STATE] = "SELECT " TASK_COLS " FROM tasks t JOIN orgs o ON o.id = t.org_id"
                            " WHERE t.state = ?1 ORDER BY t.created_ms, t.id LIMIT ?2",
    [TST_TASK_PARAMS] = "SELECT params FROM tasks WHERE uuid = ?1",
    [TST_PARAMS_VALID] = "SELECT json_valid(?1)",
    /* org_id 0 is a deleted event's tombstone (store_sqlite_events.c); the organization scans
     * never meet one. */
    [TST_SCAN_ALL] = "SELECT seq, doc FROM events WHERE seq > ?1 AND org_id <> 0" SCAN_STATUS
                     " ORDER BY seq LIMIT ?3",
    /* NOT INDEXED keeps the planner off events_org_date (it would sort the whole org). */
    [TST_SCAN_ORG_SEQ] =
        "SELECT seq, doc FROM events NOT INDEXED WHERE seq > ?1 AND org_id = ?4" SCAN_STATUS
        " ORDER BY seq LIMIT ?3",
    [TST_SCAN_ORG_INDEX] = "SELECT seq, doc FROM events WHERE seq IN (SELECT seq FROM events"
                           " INDEXED BY events_org_date WHERE org_id = ?4 AND seq > ?1" SCAN_STATUS
                           " ORDER BY seq LIMIT ?3) ORDER BY seq",
    /* The organization's events and all events. */
    [TST_COUNT_ORG_ID] = ("SELECT coalesce((SELECT n FROM event_counts WHERE org_id = ?1), 0),"
                          " (SELECT coalesce(sum(n), 0) FROM event_counts)"),
};

static struct sqlite_store *from_base(struct sl_store *st)
{
    return (struct sqlite_store *)st;
}

/* ---- tasks ---- */

static int state_valid(const char *state)
{
    static const char *const states[] = {"pending", "running", "done", "failed"};
    for (size_t i = 0; state && i < sizeof(states) / sizeof(states[0]); i++)
        if (strcmp(state, states[i]) == 0)
            return 1;
    return 0;
}

static int task_valid(const struct sl_task *t)
{
    if (!t || !sl_uuid_valid(t->id) || !sl_uuid_valid(t->org) || !state_valid(t->state))
        return 0;
    if (!sl_sqlite_name_valid(t->kind, SL_TASK_KIND_MAX - 1))
        return 0;
    if (strnlen(t->ref, sizeof(t->ref)) == sizeof(t->ref) || (t->ref[0] && !sl_uuid_valid(t->ref)))
        return 0;
    if (strnlen(t->error, sizeof(t->error)) == sizeof(t->error))
        return 0;
    return t->total >= 0 && t->done >= 0 && t->matched >= 0 && t->created_ms >= 0 &&
           t->started_ms >= 0 && t->finished_ms >= 0 && t->cursor >= 0;
}

/* Whether params (non-NULL) are well-formed JSON of at most TASK_PARAMS_MAX bytes. */
static int params_check(struct sqlite_store *s, const char *params)
{
    if (strnlen(params, TASK_PARAMS_MAX + 1) > TASK_PARAMS_MAX)
        return SL_EINVAL;
    sqlite3_stmt *q = s->tst[TST_PARAMS_VALID];
    sqlite3_bind_text(q, 1, params, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    int valid = rc == SQLITE_ROW && sqlite3_column_int(q, 0) == 1;
    sl_sqlite_done(q);
    if (rc != SQLITE_ROW)
        return sl_sqlite_fail(s, rc, "checking a task's params");
    return valid ? 0 : SL_EINVAL;
}

/* A single statement, so no transaction: the organization resolved first is never deleted. */
int sl_sqlite_task_put(struct sl_store *st, const struct sl_task *t)
{
    struct sqlite_store *s = from_base(st);
    char id[SL_UUID_LEN + 1], ref[SL_UUID_LEN + 1] = "";
    int64_t org_id = 0;
    if (!task_valid(t))
        return SL_EINVAL;
    int rc = t->params ? params_check(s, t->params) : 0;
    if (rc == 0)
        rc = sl_sqlite_org_resolve(s, t->org, &org_id);
    if (rc)
        return rc;
    sl_sqlite_uuid_lower(t->id, id);
    if (t->ref[0])
        sl_sqlite_uuid_lower(t->ref, ref);
    sqlite3_stmt *q = s->tst[TST_TASK_PUT];
    sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, org_id);
    sqlite3_bind_text(q, 3, t->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, t->state, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, ref, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 6, t->total);
    sqlite3_bind_int64(q, 7, t->done);
    sqlite3_bind_int64(q, 8, t->matched);
    sqlite3_bind_int64(q, 9, t->created_ms);
    sqlite3_bind_int64(q, 10, t->started_ms);
    sqlite3_bind_int64(q, 11, t->finished_ms);
    sqlite3_bind_int64(q, 12, sl_now_ms());
    sqlite3_bind_text(q, 13, t->error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 14, t->cursor);
    sl_sqlite_bind_opt_text(q, 15, t->params);
    return sl_sqlite_step_done(s, q, "writing a task");
}

static void task_from_row(sqlite3_stmt *q, struct sl_task *out)
{
    sl_sqlite_copy_col(out->id, sizeof(out->id), q, 0);
    sl_sqlite_copy_col(out->org, sizeof(out->org), q, 1);
    sl_sqlite_copy_col(out->kind, sizeof(out->kind), q, 2);
    sl_sqlite_copy_col(out->state, sizeof(out->state), q, 3);
    sl_sqlite_copy_col(out->ref, sizeof(out->ref), q, 4);
    out->total = sqlite3_column_int64(q, 5);
    out->done = sqlite3_column_int64(q, 6);
    out->matched = sqlite3_column_int64(q, 7);
    out->created_ms = sqlite3_column_int64(q, 8);
    out->started_ms = sqlite3_column_int64(q, 9);
    out->finished_ms = sqlite3_column_int64(q, 10);
    out->updated_ms = sqlite3_column_int64(q, 11);
    sl_sqlite_copy_col(out->error, sizeof(out->error), q, 12);
    out->cursor = sqlite3_column_int64(q, 13);
    out->params = NULL;
}

int sl_sqlite_task_get(struct sl_store *st, const char *id, struct sl_task *out)
{
    struct sqlite_store *s = from_base(st);
    char lower[SL_UUID_LEN + 1];
    if (!id || !out)
        return SL_EINVAL;
    if (!sl_uuid_valid(id))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(id, lower);
    sqlite3_stmt *q = s->tst[TST_TASK_GET];
    sqlite3_bind_text(q, 1, lower, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        task_from_row(q, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = SL_ENOTFOUND;
    } else {
        rc = sl_sqlite_fail(s, rc, "reading a task");
    }
    sl_sqlite_done(q);
    return rc;
}

int sl_sqlite_task_list(struct sl_store *st, const char *state, size_t limit, struct sl_task **out,
                        size_t *out_n)
{
    struct sqlite_store *s = from_base(st);
    struct sl_task *v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0, src;
    if (!out || !out_n)
        return SL_EINVAL;
    *out = NULL;
    *out_n = 0;
    if ((state && !state_valid(state)) || limit < 1 || limit > TASK_LIST_MAX)
        return SL_EINVAL;
    sqlite3_stmt *q = s->tst[state ? TST_TASK_LIST_STATE : TST_TASK_LIST];
    if (state)
        sqlite3_bind_text(q, 1, state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, (int64_t)limit);
    while ((src = sqlite3_step(q)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct sl_task *p = realloc(v, ncap * sizeof(*p));
            if (!p) {
                rc = SL_ENOMEM;
                break;
            }
            v = p;
            cap = ncap;
        }
        task_from_row(q, &v[n++]);
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = sl_sqlite_fail(s, src, "listing tasks");
    sl_sqlite_done(q);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *out_n = n;
    return 0;
}

int sl_sqlite_task_params(struct sl_store *st, const char *id, char **out_json)
{
    struct sqlite_store *s = from_base(st);
    char lower[SL_UUID_LEN + 1];
    if (!out_json)
        return SL_EINVAL;
    *out_json = NULL;
    if (!id || !sl_uuid_valid(id))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(id, lower);
    sqlite3_stmt *q = s->tst[TST_TASK_PARAMS];
    sqlite3_bind_text(q, 1, lower, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(q, 0);
        size_t len = (size_t)sqlite3_column_bytes(q, 0);
        if (!v || len == 0)
            v = "{}", len = 2;
        *out_json = malloc(len + 1);
        if (*out_json) {
            memcpy(*out_json, v, len);
            (*out_json)[len] = 0;
            rc = 0;
        } else {
            rc = SL_ENOMEM;
        }
    } else if (rc == SQLITE_DONE) {
        rc = SL_ENOTFOUND;
    } else {
        rc = sl_sqlite_fail(s, rc, "reading a task's params");
    }
    sl_sqlite_done(q);
    return rc;
}

/* ---- scanning events ---- */

/* Chooses the statement for a scan of org_id (see the file header); runs inside the scan's read
 * transaction, so the counts are the snapshot's. */
static int scan_plan(struct sqlite_store *s, int64_t org_id, size_t limit, sqlite3_stmt **out)
{
    sqlite3_stmt *q = s->tst[TST_COUNT_ORG_ID];
    int64_t n_org = 0, total = 0;
    sqlite3_bind_int64(q, 1, org_id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        n_org = sqlite3_column_int64(q, 0);
        total = sqlite3_column_int64(q, 1);
    }
    sl_sqlite_done(q);
    if (rc != SQLITE_ROW)
        return sl_sqlite_fail(s, rc, "counting events");
    /* In double: the product overflows int64 long before the tables get that big. */
    int by_index = (double)n_org * (double)n_org < (double)limit * (double)total;
    *out = s->tst[by_index ? TST_SCAN_ORG_INDEX : TST_SCAN_ORG_SEQ];
    return 0;
}

/* Steps the scan statement q, calling cb for each row. */
static int scan_rows(struct sqlite_store *s, sqlite3_stmt *q,
                     int (*cb)(void *ud, int64_t seq, const char *doc, size_t len), void *ud,
                     int64_t *last)
{
    int rc = 0, src;
    while ((src = sqlite3_step(q)) == SQLITE_ROW) {
        const char *doc = (const char *)sqlite3_column_text(q, 1);
        size_t len = (size_t)sqlite3_column_bytes(q, 1);
        *last = sqlite3_column_int64(q, 0);
        if ((rc = cb(ud, *last, doc ? doc : "", len)) != 0)
            return rc;
    }
    return src == SQLITE_DONE ? 0 : sl_sqlite_fail(s, src, "scanning events");
}

int sl_sqlite_event_scan(struct sl_store *st, const char *org, const char *status,
                         int64_t after_seq, size_t limit,
                         int (*cb)(void *ud, int64_t seq, const char *doc, size_t len), void *ud,
                         int64_t *out_last)
{
    struct sqlite_store *s = from_base(st);
    sqlite3_stmt *q = s->tst[TST_SCAN_ALL];
    int64_t org_id = 0, last = after_seq;
    int rc;
    if (out_last)
        *out_last = after_seq;
    if (!cb || after_seq < 0 || limit < 1 || limit > SCAN_MAX)
        return SL_EINVAL;
    if (org && (rc = sl_sqlite_org_resolve(s, org, &org_id)))
        return rc;
    /* One read transaction: the counts that choose the plan and the rows, from one snapshot. */
    if ((rc = sl_sqlite_begin(s, 0)))
        return rc;
    if (org)
        rc = scan_plan(s, org_id, limit, &q);
    if (rc == 0) {
        sqlite3_bind_int64(q, 1, after_seq);
        sl_sqlite_bind_opt_text(q, 2, status);
        sqlite3_bind_int64(q, 3, (int64_t)limit);
        if (org)
            sqlite3_bind_int64(q, 4, org_id);
        rc = scan_rows(s, q, cb, ud, &last);
        sl_sqlite_done(q);
    }
    /* A read transaction: ending it early (cb stopped) loses nothing. */
    int end = sl_sqlite_commit(s);
    if (end)
        sl_sqlite_rollback(s);
    if (rc == 0)
        rc = end;
    if (out_last)
        *out_last = last;
    return rc;
}
