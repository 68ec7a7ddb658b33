/* Unit tests of what an analyst does with stored events, on SQLite: the grouped Event Queue,
 * stats buckets, the actions on a selection (dismiss, acknowledge, unacknowledge, reopen, add to
 * a case, delete) in resumable calls, related events, the tombstone a delete leaves, export,
 * the uuids of a selection, and the params and cursor of the tasks that run actions. */
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
    return fx_setup(state, 3);
}

/* ---- raw access ---- */

/* The integer sql (with ?1 = arg, if any) yields. */
static int64_t dir_int(const char *dir, const char *sql, const char *arg)
{
    sqlite3 *db = raw_open(dir);
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    if (arg)
        sqlite3_bind_text(q, 1, arg, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

/* The status column of the event with uuid ("(null)" when NULL). */
static void raw_status(const char *dir, const char *uuid, char out[32])
{
    sqlite3 *db = raw_open(dir);
    sqlite3_stmt *q = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT status FROM events WHERE uuid = ?1", -1, &q, NULL),
        SQLITE_OK);
    sqlite3_bind_text(q, 1, uuid, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    const char *v = (const char *)sqlite3_column_text(q, 0);
    snprintf(out, 32, "%s", v ? v : "(null)");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* ---- events ---- */

struct spec {
    const char *ref;
    const char *sig;    /* default "sig-<ref>" */
    const char *status; /* default New */
    const char *title;  /* default "title <ref>" */
    const char *tags;   /* a JSON array, or NULL */
    const char *obs;    /* a JSON array of observables, or NULL */
    const char *source;
    const char *rules; /* a JSON array of rule uuids, or NULL */
    int severity;
    int64_t date; /* original_date_ms */
};

struct tev {
    char uuid[SL_UUID_LEN + 1];
    char org[SL_UUID_LEN + 1];
    char ref[48];
    char sig[48];
    char status[16];
    char title[64];
    char *doc;
    struct sl_store_event row;
};

#define CREATED_MS 1000000 /* every event's created_ms */

static void tev_make(struct tev *t, const char *org, const struct spec *sp, uint64_t origin)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->org, sizeof(t->org), "%s", org);
    snprintf(t->ref, sizeof(t->ref), "%s", sp->ref);
    if (sp->sig)
        snprintf(t->sig, sizeof(t->sig), "%s", sp->sig);
    else
        snprintf(t->sig, sizeof(t->sig), "sig-%s", sp->ref);
    snprintf(t->status, sizeof(t->status), "%s", sp->status ? sp->status : "New");
    if (sp->title)
        snprintf(t->title, sizeof(t->title), "%s", sp->title);
    else
        snprintf(t->title, sizeof(t->title), "title %s", sp->ref);
    const char *parts[] = {org, sp->ref};
    size_t lens[] = {strlen(org), strlen(sp->ref)};
    assert_int_equal(sl_uuid_from_parts(parts, lens, 2, t->uuid), 0);
    int closed = !strcmp(t->status, "Dismissed") || !strcmp(t->status, "Closed");
    char src[80] = "";
    if (sp->source)
        snprintf(src, sizeof(src), ",\"source\":\"%s\"", sp->source);
    size_t cap = 1024 + (sp->obs ? strlen(sp->obs) : 0) + (sp->tags ? strlen(sp->tags) : 0);
    t->doc = malloc(cap);
    assert_non_null(t->doc);
    int n = snprintf(t->doc, cap,
                     "{\"uuid\":\"%s\",\"organization\":\"%s\",\"reference\":\"%s\","
                     "\"title\":\"%s\",\"signature\":\"%s\",\"severity\":%d,"
                     "\"status\":{\"name\":\"%s\",\"closed\":%s},\"tags\":%s,"
                     "\"observables\":%s%s,\"event_rules\":%s,"
                     "\"created_at\":\"1970-01-01T00:16:40.000Z\"}",
                     t->uuid, org, sp->ref, t->title, t->sig, sp->severity, t->status,
                     closed ? "true" : "false", sp->tags ? sp->tags : "[]",
                     sp->obs ? sp->obs : "[]", src, sp->rules ? sp->rules : "[]");
    assert_true(n > 0 && (size_t)n < cap);
    t->row = (struct sl_store_event){
        .uuid = t->uuid,
        .org = t->org,
        .reference = t->ref,
        .title = t->title,
        .signature = t->sig,
        .status = t->status,
        .severity = sp->severity,
        .original_date_ms = sp->date,
        .created_ms = CREATED_MS,
        .origin = origin,
        .doc = t->doc,
        .doc_len = (size_t)n,
    };
}

static void put_all(struct sl_store *st, struct tev *ts, size_t n)
{
    enum sl_put_outcome out[500];
    struct sl_store_event rows[500];
    for (size_t i = 0; i < n; i += 500) {
        size_t m = n - i < 500 ? n - i : 500;
        for (size_t j = 0; j < m; j++)
            rows[j] = ts[i + j].row;
        assert_int_equal(sl_store_put_events(st, rows, m, out), 0);
        for (size_t j = 0; j < m; j++)
            assert_int_equal(out[j], SL_PUT_STORED);
    }
}

static void free_all(struct tev *ts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ts[i].doc);
}

/* n events of org with references "<prefix>-<i>", signature sig (NULL: each its own), status,
 * date i, stored. */
static struct tev *make_many(struct sl_store *st, const char *org, const char *prefix, size_t n,
                             const char *sig, const char *status, uint64_t origin)
{
    struct tev *ts = calloc(n, sizeof(*ts));
    assert_non_null(ts);
    for (size_t i = 0; i < n; i++) {
        char ref[48];
        snprintf(ref, sizeof(ref), "%s-%zu", prefix, i);
        struct spec sp = {
            .ref = ref, .sig = sig, .status = status, .severity = 1, .date = (int64_t)i};
        tev_make(&ts[i], org, &sp, origin + i);
    }
    put_all(st, ts, n);
    return ts;
}

static cJSON *doc_of(struct sl_store *st, const char *org, const char *uuid)
{
    char *doc = NULL;
    assert_int_equal(sl_store_event_get(st, org, uuid, &doc), 0);
    cJSON *j = cJSON_Parse(doc);
    assert_non_null(j);
    free(doc);
    return j;
}

static const char *jstr(const cJSON *o, const char *path1, const char *path2)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, path1);
    if (path2)
        v = cJSON_GetObjectItemCaseSensitive(v, path2);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int has(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(o, key) != NULL;
}

/* The status name in the document and whether it says closed. */
static void expect_doc_status(struct sl_store *st, const char *org, const char *uuid,
                              const char *name, int closed)
{
    cJSON *d = doc_of(st, org, uuid);
    assert_string_equal(jstr(d, "status", "name"), name);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(d, "status"), "closed");
    assert_true(cJSON_IsBool(c));
    assert_int_equal(cJSON_IsTrue(c), closed);
    cJSON_Delete(d);
}

/* ---- running actions ---- */

struct run {
    int64_t seen, changed, calls, cursor;
};

/* Runs an action over the whole selection in calls of limit events. */
static struct run act_all(struct sl_store *st, const struct sl_event_selection *sel,
                          const struct sl_event_action_args *a, size_t limit)
{
    struct run r = {0};
    int more = 1;
    while (more) {
        int64_t seen = -1, changed = -1;
        assert_int_equal(sl_store_event_act(st, sel, a, &r.cursor, limit, &seen, &changed, &more),
                         0);
        assert_true(seen >= 0 && seen <= (int64_t)limit);
        assert_true(changed >= 0 && changed <= seen);
        r.seen += seen;
        r.changed += changed;
        r.calls++;
        assert_true(r.calls < 100000);
        if (!more)
            assert_int_equal(r.cursor, 0);
    }
    return r;
}

static struct sl_event_action_args args(enum sl_event_action action)
{
    return (struct sl_event_action_args){.action = action,
                                         .by = "key-1",
                                         .reason = "False positive",
                                         .reason_uuid = "11111111-2222-4333-8444-555555555555",
                                         .comment = "noise",
                                         .now_ms = CREATED_MS + 60500};
}

/* ---- grouped ---- */

static cJSON *grouped(struct sl_store *st, const struct sl_event_filter *f, int64_t *total)
{
    char *json = NULL;
    assert_int_equal(sl_store_event_grouped(st, f, &json, total), 0);
    cJSON *j = cJSON_Parse(json);
    assert_non_null(j);
    assert_true(cJSON_IsArray(j));
    free(json);
    return j;
}

/* "sig:occurrences:reference-of-the-card's-event,..." */
static void cards_of(const cJSON *j, char *out, size_t cap)
{
    const cJSON *c;
    size_t o = 0;
    out[0] = 0;
    cJSON_ArrayForEach(c, j)
    {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, "occurrences");
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(c, "event");
        o += (size_t)snprintf(out + o, cap - o, "%s%s:%d:%s", o ? "," : "",
                              jstr(c, "signature", NULL), n ? n->valueint : -1,
                              jstr(ev, "reference", NULL));
        assert_true(o < cap);
    }
}

static void expect_cards(struct sl_store *st, const struct sl_event_filter *f, const char *want,
                         int64_t want_total)
{
    char got[1024];
    int64_t total = -1;
    cJSON *j = grouped(st, f, &total);
    cards_of(j, got, sizeof(got));
    cJSON_Delete(j);
    assert_string_equal(got, want);
    assert_int_equal(total, want_total);
}

static void test_grouped(void **state)
{
    struct fx *f = *state;
    struct spec sp[] = {
        {.ref = "a1", .sig = "A", .date = 100, .tags = "[\"x\"]"},
        {.ref = "a2", .sig = "A", .date = 300},
        {.ref = "a3", .sig = "A", .date = 200, .tags = "[\"x\"]"},
        {.ref = "b1", .sig = "B", .date = 400, .status = "Dismissed"},
        {.ref = "b2", .sig = "B", .date = 50, .tags = "[\"x\"]"},
        {.ref = "c1", .sig = "C", .date = 10},
        /* Two newest of D at the same date: the later stored one is the card's. */
        {.ref = "d1", .sig = "D", .date = 5},
        {.ref = "d2", .sig = "D", .date = 5},
    };
    enum { N = sizeof(sp) / sizeof(sp[0]) };
    struct tev ts[N + 1];
    for (size_t i = 0; i < N; i++)
        tev_make(&ts[i], f->org.uuid, &sp[i], i);
    struct spec other = {.ref = "a1", .sig = "A", .date = 1000};
    tev_make(&ts[N], f->org2.uuid, &other, N);
    put_all(f->st, ts, N + 1);

    struct sl_event_filter flt = {.org = f->org.uuid, .page = 1, .page_size = 10};
    expect_cards(f->st, &flt, "B:2:b1,A:3:a2,C:1:c1,D:2:d2", 4);
    flt.page_size = 2;
    expect_cards(f->st, &flt, "B:2:b1,A:3:a2", 4);
    flt.page = 2;
    expect_cards(f->st, &flt, "C:1:c1,D:2:d2", 4);
    flt.page = 3;
    expect_cards(f->st, &flt, "", 4);
    /* Oldest first (by each signature's newest event); the card is still the newest. */
    flt.page = 1, flt.page_size = 10, flt.sort_asc = 1;
    expect_cards(f->st, &flt, "D:2:d2,C:1:c1,A:3:a2,B:2:b1", 4);
    /* A filter counts and picks among the matching events only. */
    flt.sort_asc = 0, flt.tag = "x";
    expect_cards(f->st, &flt, "A:2:a3,B:1:b2", 2);
    flt.tag = NULL, flt.status = "new";
    expect_cards(f->st, &flt, "A:3:a2,B:1:b2,C:1:c1,D:2:d2", 4);
    flt.status = NULL, flt.end_ms = 150;
    expect_cards(f->st, &flt, "A:1:a1,B:1:b2,C:1:c1,D:2:d2", 4);
    flt.end_ms = 0;
    /* Another organization's events are not counted, an unknown one has none. */
    struct sl_event_filter o2 = {.org = f->org2.uuid, .page = 1, .page_size = 10};
    expect_cards(f->st, &o2, "A:1:a1", 1);
    struct sl_event_filter o3 = {.org = f->org3.uuid, .page = 1, .page_size = 10};
    expect_cards(f->st, &o3, "", 0);

    /* Limits: those of event_list. */
    char *json = (char *)"x";
    int64_t total = 0;
    flt.page_size = 1001;
    assert_int_equal(sl_store_event_grouped(f->st, &flt, &json, &total), SL_EINVAL);
    assert_null(json);
    flt.page_size = 10, flt.page = 0;
    assert_int_equal(sl_store_event_grouped(f->st, &flt, &json, &total), SL_EINVAL);
    flt.page = 1;
    sl_store_sqlite_test_limits(f->st, 200, 0);
    assert_int_equal(sl_store_event_grouped(f->st, &flt, &json, &total), SL_EFULL);
    assert_null(json);
    sl_store_sqlite_test_limits(f->st, 0, 0);
    free_all(ts, N + 1);
}

/* ---- stats ---- */

static void expect_bucket(const cJSON *stats, const char *name, const char *want)
{
    char got[512];
    size_t o = 0;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(stats, name), *v;
    assert_true(cJSON_IsObject(b));
    got[0] = 0;
    cJSON_ArrayForEach(v, b)
    {
        assert_true(cJSON_IsNumber(v));
        o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%s=%d", o ? "," : "", v->string,
                              v->valueint);
    }
    assert_string_equal(got, want);
}

static cJSON *stats(struct sl_store *st, const struct sl_event_filter *f, size_t top)
{
    char *json = NULL;
    assert_int_equal(sl_store_event_stats(st, f, top, &json), 0);
    cJSON *j = cJSON_Parse(json);
    assert_non_null(j);
    free(json);
    return j;
}

static void test_stats(void **state)
{
    struct fx *f = *state;
    static const char r1[] = "aaaaaaaa-0000-4000-8000-000000000001";
    static const char r2[] = "aaaaaaaa-0000-4000-8000-000000000002";
    char rules1[64], rules12[128];
    snprintf(rules1, sizeof(rules1), "[\"%s\"]", r1);
    snprintf(rules12, sizeof(rules12), "[\"%s\",\"%s\"]", r1, r2);
    struct spec sp[] = {
        {.ref = "e1",
         .title = "Login",
         .sig = "S1",
         .severity = 2,
         .source = "edr",
         .tags = "[\"auth\",\"vpn\"]",
         .rules = rules1,
         .obs = "[{\"value\":\"10.0.0.1\",\"data_type\":\"ip\"},"
                "{\"value\":\"10.0.0.2\",\"data_type\":\"ip\"}]"},
        {.ref = "e2",
         .title = "Login",
         .sig = "S1",
         .severity = 2,
         .source = "edr",
         .tags = "[\"auth\"]",
         .rules = rules12,
         .obs = "[{\"value\":\"10.0.0.1\",\"data_type\":\"ip\"},"
                "{\"value\":\"bob\",\"data_type\":\"user\"}]"},
        {.ref = "e3",
         .title = "Malware",
         .sig = "S2",
         .severity = 4,
         .source = "av",
         .status = "Dismissed",
         .obs = "[{\"value\":\"10.0.0.1\",\"data_type\":\"ip\"}]"},
        {.ref = "e4", .title = "Login", .sig = "S1", .severity = 1},
    };
    enum { N = sizeof(sp) / sizeof(sp[0]) };
    struct tev ts[N + 1];
    for (size_t i = 0; i < N; i++) {
        sp[i].date = (int64_t)i + 1;
        tev_make(&ts[i], f->org.uuid, &sp[i], i);
    }
    struct spec other = {.ref = "o1", .title = "Login", .sig = "S1", .tags = "[\"auth\"]"};
    tev_make(&ts[N], f->org2.uuid, &other, N);
    put_all(f->st, ts, N + 1);

    struct sl_event_filter flt = {.org = f->org.uuid};
    cJSON *j = stats(f->st, &flt, 10);
    /* Every bucket, in this order, most frequent first (ties by value). */
    static const char *const names[] = {"title",     "observable", "source",
                                        "tag",       "status",     "severity",
                                        "data_type", "event_rule", "signature"};
    const cJSON *b = j->child;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++, b = b->next) {
        assert_non_null(b);
        assert_string_equal(b->string, names[i]);
    }
    assert_null(b);
    expect_bucket(j, "title", "Login=3,Malware=1");
    expect_bucket(j, "observable", "10.0.0.1=3,10.0.0.2=1,bob=1");
    expect_bucket(j, "source", "edr=2,av=1");
    expect_bucket(j, "tag", "auth=2,vpn=1");
    expect_bucket(j, "status", "New=3,Dismissed=1");
    expect_bucket(j, "severity", "2=2,1=1,4=1");
    /* Events with an observable of the type (e1's two ips count once). */
    expect_bucket(j, "data_type", "ip=3,user=1");
    char want[256];
    snprintf(want, sizeof(want), "%s=2,%s=1", r1, r2);
    expect_bucket(j, "event_rule", want);
    expect_bucket(j, "signature", "S1=3,S2=1");
    cJSON_Delete(j);

    /* top cuts every bucket; the filter applies. */
    j = stats(f->st, &flt, 1);
    expect_bucket(j, "title", "Login=3");
    expect_bucket(j, "severity", "2=2");
    cJSON_Delete(j);
    flt.status = "New", flt.tag = "auth";
    j = stats(f->st, &flt, 10);
    expect_bucket(j, "title", "Login=2");
    expect_bucket(j, "observable", "10.0.0.1=2,10.0.0.2=1,bob=1");
    expect_bucket(j, "source", "edr=2");
    cJSON_Delete(j);
    /* No match: empty buckets. */
    flt.status = "Closed";
    j = stats(f->st, &flt, 10);
    expect_bucket(j, "title", "");
    expect_bucket(j, "signature", "");
    cJSON_Delete(j);

    char *json = (char *)"x";
    flt.status = NULL;
    assert_int_equal(sl_store_event_stats(f->st, &flt, 0, &json), SL_EINVAL);
    assert_null(json);
    assert_int_equal(sl_store_event_stats(f->st, &flt, 1001, &json), SL_EINVAL);
    flt.org = NULL;
    assert_int_equal(sl_store_event_stats(f->st, &flt, 10, &json), SL_EINVAL);
    free_all(ts, N + 1);
}

/* ---- actions ---- */

static void test_dismiss(void **state)
{
    struct fx *f = *state;
    struct spec sp[] = {
        {.ref = "n"},
        {.ref = "ack", .status = "Acknowledged"},
        {.ref = "dis", .status = "Dismissed"},
        {.ref = "closed", .status = "Closed"},
        {.ref = "incase"},
    };
    enum { N = sizeof(sp) / sizeof(sp[0]) };
    struct tev ts[N];
    const char *uuids[N];
    for (size_t i = 0; i < N; i++) {
        tev_make(&ts[i], f->org.uuid, &sp[i], i);
        uuids[i] = ts[i].uuid;
    }
    put_all(f->st, ts, N);
    /* "incase" joins a case first. */
    char case_uuid[SL_UUID_LEN + 1];
    sl_uuid4(case_uuid);
    struct sl_case_fields cf = {.title = "c", .severity = -1, .tlp = -1};
    assert_int_equal(sl_store_case_create(f->st, f->org.uuid, case_uuid, &cf), 0);
    struct sl_event_selection one = {.org = f->org.uuid, .uuids = &uuids[4], .nuuids = 1};
    struct sl_event_action_args a = args(SL_ACT_ADD_TO_CASE);
    a.case_uuid = case_uuid;
    struct run r = act_all(f->st, &one, &a, 10);
    assert_int_equal(r.changed, 1);

    struct sl_event_selection sel = {.org = f->org.uuid, .uuids = uuids, .nuuids = N};
    a = args(SL_ACT_DISMISS);
    r = act_all(f->st, &sel, &a, 100);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.seen, N);
    assert_int_equal(r.changed, 2); /* New and Acknowledged; not closed ones, not in a case */
    char st[32];
    raw_status(f->dir, ts[0].uuid, st);
    assert_string_equal(st, "Dismissed");
    raw_status(f->dir, ts[1].uuid, st);
    assert_string_equal(st, "Dismissed");
    raw_status(f->dir, ts[3].uuid, st);
    assert_string_equal(st, "Closed");
    raw_status(f->dir, ts[4].uuid, st);
    assert_string_equal(st, "Open");
    expect_doc_status(f->st, f->org.uuid, ts[0].uuid, "Dismissed", 1);
    cJSON *d = doc_of(f->st, f->org.uuid, ts[0].uuid);
    assert_string_equal(jstr(d, "dismiss_reason", NULL), "False positive");
    assert_string_equal(jstr(d, "dismiss_reason_uuid", NULL), a.reason_uuid);
    assert_string_equal(jstr(d, "dismiss_comment", NULL), "noise");
    assert_string_equal(jstr(d, "dismissed_by", NULL), "key-1");
    char iso[25];
    sl_time_format(a.now_ms, iso);
    assert_string_equal(jstr(d, "dismissed_at", NULL), iso);
    assert_string_equal(jstr(d, "updated_at", NULL), iso);
    const cJSON *ttd = cJSON_GetObjectItemCaseSensitive(d, "time_to_dismiss");
    assert_true(cJSON_IsNumber(ttd));
    assert_true(ttd->valuedouble > 60.49 && ttd->valuedouble < 60.51);
    assert_string_equal(jstr(d, "reference", NULL), "n"); /* the rest is kept */
    cJSON_Delete(d);
    /* The one already dismissed is as it was. */
    d = doc_of(f->st, f->org.uuid, ts[2].uuid);
    assert_false(has(d, "dismissed_at"));
    cJSON_Delete(d);

    /* Again: nothing changes (a null comment would not be written either). */
    a.comment = NULL;
    r = act_all(f->st, &sel, &a, 100);
    assert_int_equal(r.seen, N);
    assert_int_equal(r.changed, 0);
    d = doc_of(f->st, f->org.uuid, ts[0].uuid);
    assert_string_equal(jstr(d, "dismiss_comment", NULL), "noise");
    cJSON_Delete(d);
    free_all(ts, N);
}

static void test_ack_unack_reopen(void **state)
{
    struct fx *f = *state;
    struct spec sp[] = {{.ref = "n"}, {.ref = "dis", .status = "Dismissed"}};
    struct tev ts[2];
    const char *uuids[2];
    for (size_t i = 0; i < 2; i++) {
        tev_make(&ts[i], f->org.uuid, &sp[i], i);
        uuids[i] = ts[i].uuid;
    }
    put_all(f->st, ts, 2);
    struct sl_event_selection sel = {.org = f->org.uuid, .uuids = uuids, .nuuids = 2};
    char st[32];

    struct sl_event_action_args a = args(SL_ACT_ACK);
    struct run r = act_all(f->st, &sel, &a, 5);
    assert_int_equal(r.seen, 2);
    assert_int_equal(r.changed, 1);
    raw_status(f->dir, ts[0].uuid, st);
    assert_string_equal(st, "Acknowledged");
    expect_doc_status(f->st, f->org.uuid, ts[0].uuid, "Acknowledged", 0);
    cJSON *d = doc_of(f->st, f->org.uuid, ts[0].uuid);
    assert_string_equal(jstr(d, "acknowledged_by", NULL), "key-1");
    assert_non_null(jstr(d, "acknowledged_at", NULL));
    cJSON_Delete(d);
    expect_doc_status(f->st, f->org.uuid, ts[1].uuid, "Dismissed", 1);
    r = act_all(f->st, &sel, &a, 5);
    assert_int_equal(r.changed, 0);

    a = args(SL_ACT_UNACK);
    r = act_all(f->st, &sel, &a, 5);
    assert_int_equal(r.changed, 1);
    raw_status(f->dir, ts[0].uuid, st);
    assert_string_equal(st, "New");
    expect_doc_status(f->st, f->org.uuid, ts[0].uuid, "New", 0);
    d = doc_of(f->st, f->org.uuid, ts[0].uuid);
    assert_false(has(d, "acknowledged_at"));
    assert_false(has(d, "acknowledged_by"));
    cJSON_Delete(d);
    r = act_all(f->st, &sel, &a, 5);
    assert_int_equal(r.changed, 0);

    /* Dismiss then reopen: the dismissal's fields go. */
    a = args(SL_ACT_DISMISS);
    assert_int_equal(act_all(f->st, &sel, &a, 5).changed, 1);
    a = args(SL_ACT_REOPEN);
    r = act_all(f->st, &sel, &a, 5);
    assert_int_equal(r.changed, 2);
    for (int i = 0; i < 2; i++) {
        raw_status(f->dir, ts[i].uuid, st);
        assert_string_equal(st, "New");
        expect_doc_status(f->st, f->org.uuid, ts[i].uuid, "New", 0);
        d = doc_of(f->st, f->org.uuid, ts[i].uuid);
        assert_false(has(d, "dismissed_at"));
        assert_false(has(d, "dismiss_reason"));
        assert_false(has(d, "dismiss_reason_uuid"));
        assert_false(has(d, "dismiss_comment"));
        assert_false(has(d, "dismissed_by"));
        assert_false(has(d, "time_to_dismiss"));
        assert_non_null(jstr(d, "updated_at", NULL));
        cJSON_Delete(d);
    }
    r = act_all(f->st, &sel, &a, 5);
    assert_int_equal(r.changed, 0);
    free_all(ts, 2);
}

static void test_add_to_case(void **state)
{
    struct fx *f = *state;
    struct spec sp[] = {{.ref = "n"}, {.ref = "dis", .status = "Dismissed"}, {.ref = "x"}};
    struct tev ts[3];
    const char *uuids[3];
    for (size_t i = 0; i < 3; i++) {
        tev_make(&ts[i], f->org.uuid, &sp[i], i);
        uuids[i] = ts[i].uuid;
    }
    put_all(f->st, ts, 3);
    char c1[SL_UUID_LEN + 1], c2[SL_UUID_LEN + 1], cother[SL_UUID_LEN + 1],
        missing[SL_UUID_LEN + 1];
    sl_uuid4(c1), sl_uuid4(c2), sl_uuid4(cother), sl_uuid4(missing);
    struct sl_case_fields cf = {.title = "c", .severity = -1, .tlp = -1};
    assert_int_equal(sl_store_case_create(f->st, f->org.uuid, c1, &cf), 0);
    assert_int_equal(sl_store_case_create(f->st, f->org.uuid, c2, &cf), 0);
    assert_int_equal(sl_store_case_create(f->st, f->org2.uuid, cother, &cf), 0);
    assert_int_equal(sl_store_case_close(f->st, f->org.uuid, c2, NULL, NULL, "key-1", NULL), 0);

    struct sl_event_selection sel = {.org = f->org.uuid, .uuids = uuids, .nuuids = 2};
    struct sl_event_action_args a = args(SL_ACT_ADD_TO_CASE);
    int64_t cursor = 0, seen = -1, changed = -1;
    int more = -1;
    /* Another organization's case, or none: SL_ENOTFOUND, nothing done. */
    a.case_uuid = cother;
    assert_int_equal(sl_store_event_act(f->st, &sel, &a, &cursor, 10, &seen, &changed, &more),
                     SL_ENOTFOUND);
    a.case_uuid = missing;
    assert_int_equal(sl_store_event_act(f->st, &sel, &a, &cursor, 10, &seen, &changed, &more),
                     SL_ENOTFOUND);
    assert_int_equal(cursor, 0);
    a.case_uuid = c1;
    struct run r = act_all(f->st, &sel, &a, 10);
    assert_int_equal(r.changed, 2);
    char st[32];
    for (int i = 0; i < 2; i++) {
        raw_status(f->dir, ts[i].uuid, st);
        assert_string_equal(st, "Open");
        expect_doc_status(f->st, f->org.uuid, ts[i].uuid, "Open", 0);
        cJSON *d = doc_of(f->st, f->org.uuid, ts[i].uuid);
        assert_string_equal(jstr(d, "case", NULL), c1);
        assert_false(has(d, "dismissed_at"));
        cJSON_Delete(d);
    }
    assert_int_equal(dir_int(f->dir,
                             "SELECT count(*) FROM events e JOIN cases c ON c.id = e.case_id"
                             " WHERE c.uuid = ?1",
                             c1),
                     2);
    r = act_all(f->st, &sel, &a, 10);
    assert_int_equal(r.changed, 0);
    /* Dismissing an event in a case does nothing. */
    struct sl_event_action_args dis = args(SL_ACT_DISMISS);
    assert_int_equal(act_all(f->st, &sel, &dis, 10).changed, 0);

    /* A closed case: its events are Closed; an event moves from c1. */
    a.case_uuid = c2;
    sel.uuids = &uuids[1];
    r = act_all(f->st, &sel, &a, 10);
    assert_int_equal(r.changed, 2);
    raw_status(f->dir, ts[2].uuid, st);
    assert_string_equal(st, "Closed");
    expect_doc_status(f->st, f->org.uuid, ts[1].uuid, "Closed", 1);
    cJSON *d = doc_of(f->st, f->org.uuid, ts[1].uuid);
    assert_string_equal(jstr(d, "case", NULL), c2);
    cJSON_Delete(d);
    assert_int_equal(dir_int(f->dir,
                             "SELECT count(*) FROM events e JOIN cases c ON c.id = e.case_id"
                             " WHERE c.uuid = ?1",
                             c1),
                     1);
    free_all(ts, 3);
}

/* ---- delete and the tombstone ---- */

static void test_delete(void **state)
{
    struct fx *f = *state;
    struct tev ts[4];
    /* a and b share the first 64 bits of their uuid: b sits one slot past a in the probe chain
     * (see store_sqlite.c). */
    struct spec sa = {.ref = "a"}, sb = {.ref = "b"}, sc = {.ref = "c"};
    tev_make(&ts[0], f->org.uuid, &sa, 1);
    tev_make(&ts[1], f->org.uuid, &sb, 2);
    snprintf(ts[0].uuid, sizeof(ts[0].uuid), "0a0a0a0a-0a0a-8a0a-8000-00000000000a");
    snprintf(ts[1].uuid, sizeof(ts[1].uuid), "0a0a0a0a-0a0a-8a0a-8000-00000000000b");
    tev_make(&ts[2], f->org.uuid, &sc, 3);
    tev_make(&ts[3], f->org2.uuid, &sc, 4);
    put_all(f->st, ts, 4);
    int64_t all = -1, acme = -1, globex = -1;
    assert_int_equal(sl_store_event_count(f->st, NULL, &all), 0);
    assert_int_equal(all, 4);

    const char *uuids[] = {ts[0].uuid, ts[2].uuid};
    struct sl_event_selection sel = {.org = f->org.uuid, .uuids = uuids, .nuuids = 2};
    struct sl_event_action_args a = args(SL_ACT_DELETE);
    struct run r = act_all(f->st, &sel, &a, 10);
    assert_int_equal(r.seen, 2);
    assert_int_equal(r.changed, 2);

    /* Gone for every reader... */
    char *doc = (char *)"x";
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, ts[0].uuid, &doc), SL_ENOTFOUND);
    assert_null(doc);
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, ts[2].uuid, &doc), SL_ENOTFOUND);
    assert_int_equal(sl_store_event_count(f->st, NULL, &all), 0);
    assert_int_equal(sl_store_event_count(f->st, f->org.uuid, &acme), 0);
    assert_int_equal(sl_store_event_count(f->st, f->org2.uuid, &globex), 0);
    assert_int_equal(all, 2);
    assert_int_equal(acme, 1);
    assert_int_equal(globex, 1);
    char *json = NULL;
    int64_t total = -1;
    struct sl_event_filter flt = {.org = f->org.uuid, .page = 1, .page_size = 10, .title = "t"};
    assert_int_equal(sl_store_event_list(f->st, &flt, &json, &total), 0);
    assert_int_equal(total, 1);
    free(json);
    char missing[SL_UUID_LEN + 1];
    assert_int_equal(sl_store_event_select_check(f->st, &sel, missing), SL_ENOTFOUND);
    assert_string_equal(missing, ts[0].uuid);
    /* ... though its row stays, as a tombstone ... */
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM events", NULL), 4);
    assert_int_equal(dir_int(f->dir,
                             "SELECT count(*) FROM events WHERE org_id = 0"
                             " AND doc = '{}' AND title IS NULL AND signature IS NULL"
                             " AND status IS NULL AND case_id IS NULL",
                             NULL),
                     2);

    /* ... but its key stays: b (one probe further) is found, and a resend is a duplicate. */
    doc = NULL;
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, ts[1].uuid, &doc), 0);
    free(doc);
    enum sl_put_outcome out[2];
    struct sl_store_event rows[2] = {ts[0].row, ts[2].row};
    rows[0].origin = 100, rows[1].origin = 101;
    assert_int_equal(sl_store_put_events(f->st, rows, 2, out), 0);
    assert_int_equal(out[0], SL_PUT_DUPLICATE);
    assert_int_equal(out[1], SL_PUT_DUPLICATE);
    assert_int_equal(sl_store_event_count(f->st, NULL, &all), 0);
    assert_int_equal(all, 2);
    /* A rewrite (a retro task) does not bring it back. */
    size_t updated = 9;
    assert_int_equal(sl_store_event_update(f->st, &ts[2].row, 1, &updated), 0);
    assert_int_equal(updated, 0);
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, ts[2].uuid, &doc), SL_ENOTFOUND);

    /* Deleting again: nothing to look at. */
    r = act_all(f->st, &sel, &a, 10);
    assert_int_equal(r.seen, 0);
    assert_int_equal(r.changed, 0);
    assert_int_equal(sl_store_event_count(f->st, f->org.uuid, &acme), 0);
    assert_int_equal(acme, 1);
    free_all(ts, 4);
}

struct refs {
    char ref[64][48];
    size_t n;
};

static int refs_cb(void *ud, int64_t seq, const char *doc, size_t len)
{
    struct refs *r = ud;
    (void)seq, (void)len;
    cJSON *j = cJSON_Parse(doc);
    assert_non_null(j);
    assert_true(r->n < 64);
    snprintf(r->ref[r->n++], 48, "%s", jstr(j, "reference", NULL));
    cJSON_Delete(j);
    return 0;
}

/* The scan of every organization passes over tombstones. */
static void test_delete_scan(void **state)
{
    struct fx *f = *state;
    struct tev *ts = make_many(f->st, f->org.uuid, "a", 5, NULL, NULL, 0);
    const char *uuids[] = {ts[1].uuid, ts[3].uuid};
    struct sl_event_selection sel = {.org = f->org.uuid, .uuids = uuids, .nuuids = 2};
    struct sl_event_action_args a = args(SL_ACT_DELETE);
    assert_int_equal(act_all(f->st, &sel, &a, 10).changed, 2);
    struct refs r = {.n = 0};
    int64_t last = 0;
    assert_int_equal(sl_store_event_scan(f->st, NULL, NULL, 0, 100, refs_cb, &r, &last), 0);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.ref[0], "a-0");
    assert_string_equal(r.ref[1], "a-2");
    assert_string_equal(r.ref[2], "a-4");
    r.n = 0;
    assert_int_equal(sl_store_event_scan(f->st, f->org.uuid, NULL, 0, 100, refs_cb, &r, &last), 0);
    assert_int_equal(r.n, 3);
    free_all(ts, 5);
    free(ts);
}

/* ---- selections over several calls ---- */

static void test_cursor_filter(void **state)
{
    struct fx *f = *state;
    enum { NA = 2600, NB = 300 };
    struct tev *ta = make_many(f->st, f->org.uuid, "a", NA, NULL, NULL, 0);
    struct tev *tb = make_many(f->st, f->org2.uuid, "b", NB, NULL, NULL, NA);
    /* Every acme event from date 100 on: 2,500, in calls of 1,000, 1,000, 500. */
    struct sl_event_filter flt = {.org = f->org.uuid, .start_ms = 100};
    struct sl_event_selection sel = {.org = f->org.uuid, .filter = &flt};
    struct sl_event_action_args a = args(SL_ACT_ACK);
    int64_t cursor = 0, seen = 0, changed = 0;
    int more = 0;
    int64_t want[] = {1000, 1000, 500};
    for (int call = 0; call < 3; call++) {
        assert_int_equal(sl_store_event_act(f->st, &sel, &a, &cursor, 1000, &seen, &changed, &more),
                         0);
        assert_int_equal(seen, want[call]);
        assert_int_equal(changed, want[call]);
        assert_int_equal(more, call < 2);
        assert_int_equal(cursor == 0, call == 2);
        if (call < 2)
            assert_int_equal(cursor >> 56, 3); /* in the filter's phase */
    }
    assert_int_equal(
        dir_int(f->dir, "SELECT count(*) FROM events WHERE status = 'Acknowledged'", NULL), 2500);
    /* A cursor taken mid-run resumes where it was: acknowledge 7 at a time from the start. */
    a = args(SL_ACT_UNACK);
    struct run r = act_all(f->st, &sel, &a, 7);
    assert_int_equal(r.seen, 2500);
    assert_int_equal(r.changed, 2500);
    assert_int_equal(r.calls, 358); /* 2,500 / 7, rounded up */
    /* A cursor of another selection is refused. */
    struct sl_event_selection ex = {
        .org = f->org.uuid, .uuids = (const char *[]){ta[0].uuid}, .nuuids = 1};
    cursor = (int64_t)3 << 56;
    assert_int_equal(sl_store_event_act(f->st, &ex, &a, &cursor, 10, &seen, &changed, &more),
                     SL_EINVAL);
    cursor = -1;
    assert_int_equal(sl_store_event_act(f->st, &sel, &a, &cursor, 10, &seen, &changed, &more),
                     SL_EINVAL);
    cursor = 0;
    assert_int_equal(sl_store_event_act(f->st, &sel, &a, &cursor, 0, &seen, &changed, &more),
                     SL_EINVAL);
    assert_int_equal(sl_store_event_act(f->st, &sel, &a, &cursor, 5001, &seen, &changed, &more),
                     SL_EINVAL);
    /* A filter of another organization is refused. */
    struct sl_event_filter f2 = {.org = f->org2.uuid};
    struct sl_event_selection bad = {.org = f->org.uuid, .filter = &f2};
    assert_int_equal(sl_store_event_act(f->st, &bad, &a, &cursor, 10, &seen, &changed, &more),
                     SL_EINVAL);
    free_all(ta, NA);
    free_all(tb, NB);
    free(ta);
    free(tb);
}

/* Explicit uuids, then related events, then filter matches, over calls of 3 events: every one
 * looked at once. */
static void test_cursor_phases(void **state)
{
    struct fx *f = *state;
    struct tev ts[40];
    const char *uuids[4];
    for (int i = 0; i < 40; i++) {
        char ref[16];
        snprintf(ref, sizeof(ref), "e%d", i);
        /* 0..9 sig A (explicit: 0, 1), 10..19 sig B (filter: tag x on 10, 11), 20..29 sig C,
         * 30..39 sig A but Dismissed. */
        struct spec sp = {.ref = ref,
                          .sig = i < 10   ? "A"
                                 : i < 20 ? "B"
                                 : i < 30 ? "C"
                                          : "A",
                          .status = i >= 30 ? "Dismissed" : "New",
                          .tags = i == 10 || i == 11 || i == 25 ? "[\"x\"]" : NULL,
                          .date = i};
        tev_make(&ts[i], f->org.uuid, &sp, (uint64_t)i);
    }
    put_all(f->st, ts, 40);
    uuids[0] = ts[0].uuid, uuids[1] = ts[1].uuid, uuids[2] = ts[0].uuid; /* a repeat */
    uuids[3] = ts[25].uuid;                                              /* also a filter match */
    struct sl_event_filter flt = {.org = f->org.uuid, .tag = "x"};
    struct sl_event_selection sel = {
        .org = f->org.uuid, .uuids = uuids, .nuuids = 4, .filter = &flt, .include_related = 1};
    struct sl_event_action_args a = args(SL_ACT_ACK);
    int64_t cursor = 0, seen = 0, changed = 0;
    int more = 0;
    /* The first call takes the explicit ones (3 of the 4 uuids are distinct events). */
    assert_int_equal(sl_store_event_act(f->st, &sel, &a, &cursor, 4, &seen, &changed, &more), 0);
    assert_int_equal(seen, 3);
    assert_int_equal(more, 1);
    assert_int_equal(cursor >> 56, 2); /* related next */
    /* Resume from that cursor in calls of 3. */
    int64_t total_seen = seen, total_changed = changed;
    while (more) {
        assert_int_equal(sl_store_event_act(f->st, &sel, &a, &cursor, 3, &seen, &changed, &more),
                         0);
        assert_true(seen <= 3);
        total_seen += seen, total_changed += changed;
    }
    assert_int_equal(total_changed, total_seen);
    /* Explicit 0, 1, 25; related: A's other New ones (2..9), B's (12..19), C's (20..24,
     * 26..29); filter: 10, 11. The Dismissed A's are not related. */
    assert_int_equal(total_seen, 3 + 8 + 8 + 9 + 2);
    for (int i = 0; i < 40; i++) {
        char st[32];
        raw_status(f->dir, ts[i].uuid, st);
        assert_string_equal(st, i < 30 ? "Acknowledged" : "Dismissed");
    }
    free_all(ts, 40);
}

/* Related events stay selected across calls while the action takes filter matches out of the
 * filter (status=New, acknowledged) or deletes them. */
static void test_related_stable(void **state)
{
    struct fx *f = *state;
    struct tev ts[30];
    for (int i = 0; i < 30; i++) {
        char ref[16];
        snprintf(ref, sizeof(ref), "e%d", i);
        /* 0 is the only filter match of sig A (tag x), stored first; 1..19 are A's related
         * (New, or Acknowledged for every fourth); 20..29 sig Z, unrelated. */
        struct spec sp = {.ref = ref,
                          .sig = i < 20 ? "A" : "Z",
                          .status = i > 0 && i < 20 && i % 4 == 0 ? "Acknowledged" : "New",
                          .tags = i == 0 ? "[\"x\"]" : NULL,
                          .date = i};
        tev_make(&ts[i], f->org.uuid, &sp, (uint64_t)i);
    }
    put_all(f->st, ts, 30);
    struct sl_event_filter flt = {.org = f->org.uuid, .status = "New", .tag = "x"};
    struct sl_event_selection sel = {.org = f->org.uuid, .filter = &flt, .include_related = 1};
    struct sl_event_action_args a = args(SL_ACT_DISMISS);
    struct run r = act_all(f->st, &sel, &a, 2);
    assert_int_equal(r.seen, 20);
    assert_int_equal(r.changed, 20);
    for (int i = 0; i < 30; i++) {
        char st[32];
        raw_status(f->dir, ts[i].uuid, st);
        assert_string_equal(st, i < 20 ? "Dismissed" : "New");
    }
    /* Idempotent: nothing is New any more, so no filter match and no related event. */
    r = act_all(f->st, &sel, &a, 2);
    assert_int_equal(r.seen, 0);

    /* Delete with related, from an explicit uuid, one event per call. */
    a = args(SL_ACT_REOPEN);
    struct sl_event_filter all = {.org = f->org.uuid};
    struct sl_event_selection every = {.org = f->org.uuid, .filter = &all};
    assert_int_equal(act_all(f->st, &every, &a, 100).changed, 20);
    const char *uuids[] = {ts[5].uuid};
    struct sl_event_selection ex = {
        .org = f->org.uuid, .uuids = uuids, .nuuids = 1, .include_related = 1};
    a = args(SL_ACT_DELETE);
    r = act_all(f->st, &ex, &a, 1);
    assert_int_equal(r.seen, 20);
    assert_int_equal(r.changed, 20);
    int64_t n = -1;
    assert_int_equal(sl_store_event_count(f->st, f->org.uuid, &n), 0);
    assert_int_equal(n, 10);
    free_all(ts, 30);
}

/* An organization of more than 65,536 events is paged in windows of seqs: calls may look at
 * nothing and still say more, and the whole run sees each match once. */
static void test_cursor_windows(void **state)
{
    struct fx *f = *state;
    enum { N = 70000 };
    struct tev *ts = calloc(N, sizeof(*ts));
    assert_non_null(ts);
    for (size_t i = 0; i < N; i++) {
        char ref[32];
        snprintf(ref, sizeof(ref), "w-%zu", i);
        int other = i % 50 == 7;
        struct spec sp = {
            .ref = ref, .sig = i % 100 == 3 ? "M" : "O", .severity = 1, .date = (int64_t)i};
        if (i % 100 == 3)
            sp.severity = 3;
        tev_make(&ts[i], other ? f->org2.uuid : f->org.uuid, &sp, i);
    }
    put_all(f->st, ts, N);
    struct sl_event_filter flt = {.org = f->org.uuid, .nseverities = 1, .severities = {3}};
    struct sl_event_selection sel = {.org = f->org.uuid, .filter = &flt};
    struct sl_event_action_args a = args(SL_ACT_ACK);
    struct run r = act_all(f->st, &sel, &a, 5000);
    assert_int_equal(r.seen, N / 100);
    assert_int_equal(r.changed, N / 100);
    assert_true(r.calls >= 2);
    /* Related to the matches: every New "M" (none left) ... and the matches' signatures are
     * "M" only, so the "O" events are untouched. */
    sel.include_related = 1;
    a = args(SL_ACT_UNACK);
    r = act_all(f->st, &sel, &a, 300);
    assert_int_equal(r.seen, N / 100);
    assert_int_equal(r.changed, N / 100);
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM events WHERE status <> 'New'", NULL), 0);
    free_all(ts, N);
    free(ts);
}

/* ---- organizations ---- */

static void test_cross_org(void **state)
{
    struct fx *f = *state;
    struct tev ts[2];
    struct spec sp = {.ref = "same"};
    tev_make(&ts[0], f->org.uuid, &sp, 1);
    tev_make(&ts[1], f->org2.uuid, &sp, 2);
    put_all(f->st, ts, 2);
    const char *uuids[] = {ts[0].uuid, ts[1].uuid};
    char missing[SL_UUID_LEN + 1];
    struct sl_event_selection sel = {.org = f->org.uuid, .uuids = uuids, .nuuids = 1};
    assert_int_equal(sl_store_event_select_check(f->st, &sel, missing), 0);
    sel.nuuids = 2;
    assert_int_equal(sl_store_event_select_check(f->st, &sel, missing), SL_ENOTFOUND);
    assert_string_equal(missing, ts[1].uuid);
    /* Upper case is the same uuid. */
    char upper[SL_UUID_LEN + 1];
    for (int i = 0; i <= SL_UUID_LEN; i++)
        upper[i] = (char)(ts[0].uuid[i] >= 'a' && ts[0].uuid[i] <= 'f' ? ts[0].uuid[i] - 32
                                                                       : ts[0].uuid[i]);
    const char *up[] = {upper, "not-a-uuid"};
    struct sl_event_selection sel_up = {.org = f->org.uuid, .uuids = up, .nuuids = 1};
    assert_int_equal(sl_store_event_select_check(f->st, &sel_up, missing), 0);
    sel_up.nuuids = 2;
    assert_int_equal(sl_store_event_select_check(f->st, &sel_up, missing), SL_ENOTFOUND);
    assert_string_equal(missing, "not-a-uuid");
    /* An unknown organization: its first uuid is missing. */
    char none[SL_UUID_LEN + 1];
    sl_uuid4(none);
    struct sl_event_selection nowhere = {.org = none, .uuids = uuids, .nuuids = 1};
    assert_int_equal(sl_store_event_select_check(f->st, &nowhere, missing), SL_ENOTFOUND);
    assert_string_equal(missing, ts[0].uuid);

    /* Acting on acme with globex's uuid touches nothing of globex. */
    struct sl_event_action_args a = args(SL_ACT_DISMISS);
    sel.uuids = &uuids[1], sel.nuuids = 1;
    struct run r = act_all(f->st, &sel, &a, 10);
    assert_int_equal(r.seen, 0);
    expect_doc_status(f->st, f->org2.uuid, ts[1].uuid, "New", 0);
    int64_t cursor = 0, seen, changed;
    int more;
    assert_int_equal(sl_store_event_act(f->st, &nowhere, &a, &cursor, 10, &seen, &changed, &more),
                     SL_ENOTFOUND);
    free_all(ts, 2);
}

/* ---- reading a selection ---- */

struct exp {
    char ref[64][48];
    size_t n;
    size_t stop_at; /* refuse the event of this call (1-based; 0: never) */
    size_t calls;
};

static int export_cb(void *ud, const char *doc, size_t len)
{
    struct exp *e = ud;
    assert_int_equal(strlen(doc), len);
    if (++e->calls == e->stop_at)
        return 42;
    cJSON *j = cJSON_Parse(doc);
    assert_non_null(j);
    assert_true(e->n < 64);
    snprintf(e->ref[e->n++], 48, "%s", jstr(j, "reference", NULL));
    cJSON_Delete(j);
    return 0;
}

static void test_ids_export(void **state)
{
    struct fx *f = *state;
    struct tev ts[12];
    for (int i = 0; i < 12; i++) {
        char ref[16];
        snprintf(ref, sizeof(ref), "e%d", i);
        struct spec sp = {
            .ref = ref, .sig = i < 6 ? "A" : "B", .tags = i >= 10 ? "[\"x\"]" : NULL, .date = i};
        tev_make(&ts[i], f->org.uuid, &sp, (uint64_t)i);
    }
    put_all(f->st, ts, 12);
    const char *uuids[] = {ts[4].uuid, ts[1].uuid};
    struct sl_event_filter flt = {.org = f->org.uuid, .tag = "x"};
    struct sl_event_selection sel = {
        .org = f->org.uuid, .uuids = uuids, .nuuids = 2, .filter = &flt, .include_related = 1};
    /* Everything: explicit (4, 1), related (A: 0, 2, 3, 5; B: 6..9), filter (10, 11). */
    char *json = NULL;
    int64_t total = 0;
    assert_int_equal(sl_store_event_select_ids(f->st, &sel, 100, &json, &total), 0);
    assert_int_equal(total, 12);
    cJSON *j = cJSON_Parse(json);
    free(json);
    static const int order[] = {4, 1, 0, 2, 3, 5, 6, 7, 8, 9, 10, 11};
    assert_int_equal(cJSON_GetArraySize(j), 12);
    for (int i = 0; i < 12; i++)
        assert_string_equal(cJSON_GetArrayItem(j, i)->valuestring, ts[order[i]].uuid);
    cJSON_Delete(j);
    /* At most max, and the total. */
    assert_int_equal(sl_store_event_select_ids(f->st, &sel, 3, &json, &total), 0);
    assert_int_equal(total, 12);
    j = cJSON_Parse(json);
    free(json);
    assert_int_equal(cJSON_GetArraySize(j), 3);
    cJSON_Delete(j);
    assert_int_equal(sl_store_event_select_ids(f->st, &sel, 0, &json, &total), SL_EINVAL);
    assert_int_equal(sl_store_event_select_ids(f->st, &sel, 100001, &json, &total), SL_EINVAL);

    /* Export in calls of 5: the same order; the callback may refuse an event, which the next
     * call delivers again. */
    struct exp e = {.n = 0, .stop_at = 7};
    int64_t cursor = 0;
    int more = 1, calls = 0, rc;
    while (more) {
        rc = sl_store_event_export(f->st, &sel, &cursor, 5, export_cb, &e, &more);
        assert_true(rc == 0 || (rc == 42 && e.calls == 7));
        calls++;
    }
    assert_int_equal(e.n, 12);
    for (int i = 0; i < 12; i++)
        assert_string_equal(e.ref[i], ts[order[i]].ref);
    assert_int_equal(calls, 4); /* 5, 1 (refused the next), 5, 1 */
    assert_int_equal(cursor, 0);
    /* Read only: nothing changed. */
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM events WHERE status = 'New'", NULL), 12);
    free_all(ts, 12);
}

/* ---- the read deadline ---- */

static void test_deadline(void **state)
{
    struct fx *f = *state;
    struct tev *ts = make_many(f->st, f->org.uuid, "slow", 3000, NULL, NULL, 0);
    /* A deadline already passed: the first look at the clock stops the search. */
    sl_store_sqlite_test_limits(f->st, 0, -1);
    struct sl_event_filter flt = {.org = f->org.uuid, .page = 1, .page_size = 10, .tag = "nope"};
    char *json = (char *)"x";
    int64_t total = 0;
    assert_int_equal(sl_store_event_grouped(f->st, &flt, &json, &total), SL_ETIMEDOUT);
    assert_null(json);
    assert_int_equal(sl_store_event_stats(f->st, &flt, 10, &json), SL_ETIMEDOUT);
    assert_null(json);
    struct sl_event_selection sel = {.org = f->org.uuid, .filter = &flt};
    struct sl_event_action_args a = args(SL_ACT_DISMISS);
    int64_t cursor = 0, seen = -1, changed = -1;
    int more = -1;
    flt.tag = NULL, flt.title = "slow";
    assert_int_equal(sl_store_event_act(f->st, &sel, &a, &cursor, 5000, &seen, &changed, &more),
                     SL_ETIMEDOUT);
    assert_int_equal(cursor, 0);
    assert_int_equal(dir_int(f->dir, "SELECT count(*) FROM events WHERE status = 'New'", NULL),
                     3000);
    assert_int_equal(sl_store_event_select_ids(f->st, &sel, 10, &json, &total), SL_ETIMEDOUT);

    /* The handle is left usable: no transaction, no progress handler on the writes. */
    sl_store_sqlite_test_limits(f->st, 0, 0);
    struct run r = act_all(f->st, &sel, &a, 5000);
    assert_int_equal(r.changed, 3000);
    struct tev *more_ts = make_many(f->st, f->org.uuid, "after", 1000, NULL, NULL, 5000);
    free_all(ts, 3000);
    free_all(more_ts, 1000);
    free(ts);
    free(more_ts);
}

/* ---- tasks' params and cursor ---- */

static void test_task_params(void **state)
{
    struct fx *f = *state;
    struct sl_task t, got;
    memset(&t, 0, sizeof(t));
    sl_uuid4(t.id);
    snprintf(t.org, sizeof(t.org), "%s", f->org.uuid);
    snprintf(t.kind, sizeof(t.kind), "event_action");
    snprintf(t.state, sizeof(t.state), "running");
    t.cursor = ((int64_t)3 << 56) | 12345;
    t.params = "{\"action\":\"dismiss\",\"uuids\":[\"a\"]}";
    assert_int_equal(sl_store_task_put(f->st, &t), 0);
    memset(&got, 0x55, sizeof(got));
    assert_int_equal(sl_store_task_get(f->st, t.id, &got), 0);
    assert_int_equal(got.cursor, t.cursor);
    assert_null(got.params);
    char *params = NULL;
    assert_int_equal(sl_store_task_params(f->st, t.id, &params), 0);
    assert_string_equal(params, t.params);
    free(params);
    /* Progress without params keeps them. */
    t.params = NULL, t.cursor = 7, t.done = 10;
    assert_int_equal(sl_store_task_put(f->st, &t), 0);
    assert_int_equal(sl_store_task_params(f->st, t.id, &params), 0);
    assert_string_equal(params, "{\"action\":\"dismiss\",\"uuids\":[\"a\"]}");
    free(params);
    struct sl_task *v = NULL;
    size_t n = 0;
    assert_int_equal(sl_store_task_list(f->st, "running", 10, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].cursor, 7);
    assert_null(v[0].params);
    free(v);
    /* A task written without params has "{}". */
    struct sl_task t2 = t;
    sl_uuid4(t2.id);
    assert_int_equal(sl_store_task_put(f->st, &t2), 0);
    assert_int_equal(sl_store_task_params(f->st, t2.id, &params), 0);
    assert_string_equal(params, "{}");
    free(params);
    /* Malformed params, a negative cursor, an unknown task. */
    t2.params = "{\"a\":";
    assert_int_equal(sl_store_task_put(f->st, &t2), SL_EINVAL);
    t2.params = NULL, t2.cursor = -1;
    assert_int_equal(sl_store_task_put(f->st, &t2), SL_EINVAL);
    char missing[SL_UUID_LEN + 1];
    sl_uuid4(missing);
    params = (char *)"x";
    assert_int_equal(sl_store_task_params(f->st, missing, &params), SL_ENOTFOUND);
    assert_null(params);
    assert_int_equal(sl_store_task_params(f->st, "nope", &params), SL_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grouped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dismiss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_unack_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_to_case, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_phases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_related_stable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cursor_windows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_org, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_params, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
