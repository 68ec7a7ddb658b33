/* The SQLite store's ingest tasks: what became of the events of each bulk request, written in
 * the transaction of the batch that processed them, read back for GET /api/v2.0/task/<id>, and
 * expired after SLUICE_INGEST_TASK_RETENTION.
 *
 * Tables (schema version 3, store_sqlite_schema.c): ingest_tasks holds a request's end (one row
 * per task, written when the worker met the request's task_end), ingest_outcomes one row per
 * event that was not simply stored ((task, idx) is the key). A stored event has no row: "stored"
 * is what is left of the accepted events once the end is recorded, so the common case costs no
 * write at all. Both inserts are ON CONFLICT DO NOTHING, so the first record wins and a
 * redelivered batch writes nothing twice.
 *
 * The organization of a row is always the sender's, never one a rule moved the event to: a
 * task's end carries it, an event carries it as ingest_org (its case is left out of the row
 * when a rule moved it), an outcome of the batch names it (else it is that of the task's end in
 * the batch, else of an event of the task in the batch, else 0: unknown). A task whose end is
 * not recorded yet belongs to the organization of its first row that names one.
 *
 * Statements are prepared per call and only when there is something to write or read: a batch
 * without outcomes or ends (every event simply stored) pays one pass over its events. */
#include "store/store_sqlite_int.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sqlite3.h>

/* The JSON of one task's outcomes: a request holds at most SLUICE_MAX_EVENTS_PER_REQUEST
 * events, but a row may carry a 1 KiB reference and detail, so the answer is bounded. */
#define OUTCOMES_MAX_BYTES ((size_t)16 << 20)
/* Rows an expiry deletes per write transaction, so the write lock is never held long. */
#define EXPIRE_BUDGET 20000
/* Tasks without an end whose rows are looked for per expiry call (a full read, in a read
 * transaction, so it never blocks the workers). */
#define ORPHANS_PER_CALL 1000
#define TEXT_MAX         1024 /* bytes of a reference or detail kept (an error, a rule uuid) */

static const char sql_outcome_insert[] =
    "INSERT INTO ingest_outcomes (task, idx, org_id, outcome, reference, event_uuid, case_uuid,"
    " detail, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    " ON CONFLICT (task, idx) DO NOTHING";
static const char sql_done_insert[] =
    "INSERT INTO ingest_tasks (task, org_id, accepted, rejected, received_ms, done_ms)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (task) DO NOTHING";
static const char sql_task_get[] =
    "SELECT o.uuid, t.accepted, t.rejected, t.received_ms, t.done_ms FROM ingest_tasks t"
    " JOIN orgs o ON o.id = t.org_id WHERE t.task = ?1";
static const char sql_outcomes_get[] =
    "SELECT i.idx, i.outcome, i.reference, i.event_uuid, i.case_uuid, i.detail, o.uuid"
    " FROM ingest_outcomes i LEFT JOIN orgs o ON o.id = i.org_id WHERE i.task = ?1"
    " ORDER BY i.idx";
static const char sql_expired_next[] =
    "SELECT task FROM ingest_tasks WHERE done_ms < ?1 ORDER BY done_ms LIMIT 1";
static const char sql_outcomes_delete[] = "DELETE FROM ingest_outcomes WHERE task = ?1";
static const char sql_task_delete[] = "DELETE FROM ingest_tasks WHERE task = ?1";
static const char sql_orphans[] =
    "SELECT DISTINCT i.task FROM ingest_outcomes i WHERE i.created_ms < ?1"
    " AND NOT EXISTS (SELECT 1 FROM ingest_tasks t WHERE t.task = i.task) LIMIT ?2";
/* An end recorded since the orphan was found makes it a task like any other again. */
static const char sql_orphan_delete[] =
    "DELETE FROM ingest_outcomes WHERE task = ?1"
    " AND NOT EXISTS (SELECT 1 FROM ingest_tasks t WHERE t.task = ?1)";

static const char *const outcome_names[] = {
    [SL_OUT_STORED] = "stored",     [SL_OUT_DUPLICATE] = "duplicate",
    [SL_OUT_REJECTED] = "rejected", [SL_OUT_DISMISSED] = "dismissed",
    [SL_OUT_MERGED] = "merged",     [SL_OUT_MUTED] = "muted",
};

static struct sqlite_store *from_base(struct sl_store *st)
{
    return (struct sqlite_store *)st;
}

static int prepare(struct sqlite_store *s, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, out, NULL);
    return rc == SQLITE_OK ? 0 : sl_sqlite_fail(s, rc, "preparing an ingest task statement");
}

static int outcome_valid(int outcome)
{
    return outcome > SL_OUT_STORED && outcome <= SL_OUT_MUTED;
}

int sl_sqlite_batch_valid(const struct sl_store_batch *batch)
{
    if (!batch)
        return 1;
    if ((batch->noutcomes && !batch->outcomes) || (batch->ndone && !batch->done))
        return 0;
    for (size_t i = 0; i < batch->noutcomes; i++) {
        const struct sl_store_outcome *o = &batch->outcomes[i];
        if (!sl_uuid_valid(o->task) || (o->org && !sl_uuid_valid(o->org)) || o->index < 0 ||
            !outcome_valid(o->outcome))
            return 0;
    }
    for (size_t i = 0; i < batch->ndone; i++) {
        const struct sl_store_ingest_done *d = &batch->done[i];
        if (!sl_uuid_valid(d->task) || !sl_uuid_valid(d->org) || d->accepted < 0 ||
            d->rejected < 0 || d->received_ms < 0)
            return 0;
    }
    return 1;
}

/* ---- recording (inside put_events' transaction) ---- */

/* What one batch_record call works with. The statements are prepared on first use. */
struct rec {
    struct sqlite_store *s;
    const struct sl_store_event *evs;
    size_t n;
    const enum sl_put_outcome *put;
    const struct sl_store_batch *batch;
    sqlite3_stmt *ins;
    int64_t now_ms;
    /* The last task whose organization was looked for (consecutive rows share a task). */
    const char *org_task;
    int64_t org_id;
    /* Where the last search of the ends and events found its match: the worker lists outcomes
     * in the order of its records, so the next match is usually just after (a batch of many
     * one-event requests stays linear). */
    size_t end_at, ev_at;
};

/* The index of the first of n items from *at on (wrapping around) that match(ud, i), or n;
 * *at moves to just after it. */
static size_t find_from(size_t n, size_t *at, int (*match)(const void *ud, size_t i),
                        const void *ud)
{
    for (size_t k = 0; k < n; k++) {
        size_t i = (*at + k) % n;
        if (match(ud, i)) {
            *at = i + 1;
            return i;
        }
    }
    return n;
}

struct want {
    const struct rec *r;
    const char *task;
    int64_t index;
};

static int end_matches(const void *ud, size_t i)
{
    const struct want *w = ud;
    return strcasecmp(w->r->batch->done[i].task, w->task) == 0;
}

static int event_of_task(const void *ud, size_t i)
{
    const struct want *w = ud;
    const char *t = w->r->evs[i].ingest_task;
    return t && strcasecmp(t, w->task) == 0;
}

static int event_at(const void *ud, size_t i)
{
    const struct want *w = ud;
    const struct sl_store_event *ev = &w->r->evs[i];
    return ev->ingest_index == w->index && ev->ingest_task &&
           strcasecmp(ev->ingest_task, w->task) == 0;
}

/* The row id of org (0 when it is NULL); SL_ENOTFOUND for an unknown one. */
static int org_id_of(struct sqlite_store *s, const char *org, int64_t *out)
{
    *out = 0;
    return org ? sl_sqlite_org_resolve(s, org, out) : 0;
}

/* The organization an outcome of the batch (not an event of it) is filed under: that of the
 * task's end in the batch, else of an event of the task in the batch, else 0 (unknown). */
static int task_org(struct rec *r, const char *task, int64_t *out)
{
    const char *org = NULL;
    struct want w = {r, task, 0};
    size_t i;
    if (r->org_task && (r->org_task == task || strcasecmp(r->org_task, task) == 0)) {
        *out = r->org_id;
        return 0;
    }
    if (r->batch->ndone &&
        (i = find_from(r->batch->ndone, &r->end_at, end_matches, &w)) < r->batch->ndone)
        org = r->batch->done[i].org;
    if (!org && r->n && (i = find_from(r->n, &r->ev_at, event_of_task, &w)) < r->n)
        org = r->evs[i].ingest_org ? r->evs[i].ingest_org : r->evs[i].org;
    int rc = org_id_of(r->s, org, out);
    if (rc == 0) {
        r->org_task = task;
        r->org_id = *out;
    }
    return rc;
}

static void bind_text_max(sqlite3_stmt *q, int i, const char *v, size_t max)
{
    if (!v) {
        sqlite3_bind_null(q, i);
        return;
    }
    size_t len = strnlen(v, max + 1);
    if (len > max) { /* cut at a UTF-8 boundary */
        len = max;
        while (len > 0 && ((unsigned char)v[len] & 0xc0) == 0x80)
            len--;
    }
    sqlite3_bind_text(q, i, v, (int)len, SQLITE_STATIC);
}

/* Writes one outcome row (nothing if (task, index) has one). */
static int put_outcome(struct rec *r, const struct sl_store_outcome *o, int64_t org_id)
{
    char task[SL_UUID_LEN + 1];
    int rc;
    if (!r->ins && (rc = prepare(r->s, sql_outcome_insert, &r->ins)))
        return rc;
    sl_sqlite_uuid_lower(o->task, task);
    sqlite3_stmt *q = r->ins;
    sqlite3_bind_text(q, 1, task, SL_UUID_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, o->index);
    sqlite3_bind_int64(q, 3, org_id);
    sqlite3_bind_int(q, 4, o->outcome);
    bind_text_max(q, 5, o->reference, TEXT_MAX);
    bind_text_max(q, 6, o->event_uuid, SL_UUID_LEN);
    bind_text_max(q, 7, o->case_uuid, SL_UUID_LEN);
    bind_text_max(q, 8, o->detail, TEXT_MAX);
    sqlite3_bind_int64(q, 9, r->now_ms);
    return sl_sqlite_step_done(r->s, q, "recording an ingest outcome");
}

/* The outcome an event passed to put_events records: a duplicate, or the worker's outcome of a
 * newly stored event that is not plain "stored"; SL_OUT_STORED for nothing. */
static int event_outcome(const struct sl_store_event *ev, enum sl_put_outcome put)
{
    if (!ev->ingest_task || ev->ingest_index < 0 || !sl_uuid_valid(ev->ingest_task))
        return SL_OUT_STORED;
    if (put == SL_PUT_DUPLICATE)
        return SL_OUT_DUPLICATE;
    if (put == SL_PUT_STORED && outcome_valid(ev->outcome) && ev->outcome != SL_OUT_DUPLICATE)
        return ev->outcome;
    return SL_OUT_STORED;
}

static int record_events(struct rec *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct sl_store_event *ev = &r->evs[i];
        int outcome = event_outcome(ev, r->put[i]);
        int64_t org_id = 0;
        if (outcome == SL_OUT_STORED)
            continue;
        struct sl_store_outcome o = {
            .task = ev->ingest_task,
            .index = ev->ingest_index,
            .outcome = outcome,
            .reference = ev->reference,
            .event_uuid = ev->uuid,
            .case_uuid = outcome == SL_OUT_MERGED && ev->effects ? ev->effects->case_uuid : NULL,
        };
        /* The request is its sender's: a rule may have moved the event to another organization,
         * whose case the sender is not told of. */
        const char *owner = ev->ingest_org ? ev->ingest_org : ev->org;
        if (ev->ingest_org && strcasecmp(ev->ingest_org, ev->org) != 0)
            o.case_uuid = NULL;
        int rc = sl_sqlite_org_resolve(r->s, owner, &org_id);
        if (rc == 0)
            rc = put_outcome(r, &o, org_id);
        if (rc)
            return rc;
    }
    return 0;
}

/* An outcome of the batch that names an event also passed to put_events (a muted event is
 * stored, as Dismissed) counts only if that event was newly stored: a redelivered one had its
 * outcome recorded the first time, and a duplicate has recorded its own. Rejected events are
 * never among the stored ones, so they are not looked for. */
static int names_unstored_event(struct rec *r, const struct sl_store_outcome *o)
{
    struct want w = {r, o->task, o->index};
    size_t i;
    if (o->outcome == SL_OUT_REJECTED || r->n == 0 ||
        (i = find_from(r->n, &r->ev_at, event_at, &w)) == r->n)
        return 0;
    return r->put[i] != SL_PUT_STORED;
}

static int record_batch(struct rec *r)
{
    const struct sl_store_batch *b = r->batch;
    sqlite3_stmt *q = NULL;
    int rc = 0;
    for (size_t i = 0; i < b->noutcomes && rc == 0; i++) {
        const struct sl_store_outcome *o = &b->outcomes[i];
        int64_t org_id = 0;
        if (names_unstored_event(r, o))
            continue;
        rc = o->org ? org_id_of(r->s, o->org, &org_id) : task_org(r, o->task, &org_id);
        if (rc == 0)
            rc = put_outcome(r, o, org_id);
    }
    for (size_t i = 0; i < b->ndone && rc == 0; i++) {
        const struct sl_store_ingest_done *d = &b->done[i];
        char task[SL_UUID_LEN + 1];
        int64_t org_id = 0;
        rc = sl_sqlite_org_resolve(r->s, d->org, &org_id);
        if (rc == SL_ENOTFOUND)
            SL_WARN("store: ingest task %s: no organization %s", d->task, d->org);
        if (rc == 0 && !q)
            rc = prepare(r->s, sql_done_insert, &q);
        if (rc)
            break;
        sl_sqlite_uuid_lower(d->task, task);
        sqlite3_bind_text(q, 1, task, SL_UUID_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, org_id);
        sqlite3_bind_int64(q, 3, d->accepted);
        sqlite3_bind_int64(q, 4, d->rejected);
        sqlite3_bind_int64(q, 5, d->received_ms);
        sqlite3_bind_int64(q, 6, r->now_ms);
        rc = sl_sqlite_step_done(r->s, q, "recording the end of an ingest task");
    }
    sqlite3_finalize(q);
    return rc;
}

int sl_sqlite_batch_record(struct sqlite_store *s, const struct sl_store_event *evs, size_t n,
                           const enum sl_put_outcome *out_outcomes,
                           const struct sl_store_batch *batch)
{
    struct rec r = {.s = s, .evs = evs, .n = n, .put = out_outcomes, .batch = batch};
    int rc = 0;
    if (n && (!evs || !out_outcomes))
        return 0;
    r.now_ms = sl_now_ms();
    rc = record_events(&r);
    if (rc == 0 && batch && (batch->noutcomes || batch->ndone))
        rc = record_batch(&r);
    sqlite3_finalize(r.ins);
    return rc;
}

/* ---- reading ---- */

static int put_row_json(struct sl_sqlite_buf *b, sqlite3_stmt *q, int first)
{
    char head[64];
    int64_t outcome = sqlite3_column_int64(q, 1);
    const char *name =
        outcome > SL_OUT_STORED && outcome <= SL_OUT_MUTED ? outcome_names[outcome] : "unknown";
    int hn = snprintf(head, sizeof(head), "%s{\"index\":%lld,\"outcome\":\"%s\"", first ? "" : ",",
                      (long long)sqlite3_column_int64(q, 0), name);
    int rc = sl_sqlite_buf_put(b, head, (size_t)hn);
    static const char *const keys[] = {
        ",\"reference\":", ",\"uuid\":", ",\"case\":", ",\"detail\":"};
    for (int k = 0; k < 4 && rc == 0; k++) {
        const char *v = (const char *)sqlite3_column_text(q, 2 + k);
        rc = sl_sqlite_buf_put(b, keys[k], strlen(keys[k]));
        if (rc == 0)
            rc = sl_sqlite_buf_json_str(b, v, v ? (size_t)sqlite3_column_bytes(q, 2 + k) : 0);
    }
    return rc ? rc : sl_sqlite_buf_put(b, "}", 1);
}

/* The outcomes of task as a JSON array into b; *out_org gets the organization of the first row
 * that names one ("" if none), *out_rows the number of rows. */
static int read_outcomes(struct sqlite_store *s, const char *task, struct sl_sqlite_buf *b,
                         char out_org[SL_UUID_LEN + 1], int64_t *out_rows)
{
    sqlite3_stmt *q = NULL;
    int rc = prepare(s, sql_outcomes_get, &q), src;
    *out_rows = 0;
    out_org[0] = 0;
    if (rc == 0)
        rc = sl_sqlite_buf_put(b, "[", 1);
    if (rc)
        goto out;
    sqlite3_bind_text(q, 1, task, SL_UUID_LEN, SQLITE_STATIC);
    while ((src = sqlite3_step(q)) == SQLITE_ROW) {
        if (!out_org[0] && sqlite3_column_type(q, 6) == SQLITE_TEXT)
            sl_sqlite_copy_col(out_org, SL_UUID_LEN + 1, q, 6);
        if ((rc = put_row_json(b, q, *out_rows == 0)))
            goto out;
        (*out_rows)++;
    }
    if (src != SQLITE_DONE) {
        rc = sl_sqlite_fail(s, src, "reading ingest outcomes");
        goto out;
    }
    rc = sl_sqlite_buf_put(b, "]", 1);
out:
    sqlite3_finalize(q);
    return rc;
}

/* The recorded end of task: 1 (with its figures), 0 when none is recorded, or an error. */
static int read_end(struct sqlite_store *s, const char *task, char out_org[SL_UUID_LEN + 1],
                    int64_t fig[4])
{
    sqlite3_stmt *q = NULL;
    int rc = prepare(s, sql_task_get, &q);
    if (rc)
        return rc;
    sqlite3_bind_text(q, 1, task, SL_UUID_LEN, SQLITE_STATIC);
    int src = sqlite3_step(q);
    if (src == SQLITE_ROW) {
        sl_sqlite_copy_col(out_org, SL_UUID_LEN + 1, q, 0);
        for (int i = 0; i < 4; i++)
            fig[i] = sqlite3_column_int64(q, 1 + i);
        rc = 1;
    } else if (src != SQLITE_DONE) {
        rc = sl_sqlite_fail(s, src, "reading an ingest task");
    }
    sqlite3_finalize(q);
    return rc;
}

int sl_sqlite_ingest_task_get(struct sl_store *st, const char *org, const char *task, int *out_done,
                              int64_t *out_accepted, int64_t *out_rejected,
                              int64_t *out_received_ms, int64_t *out_done_ms,
                              char out_org[SL_UUID_LEN + 1], char **out_outcomes)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = OUTCOMES_MAX_BYTES};
    char id[SL_UUID_LEN + 1], want[SL_UUID_LEN + 1], row_org[SL_UUID_LEN + 1];
    int64_t fig[4] = {0, 0, 0, 0}, rows = 0;
    *out_outcomes = NULL;
    *out_done = 0;
    out_org[0] = 0;
    if (!task || !sl_uuid_valid(task) || (org && !sl_uuid_valid(org)))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(task, id);
    if (org)
        sl_sqlite_uuid_lower(org, want);
    /* One read transaction: the end and the outcomes are one snapshot. */
    int rc = sl_sqlite_begin(s, 0);
    if (rc)
        return rc;
    int done = read_end(s, id, out_org, fig);
    rc = done < 0 ? done : read_outcomes(s, id, &b, row_org, &rows);
    if (sl_sqlite_commit(s) != 0)
        sl_sqlite_rollback(s); /* a read: nothing to lose, but the handle must leave it */
    if (rc)
        goto out;
    if (done == 0 && rows == 0) {
        rc = SL_ENOTFOUND;
        goto out;
    }
    if (done == 0)
        memcpy(out_org, row_org, SL_UUID_LEN + 1);
    if (org && strcmp(out_org, want) != 0) {
        rc = SL_ENOTFOUND;
        goto out;
    }
    *out_done = done;
    *out_accepted = fig[0];
    *out_rejected = fig[1];
    *out_received_ms = fig[2];
    *out_done_ms = fig[3];
    *out_outcomes = b.p;
    b.p = NULL;
out:
    if (rc)
        out_org[0] = 0;
    free(b.p);
    return rc;
}

/* ---- expiry ---- */

/* Deletes ended tasks recorded before before_ms, with their outcomes, in write transactions
 * of about EXPIRE_BUDGET rows. */
static int expire_ended(struct sqlite_store *s, int64_t before_ms, size_t *deleted)
{
    sqlite3_stmt *next = NULL, *del_out = NULL, *del_task = NULL;
    int rc = prepare(s, sql_expired_next, &next), more = 1;
    if (rc == 0)
        rc = prepare(s, sql_outcomes_delete, &del_out);
    if (rc == 0)
        rc = prepare(s, sql_task_delete, &del_task);
    while (rc == 0 && more) {
        int64_t rows = 0;
        if ((rc = sl_sqlite_begin(s, 1)))
            break;
        while (rc == 0 && rows < EXPIRE_BUDGET) {
            char task[SL_UUID_LEN + 1];
            sqlite3_bind_int64(next, 1, before_ms);
            int src = sqlite3_step(next);
            if (src == SQLITE_ROW)
                sl_sqlite_copy_col(task, sizeof(task), next, 0);
            sl_sqlite_done(next);
            if (src == SQLITE_DONE) {
                more = 0;
                break;
            }
            if (src != SQLITE_ROW) {
                rc = sl_sqlite_fail(s, src, "finding expired ingest tasks");
                break;
            }
            sqlite3_bind_text(del_out, 1, task, -1, SQLITE_STATIC);
            rc = sl_sqlite_step_done(s, del_out, "deleting expired ingest outcomes");
            rows += sqlite3_changes(s->db) + 1;
            sqlite3_bind_text(del_task, 1, task, -1, SQLITE_STATIC);
            if (rc == 0)
                rc = sl_sqlite_step_done(s, del_task, "deleting an expired ingest task");
            if (rc == 0)
                (*deleted)++;
        }
        if (rc == 0)
            rc = sl_sqlite_commit(s);
        if (rc)
            sl_sqlite_rollback(s);
    }
    sqlite3_finalize(next);
    sqlite3_finalize(del_out);
    sqlite3_finalize(del_task);
    return rc;
}

/* Deletes the outcomes of tasks whose end never came (a request cut off before its end was
 * processed) once they are older than before_ms: found in a read, deleted in one write. */
static int expire_orphans(struct sqlite_store *s, int64_t before_ms, size_t *deleted)
{
    char(*tasks)[SL_UUID_LEN + 1] = malloc(ORPHANS_PER_CALL * sizeof(*tasks));
    sqlite3_stmt *q = NULL;
    size_t n = 0;
    int rc = tasks ? prepare(s, sql_orphans, &q) : SL_ENOMEM, src = SQLITE_DONE;
    if (rc)
        goto out;
    sqlite3_bind_int64(q, 1, before_ms);
    sqlite3_bind_int(q, 2, ORPHANS_PER_CALL);
    while (n < ORPHANS_PER_CALL && (src = sqlite3_step(q)) == SQLITE_ROW)
        sl_sqlite_copy_col(tasks[n++], SL_UUID_LEN + 1, q, 0);
    if (n < ORPHANS_PER_CALL && src != SQLITE_DONE)
        rc = sl_sqlite_fail(s, src, "finding ingest outcomes without a task");
    sqlite3_finalize(q);
    q = NULL;
    if (rc || n == 0 || (rc = prepare(s, sql_orphan_delete, &q)) || (rc = sl_sqlite_begin(s, 1)))
        goto out;
    for (size_t i = 0; i < n && rc == 0; i++) {
        sqlite3_bind_text(q, 1, tasks[i], -1, SQLITE_STATIC);
        rc = sl_sqlite_step_done(s, q, "deleting ingest outcomes without a task");
        if (rc == 0 && sqlite3_changes(s->db) > 0)
            (*deleted)++;
    }
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc)
        sl_sqlite_rollback(s);
out:
    sqlite3_finalize(q);
    free(tasks);
    return rc;
}

int sl_sqlite_ingest_task_expire(struct sl_store *st, int64_t before_ms, size_t *out_deleted)
{
    struct sqlite_store *s = from_base(st);
    size_t deleted = 0;
    int rc = expire_ended(s, before_ms, &deleted);
    if (rc == 0)
        rc = expire_orphans(s, before_ms, &deleted);
    if (out_deleted)
        *out_deleted = deleted;
    return rc;
}
