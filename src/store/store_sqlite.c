/* The SQLite store backend: one WAL-mode database file holding organizations, API keys,
 * events (written idempotently through a narrow hash-keyed dedup table), and the metadata the
 * event rules need. This file has the handle, organizations, keys and events;
 * store_sqlite_schema.c the schema and its migrations; store_sqlite_meta.c the metadata, intel
 * list values, mutes and the side effects of storing an event; store_sqlite_cases.c cases, their
 * comments and the link of events to them; store_sqlite_events.c grouping, stats and actions on
 * stored events; store_sqlite_ingest.c the outcomes of bulk requests; store_sqlite_tasks.c tasks
 * and the ordered scan of stored events.
 *
 * Schema version 3 (the SQL and a note on each table are in store_sqlite_schema.c): orgs,
 * api_keys, events, event_keys, event_keys_recent, store_state, event_counts (version 1); meta,
 * list_values, mutes, cases, tasks (version 2); events.case_id, case_comments, case_releases,
 * ingest_tasks, ingest_outcomes (version 3, which drops version 2's case_events). An older file
 * is migrated in one transaction when it is opened; a file newer than this binary is refused.
 *
 * Events are appended in seq order and carry one cheap index for listing. The dedup set maps
 * the first 64 bits of the event uuid to the row, with open addressing on collision; a slot is
 * an event's when the row's uuid equals the event's. The uuid is derived from the organization
 * the event was ingested by and its reference, so it stays the key when a rule moves the event
 * to another organization (comparing organizations would store a redelivery of a moved event a
 * second time). Those keys are random, so each new key dirties its own B-tree leaf; to keep that
 * from costing a page write per event, new keys go to the small event_keys_recent, which is
 * merged into event_keys in key order from time to time (see merge_threshold). A key lives in
 * exactly one of the two. The events table has no foreign key: put_events resolves the
 * organization itself, so a per-row parent lookup would buy nothing.
 *
 * What a rule does besides editing the event (hits, a new case, a case link, a mute) is written
 * in the event's transaction and only when the event is newly stored; hits are summed per rule
 * over the call and written as one UPDATE per rule, so a rule that hits every event costs one
 * statement per batch, not one per event. A case link is events.case_id, set on the new row by
 * its effects (an event in no case costs nothing more). event_update rewrites stored events
 * found through the same dedup keys and applies effects the same way. */
#include "store/store_sqlite_int.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#define BUSY_TIMEOUT_MS 10000
#define CACHE_KIB       65536 /* page cache per handle; filled lazily */
#define PAGE_BYTES      8192  /* for new databases; measured faster than 4096 for this load */
#define WAL_CKPT_PAGES  8192  /* 64 MiB of WAL between checkpoints */
#define WAL_KEEP_BYTES  (128 << 20)
#define MERGE_MIN       1024 /* bounds of the event_keys_recent merge threshold */
#define MERGE_MAX       262144
#define MERGE_BATCH     500  /* a typical put_events batch, for merge_threshold */
#define PROBE_MAX       64   /* a longer chain means a broken table, not bad luck */
#define LIST_PAGE_MAX   1000 /* events per event_list page */
/* One event_list page's JSON array. The api holds it in memory while it answers, so a page of
 * large documents is refused (SL_EFULL: ask for fewer) rather than built without bound. */
#define LIST_MAX_BYTES ((size_t)32 << 20)
/* Wall-clock budget of one event_list (count and page). Tag and observable filters read every
 * document in the time range, and a long request withholds the api's heartbeat (the supervisor
 * kills an api that misses SLUICE_WORKER_HANG_TIMEOUT), so a longer query is stopped. */
#define LIST_DEADLINE_MS 10000
#define LIST_CHECK_OPS   10000 /* VM instructions between two looks at the clock */
#define COUNT_SLOTS      16
#define KEY_ID_BYTES     8  /* 16 hex characters */
#define SECRET_BYTES     32 /* 43 base64url characters */

/* The events row of dedup slot ?1, whichever of the two key tables holds it. */
#define SLOT_SEQ                                                                                   \
    " coalesce((SELECT seq FROM event_keys_recent WHERE k = ?1),"                                  \
    " (SELECT seq FROM event_keys WHERE k = ?1))"

const char *const sl_sqlite_stmt_sql[ST__N] = {
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    /* The first organization is the default one (the partial index orgs_default allows one). */
    [ST_ORG_INSERT] =
        "INSERT INTO orgs (uuid, name, created_ms, is_default)"
        " VALUES (?1, ?2, ?3, NOT EXISTS (SELECT 1 FROM orgs)) RETURNING id, is_default",
    [ST_ORG_BY_UUID] = "SELECT id, uuid, name, created_ms, is_default FROM orgs WHERE uuid = ?1",
    [ST_ORG_BY_NAME] = "SELECT id, uuid, name, created_ms, is_default FROM orgs WHERE name = ?1",
    [ST_ORG_LIST] = "SELECT id, uuid, name, created_ms, is_default FROM orgs"
                    " ORDER BY is_default DESC, id",
    [ST_ORG_COUNT] = "SELECT count(*) FROM orgs",
    [ST_KEY_INSERT] = "INSERT INTO api_keys (hash, key_id, org_id, role, created_ms)"
                      " SELECT ?1, ?2, id, ?3, ?4 FROM orgs WHERE uuid = ?5",
    [ST_KEY_LOOKUP] = "SELECT k.key_id, k.role, o.uuid, o.name FROM api_keys k"
                      " JOIN orgs o ON o.id = k.org_id WHERE k.hash = ?1",
    [ST_SLOT_READ] = "SELECT org_id, uuid, origin, seq FROM events WHERE seq =" SLOT_SEQ,
    [ST_SLOT_DOC] = "SELECT org_id, uuid, origin, seq, doc FROM events WHERE seq =" SLOT_SEQ,
    [ST_EVENT_INSERT] = "INSERT INTO events (org_id, uuid, reference, title, signature, status,"
                        " severity, original_date_ms, created_ms, origin, doc)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_EVENT_UPDATE] = "UPDATE events SET org_id = ?2, status = ?3, severity = ?4, doc = ?5"
                        " WHERE seq = ?1 AND (?6 IS NULL OR status = ?6 COLLATE NOCASE)",
    [ST_SLOT_PUT] = "INSERT INTO event_keys_recent (k, seq) VALUES (?1, ?2)",
    [ST_RECENT_ADD] = "UPDATE store_state SET recent_keys = recent_keys + ?1 WHERE id = 1"
                      " RETURNING recent_keys",
    [ST_MERGE_COPY] = "INSERT INTO event_keys (k, seq)"
                      " SELECT k, seq FROM event_keys_recent ORDER BY k",
    [ST_MERGE_CLEAR] = "DELETE FROM event_keys_recent",
    [ST_MERGE_RESET] = "UPDATE store_state SET recent_keys = 0 WHERE id = 1",
    [ST_COUNT_ADD] = "INSERT INTO event_counts (org_id, n) VALUES (?1, ?2)"
                     " ON CONFLICT (org_id) DO UPDATE SET n = n + excluded.n",
    [ST_COUNT_ORG] = "SELECT coalesce(c.n, 0) FROM orgs o"
                     " LEFT JOIN event_counts c ON c.org_id = o.id WHERE o.uuid = ?1",
    [ST_COUNT_ALL] = "SELECT coalesce(sum(n), 0) FROM event_counts",
    [ST_LIST_DESC] = "SELECT doc FROM events" SL_SQLITE_LIST_WHERE
                     " ORDER BY original_date_ms DESC, seq DESC LIMIT ?18 OFFSET ?19",
    [ST_LIST_ASC] = "SELECT doc FROM events" SL_SQLITE_LIST_WHERE
                    " ORDER BY original_date_ms ASC, seq ASC LIMIT ?18 OFFSET ?19",
    [ST_LIST_COUNT] = "SELECT count(*) FROM events" SL_SQLITE_LIST_WHERE,
    [ST_META_DEFAULT] = "INSERT INTO meta (kind, uuid, org_id, name, global, doc, created_ms,"
                        " updated_ms) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?6)"
                        " ON CONFLICT (kind, org_id, name) DO NOTHING",
    [ST_VERSION_BUMP] = "UPDATE store_state SET meta_version = meta_version + 1 WHERE id = 1",
    [ST_VERSION_GET] = "SELECT meta_version FROM store_state WHERE id = 1",
};

/* Per-organization changes of the number of events made by one batch, written to event_counts
 * at commit. */
struct count_acc {
    int64_t org_id[COUNT_SLOTS];
    int64_t n[COUNT_SLOTS];
    int len;
};

static const struct sl_store_ops sqlite_ops;

static struct sqlite_store *from_base(struct sl_store *st)
{
    return (struct sqlite_store *)st;
}

/* Maps a failed SQLite call to SL_EBUSY, SL_ETIMEDOUT (interrupted by the read deadline) or
 * SL_EIO and logs what failed. */
int sl_sqlite_fail(struct sqlite_store *s, int rc, const char *what)
{
    int prim = rc & 0xff;
    if (prim == SQLITE_INTERRUPT && s->deadline_hit) {
        SL_WARN("store: %s: stopped at the %lld ms deadline of a read", what,
                (long long)s->list_deadline_ms);
        return SL_ETIMEDOUT;
    }
    if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED) {
        SL_WARN("store: %s: database busy: %s", what, sqlite3_errmsg(s->db));
        return SL_EBUSY;
    }
    SL_ERROR("store: %s: %s (sqlite %d)", what, sqlite3_errmsg(s->db), rc);
    return SL_EIO;
}

/* Returns a prepared statement to its idle state so it holds no read snapshot open. */
void sl_sqlite_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int sl_sqlite_step_done(struct sqlite_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sl_sqlite_done(st);
    return rc == SQLITE_DONE ? 0 : sl_sqlite_fail(s, rc, what);
}

static int exec_simple(struct sqlite_store *s, enum stmt_id id)
{
    int rc = sqlite3_step(s->st[id]);
    sqlite3_reset(s->st[id]);
    if (rc != SQLITE_DONE)
        return sl_sqlite_fail(s, rc, sl_sqlite_stmt_sql[id]);
    return 0;
}

int sl_sqlite_begin(struct sqlite_store *s, int write)
{
    /* IMMEDIATE takes the write lock up front: a deferred transaction that read first could
     * not upgrade once another process had committed, and would fail without waiting. */
    return exec_simple(s, write ? ST_BEGIN_WRITE : ST_BEGIN);
}

int sl_sqlite_commit(struct sqlite_store *s)
{
    return exec_simple(s, ST_COMMIT);
}

void sl_sqlite_rollback(struct sqlite_store *s)
{
    /* Some errors (SQLITE_FULL, SQLITE_IOERR, SQLITE_NOMEM) roll back on their own. */
    if (!sqlite3_get_autocommit(s->db))
        exec_simple(s, ST_ROLLBACK);
}

int sl_sqlite_version_bump(struct sqlite_store *s)
{
    return exec_simple(s, ST_VERSION_BUMP);
}

void sl_sqlite_uuid_lower(const char *uuid, char out[SL_UUID_LEN + 1])
{
    for (int i = 0; i <= SL_UUID_LEN; i++)
        out[i] = (char)((uuid[i] >= 'A' && uuid[i] <= 'F') ? uuid[i] + 32 : uuid[i]);
}

void sl_sqlite_copy_col(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", v ? (const char *)v : "");
}

void sl_sqlite_bind_opt_text(sqlite3_stmt *q, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(q, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, i);
}

/* ---- opening ---- */

static int exec_sql(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Switches to WAL (persistent in the file) and checks that it took: SQLite keeps the old mode
 * silently where WAL is impossible (no shared memory, some network file systems). */
static int enable_wal(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    char mode[16] = "";
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
        snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "%s: cannot set WAL mode: %s", path, sqlite3_errmsg(db));
        return -1;
    }
    if (strcmp(mode, "wal") != 0) {
        snprintf(err, errlen, "%s: the file system does not support WAL mode (mode is %s)", path,
                 mode);
        return -1;
    }
    return 0;
}

static int apply_pragmas(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    char sql[256], what[300];
    sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
    /* WAL lets the api threads read while a worker writes. synchronous=FULL because a worker
     * commits its stream offset as soon as put_events returns: a committed batch must survive
     * a power loss, or the events are lost for good. */
    /* A checkpoint writes each page changed since the last one once, so a larger interval
     * writes the dedup leaves fewer times (measured: 67k -> 89k events/s at 200k events). */
    snprintf(what, sizeof(what), "%s: cannot configure the database", path);
    /* page_size only applies to a file that has no pages yet, and must precede WAL. */
    snprintf(sql, sizeof(sql), "PRAGMA page_size = %d", PAGE_BYTES);
    if (exec_sql(db, sql, what, err, errlen) || enable_wal(db, path, err, errlen))
        return -1;
    snprintf(sql, sizeof(sql),
             "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -%d;"
             " PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = %d;"
             " PRAGMA journal_size_limit = %d;",
             CACHE_KIB, WAL_CKPT_PAGES, WAL_KEEP_BYTES);
    return exec_sql(db, sql, what, err, errlen);
}

static int prepare_one(struct sqlite_store *s, const char *sql, sqlite3_stmt **out, char *err,
                       size_t errlen)
{
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot prepare \"%s\": %s", sql, sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}

static int prepare_all(struct sqlite_store *s, char *err, size_t errlen)
{
    for (int i = 0; i < ST__N; i++)
        if (prepare_one(s, sl_sqlite_stmt_sql[i], &s->st[i], err, errlen))
            return -1;
    for (int i = 0; i < MST__N; i++)
        if (prepare_one(s, sl_sqlite_meta_sql[i], &s->mst[i], err, errlen))
            return -1;
    for (int i = 0; i < TST__N; i++)
        if (prepare_one(s, sl_sqlite_task_sql[i], &s->tst[i], err, errlen))
            return -1;
    return 0;
}

static void sqlite_close(struct sl_store *st)
{
    struct sqlite_store *s = from_base(st);
    for (int i = 0; i < ST__N; i++)
        sqlite3_finalize(s->st[i]);
    for (int i = 0; i < MST__N; i++)
        sqlite3_finalize(s->mst[i]);
    for (int i = 0; i < TST__N; i++)
        sqlite3_finalize(s->tst[i]);
    /* sqlite3_close is required even after a failed sqlite3_open_v2. */
    sqlite3_close(s->db);
    free(s);
}

struct sl_store *sl_store_sqlite_open(const char *path, char *err, size_t errlen)
{
    struct sqlite_store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->base.ops = &sqlite_ops;
    s->list_max_bytes = LIST_MAX_BYTES;
    s->list_deadline_ms = LIST_DEADLINE_MS;
    /* NOMUTEX: a handle is used by one thread at a time, so SQLite's per-call mutex is waste. */
    int flags =
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot open: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    if (apply_pragmas(s->db, path, err, errlen) ||
        sl_sqlite_schema_ensure(s->db, path, err, errlen) || prepare_all(s, err, errlen))
        goto fail;
    /* A case deletion a crash interrupted is finished now; its events already count as in no
     * case, so a failure here (logged) is no reason to refuse the store. */
    sl_sqlite_case_release_pending(s);
    return &s->base;
fail:
    sqlite_close(&s->base);
    return NULL;
}

/* ---- organizations ---- */

size_t sl_sqlite_utf8_decode(const unsigned char *p, size_t n, uint32_t *out)
{
    size_t len;
    uint32_t cp, min;
    if (p[0] < 0x80) {
        *out = p[0];
        return 1;
    }
    if ((p[0] & 0xe0) == 0xc0) {
        len = 2, cp = p[0] & 0x1f, min = 0x80;
    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3, cp = p[0] & 0x0f, min = 0x800;
    } else if ((p[0] & 0xf8) == 0xf0) {
        len = 4, cp = p[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *out = cp;
    return len;
}

int sl_sqlite_name_valid(const char *name, size_t max)
{
    if (!name)
        return 0;
    size_t n = strnlen(name, max + 1);
    if (n == 0 || n > max)
        return 0;
    const unsigned char *p = (const unsigned char *)name;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = sl_sqlite_utf8_decode(p + i, n - i, &cp);
        if (len == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return 0;
        i += len;
    }
    return 1;
}

/* Inserts the organization row; *out_id and *out_default receive its id and default flag. */
static int org_insert(struct sqlite_store *s, const struct sl_org *org, int64_t *out_id,
                      int *out_default)
{
    sqlite3_stmt *q = s->st[ST_ORG_INSERT];
    sqlite3_bind_text(q, 1, org->uuid, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, org->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, org->created_ms);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *out_id = sqlite3_column_int64(q, 0);
        *out_default = sqlite3_column_int(q, 1);
        rc = sqlite3_step(q);
    }
    sl_sqlite_done(q);
    if (rc == SQLITE_CONSTRAINT_UNIQUE)
        return SL_EEXIST;
    return rc == SQLITE_DONE ? 0 : sl_sqlite_fail(s, rc, "creating an organization");
}

/* The organization, its default statuses, close reasons and data types, and a new meta version
 * (so workers load the new organization's metadata), in one transaction. */
static int sqlite_org_create(struct sl_store *st, const char *name, struct sl_org *out)
{
    struct sqlite_store *s = from_base(st);
    struct sl_org org;
    int64_t id = 0;
    if (!sl_sqlite_name_valid(name, SL_ORG_NAME_MAX))
        return SL_EINVAL;
    sl_uuid4(org.uuid);
    snprintf(org.name, sizeof(org.name), "%s", name);
    org.created_ms = sl_now_ms();
    org.is_default = 0;
    int rc = sl_sqlite_begin(s, 1);
    if (rc)
        return rc;
    rc = org_insert(s, &org, &id, &org.is_default);
    if (rc == 0) {
        int src = sl_sqlite_org_defaults(s->st[ST_META_DEFAULT], id, org.uuid, org.created_ms);
        if (src != SQLITE_OK)
            rc = sl_sqlite_fail(s, src, "creating an organization's defaults");
    }
    if (rc == 0)
        rc = sl_sqlite_version_bump(s);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc) {
        sl_sqlite_rollback(s);
        return rc;
    }
    if (out)
        *out = org;
    return 0;
}

static void org_from_row(sqlite3_stmt *q, struct sl_org *out)
{
    sl_sqlite_copy_col(out->uuid, sizeof(out->uuid), q, 1);
    sl_sqlite_copy_col(out->name, sizeof(out->name), q, 2);
    out->created_ms = sqlite3_column_int64(q, 3);
    out->is_default = sqlite3_column_int(q, 4);
}

/* Looks an organization up by uuid or name; *out_id (may be NULL) gets its row id. */
static int org_find(struct sqlite_store *s, const char *uuid, const char *name, struct sl_org *out,
                    int64_t *out_id)
{
    char lower[SL_UUID_LEN + 1];
    sqlite3_stmt *q;
    if (uuid) {
        if (!sl_uuid_valid(uuid))
            return SL_ENOTFOUND;
        sl_sqlite_uuid_lower(uuid, lower);
        q = s->st[ST_ORG_BY_UUID];
        sqlite3_bind_text(q, 1, lower, -1, SQLITE_STATIC);
    } else if (name) {
        q = s->st[ST_ORG_BY_NAME];
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    } else {
        return SL_EINVAL;
    }
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        if (out_id)
            *out_id = sqlite3_column_int64(q, 0);
        if (out)
            org_from_row(q, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = SL_ENOTFOUND;
    } else {
        rc = sl_sqlite_fail(s, rc, "looking up an organization");
    }
    sl_sqlite_done(q);
    return rc;
}

static int sqlite_org_get(struct sl_store *st, const char *uuid, const char *name,
                          struct sl_org *out)
{
    return org_find(from_base(st), uuid, name, out, NULL);
}

/* Runs a statement that yields one integer. */
static int query_int(struct sqlite_store *s, enum stmt_id id, const char *arg, int64_t *out)
{
    sqlite3_stmt *q = s->st[id];
    if (arg)
        sqlite3_bind_text(q, 1, arg, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(q, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = SL_ENOTFOUND;
    } else {
        rc = sl_sqlite_fail(s, rc, sl_sqlite_stmt_sql[id]);
    }
    sl_sqlite_done(q);
    return rc;
}

static int sqlite_org_count(struct sl_store *st, int64_t *out_count)
{
    return query_int(from_base(st), ST_ORG_COUNT, NULL, out_count);
}

static int sqlite_org_list(struct sl_store *st, struct sl_org **out, size_t *out_n)
{
    struct sqlite_store *s = from_base(st);
    sqlite3_stmt *q = s->st[ST_ORG_LIST];
    struct sl_org *orgs = NULL;
    size_t n = 0, cap = 0;
    int rc = 0, src;
    *out = NULL;
    *out_n = 0;
    while ((src = sqlite3_step(q)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct sl_org *p = realloc(orgs, ncap * sizeof(*p));
            if (!p) {
                rc = SL_ENOMEM;
                break;
            }
            orgs = p;
            cap = ncap;
        }
        org_from_row(q, &orgs[n++]);
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = sl_sqlite_fail(s, src, "listing organizations");
    sl_sqlite_done(q);
    if (rc) {
        free(orgs);
        return rc;
    }
    *out = orgs;
    *out_n = n;
    return 0;
}

/* ---- API keys ---- */

static int role_valid(const char *role)
{
    return role && (!strcmp(role, "admin") || !strcmp(role, "analyst") || !strcmp(role, "agent"));
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = 0;
}

/* Unpadded base64url; out holds (4 * n + 2) / 3 + 1 bytes. */
static void base64url_encode(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = tab[v >> 6 & 63];
        out[o++] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = tab[v >> 6 & 63];
    }
    out[o] = 0;
}

/* Builds a fresh plaintext key "sl_<key_id>_<secret>" and its key_id. */
static int key_generate(char key[SL_APIKEY_MAX], char key_id[2 * KEY_ID_BYTES + 1])
{
    unsigned char raw[KEY_ID_BYTES + SECRET_BYTES];
    char secret[(4 * SECRET_BYTES + 2) / 3 + 1];
    if (sl_random_bytes(raw, sizeof(raw)))
        return SL_EIO;
    hex_encode(raw, KEY_ID_BYTES, key_id);
    base64url_encode(raw + KEY_ID_BYTES, SECRET_BYTES, secret);
    snprintf(key, SL_APIKEY_MAX, "sl_%s_%s", key_id, secret);
    explicit_bzero(raw, sizeof(raw));
    explicit_bzero(secret, sizeof(secret));
    return 0;
}

static int sqlite_apikey_create(struct sl_store *st, const char *org_uuid, const char *role,
                                char out_key[SL_APIKEY_MAX])
{
    struct sqlite_store *s = from_base(st);
    sqlite3_stmt *q = s->st[ST_KEY_INSERT];
    char key[SL_APIKEY_MAX], key_id[2 * KEY_ID_BYTES + 1], hash[65], org[SL_UUID_LEN + 1];
    int rc = SL_EIO;
    if (!role_valid(role))
        return SL_EINVAL;
    if (!org_uuid || !sl_uuid_valid(org_uuid))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(org_uuid, org);
    /* A repeated 64-bit key id is all but impossible; retry rather than fail if it happens. */
    for (int attempt = 0; attempt < 3; attempt++) {
        rc = key_generate(key, key_id);
        if (rc)
            break;
        sl_sha256_hex(key, strlen(key), hash);
        sqlite3_bind_text(q, 1, hash, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, key_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, role, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, sl_now_ms());
        sqlite3_bind_text(q, 5, org, -1, SQLITE_STATIC);
        int src = sqlite3_step(q);
        sl_sqlite_done(q);
        if (src == SQLITE_DONE) {
            rc = sqlite3_changes(s->db) == 1 ? 0 : SL_ENOTFOUND;
            break;
        }
        if (src != SQLITE_CONSTRAINT_UNIQUE && src != SQLITE_CONSTRAINT_PRIMARYKEY) {
            rc = sl_sqlite_fail(s, src, "creating an API key");
            break;
        }
        rc = SL_EIO;
    }
    if (rc == 0)
        memcpy(out_key, key, SL_APIKEY_MAX);
    explicit_bzero(key, sizeof(key));
    return rc;
}

static int sqlite_apikey_lookup(struct sl_store *st, const char *key, struct sl_principal *out)
{
    struct sqlite_store *s = from_base(st);
    sqlite3_stmt *q = s->st[ST_KEY_LOOKUP];
    char hash[65];
    /* Only the hash of the presented key is compared, by an index lookup, so the time taken
     * reveals nothing about how much of a stored key matched. */
    if (!key || strncmp(key, "sl_", 3) != 0)
        return SL_ENOTFOUND;
    size_t len = strnlen(key, SL_APIKEY_MAX);
    if (len >= SL_APIKEY_MAX)
        return SL_ENOTFOUND;
    sl_sha256_hex(key, len, hash);
    sqlite3_bind_text(q, 1, hash, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        sl_sqlite_copy_col(out->key_id, sizeof(out->key_id), q, 0);
        sl_sqlite_copy_col(out->role, sizeof(out->role), q, 1);
        sl_sqlite_copy_col(out->org_uuid, sizeof(out->org_uuid), q, 2);
        sl_sqlite_copy_col(out->org_name, sizeof(out->org_name), q, 3);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = SL_ENOTFOUND;
    } else {
        rc = sl_sqlite_fail(s, rc, "looking up an API key");
    }
    sl_sqlite_done(q);
    return rc;
}

/* ---- events: idempotent writes ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return c - 'A' + 10; /* the caller checked sl_uuid_valid */
}

/* The first 8 bytes of a canonical uuid as an unsigned 64-bit number. */
static uint64_t uuid_key(const char *uuid)
{
    uint64_t k = 0;
    for (int i = 0; i < 18; i++) {
        if (uuid[i] != '-')
            k = k << 4 | (uint64_t)hexval(uuid[i]);
    }
    return k;
}

/* The two's-complement signed value of k, stored in event_keys.k (an SQLite integer). */
static int64_t key_signed(uint64_t k)
{
    return k <= (uint64_t)INT64_MAX ? (int64_t)k : -(int64_t)(~k) - 1;
}

enum slot { SLOT_EMPTY, SLOT_MINE, SLOT_OTHER };

/* The events row a dedup slot leads to. */
struct slot_row {
    int64_t seq, org_id, origin;
};

/* Reads the dedup slot k. The slot is SLOT_MINE when its event has the given (lowercase) uuid
 * and, unless org_id is negative, belongs to org_id. On SLOT_MINE the row's seq, organization
 * and origin go to *out_row and, if out_doc is non-NULL, a malloc'd copy of its document to
 * *out_doc. The statement stays reset on return. */
static int slot_read(struct sqlite_store *s, uint64_t k, const char *uuid, int64_t org_id,
                     enum slot *out, struct slot_row *out_row, char **out_doc)
{
    sqlite3_stmt *q = s->st[out_doc ? ST_SLOT_DOC : ST_SLOT_READ];
    int rc = 0;
    sqlite3_bind_int64(q, 1, key_signed(k));
    int src = sqlite3_step(q);
    if (src == SQLITE_DONE) {
        *out = SLOT_EMPTY;
        goto out;
    }
    if (src != SQLITE_ROW) {
        rc = sl_sqlite_fail(s, src, "reading an event key");
        goto out;
    }
    const char *have = (const char *)sqlite3_column_text(q, 1);
    if (!have || strcmp(have, uuid) != 0 || (org_id >= 0 && sqlite3_column_int64(q, 0) != org_id)) {
        *out = SLOT_OTHER;
        goto out;
    }
    *out = SLOT_MINE;
    out_row->org_id = sqlite3_column_int64(q, 0);
    out_row->origin = sqlite3_column_int64(q, 2);
    out_row->seq = sqlite3_column_int64(q, 3);
    if (out_doc) {
        const char *doc = (const char *)sqlite3_column_text(q, 4);
        size_t len = (size_t)sqlite3_column_bytes(q, 4);
        *out_doc = malloc(len + 1);
        if (!*out_doc) {
            rc = SL_ENOMEM;
            goto out;
        }
        memcpy(*out_doc, doc ? doc : "", len);
        (*out_doc)[len] = 0;
    }
out:
    sl_sqlite_done(q);
    return rc;
}

/* Appends the event row (*out_seq) and claims dedup slot k for it. */
static int insert_event(struct sqlite_store *s, const struct sl_store_event *ev, const char *uuid,
                        int64_t org_id, uint64_t k, int64_t *out_seq)
{
    sqlite3_stmt *q = s->st[ST_EVENT_INSERT];
    sqlite3_bind_int64(q, 1, org_id);
    sqlite3_bind_text(q, 2, uuid, SL_UUID_LEN, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, ev->reference, -1, SQLITE_STATIC);
    sl_sqlite_bind_opt_text(q, 4, ev->title);
    sl_sqlite_bind_opt_text(q, 5, ev->signature);
    sl_sqlite_bind_opt_text(q, 6, ev->status);
    sqlite3_bind_int(q, 7, ev->severity);
    sqlite3_bind_int64(q, 8, ev->original_date_ms);
    sqlite3_bind_int64(q, 9, ev->created_ms);
    sqlite3_bind_int64(q, 10, key_signed(ev->origin));
    sqlite3_bind_text(q, 11, ev->doc, (int)ev->doc_len, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sl_sqlite_done(q);
    if (rc != SQLITE_DONE)
        return sl_sqlite_fail(s, rc, "inserting an event");
    *out_seq = sqlite3_last_insert_rowid(s->db);
    q = s->st[ST_SLOT_PUT];
    sqlite3_bind_int64(q, 1, key_signed(k));
    sqlite3_bind_int64(q, 2, *out_seq);
    rc = sqlite3_step(q);
    sl_sqlite_done(q);
    if (rc != SQLITE_DONE)
        return sl_sqlite_fail(s, rc, "inserting an event key");
    return 0;
}

/* Stores one event unless its uuid is already stored (in whichever organization: a rule may have
 * moved it); *out_seq is the new row's. Collisions of the 64-bit key between different events are
 * resolved by linear probing, k+1, k+2, ... (mod 2^64); a deleted event leaves its row behind as a
 * tombstone (organization 0, see store_sqlite_events.c), so a probe chain never has holes. */
static int put_one(struct sqlite_store *s, const struct sl_store_event *ev, int64_t org_id,
                   enum sl_put_outcome *out, int64_t *out_seq)
{
    char uuid[SL_UUID_LEN + 1];
    sl_sqlite_uuid_lower(ev->uuid, uuid);
    uint64_t k = uuid_key(uuid);
    for (int probe = 0; probe < PROBE_MAX; probe++, k++) {
        enum slot slot;
        struct slot_row row;
        int rc = slot_read(s, k, uuid, -1, &slot, &row, NULL);
        if (rc)
            return rc;
        if (slot == SLOT_OTHER)
            continue;
        if (slot == SLOT_MINE) {
            *out = row.origin == key_signed(ev->origin) ? SL_PUT_REDELIVERED : SL_PUT_DUPLICATE;
            return 0;
        }
        if (probe > 0)
            SL_INFO("store: event %s: 64-bit key collision, stored at probe %d", uuid, probe);
        *out = SL_PUT_STORED;
        return insert_event(s, ev, uuid, org_id, k, out_seq);
    }
    SL_ERROR("store: event %s: no free key slot within %d probes", uuid, PROBE_MAX);
    return SL_EIO;
}

/* The row id of organization uuid, from the one-entry cache or the orgs table. */
int sl_sqlite_org_resolve(struct sqlite_store *s, const char *org, int64_t *out_id)
{
    char uuid[SL_UUID_LEN + 1];
    if (!org || !sl_uuid_valid(org))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(org, uuid);
    if (s->org_uuid[0] && strcmp(s->org_uuid, uuid) == 0) {
        *out_id = s->org_id;
        return 0;
    }
    sqlite3_stmt *q = s->st[ST_ORG_BY_UUID];
    sqlite3_bind_text(q, 1, uuid, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        s->org_id = *out_id = sqlite3_column_int64(q, 0);
        memcpy(s->org_uuid, uuid, SL_UUID_LEN + 1);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = SL_ENOTFOUND;
    } else {
        rc = sl_sqlite_fail(s, rc, "resolving an organization");
    }
    sl_sqlite_done(q);
    return rc;
}

static int counts_flush(struct sqlite_store *s, struct count_acc *acc)
{
    sqlite3_stmt *q = s->st[ST_COUNT_ADD];
    for (int i = 0; i < acc->len; i++) {
        sqlite3_bind_int64(q, 1, acc->org_id[i]);
        sqlite3_bind_int64(q, 2, acc->n[i]);
        int rc = sqlite3_step(q);
        sl_sqlite_done(q);
        if (rc != SQLITE_DONE)
            return sl_sqlite_fail(s, rc, "updating event counts");
    }
    acc->len = 0;
    return 0;
}

static int counts_add(struct sqlite_store *s, struct count_acc *acc, int64_t org_id, int64_t delta)
{
    for (int i = 0; i < acc->len; i++) {
        if (acc->org_id[i] == org_id) {
            acc->n[i] += delta;
            return 0;
        }
    }
    if (acc->len == COUNT_SLOTS) {
        int rc = counts_flush(s, acc);
        if (rc)
            return rc;
    }
    acc->org_id[acc->len] = org_id;
    acc->n[acc->len++] = delta;
    return 0;
}

static uint64_t isqrt64(uint64_t v)
{
    uint64_t r = 0, bit = 1ull << 62;
    while (bit > v)
        bit >>= 2;
    while (bit) {
        if (v >= r + bit) {
            v -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return r;
}

/* How many keys event_keys_recent may hold before it is merged, given total stored events.
 * With c keys per leaf and batches of B keys, a merge rewrites about total/c leaves of
 * event_keys once per R new keys, and each batch rewrites about the R/c leaves of the recent
 * table; per key that is total/(c*R) + R/(c*B), least at R = sqrt(B * total). */
static int64_t merge_threshold(int64_t total)
{
    uint64_t r = isqrt64((uint64_t)MERGE_BATCH * (uint64_t)(total > 0 ? total : 0));
    return r < MERGE_MIN ? MERGE_MIN : r > MERGE_MAX ? MERGE_MAX : (int64_t)r;
}

/* Counts the batch's new keys and, once event_keys_recent holds enough of them, merges it into
 * event_keys in key order. Runs inside the batch's transaction. */
static int keys_settle(struct sqlite_store *s, int64_t added)
{
    sqlite3_stmt *q = s->st[ST_RECENT_ADD];
    int64_t recent = 0, total = 0;
    if (added == 0)
        return 0;
    sqlite3_bind_int64(q, 1, added);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        recent = sqlite3_column_int64(q, 0);
    sl_sqlite_done(q);
    if (rc != SQLITE_ROW)
        return sl_sqlite_fail(s, rc, "counting recent event keys");
    rc = query_int(s, ST_COUNT_ALL, NULL, &total);
    if (rc || recent < merge_threshold(total))
        return rc;
    rc = exec_simple(s, ST_MERGE_COPY);
    if (rc == 0)
        rc = exec_simple(s, ST_MERGE_CLEAR);
    if (rc == 0)
        rc = exec_simple(s, ST_MERGE_RESET);
    if (rc == 0)
        SL_DEBUG("store: merged %" PRId64 " recent event keys (%" PRId64 " events)", recent, total);
    return rc;
}

static int events_valid(const struct sl_store_event *evs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct sl_store_event *ev = &evs[i];
        if (!ev->reference || !ev->doc || !sl_uuid_valid(ev->uuid) || !sl_uuid_valid(ev->org) ||
            ev->doc_len > INT32_MAX || (ev->ingest_org && !sl_uuid_valid(ev->ingest_org)) ||
            (ev->effects && !sl_sqlite_effects_valid(ev->effects)))
            return 0;
    }
    return 1;
}

static int sqlite_put_events(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                             const struct sl_store_batch *batch, enum sl_put_outcome *out_outcomes)
{
    struct sqlite_store *s = from_base(st);
    struct count_acc acc = {.len = 0};
    struct sl_sqlite_hits hits = {.len = 0};
    int64_t added = 0;
    int rc;
    int has_batch = batch && (batch->noutcomes || batch->ndone);
    if (n == 0 && !has_batch)
        return 0;
    if ((n && (!evs || !out_outcomes || !events_valid(evs, n))) ||
        (batch && !sl_sqlite_batch_valid(batch)))
        return SL_EINVAL;
    rc = sl_sqlite_begin(s, 1);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        int64_t org_id = 0, seq = 0;
        rc = sl_sqlite_org_resolve(s, evs[i].org, &org_id);
        if (rc == 0)
            rc = put_one(s, &evs[i], org_id, &out_outcomes[i], &seq);
        if (rc == 0 && out_outcomes[i] == SL_PUT_STORED) {
            added++;
            rc = counts_add(s, &acc, org_id, 1);
            /* Only a newly stored event has effects: a redelivery or a duplicate had them
             * applied when it was stored. */
            if (rc == 0 && evs[i].effects)
                rc = sl_sqlite_effects_apply(s, &evs[i], seq, org_id, &hits);
        }
        if (rc)
            goto out;
    }
    rc = counts_flush(s, &acc);
    if (rc == 0)
        rc = sl_sqlite_hits_flush(s, &hits);
    if (rc == 0)
        rc = sl_sqlite_batch_record(s, evs, n, out_outcomes, batch);
    if (rc == 0)
        rc = keys_settle(s, added);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
out:
    if (rc)
        sl_sqlite_rollback(s);
    return rc;
}

/* The row of the event with uuid (lowercase), in whichever organization: the probe chain
 * put_one made. SL_ENOTFOUND when it is not stored. */
static int event_find(struct sqlite_store *s, const char *uuid, struct slot_row *out)
{
    uint64_t k = uuid_key(uuid);
    for (int probe = 0; probe < PROBE_MAX; probe++, k++) {
        enum slot slot;
        int rc = slot_read(s, k, uuid, -1, &slot, out, NULL);
        if (rc)
            return rc;
        if (slot == SLOT_EMPTY)
            return SL_ENOTFOUND;
        if (slot == SLOT_MINE)
            return 0;
    }
    return SL_ENOTFOUND;
}

int sl_sqlite_event_find(struct sqlite_store *s, const char *uuid, int64_t org_id, int64_t *out_seq)
{
    char want[SL_UUID_LEN + 1];
    struct slot_row row;
    if (!uuid || !sl_uuid_valid(uuid))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(uuid, want);
    /* The chain event_get follows: a slot holding the uuid in another organization (or a
     * tombstone, organization 0) is passed over like any other collision. */
    uint64_t k = uuid_key(want);
    for (int probe = 0; probe < PROBE_MAX; probe++, k++) {
        enum slot slot;
        int rc = slot_read(s, k, want, org_id, &slot, &row, NULL);
        if (rc)
            return rc;
        if (slot == SLOT_EMPTY)
            return SL_ENOTFOUND;
        if (slot == SLOT_MINE) {
            *out_seq = row.seq;
            return 0;
        }
    }
    return SL_ENOTFOUND;
}

static int update_valid(const struct sl_store_event *evs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct sl_store_event *ev = &evs[i];
        if (!ev->doc || !sl_uuid_valid(ev->uuid) || !sl_uuid_valid(ev->org) ||
            ev->doc_len > INT32_MAX || (ev->ingest_org && !sl_uuid_valid(ev->ingest_org)) ||
            (ev->effects && !sl_sqlite_effects_valid(ev->effects)))
            return 0;
    }
    return 1;
}

/* Rewrites one stored event (its row is found) and moves its count to its new organization. */
/* Rewrites one event; *out_changed is 0 when it no longer has ev->expect_status. */
static int update_one(struct sqlite_store *s, const struct sl_store_event *ev,
                      const struct slot_row *row, int64_t org_id, struct count_acc *acc,
                      int *out_changed)
{
    sqlite3_stmt *q = s->st[ST_EVENT_UPDATE];
    sqlite3_bind_int64(q, 1, row->seq);
    sqlite3_bind_int64(q, 2, org_id);
    sl_sqlite_bind_opt_text(q, 3, ev->status);
    sqlite3_bind_int(q, 4, ev->severity);
    sqlite3_bind_text(q, 5, ev->doc, (int)ev->doc_len, SQLITE_STATIC);
    sl_sqlite_bind_opt_text(q, 6, ev->expect_status);
    int rc = sl_sqlite_step_done(s, q, "updating an event");
    *out_changed = rc == 0 && sqlite3_changes(s->db) > 0;
    if (rc == 0 && *out_changed && org_id != row->org_id) {
        rc = counts_add(s, acc, row->org_id, -1);
        if (rc == 0)
            rc = counts_add(s, acc, org_id, 1);
    }
    return rc;
}

static int sqlite_event_update(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                               size_t *out_updated)
{
    struct sqlite_store *s = from_base(st);
    struct count_acc acc = {.len = 0};
    struct sl_sqlite_hits hits = {.len = 0};
    size_t updated = 0;
    int rc;
    if (out_updated)
        *out_updated = 0;
    if (n == 0)
        return 0;
    if (!evs || !update_valid(evs, n))
        return SL_EINVAL;
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        char uuid[SL_UUID_LEN + 1];
        struct slot_row row;
        int64_t org_id = 0;
        sl_sqlite_uuid_lower(evs[i].uuid, uuid);
        rc = event_find(s, uuid, &row);
        if (rc == SL_ENOTFOUND || (rc == 0 && row.org_id == 0)) {
            rc = 0; /* not stored, or deleted (a tombstone: organization 0) */
            continue;
        }
        if (rc == 0)
            rc = sl_sqlite_org_resolve(s, evs[i].org, &org_id);
        int changed = 0;
        if (rc == 0)
            rc = update_one(s, &evs[i], &row, org_id, &acc, &changed);
        if (rc == 0 && !changed)
            continue; /* changed meanwhile (an analyst acted on it): left as it now is */
        if (rc == 0 && evs[i].effects)
            rc = sl_sqlite_effects_apply(s, &evs[i], row.seq, org_id, &hits);
        /* Without a case effect the event keeps its link, unless the case no longer holds it
         * (the event moved to another organization, or the case was deleted). */
        if (rc == 0 && !(evs[i].effects && evs[i].effects->case_uuid))
            rc = sl_sqlite_case_link(s, row.seq, org_id, NULL);
        if (rc)
            goto out;
        updated++;
    }
    rc = counts_flush(s, &acc);
    if (rc == 0)
        rc = sl_sqlite_hits_flush(s, &hits);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
out:
    if (rc) {
        sl_sqlite_rollback(s);
        return rc;
    }
    if (out_updated)
        *out_updated = updated;
    return 0;
}

/* ---- events: reads ---- */

static int sqlite_event_get(struct sl_store *st, const char *org, const char *uuid, char **out_doc)
{
    struct sqlite_store *s = from_base(st);
    char want[SL_UUID_LEN + 1];
    struct slot_row row;
    int64_t org_id;
    int rc;
    *out_doc = NULL;
    if (!org || !uuid || !sl_uuid_valid(uuid))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(uuid, want);
    rc = org_find(s, org, NULL, NULL, &org_id);
    if (rc)
        return rc;
    /* Follow the same probe chain put_one made; a slot holding this uuid in another
     * organization (an event a rule moved, or two organizations' events of one uuid stored by
     * schema version 1) is passed over like any other collision. */
    uint64_t k = uuid_key(want);
    for (int probe = 0; probe < PROBE_MAX; probe++, k++) {
        enum slot slot;
        rc = slot_read(s, k, want, org_id, &slot, &row, out_doc);
        if (rc)
            return rc;
        if (slot == SLOT_EMPTY)
            return SL_ENOTFOUND;
        if (slot == SLOT_MINE)
            return 0;
    }
    return SL_ENOTFOUND;
}

static int sqlite_event_count(struct sl_store *st, const char *org, int64_t *out_count)
{
    struct sqlite_store *s = from_base(st);
    char lower[SL_UUID_LEN + 1];
    if (!org)
        return query_int(s, ST_COUNT_ALL, NULL, out_count);
    if (!sl_uuid_valid(org))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(org, lower);
    return query_int(s, ST_COUNT_ORG, lower, out_count);
}

int sl_sqlite_buf_put(struct sl_sqlite_buf *b, const char *data, size_t n)
{
    if (n > b->max - b->len)
        return SL_EFULL;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (cap > b->max + 1) /* never allocate past the maximum (+1 for the NUL) */
            cap = b->max + 1;
        char *p = realloc(b->p, cap);
        if (!p)
            return SL_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int sl_sqlite_buf_json_str(struct sl_sqlite_buf *b, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)str;
    size_t run = 0; /* start of the bytes not yet written, which need no escaping */
    int rc;
    if (!str)
        return sl_sqlite_buf_put(b, "null", 4);
    if ((rc = sl_sqlite_buf_put(b, "\"", 1)))
        return rc;
    for (size_t i = 0; i < len;) {
        char esc[8];
        size_t elen = 0, step = 1;
        uint32_t cp;
        if (p[i] == '"' || p[i] == '\\') {
            esc[0] = '\\', esc[1] = (char)p[i], elen = 2;
        } else if (p[i] < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[p[i] >> 4], esc[5] = hex[p[i] & 15], elen = 6;
        } else if (p[i] >= 0x80 && (step = sl_sqlite_utf8_decode(p + i, len - i, &cp)) == 0) {
            memcpy(esc, "\\ufffd", 6), elen = 6, step = 1;
        }
        if (elen == 0) {
            i += step;
            continue;
        }
        if ((rc = sl_sqlite_buf_put(b, str + run, i - run)) ||
            (rc = sl_sqlite_buf_put(b, esc, elen)))
            return rc;
        i += step;
        run = i;
    }
    if ((rc = sl_sqlite_buf_put(b, str + run, len - run)))
        return rc;
    return sl_sqlite_buf_put(b, "\"", 1);
}

static const char *nonempty(const char *v)
{
    return v && *v ? v : NULL;
}

void sl_sqlite_bind_filter(sqlite3_stmt *q, const struct sl_event_filter *f)
{
    sqlite3_bind_text(q, 1, f->org, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, f->start_ms ? f->start_ms : INT64_MIN);
    sqlite3_bind_int64(q, 3, f->end_ms ? f->end_ms : INT64_MAX);
    sl_sqlite_bind_opt_text(q, 4, nonempty(f->status));
    sqlite3_bind_int(q, 5, f->nseverities);
    for (int i = 0; i < 8; i++) {
        int sev = f->nseverities ? f->severities[i < f->nseverities ? i : 0] : 0;
        sqlite3_bind_int(q, 6 + i, sev);
    }
    sl_sqlite_bind_opt_text(q, 14, nonempty(f->title));
    sl_sqlite_bind_opt_text(q, 15, nonempty(f->signature));
    sl_sqlite_bind_opt_text(q, 16, nonempty(f->tag));
    sl_sqlite_bind_opt_text(q, 17, nonempty(f->observable));
}

/* Whether f selects every event of its organization, so the total is event_counts' number. */
static int filter_is_org_only(const struct sl_event_filter *f)
{
    return !nonempty(f->status) && f->nseverities == 0 && !nonempty(f->title) &&
           !nonempty(f->signature) && !nonempty(f->tag) && !nonempty(f->observable) &&
           f->start_ms == 0 && f->end_ms == 0;
}

/* The number of events matching f. Runs inside the caller's read transaction. */
static int list_total(struct sqlite_store *s, const struct sl_event_filter *f, int64_t *out)
{
    if (filter_is_org_only(f)) {
        char lower[SL_UUID_LEN + 1];
        if (!sl_uuid_valid(f->org)) {
            *out = 0;
            return 0;
        }
        sl_sqlite_uuid_lower(f->org, lower);
        int rc = query_int(s, ST_COUNT_ORG, lower, out);
        if (rc == SL_ENOTFOUND)
            *out = 0;
        return rc == SL_ENOTFOUND ? 0 : rc;
    }
    sqlite3_stmt *q = s->st[ST_LIST_COUNT];
    sl_sqlite_bind_filter(q, f);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(q, 0);
        rc = 0;
    } else {
        rc = sl_sqlite_fail(s, rc, "counting events");
    }
    sl_sqlite_done(q);
    return rc;
}

int sl_sqlite_filter_valid(const struct sl_event_filter *f)
{
    if (!f || !f->org || f->nseverities < 0 || f->nseverities > 8)
        return 0;
    if (f->page_size < 1 || f->page_size > LIST_PAGE_MAX || f->page < 1)
        return 0;
    return f->page - 1 <= INT64_MAX / f->page_size; /* the offset must not overflow */
}

/* Steps the list statement and writes the documents as a JSON array into b. */
static int list_docs(struct sqlite_store *s, sqlite3_stmt *q, struct sl_sqlite_buf *b)
{
    int rc = sl_sqlite_buf_put(b, "[", 1), first = 1, src = SQLITE_DONE;
    while (rc == 0 && (src = sqlite3_step(q)) == SQLITE_ROW) {
        const char *doc = (const char *)sqlite3_column_text(q, 0);
        size_t len = (size_t)sqlite3_column_bytes(q, 0);
        if (!first)
            rc = sl_sqlite_buf_put(b, ",", 1);
        if (rc == 0)
            rc = sl_sqlite_buf_put(b, doc ? doc : "null", doc ? len : 4);
        first = 0;
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = sl_sqlite_fail(s, src, "listing events");
    if (rc == 0)
        rc = sl_sqlite_buf_put(b, "]", 1);
    return rc;
}

/* The progress handler of the read deadline: interrupts the statement once it passed. */
static int list_progress(void *arg)
{
    struct sqlite_store *s = arg;
    if (sl_mono_ms() < s->deadline)
        return 0;
    s->deadline_hit = 1;
    return 1;
}

void sl_sqlite_deadline_start(struct sqlite_store *s)
{
    s->deadline = sl_mono_ms() + s->list_deadline_ms;
    s->deadline_hit = 0;
    sqlite3_progress_handler(s->db, LIST_CHECK_OPS, list_progress, s);
}

void sl_sqlite_deadline_pause(struct sqlite_store *s, int paused)
{
    if (paused)
        sqlite3_progress_handler(s->db, 0, NULL, NULL);
    else
        sqlite3_progress_handler(s->db, LIST_CHECK_OPS, list_progress, s);
}

void sl_sqlite_deadline_stop(struct sqlite_store *s)
{
    sqlite3_progress_handler(s->db, 0, NULL, NULL);
    s->deadline_hit = 0;
}

static int sqlite_event_list(struct sl_store *st, const struct sl_event_filter *f, char **out_json,
                             int64_t *out_total)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = s->list_max_bytes};
    sqlite3_stmt *list = s->st[f && f->sort_asc ? ST_LIST_ASC : ST_LIST_DESC];
    int rc;
    *out_json = NULL;
    if (!sl_sqlite_filter_valid(f))
        return SL_EINVAL;
    /* One read transaction, so the total and the page come from the same snapshot. */
    rc = exec_simple(s, ST_BEGIN);
    if (rc)
        return rc;
    sl_sqlite_deadline_start(s);
    rc = list_total(s, f, out_total);
    if (rc == 0) {
        sl_sqlite_bind_filter(list, f);
        sqlite3_bind_int64(list, 18, f->page_size);
        sqlite3_bind_int64(list, 19, (f->page - 1) * f->page_size);
        rc = list_docs(s, list, &b);
        sl_sqlite_done(list);
    }
    /* Off before COMMIT or ROLLBACK, which must not be interrupted, and before the handle's
     * next call (writes have no deadline). */
    sl_sqlite_deadline_stop(s);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc) {
        sl_sqlite_rollback(s);
        free(b.p);
        return rc;
    }
    *out_json = b.p;
    return 0;
}

void sl_store_sqlite_test_limits(struct sl_store *st, size_t list_max_bytes,
                                 int64_t list_deadline_ms)
{
    struct sqlite_store *s = from_base(st);
    if (st->ops != &sqlite_ops)
        return;
    s->list_max_bytes = list_max_bytes ? list_max_bytes : LIST_MAX_BYTES;
    s->list_deadline_ms = list_deadline_ms ? list_deadline_ms : LIST_DEADLINE_MS;
}

static const struct sl_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sqlite_close,
    .org_create = sqlite_org_create,
    .org_get = sqlite_org_get,
    .org_count = sqlite_org_count,
    .apikey_create = sqlite_apikey_create,
    .apikey_lookup = sqlite_apikey_lookup,
    .put_events = sqlite_put_events,
    .event_get = sqlite_event_get,
    .event_list = sqlite_event_list,
    .event_count = sqlite_event_count,
    .org_list = sqlite_org_list,
    .meta_put = sl_sqlite_meta_put,
    .meta_get = sl_sqlite_meta_get,
    .meta_list = sl_sqlite_meta_list,
    .meta_delete = sl_sqlite_meta_delete,
    .meta_version = sl_sqlite_meta_version,
    .list_values_add = sl_sqlite_list_values_add,
    .list_values_delete = sl_sqlite_list_values_delete,
    .list_values_expire = sl_sqlite_list_values_expire,
    .list_values_page = sl_sqlite_list_values_page,
    .list_values_iter = sl_sqlite_list_values_iter,
    .list_values_count = sl_sqlite_list_values_count,
    .mute_active = sl_sqlite_mute_active,
    .mute_get = sl_sqlite_mute_get,
    .case_get = sl_sqlite_case_get,
    .case_events = sl_sqlite_case_events,
    .case_event_docs = sl_sqlite_case_event_docs,
    .task_put = sl_sqlite_task_put,
    .task_get = sl_sqlite_task_get,
    .task_list = sl_sqlite_task_list,
    .event_scan = sl_sqlite_event_scan,
    .event_update = sqlite_event_update,
    .case_create = sl_sqlite_case_create,
    .case_update = sl_sqlite_case_update,
    .case_close = sl_sqlite_case_close,
    .case_reopen = sl_sqlite_case_reopen,
    .case_delete = sl_sqlite_case_delete,
    .case_list = sl_sqlite_case_list,
    .case_observables = sl_sqlite_case_observables,
    .case_comment_add = sl_sqlite_case_comment_add,
    .case_comment_list = sl_sqlite_case_comment_list,
    .case_comment_delete = sl_sqlite_case_comment_delete,
    .event_grouped = sl_sqlite_event_grouped,
    .event_stats = sl_sqlite_event_stats,
    .event_select_check = sl_sqlite_event_select_check,
    .event_act = sl_sqlite_event_act,
    .event_select_ids = sl_sqlite_event_select_ids,
    .event_export = sl_sqlite_event_export,
    .ingest_task_get = sl_sqlite_ingest_task_get,
    .ingest_task_expire = sl_sqlite_ingest_task_expire,
    .task_params = sl_sqlite_task_params,
};
