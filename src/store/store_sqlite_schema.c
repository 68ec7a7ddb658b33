/* The SQLite store's schema: version 1 as the first release created it, the migrations to
 * version 2 (metadata, intel list values, mutes, cases, tasks) and 3 (cases linked from their
 * events, comments, bulk actions, ingest tasks), and each organization's defaults. */
#include "store/store_sqlite_int.h"
#include "core/log.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define APPLICATION_ID 1397506885 /* 0x534c4345, "SLCE": marks the file as sluice's */

#define STR_(x) #x
#define STR(x)  STR_(x)

/* Version 1, exactly as the first release created it: a new file is created at version 1 and
 * then migrated, so a new database and a migrated one cannot drift apart. See the header of
 * store_sqlite.c for the design of events and their dedup keys. */
static const char schema_v1_sql[] =
    "CREATE TABLE orgs ("
    " id INTEGER PRIMARY KEY,"
    " uuid TEXT NOT NULL UNIQUE,"
    " name TEXT NOT NULL UNIQUE,"
    " created_ms INTEGER NOT NULL);"
    "CREATE TABLE api_keys ("
    " hash TEXT PRIMARY KEY," /* hex SHA-256 of the whole plaintext key */
    " key_id TEXT NOT NULL UNIQUE,"
    " org_id INTEGER NOT NULL REFERENCES orgs(id),"
    " role TEXT NOT NULL CHECK (role IN ('admin', 'analyst', 'agent')),"
    " created_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE events ("
    " seq INTEGER PRIMARY KEY,"
    " org_id INTEGER NOT NULL,"
    " uuid TEXT NOT NULL,"
    " reference TEXT NOT NULL,"
    " title TEXT,"
    " signature TEXT,"
    " status TEXT,"
    " severity INTEGER NOT NULL,"
    " original_date_ms INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " origin INTEGER NOT NULL,"
    " doc TEXT NOT NULL);"
    "CREATE INDEX events_org_date ON events(org_id, original_date_ms);"
    "CREATE TABLE event_keys (k INTEGER PRIMARY KEY, seq INTEGER NOT NULL);"
    "CREATE TABLE event_keys_recent (k INTEGER PRIMARY KEY, seq INTEGER NOT NULL);"
    "CREATE TABLE store_state ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " recent_keys INTEGER NOT NULL);" /* rows in event_keys_recent */
    "INSERT INTO store_state (id, recent_keys) VALUES (1, 0);"
    "CREATE TABLE event_counts ("
    " org_id INTEGER PRIMARY KEY REFERENCES orgs(id),"
    " n INTEGER NOT NULL);"
    "PRAGMA application_id = " STR(APPLICATION_ID) ";"
                                                   "PRAGMA user_version = 1;";

/* Version 2.
 * - orgs.is_default marks the first organization (the lowest id), the parent of the others;
 *   a partial unique index allows one.
 * - meta holds rules, lists, close reasons, statuses and data types as JSON documents with the
 *   columns the store queries; (kind, org_id, name) is unique; meta_global finds the global
 *   rules and lists without a scan. store_state.meta_version changes with every metadata write,
 *   list value change and new organization, so workers know when to reload.
 * - list_values: one row per value; id (increasing) is the page cursor; list_values_list serves
 *   paging, iteration, counting and deleting a list's values in id order, list_values_expiry the
 *   expiry of polled values. No foreign key to meta: the store resolves the list itself, and a
 *   parent lookup per value would slow bulk adds for nothing.
 * - mutes: (org, signature) muted until until_ms by a rule.
 * - cases and case_events: the minimal case a rule creates and the events it holds.
 * - tasks: background work (a rule applied to stored events) and its progress; tasks_state
 *   lists a state's tasks oldest first. Created apart (tasks_sql, IF NOT EXISTS), because files
 *   written at version 2 before it existed lack it.
 * event_scan pages through events by seq (the rowid) or by the existing events_org_date index;
 * no index is added to events, so the migration does not rebuild one over every event. */
static const char migrate_v2_sql[] =
    "ALTER TABLE orgs ADD COLUMN is_default INTEGER NOT NULL DEFAULT 0;"
    "UPDATE orgs SET is_default = 1 WHERE id = (SELECT min(id) FROM orgs);"
    "CREATE UNIQUE INDEX orgs_default ON orgs(is_default) WHERE is_default = 1;"
    "ALTER TABLE store_state ADD COLUMN meta_version INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE meta ("
    " id INTEGER PRIMARY KEY,"
    " kind INTEGER NOT NULL,"
    " uuid TEXT NOT NULL UNIQUE,"
    " org_id INTEGER NOT NULL REFERENCES orgs(id),"
    " name TEXT NOT NULL,"
    " global INTEGER NOT NULL DEFAULT 0,"
    " doc TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL,"
    " hits INTEGER NOT NULL DEFAULT 0,"
    " last_hit_ms INTEGER NOT NULL DEFAULT 0,"
    " UNIQUE (kind, org_id, name));"
    "CREATE INDEX meta_global ON meta(kind, name) WHERE global = 1;"
    "CREATE TABLE list_values ("
    " id INTEGER PRIMARY KEY,"
    " list_id INTEGER NOT NULL,"
    " value TEXT NOT NULL,"
    " expire_at_ms INTEGER NOT NULL DEFAULT 0," /* 0: permanent */
    " UNIQUE (list_id, value));"
    "CREATE INDEX list_values_list ON list_values(list_id);"
    "CREATE INDEX list_values_expiry ON list_values(expire_at_ms) WHERE expire_at_ms > 0;"
    "CREATE TABLE mutes ("
    " org_id INTEGER NOT NULL REFERENCES orgs(id),"
    " signature TEXT NOT NULL,"
    " until_ms INTEGER NOT NULL,"
    " rule_uuid TEXT,"
    " PRIMARY KEY (org_id, signature)) WITHOUT ROWID;"
    "CREATE TABLE cases ("
    " id INTEGER PRIMARY KEY,"
    " uuid TEXT NOT NULL UNIQUE,"
    " org_id INTEGER NOT NULL REFERENCES orgs(id),"
    " title TEXT NOT NULL,"
    " description TEXT NOT NULL DEFAULT '',"
    " severity INTEGER NOT NULL,"
    " tlp INTEGER NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'Open',"
    " tags TEXT NOT NULL DEFAULT '[]'," /* JSON array of strings */
    " event_rule TEXT,"                 /* uuid of the rule that created it */
    " case_template TEXT,"
    " created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL);"
    "CREATE TABLE case_events ("
    " case_id INTEGER NOT NULL REFERENCES cases(id),"
    " event_uuid TEXT NOT NULL,"
    " PRIMARY KEY (case_id, event_uuid)) WITHOUT ROWID;";

static const char tasks_sql[] =
    "CREATE TABLE IF NOT EXISTS tasks ("
    " id INTEGER PRIMARY KEY,"
    " uuid TEXT NOT NULL UNIQUE,"
    " org_id INTEGER NOT NULL REFERENCES orgs(id),"
    " kind TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),"
    " ref TEXT NOT NULL DEFAULT '',"
    " total INTEGER NOT NULL DEFAULT 0,"
    " done INTEGER NOT NULL DEFAULT 0,"
    " matched INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL,"
    " started_ms INTEGER NOT NULL DEFAULT 0,"
    " finished_ms INTEGER NOT NULL DEFAULT 0,"
    " updated_ms INTEGER NOT NULL,"
    " error TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state, created_ms);";

/* Version 3 (cases, bulk actions, ingest tasks).
 * - events.case_id: the case an event is in (NULL: none). The link lives on the event, so a
 *   case's events, count and observables are read from its events and cannot drift from them;
 *   case_events (version 2) is folded into it and dropped. events_case is partial: an event in
 *   no case (the hot path) costs the index nothing.
 * - cases gain owner, tasks (from a template), closed_ms, close_reason, closure_comment; case
 *   statuses are New, In Progress, Hold, Closed (version 2's Open becomes New); cases_org pages
 *   an organization's cases.
 * - case_comments: a case's comments in order.
 * - case_releases: deleted cases whose events are still being released (case_delete releases
 *   them in several transactions). Until then such events point at a case id that no longer
 *   exists, which every read takes as no case; a new case takes an id above these, so it never
 *   inherits them; an interrupted release is finished when the store is next opened.
 * - tasks gain params (what a bulk action acts on, JSON) and cursor (where it got to), so a task
 *   resumes after a restart.
 * - ingest_tasks: the end of a bulk request's events (written by the worker that processed its
 *   end record), ingest_outcomes: what became of those of its events that were not simply
 *   stored. Both keyed by the task, so a redelivered batch writes nothing twice; old ones are
 *   expired (SLUICE_INGEST_TASK_RETENTION). */
static const char migrate_v3_sql[] =
    "ALTER TABLE events ADD COLUMN case_id INTEGER;"
    /* One pass over events against the (small) links: a subquery per event would scan
     * case_events (keyed by case first) once per linked event. */
    "UPDATE events SET case_id = ce.case_id FROM (SELECT event_uuid, min(case_id) AS case_id"
    " FROM case_events GROUP BY event_uuid) AS ce WHERE events.uuid = ce.event_uuid;"
    "DROP TABLE case_events;"
    "CREATE INDEX events_case ON events(case_id) WHERE case_id IS NOT NULL;"
    /* Version 2 linked an event a rule moved to another organization to a case of the rule's;
     * version 3 keeps an event only in a case of its own organization. */
    "UPDATE events SET case_id = NULL, status = CASE WHEN status = 'Open' THEN 'New'"
    " ELSE status END, doc = CASE WHEN status = 'Open' THEN json_remove(json_set(doc,"
    " '$.status', json('{\"name\":\"New\",\"closed\":false}')), '$.case')"
    " ELSE json_remove(doc, '$.case') END"
    " WHERE case_id IS NOT NULL AND org_id <> (SELECT org_id FROM cases c"
    " WHERE c.id = events.case_id);"
    "ALTER TABLE cases ADD COLUMN owner TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE cases ADD COLUMN tasks TEXT NOT NULL DEFAULT '[]';"
    "ALTER TABLE cases ADD COLUMN closed_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE cases ADD COLUMN close_reason TEXT;"
    "ALTER TABLE cases ADD COLUMN closure_comment TEXT;"
    "UPDATE cases SET status = 'New' WHERE status = 'Open';"
    "CREATE INDEX cases_org ON cases(org_id, created_ms);"
    "CREATE TABLE case_comments ("
    " id INTEGER PRIMARY KEY,"
    " uuid TEXT NOT NULL UNIQUE,"
    " case_id INTEGER NOT NULL REFERENCES cases(id),"
    " author TEXT NOT NULL,"
    " text TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL);"
    "CREATE INDEX case_comments_case ON case_comments(case_id, id);"
    "CREATE TABLE case_releases ("
    " case_id INTEGER PRIMARY KEY,"
    " created_ms INTEGER NOT NULL);"
    "ALTER TABLE tasks ADD COLUMN params TEXT NOT NULL DEFAULT '{}';"
    "ALTER TABLE tasks ADD COLUMN cursor INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE ingest_tasks ("
    " task TEXT PRIMARY KEY,"
    " org_id INTEGER NOT NULL,"
    " accepted INTEGER NOT NULL,"
    " rejected INTEGER NOT NULL,"
    " received_ms INTEGER NOT NULL,"
    " done_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX ingest_tasks_done ON ingest_tasks(done_ms);"
    "CREATE TABLE ingest_outcomes ("
    " task TEXT NOT NULL,"
    " idx INTEGER NOT NULL,"
    " org_id INTEGER NOT NULL,"
    " outcome INTEGER NOT NULL,"
    " reference TEXT,"
    " event_uuid TEXT,"
    " case_uuid TEXT,"
    " detail TEXT,"
    " created_ms INTEGER NOT NULL,"
    " PRIMARY KEY (task, idx)) WITHOUT ROWID;"
    "PRAGMA user_version = 3;";

/* ---- organization defaults ---- */

struct status_default {
    const char *name, *description;
    int closed;
};

static const struct status_default statuses[] = {
    {"New", "A new event", 0},
    {"Open", "The event is in a case", 0},
    {"Dismissed", "Dismissed by an analyst or a rule", 1},
    {"Closed", "Worked in a case that is now closed", 1},
    {"Acknowledged", "An analyst has seen it", 0},
};

struct named_default {
    const char *name, *description;
};

static const struct named_default close_reasons[] = {
    {"False positive", "The event was not a real threat"},
    {"True positive", "The event was a real threat"},
    {"Duplicate", "The event repeats another one"},
    {"Other", "Another reason"},
};

static const struct named_default data_types[] = {
    {"ip", "IP address"},
    {"domain", "Domain name"},
    {"fqdn", "Fully qualified domain name"},
    {"host", "Host name"},
    {"email", "Email address"},
    {"email_subject", "Subject of an email"},
    {"url", "URL"},
    {"user", "User name"},
    {"md5hash", "MD5 hash"},
    {"sha1hash", "SHA-1 hash"},
    {"sha256hash", "SHA-256 hash"},
    {"imphash", "Import hash of an executable"},
    {"process", "Process name"},
    {"command", "Command line"},
    {"filepath", "File path"},
    {"pid", "Process id"},
    {"port", "Network port"},
    {"sid", "Windows security identifier"},
    {"mac", "MAC address"},
    {"detection_id", "Identifier of a detection"},
    {"generic", "Any value"},
};

/* Inserts one default object with doc (which must not need JSON escaping: the defaults are
 * fixed ASCII text and uuids). */
static int default_put(sqlite3_stmt *ins, enum sl_meta_kind kind, int64_t org_id, const char *uuid,
                       const char *name, const char *doc, int64_t now_ms)
{
    sqlite3_bind_int(ins, 1, (int)kind);
    sqlite3_bind_text(ins, 2, uuid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 3, org_id);
    sqlite3_bind_text(ins, 4, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(ins, 5, doc, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ins, 6, now_ms);
    int rc = sqlite3_step(ins);
    sqlite3_reset(ins);
    sqlite3_clear_bindings(ins);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int sl_sqlite_org_defaults(sqlite3_stmt *ins, int64_t org_id, const char *org_uuid, int64_t now_ms)
{
    char uuid[SL_UUID_LEN + 1], doc[512];
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        sl_uuid4(uuid);
        snprintf(doc, sizeof(doc),
                 "{\"uuid\":\"%s\",\"organization\":\"%s\",\"name\":\"%s\","
                 "\"description\":\"%s\",\"closed\":%s}",
                 uuid, org_uuid, statuses[i].name, statuses[i].description,
                 statuses[i].closed ? "true" : "false");
        rc = default_put(ins, SL_META_STATUS, org_id, uuid, statuses[i].name, doc, now_ms);
    }
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof(close_reasons) / sizeof(close_reasons[0]);
         i++) {
        sl_uuid4(uuid);
        snprintf(doc, sizeof(doc),
                 "{\"uuid\":\"%s\",\"organization\":\"%s\",\"title\":\"%s\","
                 "\"description\":\"%s\"}",
                 uuid, org_uuid, close_reasons[i].name, close_reasons[i].description);
        rc = default_put(ins, SL_META_CLOSE_REASON, org_id, uuid, close_reasons[i].name, doc,
                         now_ms);
    }
    for (size_t i = 0; rc == SQLITE_OK && i < sizeof(data_types) / sizeof(data_types[0]); i++) {
        sl_uuid4(uuid);
        snprintf(doc, sizeof(doc),
                 "{\"uuid\":\"%s\",\"organization\":\"%s\",\"name\":\"%s\","
                 "\"description\":\"%s\",\"regex\":null}",
                 uuid, org_uuid, data_types[i].name, data_types[i].description);
        rc = default_put(ins, SL_META_DATA_TYPE, org_id, uuid, data_types[i].name, doc, now_ms);
    }
    return rc;
}

/* ---- creating and migrating ---- */

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

static int pragma_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

/* Gives every organization the defaults it lacks. */
static int defaults_for_all(sqlite3 *db)
{
    sqlite3_stmt *orgs = NULL, *ins = NULL;
    int64_t now = sl_now_ms();
    int rc = sqlite3_prepare_v2(db, "SELECT id, uuid FROM orgs ORDER BY id", -1, &orgs, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, sl_sqlite_stmt_sql[ST_META_DEFAULT], -1, &ins, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(orgs)) == SQLITE_ROW) {
        char uuid[SL_UUID_LEN + 1];
        sl_sqlite_copy_col(uuid, sizeof(uuid), orgs, 1);
        rc = sl_sqlite_org_defaults(ins, sqlite3_column_int64(orgs, 0), uuid, now);
    }
    sqlite3_finalize(orgs);
    sqlite3_finalize(ins);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Version 1 to 2, inside the caller's transaction. Adds tables and columns; keeps every row. */
static int migrate_v2(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    char what[300];
    snprintf(what, sizeof(what), "%s: cannot migrate the schema from version 1 to 2", path);
    if (exec_sql(db, migrate_v2_sql, what, err, errlen) ||
        exec_sql(db, tasks_sql, what, err, errlen))
        return -1;
    int rc = defaults_for_all(db);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(db));
        return -1;
    }
    return exec_sql(db, "PRAGMA user_version = 2", what, err, errlen);
}

/* Version 2 to 3, inside the caller's transaction. */
static int migrate_v3(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    char what[300];
    snprintf(what, sizeof(what), "%s: cannot migrate the schema from version 2 to 3", path);
    /* Files written at version 2 before the tasks table existed lack it. */
    if (exec_sql(db, tasks_sql, what, err, errlen))
        return -1;
    return exec_sql(db, migrate_v3_sql, what, err, errlen);
}

int sl_sqlite_schema_ensure(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    int64_t version = 0, app = 0;
    int rc = -1, created = 0;
    /* Under the write lock, so concurrent first opens (or migrations) do not race: the second
     * one finds the work done. */
    if (exec_sql(db, "BEGIN IMMEDIATE", path, err, errlen))
        return -1;
    if (pragma_int(db, "PRAGMA user_version", &version) != SQLITE_OK ||
        pragma_int(db, "PRAGMA application_id", &app) != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot read the schema version: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    if (app != 0 && app != APPLICATION_ID) {
        snprintf(err, errlen, "%s: not a sluice database (application_id %" PRId64 ")", path, app);
        goto out;
    }
    if (version > SL_SQLITE_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "%s: schema version %" PRId64 " is newer than this sluice supports (%d);"
                 " run a newer sluice",
                 path, version, SL_SQLITE_SCHEMA_VERSION);
        goto out;
    }
    if (version == 0) {
        char what[300];
        snprintf(what, sizeof(what), "%s: cannot create the schema", path);
        if (exec_sql(db, schema_v1_sql, what, err, errlen))
            goto out;
        version = 1;
        created = 1;
    }
    if (version == 1 && migrate_v2(db, path, err, errlen))
        goto out;
    if (version <= 2 && migrate_v3(db, path, err, errlen))
        goto out;
    rc = exec_sql(db, "COMMIT", path, err, errlen);
    if (rc == 0 && created)
        SL_INFO("store: created schema version %d in %s", SL_SQLITE_SCHEMA_VERSION, path);
    else if (rc == 0 && version < SL_SQLITE_SCHEMA_VERSION)
        SL_INFO("store: migrated %s from schema version %" PRId64 " to %d", path, version,
                SL_SQLITE_SCHEMA_VERSION);
out:
    if (rc && !sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
