/* Unit tests of the embedded (LMDB) stream backend, including group commit, cross-process
 * wake-up and recovery from readers killed with SIGKILL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/error.h"
#include "core/util.h"
#include "stream/stream.h"

#include <ftw.h>
#include <lmdb.h>
#include <pthread.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BIG_MAP ((uint64_t)256 << 20)

struct fixture {
    char dir[64];
    struct sl_stream *s;
};

static struct sl_stream *open_stream(const char *dir, uint64_t max_bytes, int64_t retention_ms)
{
    char err[256];
    struct sl_stream_config cfg = {
        .dir = dir, .max_bytes = max_bytes, .retention_ms = retention_ms};
    struct sl_stream *s = sl_stream_lmdb_create(&cfg, err, sizeof err);
    if (!s)
        fprintf(stderr, "open %s: %s\n", dir, err);
    return s;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    strcpy(f->dir, "/tmp/sl_stream_test_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->s = open_stream(f->dir, BIG_MAP, 0);
    assert_non_null(f->s);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    sl_stream_destroy(f->s);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Appends one text record and returns its offset. */
static uint64_t append_text(struct sl_stream *s, const char *topic, uint32_t part, const char *text)
{
    struct sl_stream_msg m = {text, strlen(text)};
    uint64_t off = UINT64_MAX;
    assert_int_equal(sl_stream_append(s, topic, part, &m, 1, &off), 0);
    return off;
}

static void append_n(struct sl_stream *s, const char *topic, uint32_t part, int n)
{
    char text[32];
    for (int i = 0; i < n; i++) {
        snprintf(text, sizeof text, "p%u-%d", part, i);
        append_text(s, topic, part, text);
    }
}

/* Polls without waiting and returns how many records came back. */
static size_t poll_now(struct sl_stream_consumer *c, size_t max,
                       const struct sl_stream_record **recs)
{
    size_t n = 99;
    assert_int_equal(sl_stream_poll(c, max, 0, recs, &n), 0);
    return n;
}

static void assert_text(const struct sl_stream_record *r, const char *text)
{
    assert_int_equal(r->len, strlen(text));
    assert_memory_equal(r->data, text, r->len);
}

static void test_roundtrip(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    uint32_t parts = 0;
    uint64_t first = 99;
    int64_t before = sl_now_ms();
    struct sl_stream_msg m3[] = {{"a", 1}, {"bb", 2}, {"ccc", 3}}, m2[] = {{"d", 1}, {NULL, 0}};

    assert_int_equal(sl_stream_topic_ensure(f->s, "t1", 1, &parts), 0);
    assert_int_equal(parts, 1);
    assert_int_equal(sl_stream_append(f->s, "t1", 0, m3, 3, &first), 0);
    assert_int_equal(first, 0);
    assert_int_equal(sl_stream_append(f->s, "t1", 0, m2, 2, &first), 0);
    assert_int_equal(first, 3);
    int64_t after = sl_now_ms();

    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t1", "g", (uint32_t[]){0}, 1);
    assert_non_null(c);
    assert_int_equal(poll_now(c, 10, &recs), 5);
    const char *want[] = {"a", "bb", "ccc", "d", ""};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(recs[i].partition, 0);
        assert_int_equal(recs[i].offset, i);
        assert_true(recs[i].timestamp_ms >= before && recs[i].timestamp_ms <= after);
        assert_text(&recs[i], want[i]);
    }
    assert_int_equal(sl_stream_commit(c), 0);
    assert_int_equal(poll_now(c, 10, &recs), 0);

    /* An empty poll waits for the timeout, no longer than needed. */
    size_t n = 99;
    int64_t t0 = sl_mono_ms();
    assert_int_equal(sl_stream_poll(c, 10, 100, &recs, &n), 0);
    int64_t waited = sl_mono_ms() - t0;
    assert_int_equal(n, 0);
    assert_true(waited >= 95 && waited < 2000);

    assert_int_equal(sl_stream_poll(c, 0, 0, &recs, &n), SL_EINVAL);
    assert_int_equal(sl_stream_append(f->s, "t1", 0, m3, 0, NULL), SL_EINVAL);
    assert_int_equal(sl_stream_append(f->s, "nope", 0, m3, 1, NULL), SL_ENOTFOUND);
    assert_int_equal(sl_stream_append(f->s, "t1", 1, m3, 1, NULL), SL_ENOTFOUND);
    sl_stream_consumer_destroy(c);
}

static void test_resume_redelivers_uncommitted(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 1, NULL), 0);
    append_n(f->s, "t", 0, 10);

    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){0}, 1);
    assert_non_null(c);
    assert_int_equal(poll_now(c, 6, &recs), 6);
    assert_int_equal(recs[5].offset, 5);
    assert_int_equal(sl_stream_commit(c), 0);
    assert_int_equal(poll_now(c, 10, &recs), 4); /* read but never committed */
    sl_stream_consumer_destroy(c);

    c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){0}, 1);
    assert_non_null(c);
    assert_int_equal(poll_now(c, 10, &recs), 4);
    for (size_t i = 0; i < 4; i++) {
        char text[16];
        snprintf(text, sizeof text, "p0-%zu", i + 6);
        assert_int_equal(recs[i].offset, i + 6);
        assert_text(&recs[i], text);
    }
    assert_int_equal(sl_stream_commit(c), 0);
    sl_stream_consumer_destroy(c);

    /* Another group starts from the beginning. */
    c = sl_stream_consumer_create(f->s, "t", "other", (uint32_t[]){0}, 1);
    assert_non_null(c);
    assert_int_equal(poll_now(c, 100, &recs), 10);
    sl_stream_consumer_destroy(c);
    c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){0}, 1);
    assert_int_equal(poll_now(c, 100, &recs), 0);
    sl_stream_consumer_destroy(c);
}

/* Drains c, checking that it only sees its own partitions, each in order from 0 to n-1. */
/* commit_offsets commits explicit positions from another thread, without the poll position. */
struct commit_arg {
    struct sl_stream_consumer *c;
    int rc;
};

static void *commit_thread(void *p)
{
    struct commit_arg *a = p;
    a->rc = sl_stream_commit_offsets(a->c, (uint32_t[]){0, 1}, (uint64_t[]){3, 5}, 2);
    return NULL;
}

static void test_commit_offsets_explicit(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    uint64_t backlog = 0;
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 2, NULL), 0);
    append_n(f->s, "t", 0, 10);
    append_n(f->s, "t", 1, 10);
    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){0, 1}, 2);
    assert_non_null(c);
    assert_int_equal(poll_now(c, 20, &recs), 20); /* the poll position is past everything */
    struct commit_arg a = {c, -1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, commit_thread, &a), 0);
    pthread_join(t, NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(sl_stream_backlog(f->s, "t", "g", &backlog), 0);
    assert_int_equal(backlog, (10 - 3) + (10 - 5));
    sl_stream_consumer_destroy(c);
    c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){0, 1}, 2);
    assert_int_equal(poll_now(c, 20, &recs), 12); /* resumes at 3 and 5, not at the poll end */
    assert_int_equal(sl_stream_commit_offsets(c, NULL, NULL, 0), 0);
    sl_stream_consumer_destroy(c);
}

/* Appends at the end of the tree fill LMDB pages completely (MDB_APPEND): 3,000 records of
 * 1,200 bytes, three to a 4 KiB page, take about 4 MB; half-full split pages would take 6. */
static void test_appends_fill_pages(void **state)
{
    struct fixture *f = *state;
    static char payload[1200];
    struct sl_stream_msg msgs[100];
    char path[128];
    struct stat st;
    memset(payload, 'x', sizeof payload);
    for (size_t i = 0; i < 100; i++)
        msgs[i] = (struct sl_stream_msg){payload, sizeof payload};
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 1, NULL), 0);
    for (int i = 0; i < 30; i++)
        assert_int_equal(sl_stream_append(f->s, "t", 0, msgs, 100, NULL), 0);
    snprintf(path, sizeof path, "%s/data.mdb", f->dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size < 5 * 1024 * 1024);
    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){0}, 1);
    const struct sl_stream_record *recs;
    size_t total = 0, n;
    while ((n = poll_now(c, 1000, &recs)) > 0) {
        assert_int_equal(recs[0].offset, total);
        assert_int_equal(recs[0].len, sizeof payload);
        total += n;
    }
    assert_int_equal(total, 3000);
    sl_stream_consumer_destroy(c);
}

static void drain_partitions(struct sl_stream_consumer *c, const uint32_t *mine, size_t nmine,
                             uint64_t n)
{
    const struct sl_stream_record *recs;
    uint64_t next[4] = {0};
    size_t got, total = 0;
    while ((got = poll_now(c, 7, &recs)) > 0) {
        for (size_t i = 0; i < got; i++) {
            char text[32];
            size_t k = 0;
            while (k < nmine && mine[k] != recs[i].partition)
                k++;
            assert_true(k < nmine);
            assert_int_equal(recs[i].offset, next[k]++);
            snprintf(text, sizeof text, "p%u-%llu", recs[i].partition,
                     (unsigned long long)recs[i].offset);
            assert_text(&recs[i], text);
        }
        total += got;
    }
    assert_int_equal(total, n * nmine);
}

static void test_disjoint_consumers_fair(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 4, NULL), 0);
    for (uint32_t p = 0; p < 4; p++)
        append_n(f->s, "t", p, 10);

    uint32_t pa[] = {0, 1}, pb[] = {2, 3};
    struct sl_stream_consumer *a = sl_stream_consumer_create(f->s, "t", "g", pa, 2);
    struct sl_stream_consumer *b = sl_stream_consumer_create(f->s, "t", "g", pb, 2);
    assert_non_null(a);
    assert_non_null(b);

    /* Fair: both partitions get a share of one poll, and single-record polls alternate. */
    assert_int_equal(poll_now(a, 4, &recs), 4);
    int from0 = 0;
    for (size_t i = 0; i < 4; i++)
        from0 += recs[i].partition == 0;
    assert_int_equal(from0, 2);
    assert_int_equal(poll_now(b, 1, &recs), 1);
    uint32_t p1 = recs[0].partition;
    assert_int_equal(poll_now(b, 1, &recs), 1);
    assert_int_not_equal(recs[0].partition, p1);
    sl_stream_consumer_destroy(a);
    sl_stream_consumer_destroy(b);

    /* With fewer records per poll than partitions, successive polls visit every partition. */
    uint32_t all[] = {0, 1, 2, 3};
    struct sl_stream_consumer *r = sl_stream_consumer_create(f->s, "t", "g3", all, 4);
    int visited[4] = {0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(poll_now(r, 1, &recs), 1);
        visited[recs[0].partition]++;
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(visited[i], 1);
    sl_stream_consumer_destroy(r);

    a = sl_stream_consumer_create(f->s, "t", "g2", pa, 2);
    b = sl_stream_consumer_create(f->s, "t", "g2", pb, 2);
    drain_partitions(a, pa, 2, 10);
    drain_partitions(b, pb, 2, 10);
    sl_stream_consumer_destroy(a);
    sl_stream_consumer_destroy(b);

    /* Partitions outside the topic or listed twice are refused. */
    assert_null(sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){4}, 1));
    assert_null(sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){1, 1}, 2));
    assert_null(sl_stream_consumer_create(f->s, "missing", "g", (uint32_t[]){0}, 1));
    assert_null(sl_stream_consumer_create(f->s, "t", "g", pa, 0));
}

static void test_backlog(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    uint64_t n = 0;
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 2, NULL), 0);
    assert_int_equal(sl_stream_backlog(f->s, "t", "g", &n), 0);
    assert_int_equal(n, 0);
    append_n(f->s, "t", 0, 5);
    append_n(f->s, "t", 1, 7);
    assert_int_equal(sl_stream_backlog(f->s, "t", "g", &n), 0);
    assert_int_equal(n, 12);

    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){0}, 1);
    assert_int_equal(poll_now(c, 3, &recs), 3);
    assert_int_equal(sl_stream_backlog(f->s, "t", "g", &n), 0);
    assert_int_equal(n, 12); /* polled is not committed */
    assert_int_equal(sl_stream_commit(c), 0);
    assert_int_equal(sl_stream_backlog(f->s, "t", "g", &n), 0);
    assert_int_equal(n, 9);
    assert_int_equal(sl_stream_backlog(f->s, "t", "h", &n), 0);
    assert_int_equal(n, 12);
    assert_int_equal(poll_now(c, 10, &recs), 2);
    assert_int_equal(sl_stream_commit(c), 0);
    assert_int_equal(sl_stream_backlog(f->s, "t", "g", &n), 0);
    assert_int_equal(n, 7);
    append_n(f->s, "t", 0, 1);
    assert_int_equal(sl_stream_backlog(f->s, "t", "g", &n), 0);
    assert_int_equal(n, 8);
    sl_stream_consumer_destroy(c);

    assert_int_equal(sl_stream_backlog(f->s, "missing", "g", &n), SL_ENOTFOUND);
    assert_int_equal(sl_stream_backlog(f->s, "t", "bad group", &n), SL_EINVAL);
}

static void test_topic_grow(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    uint32_t parts = 0;
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 3, &parts), 0);
    assert_int_equal(parts, 3);
    append_n(f->s, "t", 2, 4);
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 2, &parts), 0);
    assert_int_equal(parts, 3); /* never shrinks */
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 5, &parts), 0);
    assert_int_equal(parts, 5);
    assert_int_equal(append_text(f->s, "t", 4, "p4-0"), 0);
    assert_int_equal(append_text(f->s, "t", 2, "p2-4"), 4); /* old partitions keep their data */
    struct sl_stream_msg m = {"x", 1};
    assert_int_equal(sl_stream_append(f->s, "t", 5, &m, 1, NULL), SL_ENOTFOUND);
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 0, NULL), SL_EINVAL);
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", SL_STREAM_MAX_PARTITIONS + 1, NULL),
                     SL_EINVAL);
    assert_int_equal(sl_stream_topic_ensure(f->s, "big", SL_STREAM_MAX_PARTITIONS, &parts), 0);
    assert_int_equal(parts, SL_STREAM_MAX_PARTITIONS);

    /* Topics are independent: a second topic starts its own offsets at 0. */
    assert_int_equal(sl_stream_topic_ensure(f->s, "u", 1, NULL), 0);
    assert_int_equal(append_text(f->s, "u", 0, "u"), 0);
    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){2}, 1);
    assert_int_equal(poll_now(c, 100, &recs), 5);
    assert_text(&recs[4], "p2-4");
    sl_stream_consumer_destroy(c);

    /* The state survives closing and reopening. */
    sl_stream_destroy(f->s);
    f->s = open_stream(f->dir, BIG_MAP, 0);
    assert_non_null(f->s);
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 1, &parts), 0);
    assert_int_equal(parts, 5);
    assert_int_equal(append_text(f->s, "t", 2, "p2-5"), 5);
}

/* Polls n records in group and commits them. */
static void consume_commit(struct sl_stream *s, const char *group, size_t n)
{
    const struct sl_stream_record *recs;
    struct sl_stream_consumer *c = sl_stream_consumer_create(s, "t", group, (uint32_t[]){0}, 1);
    assert_non_null(c);
    assert_int_equal(poll_now(c, n, &recs), n);
    assert_int_equal(sl_stream_commit(c), 0);
    sl_stream_consumer_destroy(c);
}

static void test_trim_retention_and_commits(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    uint64_t trimmed = 99, n;
    sl_stream_destroy(f->s);
    f->s = open_stream(f->dir, BIG_MAP, 300);
    assert_non_null(f->s);
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 1, NULL), 0);
    append_n(f->s, "t", 0, 10); /* 0..9: old */
    sleep_ms(400);
    assert_int_equal(sl_stream_trim(f->s, "t", &trimmed), 0);
    assert_int_equal(trimmed, 0); /* no group has committed: keep everything */
    append_n(f->s, "t", 0, 10);   /* 10..19: new */

    consume_commit(f->s, "g1", 15);
    consume_commit(f->s, "g2", 5);
    assert_int_equal(sl_stream_trim(f->s, "t", &trimmed), 0);
    assert_int_equal(trimmed, 5); /* below g2's commit */

    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t", "g2", (uint32_t[]){0}, 1);
    assert_int_equal(poll_now(c, 100, &recs), 15);
    assert_int_equal(sl_stream_commit(c), 0);
    sl_stream_consumer_destroy(c);
    assert_int_equal(sl_stream_trim(f->s, "t", &trimmed), 0);
    assert_int_equal(trimmed, 5); /* 5..9; 10..14 are committed but too new */

    sleep_ms(400);
    assert_int_equal(sl_stream_trim(f->s, "t", &trimmed), 0);
    assert_int_equal(trimmed, 5); /* 10..14; g1 has not committed 15.. */
    assert_int_equal(sl_stream_trim(f->s, "t", &trimmed), 0);
    assert_int_equal(trimmed, 0);

    /* A new group starts at the first retained record; backlog counts what is left. */
    c = sl_stream_consumer_create(f->s, "t", "g3", (uint32_t[]){0}, 1);
    assert_int_equal(poll_now(c, 100, &recs), 5);
    assert_int_equal(recs[0].offset, 15);
    sl_stream_consumer_destroy(c);
    assert_int_equal(sl_stream_backlog(f->s, "t", "g3", &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(sl_stream_backlog(f->s, "t", "g1", &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(sl_stream_backlog(f->s, "t", "g2", &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(sl_stream_trim(f->s, "missing", &trimmed), SL_ENOTFOUND);
}

/* Records one trim call deletes at most (stream.h). */
#define TRIM_BUDGET 50000

/* Appends n one-byte records to topic/part in calls of up to 10,000. */
static void append_bulk(struct sl_stream *s, const char *topic, uint32_t part, size_t n)
{
    enum { CHUNK = 10000 };
    struct sl_stream_msg *m = calloc(CHUNK, sizeof *m);
    assert_non_null(m);
    for (size_t i = 0; i < CHUNK; i++)
        m[i] = (struct sl_stream_msg){"r", 1};
    for (size_t done = 0; done < n;) {
        size_t k = n - done < CHUNK ? n - done : CHUNK;
        assert_int_equal(sl_stream_append(s, topic, part, m, k, NULL), 0);
        done += k;
    }
    free(m);
}

/* Reads every partition of topic in group to the end and commits. */
static void consume_all(struct sl_stream *s, const char *topic, const char *group, uint32_t nparts,
                        uint64_t expect)
{
    const struct sl_stream_record *recs;
    uint32_t parts[8];
    uint64_t n = 0;
    size_t got;
    assert_true(nparts <= 8);
    for (uint32_t p = 0; p < nparts; p++)
        parts[p] = p;
    struct sl_stream_consumer *c = sl_stream_consumer_create(s, topic, group, parts, nparts);
    assert_non_null(c);
    while ((got = poll_now(c, 50000, &recs)) > 0)
        n += got;
    assert_int_equal(n, expect);
    assert_int_equal(sl_stream_commit(c), 0);
    sl_stream_consumer_destroy(c);
}

/* Calls trim until it returns 0, checking that each call stays within the budget and that only
 * a call that spent the whole budget asks to be called again. Returns the number of calls. */
static int trim_until_done(struct sl_stream *s, const char *topic, uint64_t *out_total)
{
    uint64_t trimmed;
    int calls = 0, rc;
    *out_total = 0;
    do {
        trimmed = UINT64_MAX;
        rc = sl_stream_trim(s, topic, &trimmed);
        calls++;
        assert_true(rc == 0 || rc == SL_EAGAIN);
        assert_true(trimmed <= TRIM_BUDGET);
        if (rc == SL_EAGAIN)
            assert_int_equal(trimmed, TRIM_BUDGET);
        *out_total += trimmed;
    } while (rc == SL_EAGAIN && calls < 100);
    assert_int_equal(rc, 0);
    return calls;
}

/* More records than one trim call may delete: each call does bounded work and returns
 * SL_EAGAIN until everything eligible is gone. */
static void test_trim_many(void **state)
{
    struct fixture *f = *state;
    enum { TOTAL = 120000 };
    uint64_t total = 0, trimmed = 99;
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 1, NULL), 0);
    append_bulk(f->s, "t", 0, TOTAL);
    consume_all(f->s, "t", "g", 1, TOTAL);
    int calls = trim_until_done(f->s, "t", &total);
    assert_true(calls > 1);
    assert_int_equal(calls, 3); /* 50,000 + 50,000 + 20,000 */
    assert_int_equal(total, TOTAL);
    assert_int_equal(sl_stream_trim(f->s, "t", &trimmed), 0);
    assert_int_equal(trimmed, 0);
    assert_int_equal(append_text(f->s, "t", 0, "next"), TOTAL);
}

/* The budget is per call over all partitions, not per partition; a call that spends it exactly
 * on the last eligible record reports that nothing is left. */
static void test_trim_budget_across_partitions(void **state)
{
    struct fixture *f = *state;
    enum { PER_PART = 30000 };
    uint64_t total = 0, trimmed = 99, n = 0;
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 3, NULL), 0);
    for (uint32_t p = 0; p < 3; p++)
        append_bulk(f->s, "t", p, PER_PART);
    consume_all(f->s, "t", "g", 3, 3 * PER_PART);
    assert_int_equal(sl_stream_trim(f->s, "t", &trimmed), SL_EAGAIN);
    assert_int_equal(trimmed, TRIM_BUDGET);
    assert_int_equal(sl_stream_backlog(f->s, "t", "g", &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(trim_until_done(f->s, "t", &total), 1);
    assert_int_equal(total, 3 * PER_PART - TRIM_BUDGET);

    /* Exactly the budget eligible, split over two partitions: one call, and it returns 0. */
    assert_int_equal(sl_stream_topic_ensure(f->s, "u", 2, NULL), 0);
    append_bulk(f->s, "u", 0, TRIM_BUDGET / 2);
    append_bulk(f->s, "u", 1, TRIM_BUDGET / 2);
    consume_all(f->s, "u", "g", 2, TRIM_BUDGET);
    assert_int_equal(sl_stream_trim(f->s, "u", &trimmed), 0);
    assert_int_equal(trimmed, TRIM_BUDGET);
    assert_int_equal(append_text(f->s, "u", 1, "next"), TRIM_BUDGET / 2);
}

static void test_full_then_usable(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    static char payload[1000];
    struct sl_stream_msg m = {payload, sizeof payload};
    uint64_t k = 0, first, trimmed = 0;
    int rc = 0;
    sl_stream_destroy(f->s);
    f->s = open_stream(f->dir, (uint64_t)1 << 20, 0);
    assert_non_null(f->s);
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 1, NULL), 0);
    memset(payload, 'x', sizeof payload);
    while (k < 5000 && (rc = sl_stream_append(f->s, "t", 0, &m, 1, &first)) == 0)
        assert_int_equal(first, k++);
    assert_int_equal(rc, SL_EFULL);
    assert_true(k > 100);
    assert_int_equal(sl_stream_append(f->s, "t", 0, &m, 1, NULL), SL_EFULL);

    /* Reads, commits and trims still work, and free the space for appends. */
    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){0}, 1);
    assert_non_null(c);
    uint64_t seen = 0;
    size_t got;
    while ((got = poll_now(c, 64, &recs)) > 0) {
        for (size_t i = 0; i < got; i++)
            assert_int_equal(recs[i].offset, seen++);
    }
    assert_int_equal(seen, k);
    assert_int_equal(sl_stream_commit(c), 0);
    assert_int_equal(sl_stream_trim(f->s, "t", &trimmed), 0);
    assert_int_equal(trimmed, k);

    /* A call too big for the map fails whole; the next one gets the next offset. */
    struct sl_stream_msg *many = calloc(2000, sizeof *many);
    assert_non_null(many);
    for (size_t i = 0; i < 2000; i++)
        many[i] = m;
    assert_int_equal(sl_stream_append(f->s, "t", 0, many, 2000, NULL), SL_EFULL);
    free(many);
    for (uint64_t i = 0; i < k / 2; i++) {
        assert_int_equal(sl_stream_append(f->s, "t", 0, &m, 1, &first), 0);
        assert_int_equal(first, k + i);
    }
    assert_int_equal(poll_now(c, 1, &recs), 1);
    assert_int_equal(recs[0].offset, k);
    sl_stream_consumer_destroy(c);
}

struct full_arg {
    struct sl_stream *s;
    int big; /* one caller whose calls never fit; the others must not suffer for it */
    int bad_results;
    int *small_done; /* the big caller keeps trying until the small ones are done */
};

static void *full_thread(void *p)
{
    struct full_arg *a = p;
    static char payload[1000];
    size_t n = a->big ? 3000 : 1;
    struct sl_stream_msg *m = calloc(n, sizeof *m);
    if (!m) {
        a->bad_results++;
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        m[i] = (struct sl_stream_msg){payload, sizeof payload};
    for (int i = 0; a->big ? __atomic_load_n(a->small_done, __ATOMIC_SEQ_CST) < 3 : i < 200; i++) {
        int rc = sl_stream_append(a->s, "t", 0, m, n, NULL);
        a->bad_results += a->big ? rc != SL_EFULL : rc != 0;
    }
    if (!a->big)
        __atomic_add_fetch(a->small_done, 1, __ATOMIC_SEQ_CST);
    free(m);
    return NULL;
}

static void test_full_fails_only_the_big_caller(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    struct full_arg args[4];
    pthread_t th[4];
    int small_done = 0;
    sl_stream_destroy(f->s);
    f->s = open_stream(f->dir, (uint64_t)4 << 20, 0);
    assert_non_null(f->s);
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 1, NULL), 0);
    for (int i = 0; i < 4; i++) {
        args[i] = (struct full_arg){.s = f->s, .big = i == 0, .small_done = &small_done};
        assert_int_equal(pthread_create(&th[i], NULL, full_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].bad_results, 0);
    }
    /* Exactly the small callers' records are there, at dense offsets. */
    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){0}, 1);
    size_t got, total = 0;
    while ((got = poll_now(c, 100, &recs)) > 0) {
        for (size_t i = 0; i < got; i++)
            assert_int_equal(recs[i].offset, total + i);
        total += got;
    }
    assert_int_equal(total, 3 * 200);
    sl_stream_consumer_destroy(c);
}

static void test_bad_names(void **state)
{
    struct fixture *f = *state;
    char longest[SL_STREAM_NAME_MAX + 2];
    struct sl_stream_msg m = {"x", 1};
    uint64_t n;
    const char *bad[] = {"", "a b", "a/b", "t\xc3\xa4", "a:b", "a\nb", NULL};
    for (size_t i = 0; bad[i]; i++) {
        assert_int_equal(sl_stream_topic_ensure(f->s, bad[i], 1, NULL), SL_EINVAL);
        assert_int_equal(sl_stream_append(f->s, bad[i], 0, &m, 1, NULL), SL_EINVAL);
        assert_int_equal(sl_stream_backlog(f->s, bad[i], "g", &n), SL_EINVAL);
        assert_int_equal(sl_stream_trim(f->s, bad[i], NULL), SL_EINVAL);
        assert_null(sl_stream_consumer_create(f->s, bad[i], "g", (uint32_t[]){0}, 1));
    }
    memset(longest, 'a', sizeof longest);
    longest[SL_STREAM_NAME_MAX + 1] = '\0';
    assert_int_equal(sl_stream_topic_ensure(f->s, longest, 1, NULL), SL_EINVAL);
    longest[SL_STREAM_NAME_MAX] = '\0';
    assert_int_equal(sl_stream_topic_ensure(f->s, longest, 1, NULL), 0);
    assert_int_equal(sl_stream_topic_ensure(f->s, "Az09._-", 1, NULL), 0);
    assert_int_equal(sl_stream_append(f->s, longest, 0, &m, 1, NULL), 0);
    assert_null(sl_stream_consumer_create(f->s, longest, "bad group", (uint32_t[]){0}, 1));
    assert_int_equal(sl_stream_backlog(f->s, longest, longest, &n), 0);
    assert_int_equal(n, 1);

    char err[256];
    struct sl_stream_config cfg = {.dir = f->dir, .max_bytes = 4096, .retention_ms = 0};
    assert_null(sl_stream_lmdb_create(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "max_bytes=4096"));
    /* One handle per environment and process. */
    cfg.max_bytes = BIG_MAP;
    assert_null(sl_stream_lmdb_create(&cfg, err, sizeof err));
    assert_non_null(strstr(err, "already open in this process"));
}

#define GC_THREADS   8
#define GC_APPENDS   1000
#define GC_PARTS     4
#define GC_BAD_EVERY 10 /* every 10th call of a thread goes to a partition that does not exist */

struct gc_arg {
    struct sl_stream *s;
    int id;
    uint64_t offsets[GC_APPENDS];
    int failures;
};

static void *gc_thread(void *p)
{
    struct gc_arg *a = p;
    char text[32];
    for (int i = 0; i < GC_APPENDS; i++) {
        struct sl_stream_msg m = {text, (size_t)snprintf(text, sizeof text, "%d/%d", a->id, i)};
        uint64_t off = UINT64_MAX;
        if (i % GC_BAD_EVERY == GC_BAD_EVERY - 1) {
            if (sl_stream_append(a->s, "t", GC_PARTS, &m, 1, &off) != SL_ENOTFOUND ||
                off != UINT64_MAX)
                a->failures++;
            continue;
        }
        if (sl_stream_append(a->s, "t", (uint32_t)a->id % GC_PARTS, &m, 1, &off) != 0)
            a->failures++;
        a->offsets[i] = off;
    }
    return NULL;
}

/* The last committed LMDB transaction id, read by a child process with its own handle (a process
 * must not open one environment twice). */
static uint64_t last_txnid(const char *dir)
{
    int fds[2];
    uint64_t id = 0;
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        MDB_env *env;
        MDB_envinfo info = {0};
        if (mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 4) == 0 &&
            mdb_env_open(env, dir, MDB_NOTLS | MDB_RDONLY, 0600) == 0)
            mdb_env_info(env, &info);
        id = info.me_last_txnid;
        _exit(write(fds[1], &id, sizeof id) == sizeof id ? 0 : 1);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], &id, sizeof id), sizeof id);
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return id;
}

static void test_group_commit_threads(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    static struct gc_arg args[GC_THREADS];
    pthread_t th[GC_THREADS];
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", GC_PARTS, NULL), 0);
    uint64_t txn_before = last_txnid(f->dir);
    for (int i = 0; i < GC_THREADS; i++) {
        args[i] = (struct gc_arg){.s = f->s, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, gc_thread, &args[i]), 0);
    }
    for (int i = 0; i < GC_THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    uint64_t txns = last_txnid(f->dir) - txn_before;

    /* Offsets are unique and dense per partition. */
    const int per_part = GC_THREADS / GC_PARTS * (GC_APPENDS - GC_APPENDS / GC_BAD_EVERY);
    static char seen[GC_PARTS][GC_THREADS * GC_APPENDS];
    int good = 0;
    for (int t = 0; t < GC_THREADS; t++) {
        assert_int_equal(args[t].failures, 0);
        for (int i = 0; i < GC_APPENDS; i++) {
            if (i % GC_BAD_EVERY == GC_BAD_EVERY - 1)
                continue;
            uint64_t off = args[t].offsets[i];
            assert_true(off < (uint64_t)per_part);
            assert_int_equal(seen[t % GC_PARTS][off], 0);
            seen[t % GC_PARTS][off] = 1;
            good++;
        }
    }
    assert_int_equal(good, per_part * GC_PARTS);
    printf("    group commit: %d appends in %llu transactions\n", good, (unsigned long long)txns);
    assert_true(txns > 0 && txns < (uint64_t)good);

    /* Every record is readable, at the offset its caller was given. */
    uint32_t all[GC_PARTS] = {0, 1, 2, 3};
    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t", "g", all, GC_PARTS);
    size_t got, total = 0;
    while ((got = poll_now(c, 500, &recs)) > 0) {
        for (size_t i = 0; i < got; i++) {
            int t, k;
            char text[32];
            assert_true(recs[i].len < sizeof text);
            memcpy(text, recs[i].data, recs[i].len);
            text[recs[i].len] = '\0'; /* records are not NUL-terminated */
            assert_int_equal(sscanf(text, "%d/%d", &t, &k), 2);
            assert_true(t >= 0 && t < GC_THREADS && k >= 0 && k < GC_APPENDS);
            assert_int_equal(recs[i].partition, (uint32_t)t % GC_PARTS);
            assert_int_equal(recs[i].offset, args[t].offsets[k]);
            snprintf(text, sizeof text, "%d/%d", t, k);
            assert_text(&recs[i], text);
        }
        total += got;
    }
    assert_int_equal(total, (size_t)good);
    sl_stream_consumer_destroy(c);
}

static void test_cross_process_wakeup(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 2, NULL), 0);
    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){1}, 1);
    assert_non_null(c);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* The child opens its own handle, as every process must after fork(). */
        sleep_ms(300);
        struct sl_stream *s = open_stream(f->dir, BIG_MAP, 0);
        struct sl_stream_msg m = {"hello", 5};
        int rc = s ? sl_stream_append(s, "t", 1, &m, 1, NULL) : -1;
        sl_stream_destroy(s);
        _exit(rc == 0 ? 0 : 1);
    }
    size_t n = 0;
    int64_t t0 = sl_mono_ms();
    assert_int_equal(sl_stream_poll(c, 10, 20000, &recs, &n), 0);
    int64_t waited = sl_mono_ms() - t0;
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(n, 1);
    assert_text(&recs[0], "hello");
    assert_true(waited >= 250 && waited < 5000);
    sl_stream_consumer_destroy(c);
}

static void test_killed_reader_is_cleared(void **state)
{
    struct fixture *f = *state;
    const struct sl_stream_record *recs;
    static char payload[1000];
    struct sl_stream_msg m[100];
    int fds[2];
    sl_stream_destroy(f->s);
    f->s = open_stream(f->dir, (uint64_t)2 << 20, 0);
    assert_non_null(f->s);
    assert_int_equal(sl_stream_topic_ensure(f->s, "t", 1, NULL), 0);
    for (size_t i = 0; i < 100; i++)
        m[i] = (struct sl_stream_msg){payload, sizeof payload};

    /* A child pins the current snapshot with a read transaction, then is killed. */
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        MDB_env *env;
        MDB_txn *txn;
        char ok = 0;
        if (mdb_env_create(&env) == 0 && mdb_env_set_maxdbs(env, 4) == 0 &&
            mdb_env_open(env, f->dir, MDB_NOTLS, 0600) == 0 &&
            mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0)
            ok = 1;
        if (write(fds[1], &ok, 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char ok = 0;
    close(fds[1]);
    assert_int_equal(read(fds[0], &ok, 1), 1);
    close(fds[0]);
    assert_int_equal(ok, 1);
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);

    /* Write, consume and trim several times the map size: this only fits if the dead reader's
     * snapshot is released, so that trimmed pages are reused. */
    struct sl_stream_consumer *c = sl_stream_consumer_create(f->s, "t", "g", (uint32_t[]){0}, 1);
    assert_non_null(c);
    for (int round = 0; round < 40; round++) {
        assert_int_equal(sl_stream_append(f->s, "t", 0, m, 100, NULL), 0);
        size_t got = 0;
        while (poll_now(c, 1000, &recs) > 0)
            got++;
        assert_true(got > 0);
        assert_int_equal(sl_stream_commit(c), 0);
        assert_int_equal(sl_stream_trim(f->s, "t", NULL), 0);
    }
    sl_stream_consumer_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_redelivers_uncommitted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_offsets_explicit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_appends_fill_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disjoint_consumers_fair, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backlog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_grow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_retention_and_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trim_budget_across_partitions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_then_usable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_fails_only_the_big_caller, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_commit_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cross_process_wakeup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_reader_is_cleared, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
