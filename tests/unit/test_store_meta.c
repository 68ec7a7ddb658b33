/* Unit tests of the store's schema versions 2 and 3 on SQLite: migration from version 1,
 * organization defaults, metadata objects, intel list values, the effects of storing an event
 * (rule hits, cases, mutes) and deduplication of events a rule moved to another organization.
 * Cases themselves: test_store_cases.c. */
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

#include <cjson/cJSON.h>
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

/* ---- events ---- */

struct tev {
    char uuid[SL_UUID_LEN + 1];
    char org[SL_UUID_LEN + 1];
    char ref[64];
    char sig[64];
    char doc[512];
    struct sl_store_event row;
};

/* An event ingested by ingest_org (its uuid comes from that and ref) and stored in org. */
static void tev_make(struct tev *t, const char *ingest_org, const char *org, const char *ref,
                     uint64_t origin, int64_t created_ms)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->org, sizeof(t->org), "%s", org);
    snprintf(t->ref, sizeof(t->ref), "%s", ref);
    snprintf(t->sig, sizeof(t->sig), "sig-%s", ref);
    const char *parts[] = {ingest_org, ref};
    size_t lens[] = {strlen(ingest_org), strlen(ref)};
    assert_int_equal(sl_uuid_from_parts(parts, lens, 2, t->uuid), 0);
    int n = snprintf(t->doc, sizeof(t->doc),
                     "{\"reference\":\"%s\",\"uuid\":\"%s\",\"organization\":\"%s\"}", ref, t->uuid,
                     org);
    assert_true(n > 0 && (size_t)n < sizeof(t->doc));
    t->row = (struct sl_store_event){
        .uuid = t->uuid,
        .org = t->org,
        .reference = t->ref,
        .title = "title",
        .signature = t->sig,
        .status = "New",
        .severity = 2,
        .original_date_ms = created_ms,
        .created_ms = created_ms,
        .origin = origin,
        .doc = t->doc,
        .doc_len = (size_t)n,
    };
}

static enum sl_put_outcome put1(struct sl_store *st, const struct tev *t)
{
    enum sl_put_outcome out = 99;
    assert_int_equal(sl_store_put_events(st, &t->row, 1, &out), 0);
    return out;
}

static void new_meta(struct sl_store *st, enum sl_meta_kind kind, const char *org, const char *name,
                     int global, char uuid[SL_UUID_LEN + 1])
{
    char doc[512];
    struct sl_meta m = {.global = global, .doc = doc};
    sl_uuid4(uuid);
    snprintf(m.uuid, sizeof(m.uuid), "%s", uuid);
    snprintf(m.org, sizeof(m.org), "%s", org);
    snprintf(m.name, sizeof(m.name), "%s", name);
    snprintf(doc, sizeof(doc), "{\"uuid\":\"%s\",\"name\":\"%s\"}", uuid, name);
    assert_int_equal(sl_store_meta_put(st, kind, &m, 1), 0);
}

static struct sl_meta meta_get(struct sl_store *st, enum sl_meta_kind kind, const char *uuid)
{
    struct sl_meta m;
    memset(&m, 0, sizeof(m));
    assert_int_equal(sl_store_meta_get(st, kind, uuid, &m), 0);
    return m;
}

/* The names of a listing, joined by commas. */
static void names_of(const struct sl_meta *m, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(out + o, cap - o, "%s%s", i ? "," : "", m[i].name);
        assert_true(w > 0 && (size_t)w < cap - o);
        o += (size_t)w;
    }
}

static void expect_names(struct sl_store *st, enum sl_meta_kind kind, const char *org,
                         int with_global, const char *want)
{
    struct sl_meta *m = NULL;
    size_t n = 0;
    char got[1024];
    assert_int_equal(sl_store_meta_list(st, kind, org, with_global, &m, &n), 0);
    names_of(m, n, got, sizeof(got));
    assert_string_equal(got, want);
    sl_store_meta_free(m, n);
}

/* ---- migration from schema version 1 ---- */

/* Schema version 1 as the first release wrote it. */
static const char v1_schema[] =
    "CREATE TABLE orgs (id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE,"
    " name TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL);"
    "CREATE TABLE api_keys (hash TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE,"
    " org_id INTEGER NOT NULL REFERENCES orgs(id),"
    " role TEXT NOT NULL CHECK (role IN ('admin', 'analyst', 'agent')),"
    " created_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, org_id INTEGER NOT NULL, uuid TEXT NOT NULL,"
    " reference TEXT NOT NULL, title TEXT, signature TEXT, status TEXT,"
    " severity INTEGER NOT NULL, original_date_ms INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL, origin INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE INDEX events_org_date ON events(org_id, original_date_ms);"
    "CREATE TABLE event_keys (k INTEGER PRIMARY KEY, seq INTEGER NOT NULL);"
    "CREATE TABLE event_keys_recent (k INTEGER PRIMARY KEY, seq INTEGER NOT NULL);"
    "CREATE TABLE store_state (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " recent_keys INTEGER NOT NULL);"
    "INSERT INTO store_state (id, recent_keys) VALUES (1, 0);"
    "CREATE TABLE event_counts (org_id INTEGER PRIMARY KEY REFERENCES orgs(id),"
    " n INTEGER NOT NULL);"
    "PRAGMA application_id = 1397506885;"
    "PRAGMA user_version = 1;";

#define V1_ORG1 "11111111-1111-4111-8111-111111111111"
#define V1_ORG2 "22222222-2222-4222-8222-222222222222"

/* The dedup key of a uuid as version 1 stored it: its first 64 bits, two's complement. */
static int64_t key_of(const char *uuid)
{
    uint64_t k = 0;
    for (int i = 0; i < 18; i++) {
        if (uuid[i] == '-')
            continue;
        int c = uuid[i];
        k = k << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return (int64_t)k;
}

/* Writes a version 1 database as the first release would have: two organizations (created in
 * the order default, other), an API key, and events of both, their keys in event_keys (the
 * first) and event_keys_recent (the others). */
static void write_v1(const char *dir, struct tev evs[3])
{
    char sql[2048];
    sqlite3 *db = raw_open(dir);
    raw_exec(db, "PRAGMA journal_mode = WAL");
    raw_exec(db, v1_schema);
    raw_exec(db, "INSERT INTO orgs VALUES (1, '" V1_ORG1 "', 'default', 1000),"
                 " (2, '" V1_ORG2 "', 'other', 2000);"
                 "INSERT INTO api_keys VALUES ('abc', 'k1', 2, 'agent', 3000);");
    tev_make(&evs[0], V1_ORG1, V1_ORG1, "e1", 1, 5000);
    tev_make(&evs[1], V1_ORG1, V1_ORG1, "e2", 2, 6000);
    tev_make(&evs[2], V1_ORG2, V1_ORG2, "e3", 3, 7000);
    for (int i = 0; i < 3; i++) {
        snprintf(sql, sizeof(sql),
                 "INSERT INTO events VALUES (%d, %d, '%s', '%s', 'title', '%s', 'New', 2, %lld,"
                 " %lld, %d, '%s');"
                 "INSERT INTO %s VALUES (%lld, %d);",
                 i + 1, i < 2 ? 1 : 2, evs[i].uuid, evs[i].ref, evs[i].sig,
                 (long long)evs[i].row.created_ms, (long long)evs[i].row.created_ms, i + 1,
                 evs[i].doc, i == 0 ? "event_keys" : "event_keys_recent",
                 (long long)key_of(evs[i].uuid), i + 1);
        raw_exec(db, sql);
    }
    raw_exec(db, "UPDATE store_state SET recent_keys = 2;"
                 "INSERT INTO event_counts VALUES (1, 2), (2, 1);");
    sqlite3_close(db);
}

static void expect_defaults(struct sl_store *st, const char *org)
{
    expect_names(st, SL_META_STATUS, org, 0, "Acknowledged,Closed,Dismissed,New,Open");
    expect_names(st, SL_META_CLOSE_REASON, org, 0, "Duplicate,False positive,Other,True positive");
    expect_names(st, SL_META_DATA_TYPE, org, 0,
                 "command,detection_id,domain,email,email_subject,filepath,fqdn,generic,host,"
                 "imphash,ip,mac,md5hash,pid,port,process,sha1hash,sha256hash,sid,url,user");
}

static void test_migrate_v1(void **state)
{
    (void)state;
    char dir[64], *doc = NULL;
    struct tev evs[3];
    struct sl_org org;
    struct sl_org *orgs = NULL;
    size_t norgs = 0;
    make_tmpdir(dir);
    write_v1(dir, evs);

    struct sl_store *st = open_store(dir);
    sqlite3 *db = raw_open(dir);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), 3);
    /* Every row is kept. */
    assert_int_equal(raw_int(db, "SELECT count(*) FROM orgs"), 2);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM api_keys WHERE key_id = 'k1'"), 1);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM events"), 3);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM event_keys"), 1);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM event_keys_recent"), 2);
    assert_int_equal(raw_int(db, "SELECT recent_keys FROM store_state"), 2);
    /* 30 defaults for each organization. */
    assert_int_equal(raw_int(db, "SELECT count(*) FROM meta"), 60);
    /* And the tasks table, empty. */
    assert_int_equal(raw_int(db, "SELECT count(*) FROM tasks"), 0);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'tasks_state'"),
                     1);
    sqlite3_close(db);

    /* The first organization is the default one. */
    assert_int_equal(sl_store_org_get(st, V1_ORG1, NULL, &org), 0);
    assert_string_equal(org.name, "default");
    assert_int_equal(org.created_ms, 1000);
    assert_int_equal(org.is_default, 1);
    assert_int_equal(sl_store_org_get(st, NULL, "other", &org), 0);
    assert_int_equal(org.is_default, 0);
    assert_int_equal(sl_store_org_list(st, &orgs, &norgs), 0);
    assert_int_equal(norgs, 2);
    assert_string_equal(orgs[0].uuid, V1_ORG1);
    assert_int_equal(orgs[0].is_default, 1);
    assert_string_equal(orgs[1].uuid, V1_ORG2);
    free(orgs);
    expect_defaults(st, V1_ORG1);
    expect_defaults(st, V1_ORG2);

    /* The events are found and deduplicated as before, across both key tables. */
    assert_int_equal(event_count(st, V1_ORG1), 2);
    assert_int_equal(event_count(st, V1_ORG2), 1);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sl_store_event_get(st, evs[i].org, evs[i].uuid, &doc), 0);
        assert_string_equal(doc, evs[i].doc);
        free(doc);
        doc = NULL;
        assert_int_equal(put1(st, &evs[i]), SL_PUT_REDELIVERED);
    }
    evs[1].row.origin = 99;
    assert_int_equal(put1(st, &evs[1]), SL_PUT_DUPLICATE);
    struct tev t;
    tev_make(&t, V1_ORG2, V1_ORG2, "e4", 4, 8000);
    assert_int_equal(put1(st, &t), SL_PUT_STORED);
    assert_int_equal(event_count(st, NULL), 4);

    /* New organizations are not the default one. */
    assert_int_equal(sl_store_org_create(st, "third", &org), 0);
    assert_int_equal(org.is_default, 0);
    sl_store_close(st);

    /* Reopening migrates nothing again and adds no second set of defaults. */
    st = open_store(dir);
    db = raw_open(dir);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), 3);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM meta"), 90);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM orgs WHERE is_default = 1"), 1);
    sqlite3_close(db);
    sl_store_close(st);
    remove_tree(dir);
}

/* A migration that fails leaves the version 1 file as it was. */
static void test_migrate_v1_failure_keeps_file(void **state)
{
    (void)state;
    char dir[64], err[512];
    struct tev evs[3];
    make_tmpdir(dir);
    write_v1(dir, evs);
    sqlite3 *db = raw_open(dir);
    raw_exec(db, "CREATE TABLE meta (x INTEGER)"); /* in the way of the migration */
    sqlite3_close(db);
    assert_null(sl_store_open(dir, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot migrate the schema from version 1 to 2"));
    db = raw_open(dir);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), 1);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM pragma_table_info('orgs')"), 4);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM events"), 3);
    raw_exec(db, "DROP TABLE meta");
    sqlite3_close(db);
    struct sl_store *st = open_store(dir); /* and a later open migrates it */
    assert_int_equal(event_count(st, NULL), 3);
    sl_store_close(st);
    remove_tree(dir);
}

struct opener {
    const char *dir;
    int ok;
};

static void *open_run(void *arg)
{
    struct opener *o = arg;
    char err[512];
    struct sl_store *st = sl_store_open(o->dir, err, sizeof(err));
    o->ok = st != NULL;
    sl_store_close(st);
    return NULL;
}

/* Two processes starting at once (api and a worker, say) migrate the file once. */
static void test_migrate_v1_concurrent(void **state)
{
    (void)state;
    char dir[64];
    struct tev evs[3];
    pthread_t th[3];
    struct opener o[3];
    make_tmpdir(dir);
    write_v1(dir, evs);
    for (int i = 0; i < 3; i++) {
        o[i] = (struct opener){.dir = dir};
        assert_int_equal(pthread_create(&th[i], NULL, open_run, &o[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        assert_true(o[i].ok);
    }
    sqlite3 *db = raw_open(dir);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), 3);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM meta"), 60);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM events"), 3);
    sqlite3_close(db);
    remove_tree(dir);
}

/* ---- organization defaults ---- */

static void test_org_defaults(void **state)
{
    struct fx *f = *state;
    struct sl_meta *m = NULL;
    size_t n = 0;
    struct sl_org org, *orgs = NULL;
    int64_t v0 = version(f->st);

    assert_int_equal(f->org.is_default, 1);
    assert_int_equal(f->org2.is_default, 0);
    assert_int_equal(sl_store_org_get(f->st, f->org.uuid, NULL, &org), 0);
    assert_int_equal(org.is_default, 1);
    assert_int_equal(sl_store_org_get(f->st, NULL, "globex", &org), 0);
    assert_int_equal(org.is_default, 0);
    assert_int_equal(sl_store_org_create(f->st, "initech", &org), 0);
    assert_int_equal(org.is_default, 0);
    assert_true(version(f->st) > v0); /* workers load the new organization */
    assert_int_equal(sl_store_org_create(f->st, "initech", NULL), SL_EEXIST);
    assert_int_equal(sl_store_org_list(f->st, &orgs, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(orgs[0].name, "acme");
    assert_string_equal(orgs[1].name, "globex");
    assert_string_equal(orgs[2].name, "initech");
    free(orgs);
    expect_defaults(f->st, f->org.uuid);
    expect_defaults(f->st, org.uuid);

    /* The documents carry exactly the documented keys. */
    assert_int_equal(sl_store_meta_list(f->st, SL_META_STATUS, f->org2.uuid, 0, &m, &n), 0);
    assert_int_equal(n, 5);
    const char *closed[] = {"Acknowledged", "Closed", "Dismissed", "New", "Open"};
    const int is_closed[] = {0, 1, 1, 0, 0};
    for (size_t i = 0; i < n; i++) {
        cJSON *d = cJSON_Parse(m[i].doc);
        assert_non_null(d);
        assert_int_equal(cJSON_GetArraySize(d), 5);
        assert_string_equal(cJSON_GetObjectItem(d, "uuid")->valuestring, m[i].uuid);
        assert_string_equal(cJSON_GetObjectItem(d, "organization")->valuestring, f->org2.uuid);
        assert_string_equal(cJSON_GetObjectItem(d, "name")->valuestring, closed[i]);
        assert_true(cJSON_IsString(cJSON_GetObjectItem(d, "description")));
        assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItem(d, "closed")), is_closed[i]);
        assert_string_equal(m[i].org, f->org2.uuid);
        assert_int_equal(m[i].global, 0);
        assert_true(m[i].created_ms > 0 && m[i].updated_ms == m[i].created_ms);
        if (strcmp(closed[i], "New") == 0)
            assert_string_equal(cJSON_GetObjectItem(d, "description")->valuestring, "A new event");
        cJSON_Delete(d);
    }
    sl_store_meta_free(m, n);

    assert_int_equal(sl_store_meta_list(f->st, SL_META_CLOSE_REASON, f->org.uuid, 0, &m, &n), 0);
    assert_int_equal(n, 4);
    cJSON *d = cJSON_Parse(m[1].doc);
    assert_int_equal(cJSON_GetArraySize(d), 4);
    assert_string_equal(cJSON_GetObjectItem(d, "title")->valuestring, "False positive");
    assert_true(cJSON_IsString(cJSON_GetObjectItem(d, "description")));
    assert_string_equal(cJSON_GetObjectItem(d, "organization")->valuestring, f->org.uuid);
    cJSON_Delete(d);
    sl_store_meta_free(m, n);

    assert_int_equal(sl_store_meta_list(f->st, SL_META_DATA_TYPE, f->org.uuid, 0, &m, &n), 0);
    assert_int_equal(n, 21);
    d = cJSON_Parse(m[10].doc);
    assert_int_equal(cJSON_GetArraySize(d), 5);
    assert_string_equal(cJSON_GetObjectItem(d, "name")->valuestring, "ip");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(d, "regex")));
    assert_string_equal(cJSON_GetObjectItem(d, "uuid")->valuestring, m[10].uuid);
    cJSON_Delete(d);
    sl_store_meta_free(m, n);

    /* Every organization's, with org NULL. */
    assert_int_equal(sl_store_meta_list(f->st, SL_META_STATUS, NULL, 0, &m, &n), 0);
    assert_int_equal(n, 15);
    assert_string_equal(m[0].name, "Acknowledged");
    assert_string_equal(m[3].name, "Closed");
    sl_store_meta_free(m, n);
}

/* ---- metadata objects ---- */

static void test_meta_crud(void **state)
{
    struct fx *f = *state;
    char uuid[SL_UUID_LEN + 1], other[SL_UUID_LEN + 1], upper[SL_UUID_LEN + 1];
    char longname[SL_META_NAME_MAX + 2];
    struct sl_meta m, got;
    int64_t v = version(f->st);

    new_meta(f->st, SL_META_RULE, f->org.uuid, "Block bad IPs", 0, uuid);
    assert_int_equal(version(f->st), v + 1);
    got = meta_get(f->st, SL_META_RULE, uuid);
    assert_string_equal(got.uuid, uuid);
    assert_string_equal(got.org, f->org.uuid);
    assert_string_equal(got.name, "Block bad IPs");
    assert_int_equal(got.global, 0);
    assert_int_equal(got.hits, 0);
    assert_int_equal(got.last_hit_ms, 0);
    assert_true(got.created_ms > 0 && got.updated_ms == got.created_ms);
    assert_non_null(strstr(got.doc, "Block bad IPs"));
    free(got.doc);
    for (int i = 0; i <= SL_UUID_LEN; i++)
        upper[i] = (char)(uuid[i] >= 'a' ? uuid[i] - 32 : uuid[i]);
    got = meta_get(f->st, SL_META_RULE, upper);
    free(got.doc);

    /* The name is unique per (kind, organization). */
    memset(&m, 0, sizeof(m));
    sl_uuid4(m.uuid);
    snprintf(m.org, sizeof(m.org), "%s", f->org.uuid);
    snprintf(m.name, sizeof(m.name), "Block bad IPs");
    m.doc = "{}";
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 1), SL_EEXIST);
    assert_int_equal(version(f->st), v + 1); /* a failed write changes nothing */
    assert_int_equal(sl_store_meta_put(f->st, SL_META_LIST, &m, 1), 0);
    sl_uuid4(m.uuid);
    snprintf(m.org, sizeof(m.org), "%s", f->org2.uuid);
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 1), 0);
    /* So is the uuid. */
    snprintf(m.name, sizeof(m.name), "another");
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 1), SL_EEXIST);
    assert_int_equal(version(f->st), v + 3);

    /* Bad arguments. */
    sl_uuid4(m.uuid);
    snprintf(m.org, sizeof(m.org), "00000000-0000-4000-8000-000000000000");
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 1), SL_ENOTFOUND);
    snprintf(m.org, sizeof(m.org), "%s", f->org.uuid);
    assert_int_equal(sl_store_meta_put(f->st, 0, &m, 1), SL_EINVAL);
    assert_int_equal(sl_store_meta_put(f->st, SL_META__N, &m, 1), SL_EINVAL);
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, NULL, 1), SL_EINVAL);
    m.doc = "[1]";
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 1), SL_EINVAL);
    m.doc = "{\"a\":";
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 1), SL_EINVAL);
    m.doc = NULL;
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 1), SL_EINVAL);
    m.doc = "{}";
    m.name[0] = 0;
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 1), SL_EINVAL);
    snprintf(m.name, sizeof(m.name), "tab\there");
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 1), SL_EINVAL);
    snprintf(m.name, sizeof(m.name), "ok");
    snprintf(m.uuid, sizeof(m.uuid), "not-a-uuid");
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 1), SL_EINVAL);
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    assert_int_equal(strlen(longname), SL_META_NAME_MAX + 1); /* cannot even fit in m.name */
    assert_int_equal(version(f->st), v + 3);

    /* Replacing: name, global and doc; hits, created and org are kept. */
    memset(&m, 0, sizeof(m));
    snprintf(m.uuid, sizeof(m.uuid), "%s", uuid);
    snprintf(m.name, sizeof(m.name), "Renamed");
    m.global = 1;
    m.doc = "{\"name\":\"Renamed\"}";
    m.hits = 99;
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 0), 0);
    assert_int_equal(version(f->st), v + 4);
    got = meta_get(f->st, SL_META_RULE, uuid);
    assert_string_equal(got.name, "Renamed");
    assert_string_equal(got.org, f->org.uuid);
    assert_int_equal(got.global, 1);
    assert_int_equal(got.hits, 0);
    assert_string_equal(got.doc, "{\"name\":\"Renamed\"}");
    assert_true(got.updated_ms >= got.created_ms);
    free(got.doc);
    /* Another kind's object with that uuid does not exist. */
    assert_int_equal(sl_store_meta_put(f->st, SL_META_LIST, &m, 0), SL_ENOTFOUND);
    assert_int_equal(sl_store_meta_get(f->st, SL_META_LIST, uuid, &got), SL_ENOTFOUND);
    new_meta(f->st, SL_META_RULE, f->org.uuid, "Second", 0, other);
    snprintf(m.uuid, sizeof(m.uuid), "%s", other);
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 0), SL_EEXIST); /* "Renamed" */
    sl_uuid4(m.uuid);
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 0), SL_ENOTFOUND);
    snprintf(m.uuid, sizeof(m.uuid), "nope");
    assert_int_equal(sl_store_meta_put(f->st, SL_META_RULE, &m, 0), SL_ENOTFOUND);
    assert_int_equal(sl_store_meta_get(f->st, SL_META_RULE, "nope", &got), SL_ENOTFOUND);
    assert_int_equal(sl_store_meta_get(f->st, SL_META_RULE, NULL, &got), SL_EINVAL);

    /* Listing is by name. */
    expect_names(f->st, SL_META_RULE, f->org.uuid, 0, "Renamed,Second");
    expect_names(f->st, SL_META_RULE, NULL, 0, "Block bad IPs,Renamed,Second");
    expect_names(f->st, SL_META_LIST, f->org2.uuid, 0, "");
    struct sl_meta *list = NULL;
    size_t n = 0;
    assert_int_equal(sl_store_meta_list(f->st, SL_META_RULE, "00000000-0000-4000-8000-000000000000",
                                        0, &list, &n),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_meta_list(f->st, 9, NULL, 0, &list, &n), SL_EINVAL);

    /* Deleting. */
    int64_t before = version(f->st);
    assert_int_equal(sl_store_meta_delete(f->st, SL_META_LIST, other), SL_ENOTFOUND);
    assert_int_equal(sl_store_meta_delete(f->st, SL_META_RULE, other), 0);
    assert_int_equal(version(f->st), before + 1);
    assert_int_equal(sl_store_meta_delete(f->st, SL_META_RULE, other), SL_ENOTFOUND);
    assert_int_equal(sl_store_meta_get(f->st, SL_META_RULE, other, &got), SL_ENOTFOUND);
    assert_int_equal(sl_store_meta_delete(f->st, SL_META_RULE, "x"), SL_ENOTFOUND);
    assert_int_equal(sl_store_meta_delete(f->st, SL_META_RULE, NULL), SL_EINVAL);
    assert_int_equal(version(f->st), before + 1);
    expect_names(f->st, SL_META_RULE, f->org.uuid, 0, "Renamed");
}

static void test_meta_global(void **state)
{
    struct fx *f = *state;
    char u[SL_UUID_LEN + 1];
    new_meta(f->st, SL_META_RULE, f->org.uuid, "g-rule", 1, u);
    new_meta(f->st, SL_META_RULE, f->org.uuid, "a-local", 0, u);
    new_meta(f->st, SL_META_RULE, f->org2.uuid, "m-own", 0, u);
    new_meta(f->st, SL_META_RULE, f->org2.uuid, "g-rule", 0, u); /* same name, other org */
    new_meta(f->st, SL_META_RULE, f->org2.uuid, "z-global", 1, u);
    new_meta(f->st, SL_META_LIST, f->org.uuid, "g-list", 1, u);

    expect_names(f->st, SL_META_RULE, f->org2.uuid, 0, "g-rule,m-own,z-global");
    /* Global objects of every organization join; an organization's own global one once. */
    expect_names(f->st, SL_META_RULE, f->org2.uuid, 1, "g-rule,g-rule,m-own,z-global");
    expect_names(f->st, SL_META_RULE, f->org.uuid, 1, "a-local,g-rule,z-global");
    expect_names(f->st, SL_META_RULE, f->org.uuid, 0, "a-local,g-rule");
    expect_names(f->st, SL_META_RULE, NULL, 1, "a-local,g-rule,g-rule,m-own,z-global");
    expect_names(f->st, SL_META_LIST, f->org2.uuid, 1, "g-list");

    /* Ties of name are broken by organization, the default first. */
    struct sl_meta *m = NULL;
    size_t n = 0;
    assert_int_equal(sl_store_meta_list(f->st, SL_META_RULE, f->org2.uuid, 1, &m, &n), 0);
    assert_string_equal(m[0].org, f->org.uuid);
    assert_int_equal(m[0].global, 1);
    assert_string_equal(m[1].org, f->org2.uuid);
    sl_store_meta_free(m, n);
    sl_store_meta_free(NULL, 0);
}

/* ---- intel list values ---- */

struct collect {
    char buf[4096];
    size_t len;
    int n, stop_at;
};

static int collect_cb(void *ud, const char *value, size_t len)
{
    struct collect *c = ud;
    assert_int_equal(strlen(value), len);
    int w = snprintf(c->buf + c->len, sizeof(c->buf) - c->len, "%s%s", c->n ? "|" : "", value);
    assert_true(w > 0 && (size_t)w < sizeof(c->buf) - c->len);
    c->len += (size_t)w;
    c->n++;
    return c->n == c->stop_at ? 42 : 0;
}

static void values_of(const char *const *s, size_t n, struct sl_list_value *v)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (struct sl_list_value){s[i], strlen(s[i])};
}

static void expect_iter(struct sl_store *st, const char *list, const char *want)
{
    struct collect c = {.len = 0};
    assert_int_equal(sl_store_list_values_iter(st, list, collect_cb, &c), 0);
    assert_string_equal(c.buf, want);
}

static int64_t value_count(struct sl_store *st, const char *list)
{
    int64_t n = -1;
    assert_int_equal(sl_store_list_values_count(st, list, &n), 0);
    return n;
}

static void test_list_values(void **state)
{
    struct fx *f = *state;
    char list[SL_UUID_LEN + 1], list2[SL_UUID_LEN + 1], rule[SL_UUID_LEN + 1];
    struct sl_list_value v[8];
    size_t n = 99;
    int64_t next = -1;
    char *json = NULL;
    new_meta(f->st, SL_META_LIST, f->org.uuid, "bad ips", 0, list);
    new_meta(f->st, SL_META_LIST, f->org2.uuid, "feed", 0, list2);
    new_meta(f->st, SL_META_RULE, f->org.uuid, "rule", 0, rule);

    /* Adding keeps the first copy of each value. */
    const char *a[] = {"10.0.0.1", "10.0.0.2", "10.0.0.1", "Quote\"back\\slash\ttab\xc3\xa9"};
    values_of(a, 4, v);
    int64_t ver = version(f->st);
    assert_int_equal(sl_store_list_values_add(f->st, list, v, 4, 0, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(version(f->st), ver + 1);
    const char *b[] = {"10.0.0.2", "10.0.0.3"};
    values_of(b, 2, v);
    assert_int_equal(sl_store_list_values_add(f->st, list, v, 2, 0, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sl_store_list_values_add(f->st, list, v, 2, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(version(f->st), ver + 2); /* nothing new: no reload needed */
    assert_int_equal(value_count(f->st, list), 4);
    assert_int_equal(value_count(f->st, list2), 0);
    expect_iter(f->st, list, "10.0.0.1|10.0.0.2|Quote\"back\\slash\ttab\xc3\xa9|10.0.0.3");

    /* Pages in insertion order, as JSON arrays of strings. */
    assert_int_equal(sl_store_list_values_page(f->st, list, 0, 2, &json, &next), 0);
    assert_string_equal(json, "[\"10.0.0.1\",\"10.0.0.2\"]");
    assert_true(next > 0);
    free(json);
    assert_int_equal(sl_store_list_values_page(f->st, list, next, 2, &json, &next), 0);
    assert_string_equal(json, "[\"Quote\\\"back\\\\slash\\u0009tab\xc3\xa9\",\"10.0.0.3\"]");
    assert_int_equal(next, 0);
    cJSON *arr = cJSON_Parse(json);
    assert_string_equal(cJSON_GetArrayItem(arr, 0)->valuestring, a[3]);
    cJSON_Delete(arr);
    free(json);
    assert_int_equal(sl_store_list_values_page(f->st, list, 0, 4, &json, &next), 0);
    assert_int_equal(next, 0);
    free(json);
    assert_int_equal(sl_store_list_values_page(f->st, list2, 0, 10, &json, &next), 0);
    assert_string_equal(json, "[]");
    assert_int_equal(next, 0);
    free(json);
    assert_int_equal(sl_store_list_values_page(f->st, list, 0, 0, &json, &next), SL_EINVAL);
    assert_null(json);
    assert_int_equal(sl_store_list_values_page(f->st, list, -1, 5, &json, &next), SL_EINVAL);
    assert_int_equal(sl_store_list_values_page(f->st, rule, 0, 5, &json, &next), SL_ENOTFOUND);
    assert_null(json);

    /* iter stops when the callback says so, and returns what it returned. */
    struct collect c = {.stop_at = 2};
    assert_int_equal(sl_store_list_values_iter(f->st, list, collect_cb, &c), 42);
    assert_string_equal(c.buf, "10.0.0.1|10.0.0.2");
    /* The handle is usable (no transaction left open). */
    assert_int_equal(sl_store_list_values_add(f->st, list2, v, 1, 0, &n), 0);
    assert_int_equal(n, 1);

    /* Deleting. */
    const char *d[] = {"10.0.0.2", "absent", "10.0.0.2"};
    values_of(d, 3, v);
    ver = version(f->st);
    assert_int_equal(sl_store_list_values_delete(f->st, list, v, 3, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(version(f->st), ver + 1);
    assert_int_equal(sl_store_list_values_delete(f->st, list, v, 3, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(version(f->st), ver + 1);
    expect_iter(f->st, list, "10.0.0.1|Quote\"back\\slash\ttab\xc3\xa9|10.0.0.3");

    /* Expiry: polled values expire, permanent ones do not; adding again refreshes. */
    const char *e[] = {"feed-1", "feed-2", "10.0.0.1"};
    values_of(e, 3, v);
    assert_int_equal(sl_store_list_values_add(f->st, list, v, 3, 5000, &n), 0);
    assert_int_equal(n, 2); /* 10.0.0.1 was there: it now expires too */
    assert_int_equal(sl_store_list_values_add(f->st, list2, v, 1, 5000, &n), 0);
    assert_int_equal(sl_store_list_values_add(f->st, list, v + 1, 1, 9000, &n), 0);
    assert_int_equal(n, 0);
    ver = version(f->st);
    assert_int_equal(sl_store_list_values_expire(f->st, list, 5000, &n), 0);
    assert_int_equal(n, 0); /* expiry before now, not at it */
    assert_int_equal(version(f->st), ver);
    assert_int_equal(sl_store_list_values_expire(f->st, list, 5001, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(version(f->st), ver + 1);
    expect_iter(f->st, list, "Quote\"back\\slash\ttab\xc3\xa9|10.0.0.3|feed-2");
    assert_int_equal(value_count(f->st, list2), 2); /* only list's values expired */
    /* expire 0 makes a value permanent again. */
    assert_int_equal(sl_store_list_values_add(f->st, list, v + 1, 1, 0, &n), 0);
    assert_int_equal(sl_store_list_values_expire(f->st, NULL, INT64_MAX, &n), 0);
    assert_int_equal(n, 1); /* list2's feed-1 */
    expect_iter(f->st, list, "Quote\"back\\slash\ttab\xc3\xa9|10.0.0.3|feed-2");
    expect_iter(f->st, list2, "10.0.0.2");

    /* Bad arguments and unknown lists. */
    struct sl_list_value bad[] = {{"", 0}, {NULL, 3}, {"a\xff", 2}, {"nul\0x", 5}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sl_store_list_values_add(f->st, list, &bad[i], 1, 0, &n), SL_EINVAL);
    values_of(a, 1, v);
    assert_int_equal(sl_store_list_values_add(f->st, list, v, 1, -1, &n), SL_EINVAL);
    assert_int_equal(sl_store_list_values_add(f->st, list, NULL, 1, 0, &n), SL_EINVAL);
    assert_int_equal(sl_store_list_values_add(f->st, NULL, v, 1, 0, &n), SL_EINVAL);
    assert_int_equal(sl_store_list_values_add(f->st, rule, v, 1, 0, &n), SL_ENOTFOUND);
    assert_int_equal(sl_store_list_values_add(f->st, "x", v, 1, 0, &n), SL_ENOTFOUND);
    assert_int_equal(sl_store_list_values_delete(f->st, rule, v, 1, &n), SL_ENOTFOUND);
    assert_int_equal(sl_store_list_values_expire(f->st, rule, 1, &n), SL_ENOTFOUND);
    assert_int_equal(sl_store_list_values_iter(f->st, rule, collect_cb, &c), SL_ENOTFOUND);
    int64_t cnt = 0;
    assert_int_equal(sl_store_list_values_count(f->st, rule, &cnt), SL_ENOTFOUND);
    assert_int_equal(sl_store_list_values_add(f->st, list, NULL, 0, 0, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(value_count(f->st, list), 3);

    /* Deleting the list deletes its values. */
    assert_int_equal(sl_store_meta_delete(f->st, SL_META_LIST, list), 0);
    sqlite3 *db = raw_open(f->dir);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM list_values"), 1);
    sqlite3_close(db);
    assert_int_equal(sl_store_list_values_count(f->st, list, &cnt), SL_ENOTFOUND);
}

struct counter {
    int64_t n;
    char last[32];
};

static int count_cb(void *ud, const char *value, size_t len)
{
    struct counter *c = ud;
    c->n++;
    snprintf(c->last, sizeof(c->last), "%.*s", (int)len, value);
    return 0;
}

#define BIG_VALUES 100000

static void test_list_values_100k(void **state)
{
    struct fx *f = *state;
    char list[SL_UUID_LEN + 1];
    struct sl_list_value *v = calloc(BIG_VALUES, sizeof(*v));
    char *text = malloc((size_t)BIG_VALUES * 24);
    size_t n = 0;
    assert_non_null(v);
    assert_non_null(text);
    new_meta(f->st, SL_META_LIST, f->org.uuid, "big", 0, list);
    for (int i = 0; i < BIG_VALUES; i++) {
        char *p = text + (size_t)i * 24;
        /* Values in no particular order, as a feed would have them. */
        int len = snprintf(p, 24, "%08x.example", (unsigned)sl_hash64(&i, sizeof(i), 7));
        v[i] = (struct sl_list_value){p, (size_t)len};
    }
    int64_t t0 = sl_mono_ms();
    assert_int_equal(sl_store_list_values_add(f->st, list, v, BIG_VALUES, 0, &n), 0);
    int64_t t1 = sl_mono_ms();
    assert_int_equal(n, BIG_VALUES);
    assert_true(t1 - t0 < 10000);
    print_message("      added %d values in %lld ms\n", BIG_VALUES, (long long)(t1 - t0));
    assert_int_equal(value_count(f->st, list), BIG_VALUES);

    /* Adding them all again adds nothing. */
    assert_int_equal(sl_store_list_values_add(f->st, list, v, 1000, 0, &n), 0);
    assert_int_equal(n, 0);

    /* Paging through all of them sees each once, in order. */
    int64_t after = 0, seen = 0;
    int pages = 0;
    do {
        char *json = NULL;
        assert_int_equal(sl_store_list_values_page(f->st, list, after, 7000, &json, &after), 0);
        cJSON *arr = cJSON_Parse(json);
        assert_non_null(arr);
        int size = cJSON_GetArraySize(arr);
        if (size > 0)
            assert_string_equal(cJSON_GetArrayItem(arr, 0)->valuestring, v[seen].value);
        seen += size;
        pages++;
        cJSON_Delete(arr);
        free(json);
    } while (after != 0);
    assert_int_equal(seen, BIG_VALUES);
    assert_int_equal(pages, (BIG_VALUES + 6999) / 7000);

    struct counter c = {0};
    assert_int_equal(sl_store_list_values_iter(f->st, list, count_cb, &c), 0);
    assert_int_equal(c.n, BIG_VALUES);
    assert_string_equal(c.last, v[BIG_VALUES - 1].value);

    t0 = sl_mono_ms();
    assert_int_equal(sl_store_meta_delete(f->st, SL_META_LIST, list), 0);
    print_message("      deleted the list in %lld ms\n", (long long)(sl_mono_ms() - t0));
    free(v);
    free(text);
}

/* ---- effects of storing an event ---- */

static void test_effects_once(void **state)
{
    struct fx *f = *state;
    char r1[SL_UUID_LEN + 1], r2[SL_UUID_LEN + 1], case_uuid[SL_UUID_LEN + 1], until_rule[40];
    char *doc = NULL;
    new_meta(f->st, SL_META_RULE, f->org.uuid, "r1", 0, r1);
    new_meta(f->st, SL_META_RULE, f->org.uuid, "r2", 0, r2);
    sl_uuid4(case_uuid);
    const char *rules[] = {r1, r2, "00000000-0000-4000-8000-00000000dead"}; /* last unknown */
    struct sl_store_case c = {.uuid = case_uuid,
                              .org = f->org.uuid,
                              .title = "Case \"one\"",
                              .description = "made by r1",
                              .severity = 3,
                              .tlp = 2,
                              .tags_json = "[\"a\",\"b\"]",
                              .rule_uuid = r1};
    struct sl_store_effects fx = {.rule_uuids = rules,
                                  .nrules = 3,
                                  .new_case = &c,
                                  .case_uuid = case_uuid,
                                  .mute_until_ms = 50000,
                                  .mute_rule = r2};
    struct tev t;
    tev_make(&t, f->org.uuid, f->org.uuid, "e1", 1, 7000);
    t.row.effects = &fx;
    int64_t ver = version(f->st);

    assert_int_equal(put1(f->st, &t), SL_PUT_STORED);
    assert_int_equal(version(f->st), ver); /* hits, cases and mutes reload nothing */
    struct sl_meta m = meta_get(f->st, SL_META_RULE, r1);
    assert_int_equal(m.hits, 1);
    assert_int_equal(m.last_hit_ms, 7000);
    free(m.doc);
    assert_int_equal(sl_store_case_get(f->st, f->org.uuid, case_uuid, &doc), 0);
    assert_non_null(strstr(doc, "\"event_count\":1"));
    free(doc);
    int64_t until = 0;
    assert_int_equal(sl_store_mute_get(f->st, f->org.uuid, t.sig, 1000, &until, until_rule), 1);
    assert_int_equal(until, 50000);
    assert_string_equal(until_rule, r2);

    /* A redelivery and a duplicate have no second effect. */
    fx.mute_until_ms = 90000;
    assert_int_equal(put1(f->st, &t), SL_PUT_REDELIVERED);
    t.row.origin = 2;
    t.row.created_ms = 8000;
    assert_int_equal(put1(f->st, &t), SL_PUT_DUPLICATE);
    m = meta_get(f->st, SL_META_RULE, r1);
    assert_int_equal(m.hits, 1);
    assert_int_equal(m.last_hit_ms, 7000);
    free(m.doc);
    m = meta_get(f->st, SL_META_RULE, r2);
    assert_int_equal(m.hits, 1);
    free(m.doc);
    assert_int_equal(sl_store_mute_get(f->st, f->org.uuid, t.sig, 1000, &until, until_rule), 1);
    assert_int_equal(until, 50000);
    assert_int_equal(sl_store_case_events(f->st, case_uuid, &doc), 0);
    char want[128];
    snprintf(want, sizeof(want), "[\"%s\"]", t.uuid);
    assert_string_equal(doc, want);
    free(doc);
    sqlite3 *db = raw_open(f->dir);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM cases"), 1);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM events WHERE case_id IS NOT NULL"), 1);
    sqlite3_close(db);

    /* A new event: hits add up, last_hit is the latest created_ms, the case is not created
     * again but the event joins it; an unknown case is not joined. */
    struct tev t2, t3;
    tev_make(&t2, f->org.uuid, f->org.uuid, "e2", 3, 6000);
    t2.row.effects = &fx;
    tev_make(&t3, f->org.uuid, f->org.uuid, "e3", 4, 9000);
    struct sl_store_effects fx3 = {
        .rule_uuids = rules, .nrules = 1, .case_uuid = "00000000-0000-4000-8000-0000000cafe0"};
    t3.row.effects = &fx3;
    struct sl_store_event rows[2] = {t2.row, t3.row};
    enum sl_put_outcome out[2];
    assert_int_equal(sl_store_put_events(f->st, rows, 2, out), 0);
    assert_int_equal(out[0], SL_PUT_STORED);
    assert_int_equal(out[1], SL_PUT_STORED);
    m = meta_get(f->st, SL_META_RULE, r1);
    assert_int_equal(m.hits, 3);
    assert_int_equal(m.last_hit_ms, 9000);
    free(m.doc);
    m = meta_get(f->st, SL_META_RULE, r2);
    assert_int_equal(m.hits, 2);
    assert_int_equal(m.last_hit_ms, 7000);
    free(m.doc);
    assert_int_equal(sl_store_case_get(f->st, NULL, case_uuid, &doc), 0);
    assert_non_null(strstr(doc, "\"event_count\":2"));
    free(doc);
    db = raw_open(f->dir);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM cases"), 1);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM events WHERE case_id IS NOT NULL"), 2);
    sqlite3_close(db);
    assert_int_equal(sl_store_case_events(f->st, case_uuid, &doc), 0);
    snprintf(want, sizeof(want), "[\"%s\",\"%s\"]", t.uuid, t2.uuid);
    assert_string_equal(doc, want);
    free(doc);
    assert_int_equal(event_count(f->st, f->org.uuid), 3);
}

/* A batch that fails leaves no effect behind. */
static void test_effects_all_or_nothing(void **state)
{
    struct fx *f = *state;
    char r1[SL_UUID_LEN + 1], case_uuid[SL_UUID_LEN + 1];
    new_meta(f->st, SL_META_RULE, f->org.uuid, "r1", 0, r1);
    sl_uuid4(case_uuid);
    const char *rules[] = {r1};
    struct sl_store_case c = {.uuid = case_uuid, .org = f->org.uuid, .title = "t"};
    struct sl_store_effects fx = {.rule_uuids = rules,
                                  .nrules = 1,
                                  .new_case = &c,
                                  .case_uuid = case_uuid,
                                  .mute_until_ms = 50000};
    struct tev t[2];
    tev_make(&t[0], f->org.uuid, f->org.uuid, "e1", 1, 7000);
    t[0].row.effects = &fx;
    tev_make(&t[1], f->org.uuid, "00000000-0000-4000-8000-000000000000", "e2", 2, 7000);
    struct sl_store_event rows[2] = {t[0].row, t[1].row};
    enum sl_put_outcome out[2];
    assert_int_equal(sl_store_put_events(f->st, rows, 2, out), SL_ENOTFOUND);
    struct sl_meta m = meta_get(f->st, SL_META_RULE, r1);
    assert_int_equal(m.hits, 0);
    free(m.doc);
    char *doc = NULL;
    assert_int_equal(sl_store_case_get(f->st, NULL, case_uuid, &doc), SL_ENOTFOUND);
    int64_t n = -1;
    assert_int_equal(sl_store_mute_active(f->st, 0, &n), 0);
    assert_int_equal(n, 0);

    /* Malformed effects are refused before anything is written. */
    struct sl_store_effects bad[] = {
        {.rule_uuids = NULL, .nrules = 1},
        {.rule_uuids = (const char *const[]){"nope"}, .nrules = 1},
        {.rule_uuids = (const char *const[]){NULL}, .nrules = 1},
        {.case_uuid = "nope"},
        {.mute_until_ms = 1, .mute_rule = "nope"},
        {.new_case = &(struct sl_store_case){.uuid = case_uuid, .org = f->org.uuid}},
        {.new_case = &(struct sl_store_case){.uuid = "x", .org = f->org.uuid, .title = "t"}},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        t[0].row.effects = &bad[i];
        assert_int_equal(sl_store_put_events(f->st, &t[0].row, 1, out), SL_EINVAL);
    }
    assert_int_equal(event_count(f->st, NULL), 0);
}

/* A rule that hits every event of a batch costs one UPDATE per batch. */
static void test_hits_batched(void **state)
{
    struct fx *f = *state;
    char r1[SL_UUID_LEN + 1], r2[SL_UUID_LEN + 1];
    enum { N = 500 };
    new_meta(f->st, SL_META_RULE, f->org.uuid, "every", 0, r1);
    new_meta(f->st, SL_META_RULE, f->org2.uuid, "some", 1, r2);
    sqlite3 *db = raw_open(f->dir);
    raw_exec(db, "CREATE TABLE hit_log (uuid TEXT, hits INTEGER);"
                 "CREATE TRIGGER hit_log AFTER UPDATE OF hits ON meta"
                 " BEGIN INSERT INTO hit_log VALUES (new.uuid, new.hits); END;");
    struct tev *ts = calloc(N, sizeof(*ts));
    struct sl_store_event *rows = calloc(N, sizeof(*rows));
    enum sl_put_outcome *out = calloc(N, sizeof(*out));
    const char *both[] = {r1, r2};
    struct sl_store_effects fx1 = {.rule_uuids = both, .nrules = 1};
    struct sl_store_effects fx2 = {.rule_uuids = both, .nrules = 2};
    for (int i = 0; i < N; i++) {
        char ref[32];
        snprintf(ref, sizeof(ref), "hit-%d", i);
        tev_make(&ts[i], f->org.uuid, f->org.uuid, ref, (uint64_t)i, 1000 + (i * 7919) % N);
        ts[i].row.effects = i % 5 == 0 ? &fx2 : &fx1;
        rows[i] = ts[i].row;
    }
    assert_int_equal(sl_store_put_events(f->st, rows, N, out), 0);
    struct sl_meta m = meta_get(f->st, SL_META_RULE, r1);
    assert_int_equal(m.hits, N);
    assert_int_equal(m.last_hit_ms, 1000 + N - 1);
    free(m.doc);
    m = meta_get(f->st, SL_META_RULE, r2);
    assert_int_equal(m.hits, N / 5);
    free(m.doc);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM hit_log"), 2);
    /* Redelivered: no update at all. */
    assert_int_equal(sl_store_put_events(f->st, rows, N, out), 0);
    assert_int_equal(out[N - 1], SL_PUT_REDELIVERED);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM hit_log"), 2);

    /* More distinct rules than one call gathers at once: still counted right. */
    enum { R = 40 };
    char(*uuids)[SL_UUID_LEN + 1] = calloc(R, sizeof(*uuids));
    const char **many = calloc(R, sizeof(*many));
    for (int i = 0; i < R; i++) {
        char name[24];
        snprintf(name, sizeof(name), "many-%02d", i);
        new_meta(f->st, SL_META_RULE, f->org.uuid, name, 0, uuids[i]);
        many[i] = uuids[i];
    }
    struct sl_store_effects fxm = {.rule_uuids = many, .nrules = R};
    for (int i = 0; i < 10; i++) {
        char ref[32];
        snprintf(ref, sizeof(ref), "many-%d", i);
        tev_make(&ts[i], f->org.uuid, f->org.uuid, ref, (uint64_t)(N + i), 5000 + i);
        ts[i].row.effects = &fxm;
        rows[i] = ts[i].row;
    }
    assert_int_equal(sl_store_put_events(f->st, rows, 10, out), 0);
    for (int i = 0; i < R; i++) {
        m = meta_get(f->st, SL_META_RULE, uuids[i]);
        assert_int_equal(m.hits, 10);
        assert_int_equal(m.last_hit_ms, 5009);
        free(m.doc);
    }
    sqlite3_close(db);
    free(uuids);
    free(many);
    free(ts);
    free(rows);
    free(out);
}

/* ---- events moved to another organization ---- */

static void test_moved_event_dedup(void **state)
{
    struct fx *f = *state;
    struct tev t;
    char *doc = NULL;
    /* Ingested by acme, moved to globex by a rule. */
    tev_make(&t, f->org.uuid, f->org2.uuid, "moved", 1, 1000);
    assert_int_equal(put1(f->st, &t), SL_PUT_STORED);
    /* Redelivered; this time the rule (changed meanwhile) did not move it. */
    snprintf(t.org, sizeof(t.org), "%s", f->org.uuid);
    assert_int_equal(put1(f->st, &t), SL_PUT_REDELIVERED);
    /* The same reference sent again by the client. */
    t.row.origin = 2;
    assert_int_equal(put1(f->st, &t), SL_PUT_DUPLICATE);
    snprintf(t.org, sizeof(t.org), "%s", f->org2.uuid);
    assert_int_equal(put1(f->st, &t), SL_PUT_DUPLICATE);
    /* The uuid in capitals is the same key. */
    char upper[SL_UUID_LEN + 1];
    for (int i = 0; i <= SL_UUID_LEN; i++)
        upper[i] = (char)(t.uuid[i] >= 'a' ? t.uuid[i] - 32 : t.uuid[i]);
    t.row.uuid = upper;
    assert_int_equal(put1(f->st, &t), SL_PUT_DUPLICATE);
    t.row.uuid = t.uuid;
    assert_int_equal(event_count(f->st, NULL), 1);
    assert_int_equal(event_count(f->st, f->org2.uuid), 1);
    assert_int_equal(event_count(f->st, f->org.uuid), 0);
    assert_int_equal(sl_store_event_get(f->st, f->org2.uuid, t.uuid, &doc), 0);
    assert_string_equal(doc, t.doc);
    free(doc);
    doc = NULL;
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, t.uuid, &doc), SL_ENOTFOUND);
    assert_null(doc);

    /* The same in one batch. */
    struct tev a, b;
    tev_make(&a, f->org.uuid, f->org2.uuid, "batch", 10, 1000);
    tev_make(&b, f->org.uuid, f->org.uuid, "batch", 11, 1000);
    struct sl_store_event rows[2] = {a.row, b.row};
    enum sl_put_outcome out[2];
    assert_int_equal(sl_store_put_events(f->st, rows, 2, out), 0);
    assert_int_equal(out[0], SL_PUT_STORED);
    assert_int_equal(out[1], SL_PUT_DUPLICATE);
    assert_int_equal(event_count(f->st, NULL), 2);
}

/* ---- mutes ---- */

static void test_mutes(void **state)
{
    struct fx *f = *state;
    char r1[SL_UUID_LEN + 1], r2[SL_UUID_LEN + 1], rule[SL_UUID_LEN + 1];
    int64_t until = -1, n = -1;
    new_meta(f->st, SL_META_RULE, f->org.uuid, "r1", 0, r1);
    new_meta(f->st, SL_META_RULE, f->org.uuid, "r2", 0, r2);
    struct sl_store_effects fx = {.mute_until_ms = 5000, .mute_rule = r1};
    struct tev t;
    tev_make(&t, f->org.uuid, f->org.uuid, "m1", 1, 1000);
    snprintf(t.sig, sizeof(t.sig), "s1");
    t.row.effects = &fx;
    assert_int_equal(put1(f->st, &t), SL_PUT_STORED);

    assert_int_equal(sl_store_mute_get(f->st, f->org.uuid, "s1", 1000, &until, rule), 1);
    assert_int_equal(until, 5000);
    assert_string_equal(rule, r1);
    assert_int_equal(sl_store_mute_get(f->st, f->org.uuid, "s1", 5000, &until, rule), 0);
    assert_int_equal(until, 0);
    assert_string_equal(rule, "");
    assert_int_equal(sl_store_mute_get(f->st, f->org2.uuid, "s1", 1000, &until, rule), 0);
    assert_int_equal(sl_store_mute_get(f->st, f->org.uuid, "s2", 1000, NULL, NULL), 0);
    assert_int_equal(sl_store_mute_get(f->st, f->org.uuid, "s1", 1000, NULL, NULL), 1);
    assert_int_equal(sl_store_mute_get(f->st, "nope", "s1", 1000, &until, rule), 0);
    assert_int_equal(sl_store_mute_get(f->st, NULL, "s1", 1000, &until, rule), SL_EINVAL);
    assert_int_equal(sl_store_mute_get(f->st, f->org.uuid, NULL, 1000, &until, rule), SL_EINVAL);
    assert_int_equal(sl_store_mute_active(f->st, 1000, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(sl_store_mute_active(f->st, 5000, &n), 0);
    assert_int_equal(n, 0);

    /* An earlier end does not shorten a mute; a later one extends it and names its rule. */
    struct tev t2, t3;
    struct sl_store_effects fx2 = {.mute_until_ms = 3000, .mute_rule = r2};
    tev_make(&t2, f->org.uuid, f->org.uuid, "m2", 2, 1000);
    snprintf(t2.sig, sizeof(t2.sig), "s1");
    t2.row.effects = &fx2;
    assert_int_equal(put1(f->st, &t2), SL_PUT_STORED);
    assert_int_equal(sl_store_mute_get(f->st, f->org.uuid, "s1", 1000, &until, rule), 1);
    assert_int_equal(until, 5000);
    assert_string_equal(rule, r1);
    fx2.mute_until_ms = 9000;
    tev_make(&t3, f->org.uuid, f->org.uuid, "m3", 3, 1000);
    snprintf(t3.sig, sizeof(t3.sig), "s1");
    t3.row.effects = &fx2;
    assert_int_equal(put1(f->st, &t3), SL_PUT_STORED);
    assert_int_equal(sl_store_mute_get(f->st, f->org.uuid, "s1", 6000, &until, rule), 1);
    assert_int_equal(until, 9000);
    assert_string_equal(rule, r2);

    /* A mute is the organization's the event is stored in; a rule may be absent. */
    struct tev t4;
    struct sl_store_effects fx4 = {.mute_until_ms = 7000};
    tev_make(&t4, f->org.uuid, f->org2.uuid, "m4", 4, 1000);
    t4.row.effects = &fx4;
    assert_int_equal(put1(f->st, &t4), SL_PUT_STORED);
    assert_int_equal(sl_store_mute_get(f->st, f->org2.uuid, t4.sig, 1000, &until, rule), 1);
    assert_string_equal(rule, "");
    assert_int_equal(sl_store_mute_get(f->st, f->org.uuid, t4.sig, 1000, &until, rule), 0);
    assert_int_equal(sl_store_mute_active(f->st, 6500, &n), 0);
    assert_int_equal(n, 2);
}

/* ---- cases ---- */

static void test_cases(void **state)
{
    struct fx *f = *state;
    char rule[SL_UUID_LEN + 1], tmpl[SL_UUID_LEN + 1], c1[SL_UUID_LEN + 1], c2[SL_UUID_LEN + 1];
    char *doc = NULL;
    new_meta(f->st, SL_META_RULE, f->org.uuid, "creator", 0, rule);
    sl_uuid4(tmpl);
    sl_uuid4(c1);
    sl_uuid4(c2);
    struct sl_store_case c = {.uuid = c1,
                              .org = f->org.uuid,
                              .title = "Bad \"login\"\n",
                              .description = NULL,
                              .severity = 4,
                              .tlp = 3,
                              .tags_json = "[\"x\", \"y\\\"z\"]",
                              .rule_uuid = rule,
                              .template_uuid = tmpl};
    struct sl_store_effects fx = {.new_case = &c, .case_uuid = c1};
    struct tev t;
    tev_make(&t, f->org.uuid, f->org.uuid, "c1", 1, 1000);
    t.row.effects = &fx;
    int64_t before = sl_now_ms();
    assert_int_equal(put1(f->st, &t), SL_PUT_STORED);

    assert_int_equal(sl_store_case_get(f->st, f->org.uuid, c1, &doc), 0);
    cJSON *d = cJSON_Parse(doc);
    assert_non_null(d);
    assert_int_equal(cJSON_GetArraySize(d), 20); /* every member: test_store_cases.c */
    assert_string_equal(cJSON_GetObjectItem(d, "uuid")->valuestring, c1);
    assert_string_equal(cJSON_GetObjectItem(d, "organization")->valuestring, f->org.uuid);
    assert_string_equal(cJSON_GetObjectItem(d, "title")->valuestring, "Bad \"login\"\n");
    assert_string_equal(cJSON_GetObjectItem(d, "description")->valuestring, "");
    assert_int_equal(cJSON_GetObjectItem(d, "severity")->valueint, 4);
    assert_int_equal(cJSON_GetObjectItem(d, "tlp")->valueint, 3);
    assert_string_equal(cJSON_GetObjectItem(d, "status")->valuestring, "New");
    cJSON *tags = cJSON_GetObjectItem(d, "tags");
    assert_int_equal(cJSON_GetArraySize(tags), 2);
    assert_string_equal(cJSON_GetArrayItem(tags, 1)->valuestring, "y\"z");
    assert_int_equal(cJSON_GetObjectItem(d, "event_count")->valueint, 1);
    int64_t created = 0;
    const char *at = cJSON_GetObjectItem(d, "created_at")->valuestring;
    assert_int_equal(sl_time_parse(at, strlen(at), &created), 0);
    assert_true(created >= before - 1 && created <= sl_now_ms());
    assert_string_equal(cJSON_GetObjectItem(d, "updated_at")->valuestring, at);
    assert_string_equal(cJSON_GetObjectItem(d, "event_rule")->valuestring, rule);
    /* The template does not exist (any more): the case is made without it. */
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(d, "case_template")));
    cJSON_Delete(d);
    free(doc);
    doc = NULL;

    /* Another organization's case does not exist for this one. */
    assert_int_equal(sl_store_case_get(f->st, f->org2.uuid, c1, &doc), SL_ENOTFOUND);
    assert_null(doc);
    assert_int_equal(sl_store_case_get(f->st, NULL, c2, &doc), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_get(f->st, NULL, "nope", &doc), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_get(f->st, NULL, NULL, &doc), SL_EINVAL);
    assert_int_equal(sl_store_case_events(f->st, c2, &doc), SL_ENOTFOUND);

    /* Tags that are not a JSON array, no template, no rule: null and []. */
    struct sl_store_case cc = {.uuid = c2, .org = f->org2.uuid, .title = "t", .tags_json = "{"};
    struct sl_store_effects fx2 = {.new_case = &cc};
    struct tev t2;
    tev_make(&t2, f->org2.uuid, f->org2.uuid, "c2", 2, 1000);
    t2.row.effects = &fx2;
    assert_int_equal(put1(f->st, &t2), SL_PUT_STORED);
    assert_int_equal(sl_store_case_get(f->st, f->org2.uuid, c2, &doc), 0);
    d = cJSON_Parse(doc);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(d, "tags")), 0);
    assert_true(cJSON_IsArray(cJSON_GetObjectItem(d, "tags")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(d, "event_rule")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(d, "case_template")));
    assert_int_equal(cJSON_GetObjectItem(d, "event_count")->valueint, 0);
    cJSON_Delete(d);
    free(doc);
    assert_int_equal(sl_store_case_events(f->st, c2, &doc), 0);
    assert_string_equal(doc, "[]");
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_v1),
        cmocka_unit_test(test_migrate_v1_failure_keeps_file),
        cmocka_unit_test(test_migrate_v1_concurrent),
        cmocka_unit_test_setup_teardown(test_org_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta_global, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_values_100k, setup, teardown),
        cmocka_unit_test_setup_teardown(test_effects_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_effects_all_or_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hits_batched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moved_event_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mutes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cases, setup, teardown),
    };
    sl_log_level_current = SL_LOG_WARN;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
