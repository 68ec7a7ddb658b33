/* Unit tests of the store interface on its SQLite backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "store/store.h"

/* ---- fixtures ---- */

#include "store_fixture.h"

static int setup(void **state)
{
    return fx_setup(state, 2);
}

/* ---- test events ---- */

struct tev {
    char uuid[SL_UUID_LEN + 1];
    char org[SL_UUID_LEN + 1];
    char ref[64];
    char title[128];
    char status[32];
    char sig[64];
    char doc[1024];
    struct sl_store_event row;
};

struct tev_spec {
    const char *ref;
    const char *title;
    const char *status;
    int severity;
    const char *sig;
    int64_t date;
    const char *tags;        /* JSON array text */
    const char *observables; /* JSON array text */
};

/* Fills t from spec for org; the uuid is derived from (org, reference) unless uuid is given. */
static void tev_make(struct tev *t, const char *org, const struct tev_spec *sp, const char *uuid,
                     uint64_t origin)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->org, sizeof(t->org), "%s", org);
    snprintf(t->ref, sizeof(t->ref), "%s", sp->ref);
    snprintf(t->title, sizeof(t->title), "%s", sp->title ? sp->title : "t");
    snprintf(t->status, sizeof(t->status), "%s", sp->status ? sp->status : "New");
    snprintf(t->sig, sizeof(t->sig), "%s", sp->sig ? sp->sig : "sig");
    if (uuid) {
        snprintf(t->uuid, sizeof(t->uuid), "%s", uuid);
    } else {
        const char *parts[] = {org, sp->ref};
        size_t lens[] = {strlen(org), strlen(sp->ref)};
        assert_int_equal(sl_uuid_from_parts(parts, lens, 2, t->uuid), 0);
    }
    int n = snprintf(t->doc, sizeof(t->doc),
                     "{\"reference\":\"%s\",\"uuid\":\"%s\",\"organization\":\"%s\","
                     "\"title\":\"%s\",\"status\":{\"name\":\"%s\"},\"severity\":%d,"
                     "\"signature\":\"%s\",\"original_date\":%lld,\"tags\":%s,"
                     "\"observables\":%s}",
                     t->ref, t->uuid, org, t->title, t->status, sp->severity, t->sig,
                     (long long)sp->date, sp->tags ? sp->tags : "[]",
                     sp->observables ? sp->observables : "[]");
    assert_true(n > 0 && (size_t)n < sizeof(t->doc));
    t->row = (struct sl_store_event){
        .uuid = t->uuid,
        .org = t->org,
        .reference = t->ref,
        .title = t->title,
        .signature = t->sig,
        .status = t->status,
        .severity = sp->severity,
        .original_date_ms = sp->date,
        .created_ms = sl_now_ms(),
        .origin = origin,
        .doc = t->doc,
        .doc_len = (size_t)n,
    };
}

static void tev_simple(struct tev *t, const char *org, const char *ref, const char *uuid,
                       uint64_t origin)
{
    struct tev_spec sp = {.ref = ref, .severity = 1, .date = 1000};
    tev_make(t, org, &sp, uuid, origin);
}

/* Puts the rows of ts[0..n) in one batch and returns the call's result. */
static int put(struct sl_store *st, struct tev *ts, size_t n, enum sl_put_outcome *out)
{
    struct sl_store_event rows[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++)
        rows[i] = ts[i].row;
    return sl_store_put_events(st, rows, n, out);
}

static int64_t count(struct sl_store *st, const char *org)
{
    int64_t n = -1;
    assert_int_equal(sl_store_event_count(st, org, &n), 0);
    return n;
}

/* The "reference" values of a listing, in order, joined by commas. */
static void refs_of(const char *json, char *out, size_t cap)
{
    static const char key[] = "\"reference\":\"";
    size_t o = 0;
    out[0] = 0;
    for (const char *p = strstr(json, key); p; p = strstr(p, key)) {
        p += sizeof(key) - 1;
        const char *end = strchr(p, '"');
        assert_non_null(end);
        int n = snprintf(out + o, cap - o, "%s%.*s", o ? "," : "", (int)(end - p), p);
        assert_true(n > 0 && (size_t)n < cap - o);
        o += (size_t)n;
    }
}

/* ---- raw access to the database file, as another program would see it ---- */

static void raw_text(sqlite3 *db, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    snprintf(out, cap, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
}

/* ---- schema ---- */

static void test_schema_create_and_reopen(void **state)
{
    (void)state;
    char base[64], dir[128], err[512], text[64];
    struct stat sb;
    struct sl_org org, got;
    make_tmpdir(base);
    snprintf(dir, sizeof(dir), "%s/a/data", base);

    struct sl_store *st = open_store(dir);
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(sl_store_org_create(st, "acme", &org), 0);
    sl_store_close(st);

    sqlite3 *db = raw_open(dir);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), 3);
    raw_text(db, "PRAGMA journal_mode", text, sizeof(text));
    assert_string_equal(text, "wal");
    assert_int_equal(raw_int(db, "PRAGMA page_size"), 8192);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND"
                                 " name IN ('orgs', 'api_keys', 'events', 'event_keys')"),
                     4);
    /* The events table has one full secondary index, plus the partial one on the case (an
     * event in no case has no entry in it). */
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND"
                                 " tbl_name = 'events'"),
                     2);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND"
                                 " tbl_name = 'events' AND name = 'events_case' AND"
                                 " sql LIKE '%WHERE case_id IS NOT NULL%'"),
                     1);
    sqlite3_close(db);

    st = open_store(dir); /* reopening keeps the data and does not recreate the schema */
    assert_int_equal(sl_store_org_get(st, org.uuid, NULL, &got), 0);
    assert_string_equal(got.name, "acme");
    sl_store_close(st);

    db = raw_open(dir);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 4", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_null(sl_store_open(dir, err, sizeof(err)));
    assert_non_null(strstr(err, "schema version 4 is newer than this sluice supports (3)"));

    db = raw_open(dir);
    assert_int_equal(
        sqlite3_exec(db, "PRAGMA user_version = 2; PRAGMA application_id = 7", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_null(sl_store_open(dir, err, sizeof(err)));
    assert_non_null(strstr(err, "not a sluice database"));

    remove_tree(base);
}

static void test_open_refuses_bad_paths(void **state)
{
    (void)state;
    char base[64], path[128], err[512];
    make_tmpdir(base);

    snprintf(path, sizeof(path), "%s/file", base);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_null(sl_store_open(path, err, sizeof(err))); /* a file where a directory should be */
    assert_non_null(strstr(err, "cannot create"));

    snprintf(path, sizeof(path), "%s/sluice.db", base);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("this is not an SQLite database, just some text long enough to have a header....\n", fp);
    fclose(fp);
    assert_null(sl_store_open(base, err, sizeof(err)));
    assert_non_null(strstr(err, "sluice.db"));

    assert_null(sl_store_open("", err, sizeof(err)));
    remove_tree(base);
}

/* ---- organizations ---- */

static void test_org_create_and_get(void **state)
{
    struct fx *f = *state;
    struct sl_org org, got;
    char upper[SL_UUID_LEN + 1], name[SL_ORG_NAME_MAX + 2];
    int64_t n = 0, now = sl_now_ms();

    assert_true(sl_uuid_valid(f->org.uuid));
    assert_int_equal(f->org.uuid[14], '4'); /* uuid version 4 */
    assert_string_equal(f->org.name, "acme");
    assert_true(f->org.created_ms > now - 60000 && f->org.created_ms <= now);

    assert_int_equal(sl_store_org_create(f->st, "acme", &org), SL_EEXIST);
    assert_int_equal(sl_store_org_create(f->st, "Acme", &org), 0); /* names are case-sensitive */
    assert_int_equal(sl_store_org_create(f->st, "Zürich Öl", NULL), 0);

    memset(name, 'x', SL_ORG_NAME_MAX);
    name[SL_ORG_NAME_MAX] = 0;
    assert_int_equal(sl_store_org_create(f->st, name, NULL), 0);
    name[SL_ORG_NAME_MAX] = 'x';
    name[SL_ORG_NAME_MAX + 1] = 0;
    assert_int_equal(sl_store_org_create(f->st, name, NULL), SL_EINVAL);

    const char *bad[] = {"",         "a\nb",       "tab\there", "del\x7f",
                         "\xff\xfe", "c1\xc2\x85", "cut\xc3",   "overlong\xc0\xaf"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sl_store_org_create(f->st, bad[i], NULL), SL_EINVAL);
    assert_int_equal(sl_store_org_create(f->st, NULL, NULL), SL_EINVAL);

    assert_int_equal(sl_store_org_get(f->st, f->org.uuid, NULL, &got), 0);
    assert_string_equal(got.name, "acme");
    assert_int_equal(got.created_ms, f->org.created_ms);
    assert_int_equal(sl_store_org_get(f->st, NULL, "globex", &got), 0);
    assert_string_equal(got.uuid, f->org2.uuid);
    for (int i = 0; i <= SL_UUID_LEN; i++)
        upper[i] = (char)(f->org.uuid[i] >= 'a' ? f->org.uuid[i] - 32 : f->org.uuid[i]);
    assert_int_equal(sl_store_org_get(f->st, upper, NULL, &got), 0);
    assert_string_equal(got.name, "acme");
    assert_int_equal(sl_store_org_get(f->st, NULL, "nobody", &got), SL_ENOTFOUND);
    assert_int_equal(sl_store_org_get(f->st, "00000000-0000-4000-8000-000000000000", NULL, &got),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_org_get(f->st, "not-a-uuid", NULL, &got), SL_ENOTFOUND);

    assert_int_equal(sl_store_org_count(f->st, &n), 0);
    assert_int_equal(n, 5);
}

/* ---- API keys ---- */

static void check_key_format(const char *key)
{
    assert_memory_equal(key, "sl_", 3);
    for (int i = 3; i < 19; i++)
        assert_non_null(strchr("0123456789abcdef", key[i]));
    assert_int_equal(key[19], '_');
    size_t secret = strlen(key + 20);
    assert_true(secret >= 43);
    for (size_t i = 0; i < secret; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                               key[20 + i]));
    assert_true(strlen(key) < SL_APIKEY_MAX);
}

static void test_apikey(void **state)
{
    struct fx *f = *state;
    char key[SL_APIKEY_MAX], key2[SL_APIKEY_MAX], bad[SL_APIKEY_MAX], sql[256], hash[65];
    char longkey[4096];
    struct sl_principal p;

    assert_int_equal(sl_store_apikey_create(f->st, f->org.uuid, "admin", key), 0);
    check_key_format(key);
    assert_int_equal(sl_store_apikey_create(f->st, f->org2.uuid, "agent", key2), 0);
    check_key_format(key2);
    assert_string_not_equal(key, key2);

    memset(&p, 0, sizeof(p));
    assert_int_equal(sl_store_apikey_lookup(f->st, key, &p), 0);
    assert_string_equal(p.org_uuid, f->org.uuid);
    assert_string_equal(p.org_name, "acme");
    assert_string_equal(p.role, "admin");
    assert_int_equal(strlen(p.key_id), 16);
    assert_memory_equal(p.key_id, key + 3, 16);
    assert_int_equal(sl_store_apikey_lookup(f->st, key2, &p), 0);
    assert_string_equal(p.org_name, "globex");
    assert_string_equal(p.role, "agent");

    assert_int_equal(sl_store_apikey_create(f->st, f->org.uuid, "analyst", key2), 0);
    assert_int_equal(sl_store_apikey_create(f->st, f->org.uuid, "root", key2), SL_EINVAL);
    assert_int_equal(sl_store_apikey_create(f->st, f->org.uuid, "Admin", key2), SL_EINVAL);
    assert_int_equal(sl_store_apikey_create(f->st, f->org.uuid, NULL, key2), SL_EINVAL);
    assert_int_equal(
        sl_store_apikey_create(f->st, "00000000-0000-4000-8000-000000000000", "admin", key2),
        SL_ENOTFOUND);

    memcpy(bad, key, sizeof(bad));
    bad[strlen(bad) - 1] ^= 1; /* one character of the secret changed */
    assert_int_equal(sl_store_apikey_lookup(f->st, bad, &p), SL_ENOTFOUND);
    assert_int_equal(sl_store_apikey_lookup(f->st, "", &p), SL_ENOTFOUND);
    assert_int_equal(sl_store_apikey_lookup(f->st, "sl_", &p), SL_ENOTFOUND);
    assert_int_equal(sl_store_apikey_lookup(f->st, NULL, &p), SL_ENOTFOUND);
    memset(longkey, 'a', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = 0;
    memcpy(longkey, key, strlen(key));
    assert_int_equal(sl_store_apikey_lookup(f->st, longkey, &p), SL_ENOTFOUND);

    /* Only the SHA-256 of the key is stored, never the secret. */
    sqlite3 *db = raw_open(f->dir);
    sl_sha256_hex(key, strlen(key), hash);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM api_keys WHERE hash = '%s'", hash);
    assert_int_equal(raw_int(db, sql), 1);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM api_keys WHERE instr(hash || key_id || role, '%s') > 0",
             key + 20);
    assert_int_equal(raw_int(db, sql), 0);
    sqlite3_close(db);
}

/* ---- put_events ---- */

static void test_put_outcomes(void **state)
{
    struct fx *f = *state;
    struct tev ts[4];
    enum sl_put_outcome out[4];
    char *doc = NULL;

    tev_simple(&ts[0], f->org.uuid, "a", NULL, 1);
    tev_simple(&ts[1], f->org.uuid, "b", NULL, 2);
    tev_simple(&ts[2], f->org.uuid, "c", NULL, 3);
    assert_int_equal(put(f->st, ts, 3, out), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(out[i], SL_PUT_STORED);
    assert_int_equal(count(f->st, f->org.uuid), 3);

    /* The same records again (a redelivery after a crash before the offset commit). */
    assert_int_equal(put(f->st, ts, 3, out), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(out[i], SL_PUT_REDELIVERED);

    /* The same references from other records: duplicates, not written again. */
    tev_simple(&ts[0], f->org.uuid, "a", NULL, 100);
    tev_simple(&ts[1], f->org.uuid, "d", NULL, 101);
    tev_simple(&ts[2], f->org.uuid, "d", NULL, 102); /* the same reference twice in one batch */
    tev_simple(&ts[3], f->org.uuid, "d", NULL, 103);
    assert_int_equal(put(f->st, ts, 4, out), 0);
    assert_int_equal(out[0], SL_PUT_DUPLICATE);
    assert_int_equal(out[1], SL_PUT_STORED);
    assert_int_equal(out[2], SL_PUT_DUPLICATE);
    assert_int_equal(out[3], SL_PUT_DUPLICATE);
    assert_int_equal(count(f->st, f->org.uuid), 4);

    /* The first record of "a" is the stored one. */
    tev_simple(&ts[0], f->org.uuid, "a", NULL, 1);
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, ts[0].uuid, &doc), 0);
    assert_string_equal(doc, ts[0].doc);
    free(doc);

    /* Another organization with the same reference is a different event. */
    tev_simple(&ts[0], f->org2.uuid, "a", NULL, 7);
    tev_simple(&ts[1], f->org.uuid, "a", NULL, 8);
    assert_int_equal(put(f->st, ts, 2, out), 0);
    assert_int_equal(out[0], SL_PUT_STORED);
    assert_int_equal(out[1], SL_PUT_DUPLICATE);
    assert_int_equal(count(f->st, f->org.uuid), 4);
    assert_int_equal(count(f->st, f->org2.uuid), 1);
    assert_int_equal(count(f->st, NULL), 5);
    assert_int_equal(sl_store_event_count(f->st, "00000000-0000-4000-8000-000000000000", NULL),
                     SL_ENOTFOUND);

    assert_int_equal(sl_store_put_events(f->st, NULL, 0, NULL), 0);
}

static void test_put_all_or_nothing(void **state)
{
    struct fx *f = *state;
    struct tev ts[3];
    enum sl_put_outcome out[3];

    /* The third event's organization does not exist: the first two must not be kept. */
    tev_simple(&ts[0], f->org.uuid, "x1", NULL, 1);
    tev_simple(&ts[1], f->org.uuid, "x2", NULL, 2);
    tev_simple(&ts[2], "00000000-0000-4000-8000-000000000000", "x3", NULL, 3);
    assert_int_equal(put(f->st, ts, 3, out), SL_ENOTFOUND);
    assert_int_equal(count(f->st, NULL), 0);

    tev_simple(&ts[2], f->org.uuid, "x3", "not-a-uuid", 3);
    assert_int_equal(put(f->st, ts, 3, out), SL_EINVAL);
    ts[2].row.uuid = ts[1].uuid;
    ts[2].row.doc = NULL;
    assert_int_equal(put(f->st, ts, 3, out), SL_EINVAL);
    assert_int_equal(count(f->st, NULL), 0);

    /* The handle is still usable after the rollback. */
    assert_int_equal(put(f->st, ts, 2, out), 0);
    assert_int_equal(out[0], SL_PUT_STORED);
    assert_int_equal(out[1], SL_PUT_STORED);
    assert_int_equal(count(f->st, f->org.uuid), 2);
}

static void expect_doc(struct sl_store *st, const struct tev *t)
{
    char *doc = NULL;
    assert_int_equal(sl_store_event_get(st, t->org, t->uuid, &doc), 0);
    assert_string_equal(doc, t->doc);
    free(doc);
}

/* Every dedup key, whichever of the two key tables holds it. */
#define ALL_KEYS "(SELECT k, seq FROM event_keys UNION ALL SELECT k, seq FROM event_keys_recent)"

/* Distinct events whose uuids share their first 64 bits must all be kept and found. */
static void test_key_collisions(void **state)
{
    struct fx *f = *state;
    struct tev ts[8];
    enum sl_put_outcome out[8];
    char *doc = NULL;

    /* a and b collide on k; c sits at k+1, so b must go to k+2. */
    tev_simple(&ts[0], f->org.uuid, "a", "01234567-89ab-8def-8000-00000000000a", 1);
    tev_simple(&ts[1], f->org.uuid, "c", "01234567-89ab-8df0-8000-00000000000c", 2);
    tev_simple(&ts[2], f->org.uuid, "b", "01234567-89ab-8def-8000-00000000000b", 3);
    /* d and e collide at the top of the signed range: e wraps to INT64_MIN, where f would
     * have gone, so f moves one further. */
    tev_simple(&ts[3], f->org.uuid, "d", "7fffffff-ffff-ffff-8000-00000000000d", 4);
    tev_simple(&ts[4], f->org.uuid, "e", "7fffffff-ffff-ffff-8000-00000000000e", 5);
    tev_simple(&ts[5], f->org.uuid, "f", "80000000-0000-0000-8000-00000000000f", 6);
    assert_int_equal(put(f->st, ts, 6, out), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(out[i], SL_PUT_STORED);
    assert_int_equal(count(f->st, NULL), 6);
    for (int i = 0; i < 6; i++)
        expect_doc(f->st, &ts[i]);

    /* The uuid is the key: the same uuid in another organization is the same event (a rule
     * moved it), a duplicate, and not found in that organization. */
    tev_simple(&ts[6], f->org2.uuid, "a", "01234567-89ab-8def-8000-00000000000a", 7);
    assert_int_equal(put(f->st, &ts[6], 1, out), 0);
    assert_int_equal(out[0], SL_PUT_DUPLICATE);
    assert_int_equal(
        sl_store_event_get(f->st, f->org2.uuid, "01234567-89ab-8def-8000-00000000000a", &doc),
        SL_ENOTFOUND);

    /* Redelivery and duplicates are recognized at the end of their probe chains. */
    assert_int_equal(put(f->st, ts, 6, out), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(out[i], SL_PUT_REDELIVERED);
    tev_simple(&ts[7], f->org.uuid, "b", "01234567-89ab-8def-8000-00000000000b", 99);
    assert_int_equal(put(f->st, &ts[7], 1, out), 0);
    assert_int_equal(out[0], SL_PUT_DUPLICATE);
    assert_int_equal(count(f->st, NULL), 6);

    /* Absent uuids on an occupied chain are not found. */
    assert_int_equal(
        sl_store_event_get(f->st, f->org.uuid, "01234567-89ab-8def-8000-000000000099", &doc),
        SL_ENOTFOUND);
    assert_null(doc);
    assert_int_equal(
        sl_store_event_get(f->st, f->org2.uuid, "01234567-89ab-8df0-8000-00000000000c", &doc),
        SL_ENOTFOUND);

    /* The slots are where open addressing says they are. */
    sqlite3 *db = raw_open(f->dir);
    assert_int_equal(raw_int(db, "SELECT e.reference = 'b' FROM " ALL_KEYS " s JOIN events e"
                                 " ON e.seq = s.seq WHERE s.k = 0x0123456789ab8df0 + 1"),
                     1);
    assert_int_equal(raw_int(db, "SELECT e.reference = 'e' FROM " ALL_KEYS " s JOIN events e"
                                 " ON e.seq = s.seq WHERE s.k = -9223372036854775807 - 1"),
                     1);
    assert_int_equal(raw_int(db, "SELECT e.reference = 'f' FROM " ALL_KEYS " s JOIN events e"
                                 " ON e.seq = s.seq WHERE s.k = -9223372036854775807"),
                     1);
    sqlite3_close(db);
}

/* Puts count events with references prefix-0, prefix-1, ... in batches of 100. */
static void put_fillers(struct sl_store *st, const char *org, const char *prefix, int n)
{
    struct sl_store_event rows[100];
    enum sl_put_outcome out[100];
    struct tev *ts = calloc(100, sizeof(*ts));
    assert_non_null(ts);
    for (int i = 0; i < n; i += 100) {
        int m = n - i < 100 ? n - i : 100;
        for (int j = 0; j < m; j++) {
            char ref[48];
            snprintf(ref, sizeof(ref), "%s-%d", prefix, i + j);
            tev_simple(&ts[j], org, ref, NULL, (uint64_t)(i + j));
            rows[j] = ts[j].row;
        }
        assert_int_equal(sl_store_put_events(st, rows, (size_t)m, out), 0);
        for (int j = 0; j < m; j++)
            assert_int_equal(out[j], SL_PUT_STORED);
    }
    free(ts);
}

/* New keys collect in event_keys_recent and are merged into event_keys once there are enough
 * of them (at least 1,024); probe chains and duplicates must work across the two tables. */
static void test_keys_merge(void **state)
{
    struct fx *f = *state;
    struct tev ts[4];
    enum sl_put_outcome out[4];

    tev_simple(&ts[0], f->org.uuid, "a", "0a0a0a0a-0a0a-8a0a-8000-00000000000a", 1);
    assert_int_equal(put(f->st, ts, 1, out), 0);
    put_fillers(f->st, f->org.uuid, "fill", 1022);

    /* 1,023 keys: not merged yet. */
    sqlite3 *db = raw_open(f->dir);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM event_keys"), 0);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM event_keys_recent"), 1023);
    assert_int_equal(raw_int(db, "SELECT recent_keys FROM store_state"), 1023);
    put_fillers(f->st, f->org.uuid, "last", 1);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM event_keys"), 1024);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM event_keys_recent"), 0);
    assert_int_equal(raw_int(db, "SELECT recent_keys FROM store_state"), 0);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM event_keys"
                                 " WHERE k = 0x0a0a0a0a0a0a8a0a"),
                     1);

    /* b collides with a, which is now in event_keys: b goes to the next slot, in recent. */
    tev_simple(&ts[1], f->org.uuid, "b", "0a0a0a0a-0a0a-8a0a-8000-00000000000b", 2);
    tev_simple(&ts[2], f->org.uuid, "a", "0a0a0a0a-0a0a-8a0a-8000-00000000000a", 3);
    tev_simple(&ts[3], f->org.uuid, "fill-7", NULL, 7);
    assert_int_equal(put(f->st, &ts[1], 3, out), 0);
    assert_int_equal(out[0], SL_PUT_STORED);
    assert_int_equal(out[1], SL_PUT_DUPLICATE);
    assert_int_equal(out[2], SL_PUT_REDELIVERED);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM event_keys_recent"
                                 " WHERE k = 0x0a0a0a0a0a0a8a0a + 1"),
                     1);
    expect_doc(f->st, &ts[0]);
    expect_doc(f->st, &ts[1]);
    expect_doc(f->st, &ts[3]);

    /* After the next merge everything is still found once. */
    put_fillers(f->st, f->org.uuid, "more", 1100);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM event_keys_recent"), 0);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM event_keys"), 2125);
    sqlite3_close(db);
    assert_int_equal(put(f->st, ts, 2, out), 0);
    assert_int_equal(out[0], SL_PUT_REDELIVERED);
    assert_int_equal(out[1], SL_PUT_REDELIVERED);
    expect_doc(f->st, &ts[1]);
    assert_int_equal(count(f->st, NULL), 2125);
}

static void test_event_get(void **state)
{
    struct fx *f = *state;
    struct tev ts[2];
    enum sl_put_outcome out[2];
    char *doc = NULL, upper[SL_UUID_LEN + 1];

    tev_simple(&ts[0], f->org.uuid, "r", NULL, 1);
    tev_simple(&ts[1], f->org2.uuid, "s", NULL, 2);
    assert_int_equal(put(f->st, ts, 2, out), 0);
    expect_doc(f->st, &ts[0]);
    expect_doc(f->st, &ts[1]);
    for (int i = 0; i <= SL_UUID_LEN; i++)
        upper[i] = (char)(ts[0].uuid[i] >= 'a' ? ts[0].uuid[i] - 32 : ts[0].uuid[i]);
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, upper, &doc), 0);
    assert_string_equal(doc, ts[0].doc);
    free(doc);
    doc = NULL;

    /* Another organization's event does not exist for this one. */
    assert_int_equal(sl_store_event_get(f->st, f->org2.uuid, ts[0].uuid, &doc), SL_ENOTFOUND);
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, ts[1].uuid, &doc), SL_ENOTFOUND);
    assert_int_equal(
        sl_store_event_get(f->st, "00000000-0000-4000-8000-000000000000", ts[0].uuid, &doc),
        SL_ENOTFOUND);
    assert_int_equal(
        sl_store_event_get(f->st, f->org.uuid, "12345678-1234-8234-8234-123456789abc", &doc),
        SL_ENOTFOUND);
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, "nope", &doc), SL_ENOTFOUND);
    assert_null(doc);
}

/* ---- event_list ---- */

static const struct tev_spec list_specs[] = {
    {"r1", "Suspicious Login", "New", 1, "s1", 1000, "[\"auth\"]",
     "[{\"value\":\"10.0.0.1\",\"data_type\":\"ip\"}]"},
    {"r2", "Malware Detected", "Open", 3, "s2", 2000, "[\"malware\",\"edr\"]",
     "[{\"value\":\"evil.com\",\"data_type\":\"domain\"},{\"value\":\"10.0.0.2\"}]"},
    {"r3", "suspicious DNS query", "New", 2, "s1", 3000, "[]",
     "[{\"value\":\"evil.com\",\"data_type\":\"domain\"}]"},
    {"r4", "Port scan", "closed", 4, "s3", 4000, "[\"network\",\"10.0.0.2\"]", "[]"},
    {"r5", "LOGIN failure burst", "NEW", 1, "s1", 5000, "[\"auth\",\"brute\"]",
     "[{\"value\":\"10.0.0.1\",\"data_type\":\"ip\"}]"},
};

static void list_setup(struct fx *f)
{
    struct tev ts[6];
    enum sl_put_outcome out[6];
    size_t n = sizeof(list_specs) / sizeof(list_specs[0]);
    for (size_t i = 0; i < n; i++)
        tev_make(&ts[i], f->org.uuid, &list_specs[i], NULL, i);
    /* Another organization's matching event must never show up. */
    tev_make(&ts[n], f->org2.uuid, &list_specs[0], NULL, 99);
    assert_int_equal(put(f->st, ts, n + 1, out), 0);
}

/* Lists with f and checks the references on the page and the total. */
static void expect_list(struct sl_store *st, const struct sl_event_filter *f, const char *refs,
                        int64_t total)
{
    char *json = NULL, got[256];
    int64_t n = -1;
    assert_int_equal(sl_store_event_list(st, f, &json, &n), 0);
    assert_non_null(json);
    assert_int_equal(json[0], '[');
    assert_int_equal(json[strlen(json) - 1], ']');
    refs_of(json, got, sizeof(got));
    assert_string_equal(got, refs);
    assert_int_equal(n, total);
    free(json);
}

static void test_list_filters(void **state)
{
    struct fx *fx = *state;
    list_setup(fx);
    const struct sl_event_filter base = {.org = fx->org.uuid, .page = 1, .page_size = 50};
    struct sl_event_filter f = base;

    expect_list(fx->st, &f, "r5,r4,r3,r2,r1", 5);
    f.sort_asc = 1;
    expect_list(fx->st, &f, "r1,r2,r3,r4,r5", 5);

    f = base, f.status = "new";
    expect_list(fx->st, &f, "r5,r3,r1", 3);
    f = base, f.status = "";
    expect_list(fx->st, &f, "r5,r4,r3,r2,r1", 5);

    f = base, f.severities[0] = 1, f.severities[1] = 4, f.nseverities = 2;
    expect_list(fx->st, &f, "r5,r4,r1", 3);
    f = base, f.severities[0] = 3, f.nseverities = 1;
    expect_list(fx->st, &f, "r2", 1);

    f = base, f.title = "suspicious";
    expect_list(fx->st, &f, "r3,r1", 2);
    f = base, f.title = "LOGIN";
    expect_list(fx->st, &f, "r5,r1", 2);
    f = base, f.title = "%";
    expect_list(fx->st, &f, "", 0); /* no wildcards: a literal substring */

    f = base, f.signature = "s1";
    expect_list(fx->st, &f, "r5,r3,r1", 3);
    f = base, f.signature = "S1";
    expect_list(fx->st, &f, "", 0);

    f = base, f.tag = "auth";
    expect_list(fx->st, &f, "r5,r1", 2);
    f = base, f.tag = "10.0.0.2";
    expect_list(fx->st, &f, "r4", 1);

    f = base, f.observable = "evil.com";
    expect_list(fx->st, &f, "r3,r2", 2);
    f = base, f.observable = "10.0.0.2";
    expect_list(fx->st, &f, "r2", 1);
    f = base, f.observable = "auth";
    expect_list(fx->st, &f, "", 0);

    f = base, f.start_ms = 2000, f.end_ms = 4000;
    expect_list(fx->st, &f, "r4,r3,r2", 3);
    f = base, f.start_ms = 3000;
    expect_list(fx->st, &f, "r5,r4,r3", 3);
    f = base, f.end_ms = 1999;
    expect_list(fx->st, &f, "r1", 1);

    f = base, f.status = "NEW", f.tag = "auth", f.severities[0] = 1, f.nseverities = 1;
    f.observable = "10.0.0.1", f.signature = "s1", f.title = "login";
    expect_list(fx->st, &f, "r5,r1", 2);

    f = base, f.org = fx->org2.uuid;
    expect_list(fx->st, &f, "r1", 1);
    f = base, f.org = "00000000-0000-4000-8000-000000000000";
    expect_list(fx->st, &f, "", 0);
}

static void test_list_pages(void **state)
{
    struct fx *fx = *state;
    char *json = NULL;
    int64_t total = 0;
    list_setup(fx);
    struct sl_event_filter f = {.org = fx->org.uuid, .page = 1, .page_size = 2};

    expect_list(fx->st, &f, "r5,r4", 5);
    f.page = 2;
    expect_list(fx->st, &f, "r3,r2", 5);
    f.page = 3;
    expect_list(fx->st, &f, "r1", 5);
    f.page = 4;
    expect_list(fx->st, &f, "", 5);
    f.page = 2, f.sort_asc = 1, f.status = "new";
    expect_list(fx->st, &f, "r5", 3);
    f = (struct sl_event_filter){.org = fx->org.uuid, .page = 1, .page_size = 1000};
    expect_list(fx->st, &f, "r5,r4,r3,r2,r1", 5);

    const struct sl_event_filter bad[] = {
        {.org = fx->org.uuid, .page = 1, .page_size = 0},
        {.org = fx->org.uuid, .page = 1, .page_size = 1001},
        {.org = fx->org.uuid, .page = 0, .page_size = 10},
        {.org = fx->org.uuid, .page = -1, .page_size = 10},
        {.org = fx->org.uuid, .page = INT64_MAX, .page_size = 1000},
        {.org = fx->org.uuid, .page = 1, .page_size = 10, .nseverities = 9},
        {.org = NULL, .page = 1, .page_size = 10},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sl_store_event_list(fx->st, &bad[i], &json, &total), SL_EINVAL);
        assert_null(json);
    }
}

/* A page whose documents exceed the 32 MiB page limit is refused with SL_EFULL (not built up to
 * some larger size); a smaller page of the same events fits. */
#define BIG_EVENTS    5
#define BIG_DOC_BYTES ((size_t)7 << 20)

static void test_list_page_too_large(void **state)
{
    struct fx *fx = *state;
    struct tev *ts = calloc(BIG_EVENTS, sizeof(*ts));
    struct sl_store_event rows[BIG_EVENTS];
    enum sl_put_outcome out[BIG_EVENTS];
    char *docs[BIG_EVENTS], *json = NULL;
    int64_t total = 0;
    assert_non_null(ts);
    for (int i = 0; i < BIG_EVENTS; i++) {
        char ref[16];
        snprintf(ref, sizeof(ref), "big-%d", i);
        tev_simple(&ts[i], fx->org.uuid, ref, NULL, (uint64_t)i);
        docs[i] = malloc(BIG_DOC_BYTES + 1);
        assert_non_null(docs[i]);
        int n = snprintf(docs[i], BIG_DOC_BYTES, "{\"reference\":\"%s\",\"pad\":\"", ref);
        assert_true(n > 0);
        memset(docs[i] + n, 'x', BIG_DOC_BYTES - (size_t)n - 2);
        memcpy(docs[i] + BIG_DOC_BYTES - 2, "\"}", 3);
        rows[i] = ts[i].row;
        rows[i].doc = docs[i];
        rows[i].doc_len = BIG_DOC_BYTES;
    }
    assert_int_equal(sl_store_put_events(fx->st, rows, BIG_EVENTS, out), 0);

    /* 5 x 7 MiB > 32 MiB. */
    struct sl_event_filter f = {.org = fx->org.uuid, .page = 1, .page_size = BIG_EVENTS};
    assert_int_equal(sl_store_event_list(fx->st, &f, &json, &total), SL_EFULL);
    assert_null(json);

    /* 4 x 7 MiB fits, on the same handle. */
    f.page_size = 4;
    assert_int_equal(sl_store_event_list(fx->st, &f, &json, &total), 0);
    assert_non_null(json);
    assert_int_equal(total, BIG_EVENTS);
    assert_int_equal(strlen(json), 2 + 4 * BIG_DOC_BYTES + 3);
    assert_int_equal(json[0], '[');
    assert_int_equal(json[strlen(json) - 1], ']');
    free(json);
    json = NULL;
    f.page = 2;
    assert_int_equal(sl_store_event_list(fx->st, &f, &json, &total), 0);
    assert_int_equal(strlen(json), 2 + BIG_DOC_BYTES);
    free(json);
    json = NULL;

    /* The limit is on the page's bytes, whatever the page size: with it lowered below one
     * document even a page of one event is refused. */
    sl_store_sqlite_test_limits(fx->st, BIG_DOC_BYTES, 0);
    f.page = 1, f.page_size = 1;
    assert_int_equal(sl_store_event_list(fx->st, &f, &json, &total), SL_EFULL);
    assert_null(json);
    sl_store_sqlite_test_limits(fx->st, 0, 0);
    assert_int_equal(sl_store_event_list(fx->st, &f, &json, &total), 0);
    free(json);
    for (int i = 0; i < BIG_EVENTS; i++)
        free(docs[i]);
    free(ts);
}

/* A list query that runs past the read deadline is interrupted (SL_ETIMEDOUT), and the handle
 * is left usable: no open transaction, no progress handler. */
static void test_list_deadline(void **state)
{
    struct fx *fx = *state;
    char *json = NULL;
    int64_t total = -1;
    struct tev t;
    enum sl_put_outcome out[1];
    put_fillers(fx->st, fx->org.uuid, "slow", 3000);

    /* A deadline already passed: the first check of the clock (after 10,000 VM steps) stops
     * the count, which reads every document for the tag filter. */
    sl_store_sqlite_test_limits(fx->st, 0, -1);
    struct sl_event_filter f = {.org = fx->org.uuid, .page = 1, .page_size = 10, .tag = "auth"};
    assert_int_equal(sl_store_event_list(fx->st, &f, &json, &total), SL_ETIMEDOUT);
    assert_null(json);
    f.tag = NULL, f.observable = "10.0.0.1";
    assert_int_equal(sl_store_event_list(fx->st, &f, &json, &total), SL_ETIMEDOUT);
    assert_null(json);

    /* The read left no transaction open (BEGIN IMMEDIATE would fail inside one) and no
     * progress handler: writes of far more than 10,000 VM steps, with the deadline still
     * passed, are not interrupted. */
    tev_simple(&t, fx->org.uuid, "after", NULL, 9999);
    assert_int_equal(put(fx->st, &t, 1, out), 0);
    assert_int_equal(out[0], SL_PUT_STORED);
    put_fillers(fx->st, fx->org.uuid, "more", 1000);

    /* With the normal deadline the same query completes. */
    sl_store_sqlite_test_limits(fx->st, 0, 0);
    f.observable = NULL, f.tag = "auth";
    expect_list(fx->st, &f, "", 0);
    f.tag = NULL, f.signature = "sig", f.page_size = 2;
    assert_int_equal(sl_store_event_list(fx->st, &f, &json, &total), 0);
    assert_int_equal(total, 4001);
    free(json);
}

/* ---- two handles, as two worker processes would have ---- */

#define CONC_BATCH 40
#define CONC_REFS  800

struct writer {
    const char *dir;
    const char *org;
    int first, step; /* references first, first+step, ... (CONC_REFS of them) */
    uint64_t origin_base;
    int stored, duplicates, other, rc;
};

static void *writer_run(void *arg)
{
    struct writer *w = arg;
    char err[512];
    struct sl_store *st = sl_store_open(w->dir, err, sizeof(err));
    if (!st) {
        w->rc = -1;
        return NULL;
    }
    struct tev *ts = calloc(CONC_BATCH, sizeof(*ts));
    struct sl_store_event rows[CONC_BATCH];
    enum sl_put_outcome out[CONC_BATCH];
    for (int i = 0; i < CONC_REFS && w->rc == 0; i += CONC_BATCH) {
        for (int j = 0; j < CONC_BATCH; j++) {
            char ref[32];
            snprintf(ref, sizeof(ref), "ref-%d", w->first + (i + j) * w->step);
            tev_simple(&ts[j], w->org, ref, NULL, w->origin_base + (uint64_t)(i + j));
            rows[j] = ts[j].row;
        }
        w->rc = sl_store_put_events(st, rows, CONC_BATCH, out);
        for (int j = 0; j < CONC_BATCH && w->rc == 0; j++) {
            if (out[j] == SL_PUT_STORED)
                w->stored++;
            else if (out[j] == SL_PUT_DUPLICATE)
                w->duplicates++;
            else
                w->other++;
        }
    }
    free(ts);
    sl_store_close(st);
    return NULL;
}

static void test_concurrent_handles(void **state)
{
    struct fx *f = *state;
    /* A writes ref-0 .. ref-799 upwards, B writes ref-1199 .. ref-400 downwards: they meet in
     * the middle, both writing ref-400 .. ref-799. */
    struct writer w[2] = {
        {.dir = f->dir, .org = f->org.uuid, .first = 0, .step = 1, .origin_base = 0},
        {.dir = f->dir, .org = f->org.uuid, .first = 1199, .step = -1, .origin_base = 1ull << 48},
    };
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, writer_run, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(w[i].rc, 0);
        assert_int_equal(w[i].other, 0);
        assert_int_equal(w[i].stored + w[i].duplicates, CONC_REFS);
    }
    assert_int_equal(w[0].stored + w[1].stored, 1200);
    assert_int_equal(w[0].duplicates + w[1].duplicates, 400);
    assert_int_equal(count(f->st, f->org.uuid), 1200);

    sqlite3 *db = raw_open(f->dir);
    assert_int_equal(raw_int(db, "SELECT count(DISTINCT reference) FROM events"), 1200);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM " ALL_KEYS), 1200);
    assert_int_equal(raw_int(db, "SELECT count(DISTINCT k) FROM " ALL_KEYS), 1200);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM event_keys_recent"),
                     raw_int(db, "SELECT recent_keys FROM store_state"));
    sqlite3_close(db);
    for (int i = 0; i < 1200; i += 37) {
        struct tev t;
        char ref[32];
        snprintf(ref, sizeof(ref), "ref-%d", i);
        tev_simple(&t, f->org.uuid, ref, NULL, 0);
        char *doc = NULL;
        assert_int_equal(sl_store_event_get(f->st, f->org.uuid, t.uuid, &doc), 0);
        assert_non_null(strstr(doc, t.uuid));
        free(doc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_create_and_reopen),
        cmocka_unit_test(test_open_refuses_bad_paths),
        cmocka_unit_test_setup_teardown(test_org_create_and_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_apikey, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_outcomes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_collisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keys_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_page_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_handles, setup, teardown),
    };
    sl_log_level_current = SL_LOG_WARN;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
