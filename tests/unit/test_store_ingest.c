/* Unit tests of the store's ingest tasks on SQLite: what put_events records for a bulk request
 * (its events' outcomes and its end), that a redelivered batch records nothing twice, reading a
 * task back (done or pending, scoped by organization) and expiring old ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "core/error.h"
#include "core/util.h"
#include "store/store.h"

#include "store_fixture.h"

static int setup(void **state)
{
    return fx_setup(state, 2);
}

static int64_t dir_int(const char *dir, const char *sql)
{
    char path[4096];
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    assert_true((size_t)snprintf(path, sizeof(path), "%s/sluice.db", dir) < sizeof(path));
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* ---- events of a request ---- */

struct tev {
    char uuid[SL_UUID_LEN + 1];
    char ref[32];
    char doc[128];
    struct sl_store_event row;
};

/* Event idx of request task, sent by org with reference ref, read from stream offset origin. */
static void tev_make(struct tev *t, const char *org, const char *task, int64_t idx, const char *ref,
                     uint64_t origin, int outcome)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->ref, sizeof(t->ref), "%s", ref);
    const char *parts[] = {org, ref};
    size_t lens[] = {strlen(org), strlen(ref)};
    assert_int_equal(sl_uuid_from_parts(parts, lens, 2, t->uuid), 0);
    int n = snprintf(t->doc, sizeof(t->doc), "{\"reference\":\"%s\"}", ref);
    t->row = (struct sl_store_event){
        .uuid = t->uuid,
        .org = org,
        .reference = t->ref,
        .title = "title",
        .signature = "sig",
        .status = "New",
        .severity = 1,
        .original_date_ms = 1,
        .created_ms = 1,
        .origin = origin,
        .doc = t->doc,
        .doc_len = (size_t)n,
        .ingest_task = task,
        .ingest_index = idx,
        .outcome = outcome,
    };
}

/* What a task reads back. */
struct got {
    int rc, done;
    int64_t accepted, rejected, received_ms, done_ms;
    char org[SL_UUID_LEN + 1];
    cJSON *outcomes;
};

static struct got get(struct sl_store *st, const char *org, const char *task)
{
    struct got g;
    char *json = NULL;
    memset(&g, 0, sizeof(g));
    g.rc = sl_store_ingest_task_get(st, org, task, &g.done, &g.accepted, &g.rejected,
                                    &g.received_ms, &g.done_ms, g.org, &json);
    if (g.rc == 0) {
        assert_non_null(json);
        g.outcomes = cJSON_Parse(json);
        assert_true(cJSON_IsArray(g.outcomes));
    } else {
        assert_null(json);
    }
    free(json);
    return g;
}

/* The task's answer code (and whether it is done, into *done), releasing what it read. */
static int get_rc(struct sl_store *st, const char *org, const char *task, int *done)
{
    struct got g = get(st, org, task);
    if (done)
        *done = g.done;
    cJSON_Delete(g.outcomes);
    return g.rc;
}

static const cJSON *row_at(const struct got *g, int i)
{
    return cJSON_GetArrayItem(g->outcomes, i);
}

static void check_row(const cJSON *r, int64_t index, const char *outcome, const char *ref,
                      const char *uuid, const char *detail)
{
    assert_non_null(r);
    assert_int_equal((int64_t)cJSON_GetObjectItem(r, "index")->valuedouble, index);
    assert_string_equal(cJSON_GetObjectItem(r, "outcome")->valuestring, outcome);
    const cJSON *v = cJSON_GetObjectItem(r, "reference");
    if (ref)
        assert_string_equal(v->valuestring, ref);
    else
        assert_true(cJSON_IsNull(v));
    v = cJSON_GetObjectItem(r, "uuid");
    if (uuid)
        assert_string_equal(v->valuestring, uuid);
    else
        assert_true(cJSON_IsNull(v));
    v = cJSON_GetObjectItem(r, "detail");
    if (detail)
        assert_string_equal(v->valuestring, detail);
    else
        assert_true(cJSON_IsNull(v));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(r, "case")));
}

/* One request of acme, task, as a worker writes it: events 0..4 in the stream (1 repeats 0's
 * reference, 2 dismissed, 3 merged, 4 muted), 5 refused by the worker, 6 rejected by the api.
 * The events go in one batch with the outcomes and the end. */
struct request {
    struct tev ev[5];
    struct sl_store_event rows[5];
    struct sl_store_outcome outs[3];
    struct sl_store_ingest_done done;
    struct sl_store_batch batch;
};

static void request_make(struct request *r, const char *org, const char *task, uint64_t origin0)
{
    tev_make(&r->ev[0], org, task, 0, "r-0", origin0 + 0, SL_OUT_STORED);
    tev_make(&r->ev[1], org, task, 1, "r-0", origin0 + 1, SL_OUT_STORED);
    tev_make(&r->ev[2], org, task, 2, "r-2", origin0 + 2, SL_OUT_DISMISSED);
    tev_make(&r->ev[3], org, task, 3, "r-3", origin0 + 3, SL_OUT_MERGED);
    tev_make(&r->ev[4], org, task, 4, "r-4", origin0 + 4, SL_OUT_STORED);
    for (int i = 0; i < 5; i++)
        r->rows[i] = r->ev[i].row;
    r->outs[0] = (struct sl_store_outcome){.task = task,
                                           .index = 4,
                                           .outcome = SL_OUT_MUTED,
                                           .reference = "r-4",
                                           .event_uuid = r->ev[4].uuid,
                                           .detail = "rule-x"};
    r->outs[1] = (struct sl_store_outcome){
        .task = task, .index = 5, .outcome = SL_OUT_REJECTED, .reference = "r-5", .detail = "bad"};
    r->outs[2] = (struct sl_store_outcome){
        .task = task, .index = 6, .outcome = SL_OUT_REJECTED, .detail = "title: required"};
    r->done = (struct sl_store_ingest_done){task, org, 6, 1, 1234};
    r->batch = (struct sl_store_batch){r->outs, 3, &r->done, 1};
}

static void check_request(const struct got *g, const struct request *r, const char *org)
{
    assert_int_equal(g->rc, 0);
    assert_int_equal(g->done, 1);
    assert_int_equal(g->accepted, 6);
    assert_int_equal(g->rejected, 1);
    assert_int_equal(g->received_ms, 1234);
    assert_true(g->done_ms > 0);
    assert_string_equal(g->org, org);
    /* 0 is stored: no row */
    assert_int_equal(cJSON_GetArraySize(g->outcomes), 6);
    check_row(row_at(g, 0), 1, "duplicate", "r-0", r->ev[1].uuid, NULL);
    check_row(row_at(g, 1), 2, "dismissed", "r-2", r->ev[2].uuid, NULL);
    check_row(row_at(g, 2), 3, "merged", "r-3", r->ev[3].uuid, NULL);
    check_row(row_at(g, 3), 4, "muted", "r-4", r->ev[4].uuid, "rule-x");
    check_row(row_at(g, 4), 5, "rejected", "r-5", NULL, "bad");
    check_row(row_at(g, 5), 6, "rejected", NULL, NULL, "title: required");
}

static void test_record_and_read(void **state)
{
    struct fx *f = *state;
    struct request r;
    enum sl_put_outcome out[5];
    char task[SL_UUID_LEN + 1];
    sl_uuid4(task);
    struct got g = get(f->st, NULL, task);
    assert_int_equal(g.rc, SL_ENOTFOUND);
    request_make(&r, f->org.uuid, task, 100);
    assert_int_equal(sl_store_put_batch(f->st, r.rows, 5, &r.batch, out), 0);
    assert_int_equal(out[0], SL_PUT_STORED);
    assert_int_equal(out[1], SL_PUT_DUPLICATE);
    g = get(f->st, NULL, task);
    check_request(&g, &r, f->org.uuid);
    cJSON_Delete(g.outcomes);
    /* scoped: its organization (any case) or none given; another one's is not found */
    g = get(f->st, f->org.uuid, task);
    assert_int_equal(g.rc, 0);
    cJSON_Delete(g.outcomes);
    g = get(f->st, f->org2.uuid, task);
    assert_int_equal(g.rc, SL_ENOTFOUND);
    char upper[SL_UUID_LEN + 1];
    for (int i = 0; i <= SL_UUID_LEN; i++)
        upper[i] = (char)(task[i] >= 'a' && task[i] <= 'f' ? task[i] - 32 : task[i]);
    g = get(f->st, NULL, upper);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.done, 1);
    cJSON_Delete(g.outcomes);
    assert_int_equal(get_rc(f->st, NULL, "not-a-uuid", NULL), SL_ENOTFOUND);
}

/* The batch again, as after a crash between the store commit and the stream commit: every
 * event is a redelivery, and nothing is recorded twice or changed. */
static void test_redelivery_records_nothing_twice(void **state)
{
    struct fx *f = *state;
    struct request r;
    enum sl_put_outcome out[5];
    char task[SL_UUID_LEN + 1];
    sl_uuid4(task);
    request_make(&r, f->org.uuid, task, 100);
    assert_int_equal(sl_store_put_batch(f->st, r.rows, 5, &r.batch, out), 0);
    struct got first = get(f->st, NULL, task);
    int64_t rows = dir_int(f->dir, "SELECT count(*) FROM ingest_outcomes");
    /* On the second delivery the worker's view differs (rules changed in between): the store
     * keeps what the first delivery recorded. */
    r.done.accepted = 99;
    r.outs[1].detail = "another reason";
    r.rows[2].outcome = SL_OUT_MERGED;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(sl_store_put_batch(f->st, r.rows, 5, &r.batch, out), 0);
        assert_int_equal(out[0], SL_PUT_REDELIVERED);
        assert_int_equal(out[1], SL_PUT_DUPLICATE);
        assert_int_equal(out[2], SL_PUT_REDELIVERED);
        struct got g = get(f->st, NULL, task);
        check_request(&g, &r, f->org.uuid); /* accepted 6, detail "bad": the first record */
        assert_int_equal(g.done_ms, first.done_ms);
        cJSON_Delete(g.outcomes);
    }
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM ingest_outcomes"), rows);
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM ingest_tasks"), 1);
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM events"), 4);
    cJSON_Delete(first.outcomes);
}

/* A mute seen only on the redelivery (another worker set it in between) does not relabel an
 * event the first delivery stored; a muted duplicate is a duplicate. */
static void test_muted_only_when_newly_stored(void **state)
{
    struct fx *f = *state;
    struct tev a, b;
    enum sl_put_outcome out[2];
    char task[SL_UUID_LEN + 1];
    sl_uuid4(task);
    tev_make(&a, f->org.uuid, task, 0, "m-0", 500, SL_OUT_STORED);
    struct sl_store_event rows[2] = {a.row};
    assert_int_equal(sl_store_put_batch(f->st, rows, 1, NULL, out), 0);
    assert_int_equal(out[0], SL_PUT_STORED);
    assert_int_equal(get_rc(f->st, NULL, task, NULL), SL_ENOTFOUND); /* stored: nothing recorded */
    /* redelivered, now muted; and a second event repeating its reference, muted too */
    tev_make(&b, f->org.uuid, task, 1, "m-0", 501, SL_OUT_STORED);
    rows[1] = b.row;
    struct sl_store_outcome muted[2] = {
        {.task = task, .index = 0, .outcome = SL_OUT_MUTED, .detail = "rule"},
        {.task = task, .index = 1, .outcome = SL_OUT_MUTED, .detail = "rule"},
    };
    struct sl_store_ingest_done done = {task, f->org.uuid, 2, 0, 7};
    struct sl_store_batch batch = {muted, 2, &done, 1};
    assert_int_equal(sl_store_put_batch(f->st, rows, 2, &batch, out), 0);
    assert_int_equal(out[0], SL_PUT_REDELIVERED);
    assert_int_equal(out[1], SL_PUT_DUPLICATE);
    struct got g = get(f->st, NULL, task);
    assert_int_equal(g.rc, 0);
    assert_int_equal(cJSON_GetArraySize(g.outcomes), 1);
    check_row(row_at(&g, 0), 1, "duplicate", "m-0", a.uuid, NULL);
    cJSON_Delete(g.outcomes);
}

/* Before its end is recorded a task is pending, with the outcomes so far, and belongs to the
 * organization of its rows; a batch of only outcomes and ends needs no events. */
static void test_pending_then_done(void **state)
{
    struct fx *f = *state;
    char task[SL_UUID_LEN + 1];
    sl_uuid4(task);
    struct sl_store_outcome rej = {
        .task = task, .index = 3, .outcome = SL_OUT_REJECTED, .detail = "x"};
    struct sl_store_batch only = {&rej, 1, NULL, 0};
    /* the outcome names no event of the batch: its organization is not known yet */
    assert_int_equal(sl_store_put_batch(f->st, NULL, 0, &only, NULL), 0);
    struct got g = get(f->st, NULL, task);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.done, 0);
    assert_string_equal(g.org, "");
    cJSON_Delete(g.outcomes);
    assert_int_equal(get_rc(f->st, f->org2.uuid, task, NULL), SL_ENOTFOUND);
    /* an event of the task in a later batch names it */
    struct tev a;
    enum sl_put_outcome out[1];
    tev_make(&a, f->org2.uuid, task, 0, "p-0", 900, SL_OUT_DISMISSED);
    assert_int_equal(sl_store_put_batch(f->st, &a.row, 1, NULL, out), 0);
    g = get(f->st, f->org2.uuid, task);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.done, 0);
    assert_string_equal(g.org, f->org2.uuid);
    assert_int_equal(cJSON_GetArraySize(g.outcomes), 2);
    check_row(row_at(&g, 0), 0, "dismissed", "p-0", a.uuid, NULL);
    check_row(row_at(&g, 1), 3, "rejected", NULL, NULL, "x");
    cJSON_Delete(g.outcomes);
    /* the end: done, the end's organization */
    struct sl_store_ingest_done done = {task, f->org2.uuid, 3, 1, 55};
    struct sl_store_batch end = {NULL, 0, &done, 1};
    assert_int_equal(sl_store_put_batch(f->st, NULL, 0, &end, NULL), 0);
    g = get(f->st, f->org2.uuid, task);
    assert_int_equal(g.rc, 0);
    assert_int_equal(g.done, 1);
    assert_int_equal(g.accepted, 3);
    assert_int_equal(g.rejected, 1);
    cJSON_Delete(g.outcomes);
}

static void test_refused(void **state)
{
    struct fx *f = *state;
    char task[SL_UUID_LEN + 1];
    sl_uuid4(task);
    struct sl_store_outcome o = {.task = "nope", .index = 0, .outcome = SL_OUT_REJECTED};
    struct sl_store_batch b = {&o, 1, NULL, 0};
    assert_int_equal(sl_store_put_batch(f->st, NULL, 0, &b, NULL), SL_EINVAL);
    o.task = task;
    o.outcome = SL_OUT_STORED; /* stored is never recorded per event */
    assert_int_equal(sl_store_put_batch(f->st, NULL, 0, &b, NULL), SL_EINVAL);
    o.outcome = SL_OUT_MUTED;
    o.index = -1;
    assert_int_equal(sl_store_put_batch(f->st, NULL, 0, &b, NULL), SL_EINVAL);
    struct sl_store_ingest_done d = {task, "not-an-org", 1, 0, 0};
    struct sl_store_batch e = {NULL, 0, &d, 1};
    assert_int_equal(sl_store_put_batch(f->st, NULL, 0, &e, NULL), SL_EINVAL);
    /* a well-formed organization that does not exist: nothing of the batch is written */
    char other[SL_UUID_LEN + 1];
    sl_uuid4(other);
    o.index = 0;
    d.org = other;
    struct sl_store_batch both = {&o, 1, &d, 1};
    assert_int_equal(sl_store_put_batch(f->st, NULL, 0, &both, NULL), SL_ENOTFOUND);
    assert_int_equal(get_rc(f->st, NULL, task, NULL), SL_ENOTFOUND);
    /* nothing at all to write is fine */
    struct sl_store_batch none = {NULL, 0, NULL, 0};
    assert_int_equal(sl_store_put_batch(f->st, NULL, 0, &none, NULL), 0);
}

static void test_expire(void **state)
{
    struct fx *f = *state;
    struct request r;
    enum sl_put_outcome out[5];
    char task[SL_UUID_LEN + 1], orphan[SL_UUID_LEN + 1];
    size_t deleted = 99;
    sl_uuid4(task);
    sl_uuid4(orphan);
    request_make(&r, f->org.uuid, task, 100);
    assert_int_equal(sl_store_put_batch(f->st, r.rows, 5, &r.batch, out), 0);
    struct sl_store_outcome o = {.task = orphan, .index = 0, .outcome = SL_OUT_REJECTED};
    struct sl_store_batch b = {&o, 1, NULL, 0};
    assert_int_equal(sl_store_put_batch(f->st, NULL, 0, &b, NULL), 0);
    /* nothing is old enough */
    assert_int_equal(sl_store_ingest_task_expire(f->st, sl_now_ms() - 60000, &deleted), 0);
    assert_int_equal(deleted, 0);
    int done = 0;
    assert_int_equal(get_rc(f->st, NULL, task, &done), 0);
    assert_int_equal(done, 1);
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM ingest_outcomes"), 7);
    /* everything is */
    assert_int_equal(sl_store_ingest_task_expire(f->st, sl_now_ms() + 1000, &deleted), 0);
    assert_int_equal(deleted, 2);
    assert_int_equal(get_rc(f->st, NULL, task, NULL), SL_ENOTFOUND);
    assert_int_equal(get_rc(f->st, NULL, orphan, NULL), SL_ENOTFOUND);
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM ingest_outcomes"), 0);
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM ingest_tasks"), 0);
    /* the events stay */
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM events"), 4);
}

/* More rows than one expiry transaction deletes: every one goes, over several transactions. */
static void test_expire_many(void **state)
{
    struct fx *f = *state;
    enum { TASKS = 30, ROWS = 1000 };
    static struct sl_store_outcome o[ROWS];
    char tasks[TASKS][SL_UUID_LEN + 1];
    size_t deleted = 0;
    for (int t = 0; t < TASKS; t++) {
        sl_uuid4(tasks[t]);
        for (int i = 0; i < ROWS; i++)
            o[i] = (struct sl_store_outcome){
                .task = tasks[t], .index = i, .outcome = SL_OUT_REJECTED, .detail = "x"};
        struct sl_store_ingest_done d = {tasks[t], f->org.uuid, 0, ROWS, 1};
        struct sl_store_batch b = {o, ROWS, &d, 1};
        assert_int_equal(sl_store_put_batch(f->st, NULL, 0, &b, NULL), 0);
    }
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM ingest_outcomes"), TASKS * ROWS);
    assert_int_equal(sl_store_ingest_task_expire(f->st, sl_now_ms() + 1000, &deleted), 0);
    assert_int_equal(deleted, TASKS);
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM ingest_outcomes"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_record_and_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redelivery_records_nothing_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_muted_only_when_newly_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_then_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_many, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
