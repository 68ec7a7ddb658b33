/* Unit tests of the store's tasks, the ordered scan of stored events and the rewriting of stored
 * events (the operations behind applying a rule to stored events), on SQLite. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "core/error.h"
#include "core/util.h"
#include "store/store.h"

/* ---- fixtures ---- */

#include "store_fixture.h"

static int setup(void **state)
{
    return fx_setup(state, 3);
}

static int64_t version(struct sl_store *st)
{
    int64_t v = -1;
    assert_int_equal(sl_store_meta_version(st, &v), 0);
    return v;
}

static int64_t event_count(struct sl_store *st, const char *org)
{
    int64_t n = -1;
    assert_int_equal(sl_store_event_count(st, org, &n), 0);
    return n;
}

/* ---- tasks ---- */

static struct sl_task task_make(const char *org, const char *state, int64_t created_ms)
{
    struct sl_task t;
    memset(&t, 0, sizeof(t));
    sl_uuid4(t.id);
    snprintf(t.org, sizeof(t.org), "%s", org);
    snprintf(t.kind, sizeof(t.kind), "retro_apply_event_rule");
    snprintf(t.state, sizeof(t.state), "%s", state);
    t.created_ms = created_ms;
    return t;
}

static void upper(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'f')
            *s = (char)(*s - 32);
}

static void test_task_crud(void **state)
{
    struct fx *f = *state;
    struct sl_task t = task_make(f->org.uuid, "pending", 1000), got;
    sl_uuid4(t.ref);
    int64_t ver = version(f->st);
    int64_t before = sl_now_ms();
    assert_int_equal(sl_store_task_put(f->st, &t), 0);
    assert_int_equal(sl_store_task_get(f->st, t.id, &got), 0);
    assert_string_equal(got.id, t.id);
    assert_string_equal(got.org, f->org.uuid);
    assert_string_equal(got.kind, "retro_apply_event_rule");
    assert_string_equal(got.state, "pending");
    assert_string_equal(got.ref, t.ref);
    assert_int_equal(got.created_ms, 1000);
    assert_int_equal(got.started_ms, 0);
    assert_int_equal(got.finished_ms, 0);
    assert_true(got.updated_ms >= before);
    assert_string_equal(got.error, "");

    /* Progress replaces the row: no second task, and the meta version never moves. */
    t.total = 2500;
    t.done = 1000;
    t.matched = 7;
    t.started_ms = 2000;
    snprintf(t.state, sizeof(t.state), "running");
    assert_int_equal(sl_store_task_put(f->st, &t), 0);
    t.done = 2500;
    t.matched = 9;
    t.finished_ms = 3000;
    t.created_ms = 0; /* keeps the stored one */
    snprintf(t.state, sizeof(t.state), "failed");
    snprintf(t.error, sizeof(t.error), "rule \"x\" was deleted");
    char id[SL_UUID_LEN + 1];
    memcpy(id, t.id, sizeof(id));
    upper(t.id); /* any case, one task */
    assert_int_equal(sl_store_task_put(f->st, &t), 0);
    assert_int_equal(sl_store_task_get(f->st, t.id, &got), 0);
    assert_string_equal(got.id, id);
    assert_string_equal(got.state, "failed");
    assert_int_equal(got.total, 2500);
    assert_int_equal(got.done, 2500);
    assert_int_equal(got.matched, 9);
    assert_int_equal(got.created_ms, 1000);
    assert_int_equal(got.started_ms, 2000);
    assert_int_equal(got.finished_ms, 3000);
    assert_string_equal(got.error, "rule \"x\" was deleted");
    assert_int_equal(version(f->st), ver);
    sqlite3 *db = raw_open(f->dir);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM tasks"), 1);
    sqlite3_close(db);

    /* Without created_ms the store sets it on insert; an empty ref stays empty. */
    struct sl_task t2 = task_make(f->org2.uuid, "done", 0);
    before = sl_now_ms();
    assert_int_equal(sl_store_task_put(f->st, &t2), 0);
    assert_int_equal(sl_store_task_get(f->st, t2.id, &got), 0);
    assert_true(got.created_ms >= before);
    assert_string_equal(got.ref, "");
    assert_string_equal(got.org, f->org2.uuid);

    char missing[SL_UUID_LEN + 1];
    sl_uuid4(missing);
    assert_int_equal(sl_store_task_get(f->st, missing, &got), SL_ENOTFOUND);
    assert_int_equal(sl_store_task_get(f->st, "not-a-uuid", &got), SL_ENOTFOUND);
    assert_int_equal(version(f->st), ver);
}

static void test_task_errors(void **state)
{
    struct fx *f = *state;
    struct sl_task good = task_make(f->org.uuid, "pending", 1), t;
    struct sl_task got;
    assert_int_equal(sl_store_task_put(f->st, NULL), SL_EINVAL);
    t = good, snprintf(t.id, sizeof(t.id), "nope");
    assert_int_equal(sl_store_task_put(f->st, &t), SL_EINVAL);
    t = good, snprintf(t.org, sizeof(t.org), "nope");
    assert_int_equal(sl_store_task_put(f->st, &t), SL_EINVAL);
    t = good, snprintf(t.state, sizeof(t.state), "Pending");
    assert_int_equal(sl_store_task_put(f->st, &t), SL_EINVAL);
    t = good, snprintf(t.state, sizeof(t.state), "%s", "");
    assert_int_equal(sl_store_task_put(f->st, &t), SL_EINVAL);
    t = good, snprintf(t.kind, sizeof(t.kind), "%s", "");
    assert_int_equal(sl_store_task_put(f->st, &t), SL_EINVAL);
    t = good, snprintf(t.kind, sizeof(t.kind), "a\nb");
    assert_int_equal(sl_store_task_put(f->st, &t), SL_EINVAL);
    t = good, memset(t.kind, 'k', sizeof(t.kind)); /* not terminated */
    assert_int_equal(sl_store_task_put(f->st, &t), SL_EINVAL);
    t = good, memset(t.error, 'e', sizeof(t.error));
    assert_int_equal(sl_store_task_put(f->st, &t), SL_EINVAL);
    t = good, snprintf(t.ref, sizeof(t.ref), "rule-1");
    assert_int_equal(sl_store_task_put(f->st, &t), SL_EINVAL);
    t = good, t.done = -1;
    assert_int_equal(sl_store_task_put(f->st, &t), SL_EINVAL);
    t = good, sl_uuid4(t.org);
    assert_int_equal(sl_store_task_put(f->st, &t), SL_ENOTFOUND);
    assert_int_equal(sl_store_task_get(f->st, good.id, &got), SL_ENOTFOUND);
    /* The longest kind fits. */
    t = good, memset(t.kind, 'k', sizeof(t.kind) - 1), t.kind[sizeof(t.kind) - 1] = 0;
    assert_int_equal(sl_store_task_put(f->st, &t), 0);
    assert_int_equal(sl_store_task_get(f->st, good.id, &got), 0);
    assert_int_equal(strlen(got.kind), SL_TASK_KIND_MAX - 1);

    struct sl_task *v = (struct sl_task *)&t;
    size_t n = 9;
    assert_int_equal(sl_store_task_list(f->st, "paused", 10, &v, &n), SL_EINVAL);
    assert_null(v);
    assert_int_equal(n, 0);
    assert_int_equal(sl_store_task_list(f->st, NULL, 0, &v, &n), SL_EINVAL);
    assert_int_equal(sl_store_task_list(f->st, NULL, 10001, &v, &n), SL_EINVAL);
}

static void expect_tasks(struct sl_store *st, const char *state, size_t limit,
                         const struct sl_task *all, const char *want)
{
    struct sl_task *v = NULL;
    size_t n = 0;
    char got[256] = "";
    assert_int_equal(sl_store_task_list(st, state, limit, &v, &n), 0);
    for (size_t i = 0; i < n; i++) {
        int which = -1;
        for (int j = 0; j < 5; j++)
            if (strcmp(v[i].id, all[j].id) == 0)
                which = j;
        assert_true(which >= 0);
        size_t len = strlen(got);
        snprintf(got + len, sizeof(got) - len, "%s%d", i ? "," : "", which);
    }
    free(v);
    assert_string_equal(got, want);
}

static void test_task_list(void **state)
{
    struct fx *f = *state;
    static const char *const states[] = {"running", "pending", "done", "pending", "failed"};
    static const int64_t created[] = {500, 300, 100, 400, 200};
    struct sl_task t[5];
    memset(t, 0, sizeof(t));
    expect_tasks(f->st, NULL, 10, t, "");
    for (int i = 0; i < 5; i++) {
        t[i] = task_make(i % 2 ? f->org2.uuid : f->org.uuid, states[i], created[i]);
        assert_int_equal(sl_store_task_put(f->st, &t[i]), 0);
    }
    /* Oldest first, in any state or in one. */
    expect_tasks(f->st, NULL, 10, t, "2,4,1,3,0");
    expect_tasks(f->st, NULL, 2, t, "2,4");
    expect_tasks(f->st, "pending", 10, t, "1,3");
    expect_tasks(f->st, "pending", 1, t, "1");
    expect_tasks(f->st, "running", 10, t, "0");
    expect_tasks(f->st, "done", 10, t, "2");
    expect_tasks(f->st, "failed", 10, t, "4");
    /* A state change moves a task from one listing to the other. */
    snprintf(t[1].state, sizeof(t[1].state), "running");
    assert_int_equal(sl_store_task_put(f->st, &t[1]), 0);
    expect_tasks(f->st, "pending", 10, t, "3");
    expect_tasks(f->st, "running", 10, t, "1,0");
}

/* ---- events ---- */

struct tev {
    char uuid[SL_UUID_LEN + 1];
    char org[SL_UUID_LEN + 1];
    char ref[32];
    char sig[40];
    char status[16];
    char doc[256];
    struct sl_store_event row;
};

/* Fills t as an event ingested by org with reference ref (doc mentions ref and status). */
static void tev_make(struct tev *t, const char *org, const char *ref, const char *status,
                     uint64_t origin, int64_t created_ms)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->org, sizeof(t->org), "%s", org);
    snprintf(t->ref, sizeof(t->ref), "%s", ref);
    snprintf(t->sig, sizeof(t->sig), "sig-%s", ref);
    snprintf(t->status, sizeof(t->status), "%s", status);
    const char *parts[] = {org, ref};
    size_t lens[] = {strlen(org), strlen(ref)};
    assert_int_equal(sl_uuid_from_parts(parts, lens, 2, t->uuid), 0);
    int n =
        snprintf(t->doc, sizeof(t->doc), "{\"reference\":\"%s\",\"status\":\"%s\"}", ref, status);
    t->row = (struct sl_store_event){
        .uuid = t->uuid,
        .org = t->org,
        .reference = t->ref,
        .title = "title",
        .signature = t->sig,
        .status = t->status,
        .severity = 2,
        .original_date_ms = created_ms,
        .created_ms = created_ms,
        .origin = origin,
        .doc = t->doc,
        .doc_len = (size_t)n,
    };
}

/* Stores evs in batches of 500. */
static void put_all(struct sl_store *st, struct tev *evs, size_t n)
{
    struct sl_store_event rows[500];
    enum sl_put_outcome out[500];
    for (size_t i = 0; i < n; i += 500) {
        size_t m = n - i < 500 ? n - i : 500;
        for (size_t j = 0; j < m; j++)
            rows[j] = evs[i + j].row;
        assert_int_equal(sl_store_put_events(st, rows, m, out), 0);
        for (size_t j = 0; j < m; j++)
            assert_int_equal(out[j], SL_PUT_STORED);
    }
}

/* What a scan passed to its callback. */
struct seen {
    int64_t seq[8192];
    char ref[8192][32];
    size_t n;
    size_t stop_at; /* return 99 on this call (1-based; 0: never) */
};

static int seen_cb(void *ud, int64_t seq, const char *doc, size_t len)
{
    struct seen *s = ud;
    assert_int_equal(strlen(doc), len);
    assert_true(s->n < 8192);
    const char *r = strstr(doc, "\"reference\":\"");
    assert_non_null(r);
    r += 13;
    size_t rl = (size_t)(strchr(r, '"') - r);
    assert_true(rl < 32);
    memcpy(s->ref[s->n], r, rl);
    s->ref[s->n][rl] = 0;
    s->seq[s->n++] = seq;
    return s->stop_at && s->n == s->stop_at ? 99 : 0;
}

/* Scans everything org/status has in pages of limit; checks the pages and the cursor and
 * returns the references seen, in order, in *out (and their count). */
static size_t scan_pages(struct sl_store *st, const char *org, const char *status, size_t limit,
                         struct seen *out)
{
    int64_t cursor = 0, last = -1;
    out->n = 0;
    for (;;) {
        size_t before = out->n;
        assert_int_equal(sl_store_event_scan(st, org, status, cursor, limit, seen_cb, out, &last),
                         0);
        size_t got = out->n - before;
        assert_true(got <= limit);
        if (got == 0) {
            assert_int_equal(last, cursor);
            break;
        }
        assert_int_equal(last, out->seq[out->n - 1]);
        cursor = last;
    }
    for (size_t i = 1; i < out->n; i++)
        assert_true(out->seq[i] > out->seq[i - 1]);
    return out->n;
}

/* Expected references of a scan: those of evs (in storage order) matching org and status. */
static size_t expected(const struct tev *evs, size_t n, const char *org, const char *status,
                       char (*refs)[32])
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (org && strcmp(evs[i].org, org) != 0)
            continue;
        if (status && strcasecmp(evs[i].status, status) != 0)
            continue;
        snprintf(refs[m++], 32, "%s", evs[i].ref);
    }
    return m;
}

static void expect_scan(struct sl_store *st, const struct tev *evs, size_t n, const char *org,
                        const char *status, size_t limit, size_t want_n)
{
    static struct seen s;
    static char want[8192][32];
    size_t m = expected(evs, n, org, status, want);
    assert_int_equal(m, want_n);
    assert_int_equal(scan_pages(st, org, status, limit, &s), m);
    for (size_t i = 0; i < m; i++)
        assert_string_equal(s.ref[i], want[i]);
}

enum { NA = 2500, NB = 3000, NC = 30, NALL = NA + NB + NC };

/* acme: 2,500 events (every third Dismissed), globex 3,000 (all New), initech 30, interleaved,
 * and 10 more of globex at the end. */
static struct tev *scan_data(struct fx *f, size_t *out_n)
{
    size_t n = NALL + 10, ia = 0, ib = 0, ic = 0;
    struct tev *evs = calloc(n, sizeof(*evs));
    assert_non_null(evs);
    for (size_t i = 0; i < NALL; i++) {
        char ref[32];
        int pick = (int)(i % 11); /* 0..4 acme, 5..10 globex, every 190th initech */
        if (i % 190 == 7 && ic < NC) {
            snprintf(ref, sizeof(ref), "c-%zu", ic++);
            tev_make(&evs[i], f->org3.uuid, ref, "New", i, (int64_t)i);
        } else if ((pick < 5 && ia < NA) || ib == NB) {
            snprintf(ref, sizeof(ref), "a-%zu", ia);
            tev_make(&evs[i], f->org.uuid, ref, ia % 3 == 2 ? "Dismissed" : "New", i, (int64_t)i);
            ia++;
        } else {
            snprintf(ref, sizeof(ref), "b-%zu", ib++);
            tev_make(&evs[i], f->org2.uuid, ref, "New", i, (int64_t)i);
        }
    }
    assert_int_equal(ia, NA);
    assert_int_equal(ib, NB);
    assert_int_equal(ic, NC);
    for (size_t i = NALL; i < n; i++) {
        char ref[32];
        snprintf(ref, sizeof(ref), "tail-%zu", i);
        tev_make(&evs[i], f->org2.uuid, ref, "Open", i, (int64_t)i);
    }
    put_all(f->st, evs, n);
    *out_n = n;
    return evs;
}

static void test_scan(void **state)
{
    struct fx *f = *state;
    static struct seen s;
    int64_t last = -1;
    /* Empty store. */
    s.n = 0;
    assert_int_equal(sl_store_event_scan(f->st, NULL, NULL, 0, 1000, seen_cb, &s, &last), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(last, 0);
    assert_int_equal(sl_store_event_scan(f->st, f->org.uuid, "New", 0, 1000, seen_cb, &s, &last),
                     0);
    assert_int_equal(s.n, 0);

    size_t n = 0;
    struct tev *evs = scan_data(f, &n);
    /* acme's 2,500 in pages of 1,000 (1000, 1000, 500, then none); the other organizations'
     * events in between and after are passed over. With 2,500 of 5,540 events, acme is read by
     * seq at limits 1,000 and 10, and through events_org_date at limits 2,000 and 5,000
     * (2500^2 < limit * 5540); both plans give the same. */
    expect_scan(f->st, evs, n, f->org.uuid, NULL, 1000, NA);
    expect_scan(f->st, evs, n, f->org.uuid, NULL, 2000, NA);
    expect_scan(f->st, evs, n, f->org.uuid, NULL, 10, NA);
    expect_scan(f->st, evs, n, f->org.uuid, "new", 1000, NA - NA / 3);
    expect_scan(f->st, evs, n, f->org.uuid, "new", 5000, NA - NA / 3);
    expect_scan(f->st, evs, n, f->org.uuid, "DISMISSED", 7, NA / 3);
    expect_scan(f->st, evs, n, f->org2.uuid, "New", 1000, NB);
    expect_scan(f->st, evs, n, f->org2.uuid, NULL, 1000, NB + 10);
    expect_scan(f->st, evs, n, f->org2.uuid, "open", 3, 10);
    expect_scan(f->st, evs, n, f->org3.uuid, NULL, 1000, NC);
    expect_scan(f->st, evs, n, f->org3.uuid, NULL, 4, NC);
    expect_scan(f->st, evs, n, f->org3.uuid, "Dismissed", 1000, 0);
    expect_scan(f->st, evs, n, NULL, NULL, 1000, n);
    expect_scan(f->st, evs, n, NULL, "Dismissed", 1000, NA / 3);
    expect_scan(f->st, evs, n, NULL, "Closed", 1000, 0);

    /* One page: exactly limit events and the cursor of the last. */
    s.n = 0;
    assert_int_equal(sl_store_event_scan(f->st, f->org.uuid, NULL, 0, 1000, seen_cb, &s, &last), 0);
    assert_int_equal(s.n, 1000);
    assert_int_equal(last, s.seq[999]);
    /* After acme's last event: nothing, though globex has events after it. */
    int64_t end = 0;
    s.n = 0;
    assert_int_equal(sl_store_event_scan(f->st, f->org.uuid, NULL, 0, 100000, seen_cb, &s, &end),
                     0);
    assert_int_equal(s.n, NA);
    s.n = 0;
    assert_int_equal(sl_store_event_scan(f->st, f->org.uuid, NULL, end, 1000, seen_cb, &s, &last),
                     0);
    assert_int_equal(s.n, 0);
    assert_int_equal(last, end);
    s.n = 0;
    assert_int_equal(sl_store_event_scan(f->st, NULL, NULL, end, 1000, seen_cb, &s, &last), 0);
    size_t after = 0;
    for (size_t i = n; i-- > 0 && strcmp(evs[i].org, f->org.uuid) != 0;)
        after++;
    assert_true(after >= 10);
    assert_int_equal(s.n, after);
    assert_string_equal(s.ref[0], evs[n - after].ref);

    /* The callback stops the scan: its value, and the cursor of the event it stopped at. */
    s.n = 0;
    s.stop_at = 5;
    assert_int_equal(sl_store_event_scan(f->st, f->org2.uuid, NULL, 0, 1000, seen_cb, &s, &last),
                     99);
    assert_int_equal(s.n, 5);
    assert_int_equal(last, s.seq[4]);
    s.stop_at = 0;
    /* The handle is usable afterwards (the read transaction ended). */
    assert_int_equal(event_count(f->st, NULL), (int64_t)n);

    /* Errors. */
    char missing[SL_UUID_LEN + 1];
    sl_uuid4(missing);
    assert_int_equal(sl_store_event_scan(f->st, missing, NULL, 0, 10, seen_cb, &s, &last),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_event_scan(f->st, "nope", NULL, 0, 10, seen_cb, &s, &last),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_event_scan(f->st, NULL, NULL, 0, 0, seen_cb, &s, &last), SL_EINVAL);
    assert_int_equal(sl_store_event_scan(f->st, NULL, NULL, 0, 100001, seen_cb, &s, &last),
                     SL_EINVAL);
    assert_int_equal(sl_store_event_scan(f->st, NULL, NULL, -1, 10, seen_cb, &s, &last), SL_EINVAL);
    assert_int_equal(sl_store_event_scan(f->st, NULL, NULL, 0, 10, NULL, &s, &last), SL_EINVAL);
    free(evs);
}

struct counter {
    int64_t n, bytes, last;
};

static int count_cb(void *ud, int64_t seq, const char *doc, size_t len)
{
    struct counter *c = ud;
    (void)doc;
    c->n++;
    c->bytes += (int64_t)len;
    c->last = seq;
    return 0;
}

/* Scans every event of an organization in pages of `limit`; returns the count. */
static int64_t scan_count(struct sl_store *st, const char *org, const char *status, size_t limit,
                          int64_t *out_ms)
{
    struct counter c = {0};
    int64_t cursor = 0, last = 0, t0 = sl_mono_ms();
    for (;;) {
        int64_t before = c.n;
        assert_int_equal(sl_store_event_scan(st, org, status, cursor, limit, count_cb, &c, &last),
                         0);
        if (c.n == before)
            break;
        cursor = last;
    }
    *out_ms = sl_mono_ms() - t0;
    return c.n;
}

/* 100,000 events (70 % acme, 29 % globex, 1 % initech; 60 % New), about 700 bytes each, scanned
 * in pages of 1,000. */
static void test_scan_100k(void **state)
{
    struct fx *f = *state;
    enum { N = 100000, B = 500 };
    static char docs[B][800];
    static char refs[B][24], uuids[B][SL_UUID_LEN + 1];
    struct sl_store_event rows[B];
    enum sl_put_outcome out[B];
    const struct sl_org *orgs[] = {&f->org, &f->org2, &f->org3};
    int64_t want_org[3] = {0}, want_new[3] = {0}, t0 = sl_mono_ms();
    for (int i = 0; i < N; i += B) {
        for (int j = 0; j < B; j++) {
            unsigned h = (unsigned)(i + j) * 2654435761u;
            int o = h % 100 < 70 ? 0 : h % 100 < 99 ? 1 : 2;
            const char *status = (h >> 8) % 10 < 6 ? "New" : "Dismissed";
            want_org[o]++;
            want_new[o] += status[0] == 'N';
            snprintf(refs[j], sizeof(refs[j]), "r-%d", i + j);
            const char *parts[] = {orgs[o]->uuid, refs[j]};
            size_t lens[] = {SL_UUID_LEN, strlen(refs[j])};
            assert_int_equal(sl_uuid_from_parts(parts, lens, 2, uuids[j]), 0);
            int len =
                snprintf(docs[j], sizeof(docs[j]),
                         "{\"reference\":\"%s\",\"status\":\"%s\",\"description\":\"%0600d\"}",
                         refs[j], status, 0);
            rows[j] = (struct sl_store_event){.uuid = uuids[j],
                                              .org = orgs[o]->uuid,
                                              .reference = refs[j],
                                              .signature = "s",
                                              .status = status,
                                              .severity = 2,
                                              .original_date_ms = (int64_t)(h % 100000),
                                              .created_ms = i + j,
                                              .origin = (uint64_t)(i + j),
                                              .doc = docs[j],
                                              .doc_len = (size_t)len};
        }
        assert_int_equal(sl_store_put_events(f->st, rows, B, out), 0);
    }
    print_message("      stored %d events in %lld ms\n", N, (long long)(sl_mono_ms() - t0));
    int64_t ms = 0;
    assert_int_equal(scan_count(f->st, NULL, NULL, 1000, &ms), N);
    print_message("      all: %d events in %lld ms\n", N, (long long)ms);
    assert_int_equal(scan_count(f->st, NULL, "new", 1000, &ms),
                     want_new[0] + want_new[1] + want_new[2]);
    print_message("      status New: %lld ms\n", (long long)ms);
    static const char *const names[] = {"acme", "globex", "initech"};
    for (int o = 0; o < 3; o++) {
        assert_int_equal(scan_count(f->st, orgs[o]->uuid, NULL, 1000, &ms), want_org[o]);
        print_message("      %s (%lld events): %lld ms\n", names[o], (long long)want_org[o],
                      (long long)ms);
        assert_int_equal(scan_count(f->st, orgs[o]->uuid, "New", 1000, &ms), want_new[o]);
        print_message("      %s, New (%lld events): %lld ms\n", names[o], (long long)want_new[o],
                      (long long)ms);
    }
}

/* ---- updating stored events ---- */

static char *get_doc(struct sl_store *st, const char *org, const char *uuid)
{
    char *doc = NULL;
    assert_int_equal(sl_store_event_get(st, org, uuid, &doc), 0);
    return doc;
}

static int64_t list_total(struct sl_store *st, const char *org, const char *status, int severity)
{
    struct sl_event_filter f = {.org = org, .status = status, .page = 1, .page_size = 100};
    if (severity) {
        f.severities[0] = severity;
        f.nseverities = 1;
    }
    char *json = NULL;
    int64_t total = -1;
    assert_int_equal(sl_store_event_list(st, &f, &json, &total), 0);
    free(json);
    return total;
}

static void new_rule(struct sl_store *st, const char *org, const char *name,
                     char uuid[SL_UUID_LEN + 1])
{
    char doc[128];
    struct sl_meta m = {.doc = doc};
    sl_uuid4(uuid);
    snprintf(m.uuid, sizeof(m.uuid), "%s", uuid);
    snprintf(m.org, sizeof(m.org), "%s", org);
    snprintf(m.name, sizeof(m.name), "%s", name);
    snprintf(doc, sizeof(doc), "{\"name\":\"%s\"}", name);
    assert_int_equal(sl_store_meta_put(st, SL_META_RULE, &m, 1), 0);
}

static struct sl_meta rule_get(struct sl_store *st, const char *uuid)
{
    struct sl_meta m;
    memset(&m, 0, sizeof(m));
    assert_int_equal(sl_store_meta_get(st, SL_META_RULE, uuid, &m), 0);
    free(m.doc);
    m.doc = NULL;
    return m;
}

/* Sets t's status, severity and organization and rewrites its document to match. */
static void tev_edit(struct tev *t, const char *org, const char *status, int severity)
{
    snprintf(t->org, sizeof(t->org), "%s", org);
    snprintf(t->status, sizeof(t->status), "%s", status);
    int n = snprintf(t->doc, sizeof(t->doc), "{\"reference\":\"%s\",\"status\":\"%s\",\"v\":2}",
                     t->ref, status);
    t->row.severity = severity;
    t->row.doc_len = (size_t)n;
}

static void test_update(void **state)
{
    struct fx *f = *state;
    struct tev t[4];
    for (int i = 0; i < 4; i++) {
        char ref[16];
        snprintf(ref, sizeof(ref), "u-%d", i);
        tev_make(&t[i], f->org.uuid, ref, "New", (uint64_t)i, 1000 + i);
    }
    put_all(f->st, t, 4);
    char r1[SL_UUID_LEN + 1], case_uuid[SL_UUID_LEN + 1];
    new_rule(f->st, f->org.uuid, "retro", r1);
    int64_t ver = version(f->st);
    assert_int_equal(list_total(f->st, f->org.uuid, "New", 0), 4);

    /* t0: status and severity; t1: moved to globex, with effects; t2 unchanged; a uuid that is
     * not stored is skipped. */
    tev_edit(&t[0], f->org.uuid, "Dismissed", 4);
    tev_edit(&t[1], f->org2.uuid, "Open", 3);
    sl_uuid4(case_uuid);
    const char *rules[] = {r1};
    struct sl_store_case c = {.uuid = case_uuid, .org = f->org2.uuid, .title = "retro case"};
    struct sl_store_effects fx = {.rule_uuids = rules,
                                  .nrules = 1,
                                  .new_case = &c,
                                  .case_uuid = case_uuid,
                                  .mute_until_ms = 90000};
    t[1].row.effects = &fx;
    struct tev ghost;
    tev_make(&ghost, f->org.uuid, "ghost", "New", 99, 1);
    ghost.row.effects = &fx;
    struct sl_store_event rows[3] = {t[0].row, ghost.row, t[1].row};
    size_t updated = 99;
    assert_int_equal(sl_store_event_update(f->st, rows, 3, &updated), 0);
    assert_int_equal(updated, 2);

    /* event_get and event_list see the new values; the counts follow the organization. */
    char *doc = get_doc(f->st, f->org.uuid, t[0].uuid);
    assert_string_equal(doc, t[0].doc);
    free(doc);
    /* The case link adds "case" to the document. */
    doc = get_doc(f->st, f->org2.uuid, t[1].uuid);
    char linked[600];
    snprintf(linked, sizeof(linked), "%.*s,\"case\":\"%s\"}", (int)strlen(t[1].doc) - 1, t[1].doc,
             case_uuid);
    assert_string_equal(doc, linked);
    free(doc);
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, t[1].uuid, &doc), SL_ENOTFOUND);
    doc = get_doc(f->st, f->org.uuid, t[2].uuid);
    assert_non_null(strstr(doc, "\"New\""));
    free(doc);
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, ghost.uuid, &doc), SL_ENOTFOUND);
    assert_int_equal(event_count(f->st, f->org.uuid), 3);
    assert_int_equal(event_count(f->st, f->org2.uuid), 1);
    assert_int_equal(event_count(f->st, NULL), 4);
    assert_int_equal(list_total(f->st, f->org.uuid, "new", 0), 2);
    assert_int_equal(list_total(f->st, f->org.uuid, "Dismissed", 4), 1);
    assert_int_equal(list_total(f->st, f->org.uuid, NULL, 4), 1);
    assert_int_equal(list_total(f->st, f->org.uuid, NULL, 0), 3);
    assert_int_equal(list_total(f->st, f->org2.uuid, "Open", 3), 1);
    assert_int_equal(list_total(f->st, f->org2.uuid, NULL, 0), 1);

    /* The effects, as for a newly stored event; not the meta version. */
    struct sl_meta m = rule_get(f->st, r1);
    assert_int_equal(m.hits, 1);
    assert_int_equal(m.last_hit_ms, 1001);
    assert_int_equal(version(f->st), ver);
    assert_int_equal(sl_store_case_get(f->st, f->org2.uuid, case_uuid, &doc), 0);
    assert_non_null(strstr(doc, "\"event_count\":1"));
    free(doc);
    int64_t until = 0;
    assert_int_equal(sl_store_mute_get(f->st, f->org2.uuid, t[1].sig, 0, &until, NULL), 1);
    assert_int_equal(until, 90000);

    /* The scan sees the new status and organization. */
    static struct seen s;
    int64_t last = 0;
    s.n = 0;
    assert_int_equal(sl_store_event_scan(f->st, NULL, "dismissed", 0, 10, seen_cb, &s, &last), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ref[0], "u-0");
    s.n = 0;
    assert_int_equal(sl_store_event_scan(f->st, f->org2.uuid, NULL, 0, 10, seen_cb, &s, &last), 0);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ref[0], "u-1");

    /* Applied again: hits add up again (the caller decides when), the case is not created twice,
     * and moving back restores the counts; the case (globex's) does not hold the event, now
     * acme's, any more. */
    tev_edit(&t[1], f->org.uuid, "New", 2);
    assert_int_equal(sl_store_event_update(f->st, &t[1].row, 1, &updated), 0);
    assert_int_equal(updated, 1);
    m = rule_get(f->st, r1);
    assert_int_equal(m.hits, 2);
    assert_int_equal(event_count(f->st, f->org.uuid), 4);
    assert_int_equal(event_count(f->st, f->org2.uuid), 0);
    sqlite3 *db = raw_open(f->dir);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM cases"), 1);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM events WHERE case_id IS NOT NULL"), 0);
    sqlite3_close(db);
    assert_int_equal(sl_store_case_events(f->st, case_uuid, &doc), 0);
    assert_string_equal(doc, "[]");
    free(doc);

    /* The event is still deduplicated by its uuid after the move: a redelivery is not stored. */
    tev_edit(&t[2], f->org3.uuid, "New", 2);
    assert_int_equal(sl_store_event_update(f->st, &t[2].row, 1, &updated), 0);
    enum sl_put_outcome out;
    tev_make(&t[3], f->org.uuid, "u-2", "New", 2, 1002);
    assert_int_equal(sl_store_put_events(f->st, &t[3].row, 1, &out), 0);
    assert_int_equal(out, SL_PUT_REDELIVERED);
    assert_int_equal(event_count(f->st, NULL), 4);
    assert_int_equal(event_count(f->st, f->org3.uuid), 1);

    /* Nothing to do. */
    assert_int_equal(sl_store_event_update(f->st, NULL, 0, &updated), 0);
    assert_int_equal(updated, 0);
}

/* A batch that fails changes nothing, effects included. */
static void test_update_all_or_nothing(void **state)
{
    struct fx *f = *state;
    struct tev t[2];
    tev_make(&t[0], f->org.uuid, "a", "New", 1, 1000);
    tev_make(&t[1], f->org.uuid, "b", "New", 2, 1000);
    put_all(f->st, t, 2);
    char r1[SL_UUID_LEN + 1];
    new_rule(f->st, f->org.uuid, "retro", r1);
    const char *rules[] = {r1};
    struct sl_store_effects fx = {.rule_uuids = rules, .nrules = 1, .mute_until_ms = 90000};
    char *before = get_doc(f->st, f->org.uuid, t[0].uuid);

    tev_edit(&t[0], f->org2.uuid, "Dismissed", 5);
    t[0].row.effects = &fx;
    struct tev moved;
    tev_make(&moved, f->org.uuid, "b", "New", 2, 1000); /* t[1] */
    tev_edit(&moved, f->org.uuid, "Open", 1);
    char unknown[SL_UUID_LEN + 1];
    sl_uuid4(unknown);
    moved.row.org = unknown; /* not an organization: fails after t[0] was written */
    struct sl_store_event rows[2] = {t[0].row, moved.row};
    size_t updated = 99;
    assert_int_equal(sl_store_event_update(f->st, rows, 2, &updated), SL_ENOTFOUND);
    assert_int_equal(updated, 0);
    char *doc = get_doc(f->st, f->org.uuid, t[0].uuid);
    assert_string_equal(doc, before);
    free(doc);
    assert_int_equal(event_count(f->st, f->org.uuid), 2);
    assert_int_equal(event_count(f->st, f->org2.uuid), 0);
    assert_int_equal(list_total(f->st, f->org.uuid, "New", 0), 2);
    assert_int_equal(rule_get(f->st, r1).hits, 0);
    int64_t n = -1;
    assert_int_equal(sl_store_mute_active(f->st, 0, &n), 0);
    assert_int_equal(n, 0);

    /* Malformed events are refused before anything is written. */
    struct sl_store_event bad[4] = {t[0].row, t[0].row, t[0].row, t[0].row};
    bad[0].uuid = "nope";
    bad[1].org = "nope";
    bad[2].doc = NULL;
    bad[3].effects = &(struct sl_store_effects){.case_uuid = "nope"};
    for (int i = 0; i < 4; i++) {
        struct sl_store_event pair[2] = {t[1].row, bad[i]};
        assert_int_equal(sl_store_event_update(f->st, pair, 2, &updated), SL_EINVAL);
    }
    assert_int_equal(sl_store_event_update(f->st, NULL, 1, &updated), SL_EINVAL);
    doc = get_doc(f->st, f->org.uuid, t[0].uuid);
    assert_string_equal(doc, before);
    free(doc);
    free(before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_task_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_task_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_100k, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_all_or_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
