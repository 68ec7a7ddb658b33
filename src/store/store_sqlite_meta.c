/* The SQLite store's metadata: rules, lists, close reasons, statuses, data types and case
 * templates as JSON documents; intel list values; mutes; the side effects of storing an event;
 * and the SQL of store_sqlite_cases.c. */
#include "store/store_sqlite_int.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One value of an intel list (a csv row is a JSON array of its cells, so it may be longer than
 * the matcher's limit on one value). */
#define LIST_VALUE_MAX    ((size_t)65536)
#define VALUES_PAGE_MAX   100000             /* values per list_values_page */
#define VALUES_PAGE_BYTES ((size_t)32 << 20) /* JSON of one list_values_page */
#define DOC_MAX           ((size_t)16 << 20) /* one metadata document */

#define META_COLS                                                                                  \
    "m.uuid, o.uuid, m.name, m.global, m.created_ms, m.updated_ms, m.hits, m.last_hit_ms,"         \
    " m.doc, o.id"

/* ---- the SQL of store_sqlite_cases.c ---- */

#define STR_(x) #x
#define STR(x)  STR_(x)

#define STATUS_NEW    "{\"name\":\"New\",\"closed\":false}"
#define STATUS_OPEN   "{\"name\":\"Open\",\"closed\":false}"
#define STATUS_CLOSED "{\"name\":\"Closed\",\"closed\":true}"

/* The columns a case document is made of (store_sqlite_cases.c: enum case_col). */
#define CASE_COLS                                                                                  \
    "c.uuid, o.uuid, c.title, c.description, c.severity, c.tlp, c.status, c.owner, c.tags,"        \
    " c.tasks, (SELECT count(*) FROM events e WHERE e.case_id = c.id), c.created_ms,"              \
    " c.updated_ms, c.closed_ms, c.close_reason, c.closure_comment, c.event_rule,"                 \
    " c.case_template, c.id"

/* The statements that write a case's levels, tags and tasks read them from a one-row
 * subquery of their parameters: a_sev, a_tlp, a_tags, a_tasks (as given, or NULL) and tmpl (the
 * template's document, a JSON object, or NULL). */
/* A template's severity or tlp when it has a valid one, else NULL. */
#define TMPL_SEVERITY                                                                              \
    "CASE WHEN json_type(tmpl, '$.severity') = 'integer' AND json_extract(tmpl, '$.severity')"     \
    " BETWEEN 0 AND 4 THEN json_extract(tmpl, '$.severity') END"
#define TMPL_TLP                                                                                   \
    "CASE WHEN json_type(tmpl, '$.tlp') = 'integer' AND json_extract(tmpl, '$.tlp')"               \
    " BETWEEN 0 AND 4 THEN json_extract(tmpl, '$.tlp') END"
/* A new case's severity and tlp: the template's win over the given ones for a rule's case
 * (?15), the given ones win for the others; then the defaults, 1 and 2. */
#define CASE_SEVERITY                                                                              \
    "CASE WHEN ?15 THEN coalesce(" TMPL_SEVERITY ", a_sev, 1)"                                     \
    " ELSE coalesce(a_sev, " TMPL_SEVERITY ", 1) END"
#define CASE_TLP                                                                                   \
    "CASE WHEN ?15 THEN coalesce(" TMPL_TLP ", a_tlp, 2)"                                          \
    " ELSE coalesce(a_tlp, " TMPL_TLP ", 2) END"
/* The strings of a_tags (when it is a JSON array: CASE keeps json_type off text that is not
 * JSON) and then of the template's tags, each once, in that order. */
#define CASE_TAGS                                                                                  \
    "(SELECT json_group_array(value) FROM (SELECT value, min(o) AS first FROM ("                   \
    "SELECT value, key AS o FROM json_each(CASE WHEN json_valid(a_tags) THEN CASE WHEN"            \
    " json_type(a_tags) = 'array' THEN a_tags ELSE '[]' END ELSE '[]' END) WHERE type = 'text'"    \
    " UNION ALL SELECT value, 1000000000 + key FROM json_each(CASE WHEN json_type(tmpl, '$.tags')" \
    " = 'array' THEN json_extract(tmpl, '$.tags') ELSE '[]' END) WHERE type = 'text')"             \
    " GROUP BY value ORDER BY first))"
/* A task as stored: {"title", "description" [""], "status"}. */
#define TASK_OBJ                                                                                   \
    "json_object('title', json_extract(value, '$.title'), 'description',"                          \
    " CASE WHEN json_type(value, '$.description') = 'text'"                                        \
    " THEN json_extract(value, '$.description') ELSE '' END, 'status', "
#define TASK_WHERE " WHERE CASE WHEN type = 'object' THEN json_type(value, '$.title') = 'text' END"
/* The tasks of a_tasks (their status, or Open) and then the template's (each Open). */
#define CASE_TASKS                                                                                 \
    "(SELECT json_group_array(json(t)) FROM (SELECT " TASK_OBJ                                     \
    " CASE WHEN json_type(value, '$.status') = 'text' THEN json_extract(value, '$.status')"        \
    " ELSE 'Open' END) AS t, key AS o FROM json_each(CASE WHEN json_valid(a_tasks) THEN CASE"      \
    " WHEN json_type(a_tasks) = 'array' THEN a_tasks ELSE '[]' END ELSE '[]' END)" TASK_WHERE      \
    " UNION ALL SELECT " TASK_OBJ "'Open'), 1000000000 + key FROM json_each(CASE WHEN"             \
    " json_type(tmpl, '$.tasks') = 'array' THEN json_extract(tmpl, '$.tasks') ELSE '[]' "          \
    "END)" TASK_WHERE " ORDER BY o))"
/* Every observable (seq, v: value, t: data_type) of the events of case ?1. */
#define CASE_OBS                                                                                   \
    "SELECT e.seq AS seq, json_extract(o.value, '$.value') AS v,"                                  \
    " json_extract(o.value, '$.data_type') AS t FROM events e,"                                    \
    " json_each(e.doc, '$.observables') o WHERE e.case_id = ?1 AND CASE WHEN o.type = 'object'"    \
    " THEN json_type(o.value, '$.value') IN ('text', 'integer', 'real') END"
/* The filter of case_list: ?2 status, ?3 title substring, ?4 tag, ?5 owner, ?6 severity. */
#define CASE_FILTER                                                                                \
    " AND (?2 IS NULL OR c.status = ?2) AND (?3 IS NULL OR instr(lower(c.title), lower(?3)) > 0)"  \
    " AND (?4 IS NULL OR EXISTS (SELECT 1 FROM json_each(c.tags) t WHERE t.value = ?4))"           \
    " AND (?5 IS NULL OR c.owner = ?5) AND (?6 < 0 OR c.severity = ?6)"
/* An event leaving its case: without "case", and an Open one back to New. */
#define UNLINK_STATUS                                                                              \
    "status = CASE WHEN status = 'Open' THEN 'New' ELSE status END, doc = CASE WHEN status ="      \
    " 'Open' THEN json_remove(json_set(doc, '$.status', json('" STATUS_NEW "')), '$.case')"        \
    " ELSE json_remove(doc, '$.case') END"

const char *const sl_sqlite_meta_sql[MST__N] = {
    [MST_JSON_OBJECT] = "SELECT CASE WHEN json_valid(?1) THEN json_type(?1) = 'object' ELSE 0 END",
    [MST_META_INSERT] = "INSERT INTO meta (kind, uuid, org_id, name, global, doc, created_ms,"
                        " updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    [MST_META_UPDATE] = "UPDATE meta SET name = ?3, global = ?4, doc = ?5, updated_ms = ?6"
                        " WHERE uuid = ?2 AND kind = ?1",
    [MST_META_GET] = "SELECT " META_COLS " FROM meta m JOIN orgs o ON o.id = m.org_id"
                     " WHERE m.uuid = ?2 AND m.kind = ?1",
    /* An organization's own objects and, with ?3, the global ones of every organization; UNION
     * drops a global object of the organization itself from the second half. */
    [MST_META_LIST] = "SELECT " META_COLS " FROM meta m JOIN orgs o ON o.id = m.org_id"
                      " WHERE m.kind = ?1 AND (?2 IS NULL OR m.org_id = ?2)"
                      " UNION SELECT " META_COLS " FROM meta m JOIN orgs o ON o.id = m.org_id"
                      " WHERE ?3 AND m.kind = ?1 AND m.global = 1"
                      " ORDER BY 3, 10, 1",
    [MST_META_ID] = "SELECT id FROM meta WHERE uuid = ?2 AND kind = ?1",
    [MST_META_DELETE] = "DELETE FROM meta WHERE id = ?1",
    /* A value already there keeps its id (its place in pages) and takes the new expiry. */
    [MST_VALUE_PUT] = "INSERT INTO list_values (list_id, value, expire_at_ms) VALUES (?1, ?2, ?3)"
                      " ON CONFLICT (list_id, value) DO UPDATE SET expire_at_ms ="
                      " excluded.expire_at_ms WHERE expire_at_ms <> excluded.expire_at_ms",
    [MST_VALUE_DELETE] = "DELETE FROM list_values WHERE list_id = ?1 AND value = ?2",
    [MST_VALUES_CLEAR] = "DELETE FROM list_values WHERE list_id = ?1",
    [MST_VALUES_EXPIRE] = "DELETE FROM list_values WHERE expire_at_ms > 0 AND expire_at_ms < ?2"
                          " AND (?1 IS NULL OR list_id = ?1)",
    [MST_VALUES_PAGE] = "SELECT id, value FROM list_values WHERE list_id = ?1 AND id > ?2"
                        " ORDER BY id LIMIT ?3",
    [MST_VALUES_ALL] = "SELECT value FROM list_values WHERE list_id = ?1 ORDER BY id",
    [MST_VALUES_COUNT] = "SELECT count(*) FROM list_values WHERE list_id = ?1",
    /* A later end wins; the rule that set it is recorded. */
    [MST_MUTE_PUT] = "INSERT INTO mutes (org_id, signature, until_ms, rule_uuid)"
                     " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (org_id, signature) DO UPDATE SET"
                     " until_ms = excluded.until_ms, rule_uuid = excluded.rule_uuid"
                     " WHERE excluded.until_ms > mutes.until_ms",
    [MST_MUTE_GET] = "SELECT until_ms, rule_uuid FROM mutes"
                     " WHERE org_id = (SELECT id FROM orgs WHERE uuid = ?1) AND signature = ?2"
                     " AND until_ms > ?3",
    [MST_MUTE_ACTIVE] = "SELECT count(*) FROM mutes WHERE until_ms > ?1",
    [MST_HIT_ADD] = "UPDATE meta SET hits = hits + ?2, last_hit_ms = max(last_hit_ms, ?3)"
                    " WHERE uuid = ?1 AND kind = 1",
    /* ---- cases (store_sqlite_cases.c) ---- */
    [MST_CASE_FIND] = "SELECT id, org_id, status FROM cases WHERE uuid = ?1",
    [MST_CASE_GET] = "SELECT " CASE_COLS " FROM cases c JOIN orgs o ON o.id = c.org_id"
                     " WHERE c.id = ?1",
    /* A new id is above every id a deleted case's events may still point at (case_releases),
     * so a new case never inherits them. ?14: the template's document, or NULL. */
    [MST_CASE_INSERT] =
        "INSERT INTO cases (id, uuid, org_id, title, description, severity, tlp, status, owner,"
        " tags, tasks, event_rule, case_template, created_ms, updated_ms)"
        " SELECT (SELECT max(coalesce((SELECT max(id) FROM cases), 0),"
        " coalesce((SELECT max(case_id) FROM case_releases), 0)) + 1), ?1, ?2, ?3, ?4,"
        " " CASE_SEVERITY ", " CASE_TLP ", ?7, ?8, " CASE_TAGS ", " CASE_TASKS ","
        " ?11, ?12, ?13, ?13 FROM (SELECT ?5 AS a_sev, ?6 AS a_tlp, ?9 AS a_tags,"
        " ?10 AS a_tasks, ?14 AS tmpl) WHERE 1 ON CONFLICT (uuid) DO NOTHING",
    [MST_CASE_UPDATE] =
        "UPDATE cases SET title = coalesce(?2, title), description = coalesce(?3, description),"
        " severity = CASE WHEN ?4 >= 0 THEN ?4 ELSE severity END,"
        " tlp = CASE WHEN ?5 >= 0 THEN ?5 ELSE tlp END, status = coalesce(?6, status),"
        " owner = coalesce(?7, owner), tags = CASE WHEN ?8 IS NULL THEN tags ELSE "
        "(SELECT " CASE_TAGS " FROM (SELECT ?8 AS a_tags, NULL AS tmpl)) END,"
        " tasks = CASE WHEN ?9 IS NULL THEN tasks ELSE (SELECT " CASE_TASKS
        " FROM (SELECT ?9 AS a_tasks, NULL AS tmpl)) END, updated_ms = ?10 WHERE id = ?1",
    [MST_CASE_CLOSE] = "UPDATE cases SET status = 'Closed', closed_ms = ?2, close_reason = ?3,"
                       " closure_comment = ?4, updated_ms = ?2 WHERE id = ?1",
    [MST_CASE_REOPEN] = "UPDATE cases SET status = 'In Progress', closed_ms = 0,"
                        " close_reason = NULL, closure_comment = NULL, updated_ms = ?2"
                        " WHERE id = ?1",
    [MST_CASE_DELETE] = "DELETE FROM cases WHERE id = ?1",
    /* A template of the organization ?2 or of the default one. */
    [MST_CASE_TEMPLATE] = "SELECT doc FROM meta WHERE uuid = ?1 AND kind = ?3 AND (org_id = ?2"
                          " OR org_id = (SELECT id FROM orgs WHERE is_default = 1))",
    /* Whether ?1 (NULL: yes) is a JSON array of strings and ?2 (NULL: yes) one of tasks. CASE
     * keeps the JSON functions off text that is not JSON. */
    [MST_CASE_JSON_OK] =
        "SELECT CASE WHEN ?1 IS NULL THEN 1 WHEN json_valid(?1) THEN CASE WHEN json_type(?1) ="
        " 'array' THEN NOT EXISTS (SELECT 1 FROM json_each(?1) WHERE type <> 'text') ELSE 0 END"
        " ELSE 0 END, CASE WHEN ?2 IS NULL THEN 1 WHEN json_valid(?2) THEN CASE WHEN"
        " json_type(?2) = 'array' THEN NOT EXISTS (SELECT 1 FROM json_each(?2) WHERE CASE WHEN"
        " type = 'object' THEN coalesce(json_type(value, '$.title'), '') <> 'text'"
        " OR length(json_extract(value, '$.title')) NOT BETWEEN 1 AND " STR(
            SL_CASE_TITLE_MAX) " OR coalesce(json_type(value, '$.description'), 'text') <> 'text'"
                               " OR coalesce(json_type(value, '$.status'), 'text') <> 'text' ELSE "
                               "1 END)"
                               " ELSE 0 END ELSE 0 END",
    [MST_CASE_OBS_COUNT] = "SELECT count(*) FROM (SELECT DISTINCT v, t FROM (" CASE_OBS "))",
    [MST_CASE_OBSERVABLES] = "SELECT v, t, count(DISTINCT seq) AS n FROM (" CASE_OBS ")"
                             " GROUP BY v, t ORDER BY n DESC, v, t LIMIT ?2",
    [MST_CASE_EVENTS] = "SELECT uuid FROM events WHERE case_id = ?1 ORDER BY seq",
    [MST_CASE_EVENT_COUNT] = "SELECT count(*) FROM events WHERE case_id = ?1",
    /* The page is chosen first (inner SELECT), so the event counts are taken for its cases
     * only, not for every case the sort looks at. */
    [MST_CASE_LIST_ORG] = "SELECT " CASE_COLS " FROM (SELECT c.id FROM cases c"
                          " WHERE c.org_id = ?1" CASE_FILTER
                          " ORDER BY c.created_ms DESC, c.id DESC LIMIT ?7 OFFSET ?8) p"
                          " JOIN cases c ON c.id = p.id JOIN orgs o ON o.id = c.org_id"
                          " ORDER BY c.created_ms DESC, c.id DESC",
    [MST_CASE_LIST_ALL] = "SELECT " CASE_COLS " FROM (SELECT c.id FROM cases c"
                          " WHERE ?1 IS NULL" CASE_FILTER
                          " ORDER BY c.created_ms DESC, c.id DESC LIMIT ?7 OFFSET ?8) p"
                          " JOIN cases c ON c.id = p.id JOIN orgs o ON o.id = c.org_id"
                          " ORDER BY c.created_ms DESC, c.id DESC",
    [MST_CASE_COUNT_ORG] = "SELECT count(*) FROM cases c WHERE c.org_id = ?1" CASE_FILTER,
    [MST_CASE_COUNT_ALL] = "SELECT count(*) FROM cases c WHERE ?1 IS NULL" CASE_FILTER,
    /* Events row ?1 joins case ?2 (uuid ?4); Open becomes Closed when the case is (?3). A
     * document that names the case already (a rule's) is kept as it is. */
    [MST_CASE_LINK] =
        "UPDATE events SET case_id = ?2,"
        " status = CASE WHEN ?3 AND status = 'Open' THEN 'Closed' ELSE status END,"
        " doc = CASE WHEN ?3 AND status = 'Open' THEN json_set(doc, '$.case', ?4, '$.status',"
        " json('" STATUS_CLOSED "')) WHEN json_extract(doc, '$.case') IS ?4 THEN doc"
        " ELSE json_set(doc, '$.case', ?4) END WHERE seq = ?1",
    /* Events row ?1 leaves its case: always (?2), or when the case no longer holds it. */
    [MST_CASE_UNLINK] =
        "UPDATE events SET case_id = NULL, " UNLINK_STATUS " WHERE seq = ?1 AND (?2 OR"
        " (case_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM cases c"
        " WHERE c.id = events.case_id AND c.org_id = events.org_id)))",
    /* A case's events closed and reopened with it; ?2: now (ISO 8601), their updated_at. */
    [MST_CASE_EVENTS_CLOSE] = "UPDATE events SET status = 'Closed', doc = json_set(doc,"
                              " '$.status', json('" STATUS_CLOSED "'), '$.updated_at', ?2)"
                              " WHERE case_id = ?1 AND status IN ('Open', 'New', 'Acknowledged')",
    [MST_CASE_EVENTS_REOPEN] = "UPDATE events SET status = 'Open', doc = json_set(doc,"
                               " '$.status', json('" STATUS_OPEN "'), '$.updated_at', ?2)"
                               " WHERE case_id = ?1 AND status = 'Closed'",
    /* Up to ?2 events of the deleted case ?1 leave it, without "case" (?3: now): Open and Closed
     * ones go back to New; a dismissed one stays dismissed. */
    [MST_CASE_RELEASE] =
        "UPDATE events SET case_id = NULL,"
        " status = CASE WHEN status IN ('Open', 'Closed') THEN 'New' ELSE status END,"
        " doc = json_remove(CASE WHEN status IN ('Open', 'Closed') THEN json_set(doc, '$.status',"
        " json('" STATUS_NEW "'), '$.updated_at', ?3) ELSE json_set(doc, '$.updated_at', ?3) END,"
        " '$.case') WHERE seq IN (SELECT seq FROM events WHERE case_id = ?1"
        " ORDER BY seq LIMIT ?2)",
    [MST_RELEASE_PUT] = "INSERT OR IGNORE INTO case_releases (case_id, created_ms) VALUES (?1, ?2)",
    [MST_RELEASE_NEXT] = "SELECT case_id FROM case_releases ORDER BY case_id LIMIT 1",
    [MST_RELEASE_DONE] = "DELETE FROM case_releases WHERE case_id = ?1",
    [MST_COMMENT_ADD] = "INSERT INTO case_comments (uuid, case_id, author, text, created_ms)"
                        " VALUES (?1, ?2, ?3, ?4, ?5)",
    [MST_COMMENT_LIST] = "SELECT uuid, author, text, created_ms FROM case_comments"
                         " WHERE case_id = ?1 ORDER BY id",
    [MST_COMMENT_DELETE] = "DELETE FROM case_comments WHERE uuid = ?1 AND case_id = ?2",
    [MST_COMMENTS_CLEAR] = "DELETE FROM case_comments WHERE case_id = ?1",
};

static struct sqlite_store *from_base(struct sl_store *st)
{
    return (struct sqlite_store *)st;
}

static int kind_valid(enum sl_meta_kind kind)
{
    return kind >= SL_META_RULE && kind < SL_META__N;
}

/* Steps q (its parameters bound) for one row id; SL_ENOTFOUND when it yields no row. */
static int lookup_id(struct sqlite_store *s, sqlite3_stmt *q, int64_t *out, const char *what)
{
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(q, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = SL_ENOTFOUND;
    } else {
        rc = sl_sqlite_fail(s, rc, what);
    }
    sl_sqlite_done(q);
    return rc;
}

/* The row id of the kind object with uuid (any case). SL_ENOTFOUND (also for a malformed uuid). */
static int meta_id(struct sqlite_store *s, enum sl_meta_kind kind, const char *uuid, int64_t *out)
{
    char lower[SL_UUID_LEN + 1];
    if (!sl_uuid_valid(uuid))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(uuid, lower);
    sqlite3_stmt *q = s->mst[MST_META_ID];
    sqlite3_bind_int(q, 1, (int)kind);
    sqlite3_bind_text(q, 2, lower, -1, SQLITE_STATIC);
    return lookup_id(s, q, out, "looking up a metadata object");
}

/* A malloc'd copy of a text column (empty string for NULL). */
static char *dup_col(sqlite3_stmt *q, int col)
{
    const char *v = (const char *)sqlite3_column_text(q, col);
    size_t len = (size_t)sqlite3_column_bytes(q, col);
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, v ? v : "", len);
        d[len] = 0;
    }
    return d;
}

/* Runs a statement yielding one integer into *out (0 when it yields no row). */
static int query_one(struct sqlite_store *s, sqlite3_stmt *q, int64_t *out, const char *what)
{
    int rc = sqlite3_step(q);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    sl_sqlite_done(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : sl_sqlite_fail(s, rc, what);
}

/* ---- metadata objects ---- */

/* Whether doc is a JSON object (SQLite's parser, so the store never holds a broken document). */
static int doc_is_object(struct sqlite_store *s, const char *doc, int *out)
{
    size_t len = strnlen(doc, DOC_MAX + 1);
    if (len > DOC_MAX) {
        *out = 0;
        return 0;
    }
    sqlite3_stmt *q = s->mst[MST_JSON_OBJECT];
    sqlite3_bind_text(q, 1, doc, (int)len, SQLITE_STATIC);
    int64_t v = 0;
    int rc = query_one(s, q, &v, "checking a document");
    *out = v == 1;
    return rc;
}

static int meta_insert(struct sqlite_store *s, enum sl_meta_kind kind, const struct sl_meta *m,
                       int64_t now)
{
    char uuid[SL_UUID_LEN + 1];
    int64_t org_id = 0;
    int rc = sl_sqlite_org_resolve(s, m->org, &org_id);
    if (rc)
        return rc;
    sl_sqlite_uuid_lower(m->uuid, uuid);
    sqlite3_stmt *q = s->mst[MST_META_INSERT];
    sqlite3_bind_int(q, 1, (int)kind);
    sqlite3_bind_text(q, 2, uuid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, org_id);
    sqlite3_bind_text(q, 4, m->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 5, m->global ? 1 : 0);
    sqlite3_bind_text(q, 6, m->doc, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 7, now);
    rc = sqlite3_step(q);
    sl_sqlite_done(q);
    if (rc == SQLITE_CONSTRAINT_UNIQUE)
        return SL_EEXIST; /* (kind, org, name), or the uuid */
    return rc == SQLITE_DONE ? 0 : sl_sqlite_fail(s, rc, "creating a metadata object");
}

static int meta_update(struct sqlite_store *s, enum sl_meta_kind kind, const struct sl_meta *m,
                       int64_t now)
{
    char uuid[SL_UUID_LEN + 1];
    if (!sl_uuid_valid(m->uuid))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(m->uuid, uuid);
    sqlite3_stmt *q = s->mst[MST_META_UPDATE];
    sqlite3_bind_int(q, 1, (int)kind);
    sqlite3_bind_text(q, 2, uuid, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, m->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 4, m->global ? 1 : 0);
    sqlite3_bind_text(q, 5, m->doc, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 6, now);
    int rc = sqlite3_step(q);
    sl_sqlite_done(q);
    if (rc == SQLITE_CONSTRAINT_UNIQUE)
        return SL_EEXIST;
    if (rc != SQLITE_DONE)
        return sl_sqlite_fail(s, rc, "updating a metadata object");
    return sqlite3_changes(s->db) == 1 ? 0 : SL_ENOTFOUND;
}

int sl_sqlite_meta_put(struct sl_store *st, enum sl_meta_kind kind, const struct sl_meta *m,
                       int create)
{
    struct sqlite_store *s = from_base(st);
    int is_object = 0, rc;
    if (!kind_valid(kind) || !m || !m->doc || !sl_sqlite_name_valid(m->name, SL_META_NAME_MAX))
        return SL_EINVAL;
    if (create && !sl_uuid_valid(m->uuid))
        return SL_EINVAL;
    if ((rc = doc_is_object(s, m->doc, &is_object)))
        return rc;
    if (!is_object)
        return SL_EINVAL;
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    int64_t now = sl_now_ms();
    rc = create ? meta_insert(s, kind, m, now) : meta_update(s, kind, m, now);
    if (rc == 0)
        rc = sl_sqlite_version_bump(s);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc)
        sl_sqlite_rollback(s);
    return rc;
}

/* Fills out from a row of META_COLS; out->doc is malloc'd. */
static int meta_from_row(sqlite3_stmt *q, struct sl_meta *out)
{
    sl_sqlite_copy_col(out->uuid, sizeof(out->uuid), q, 0);
    sl_sqlite_copy_col(out->org, sizeof(out->org), q, 1);
    sl_sqlite_copy_col(out->name, sizeof(out->name), q, 2);
    out->global = sqlite3_column_int(q, 3);
    out->created_ms = sqlite3_column_int64(q, 4);
    out->updated_ms = sqlite3_column_int64(q, 5);
    out->hits = sqlite3_column_int64(q, 6);
    out->last_hit_ms = sqlite3_column_int64(q, 7);
    out->doc = dup_col(q, 8);
    return out->doc ? 0 : SL_ENOMEM;
}

int sl_sqlite_meta_get(struct sl_store *st, enum sl_meta_kind kind, const char *uuid,
                       struct sl_meta *out)
{
    struct sqlite_store *s = from_base(st);
    char lower[SL_UUID_LEN + 1];
    if (!kind_valid(kind) || !uuid || !out)
        return SL_EINVAL;
    out->doc = NULL;
    if (!sl_uuid_valid(uuid))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(uuid, lower);
    sqlite3_stmt *q = s->mst[MST_META_GET];
    sqlite3_bind_int(q, 1, (int)kind);
    sqlite3_bind_text(q, 2, lower, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        rc = meta_from_row(q, out);
    else if (rc == SQLITE_DONE)
        rc = SL_ENOTFOUND;
    else
        rc = sl_sqlite_fail(s, rc, "reading a metadata object");
    sl_sqlite_done(q);
    return rc;
}

int sl_sqlite_meta_list(struct sl_store *st, enum sl_meta_kind kind, const char *org,
                        int with_global, struct sl_meta **out, size_t *out_n)
{
    struct sqlite_store *s = from_base(st);
    struct sl_meta *v = NULL;
    size_t n = 0, cap = 0;
    int64_t org_id = 0;
    int rc = 0, src;
    if (!kind_valid(kind) || !out || !out_n)
        return SL_EINVAL;
    *out = NULL;
    *out_n = 0;
    if (org && (rc = sl_sqlite_org_resolve(s, org, &org_id)))
        return rc;
    sqlite3_stmt *q = s->mst[MST_META_LIST];
    sqlite3_bind_int(q, 1, (int)kind);
    if (org)
        sqlite3_bind_int64(q, 2, org_id);
    sqlite3_bind_int(q, 3, org && with_global);
    while ((src = sqlite3_step(q)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            struct sl_meta *p = realloc(v, ncap * sizeof(*p));
            if (!p) {
                rc = SL_ENOMEM;
                break;
            }
            v = p;
            cap = ncap;
        }
        if ((rc = meta_from_row(q, &v[n])))
            break;
        n++;
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = sl_sqlite_fail(s, src, "listing metadata objects");
    sl_sqlite_done(q);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            free(v[i].doc);
        free(v);
        return rc;
    }
    *out = v;
    *out_n = n;
    return 0;
}

int sl_sqlite_meta_delete(struct sl_store *st, enum sl_meta_kind kind, const char *uuid)
{
    struct sqlite_store *s = from_base(st);
    int64_t id = 0;
    int rc;
    if (!kind_valid(kind) || !uuid)
        return SL_EINVAL;
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    rc = meta_id(s, kind, uuid, &id);
    if (rc == 0 && kind == SL_META_LIST) {
        sqlite3_bind_int64(s->mst[MST_VALUES_CLEAR], 1, id);
        rc = sl_sqlite_step_done(s, s->mst[MST_VALUES_CLEAR], "deleting a list's values");
    }
    if (rc == 0) {
        sqlite3_bind_int64(s->mst[MST_META_DELETE], 1, id);
        rc = sl_sqlite_step_done(s, s->mst[MST_META_DELETE], "deleting a metadata object");
    }
    if (rc == 0)
        rc = sl_sqlite_version_bump(s);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc)
        sl_sqlite_rollback(s);
    return rc;
}

int sl_sqlite_meta_version(struct sl_store *st, int64_t *out)
{
    struct sqlite_store *s = from_base(st);
    if (!out)
        return SL_EINVAL;
    return query_one(s, s->st[ST_VERSION_GET], out, "reading the meta version");
}

/* ---- intel list values ---- */

static int value_valid(const struct sl_list_value *v)
{
    if (!v->value || v->len == 0 || v->len > LIST_VALUE_MAX)
        return 0;
    const unsigned char *p = (const unsigned char *)v->value;
    for (size_t i = 0; i < v->len;) {
        uint32_t cp;
        size_t len = sl_sqlite_utf8_decode(p + i, v->len - i, &cp);
        if (len == 0 || cp == 0)
            return 0;
        i += len;
    }
    return 1;
}

static int values_valid(const char *list_uuid, const struct sl_list_value *v, size_t n)
{
    if (!list_uuid || (n > 0 && !v))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!value_valid(&v[i]))
            return 0;
    return 1;
}

/* Upserts every value; the number of new ones goes to *out_added. */
static int values_put(struct sqlite_store *s, int64_t list_id, const struct sl_list_value *v,
                      size_t n, int64_t expire_at_ms, size_t *out_added)
{
    sqlite3_stmt *q = s->mst[MST_VALUE_PUT];
    size_t added = 0;
    int rc = 0;
    sqlite3_bind_int64(q, 1, list_id);
    sqlite3_bind_int64(q, 3, expire_at_ms);
    /* An insert sets the last rowid, an update of an existing value does not: that tells the
     * two apart without a second statement per value. Ids start at 1, so 0 means "none". */
    sqlite3_set_last_insert_rowid(s->db, 0);
    for (size_t i = 0; i < n; i++) {
        sqlite3_bind_text(q, 2, v[i].value, (int)v[i].len, SQLITE_STATIC);
        int src = sqlite3_step(q);
        sqlite3_reset(q);
        if (src != SQLITE_DONE) {
            rc = sl_sqlite_fail(s, src, "adding list values");
            break;
        }
        if (sqlite3_last_insert_rowid(s->db) != 0) {
            added++;
            sqlite3_set_last_insert_rowid(s->db, 0);
        }
    }
    sl_sqlite_done(q);
    *out_added = added;
    return rc;
}

int sl_sqlite_list_values_add(struct sl_store *st, const char *list_uuid,
                              const struct sl_list_value *v, size_t n, int64_t expire_at_ms,
                              size_t *out_added)
{
    struct sqlite_store *s = from_base(st);
    size_t added = 0;
    int64_t list_id = 0;
    int rc;
    if (out_added)
        *out_added = 0;
    if (!values_valid(list_uuid, v, n) || expire_at_ms < 0)
        return SL_EINVAL;
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    rc = meta_id(s, SL_META_LIST, list_uuid, &list_id);
    if (rc == 0)
        rc = values_put(s, list_id, v, n, expire_at_ms, &added);
    /* A refreshed expiry alone changes nothing a worker loads. */
    if (rc == 0 && added > 0)
        rc = sl_sqlite_version_bump(s);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc) {
        sl_sqlite_rollback(s);
        return rc;
    }
    if (out_added)
        *out_added = added;
    return 0;
}

int sl_sqlite_list_values_delete(struct sl_store *st, const char *list_uuid,
                                 const struct sl_list_value *v, size_t n, size_t *out_deleted)
{
    struct sqlite_store *s = from_base(st);
    sqlite3_stmt *q = s->mst[MST_VALUE_DELETE];
    size_t deleted = 0;
    int64_t list_id = 0;
    int rc;
    if (out_deleted)
        *out_deleted = 0;
    if (!list_uuid || (n > 0 && !v))
        return SL_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!v[i].value || v[i].len > INT32_MAX)
            return SL_EINVAL;
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    rc = meta_id(s, SL_META_LIST, list_uuid, &list_id);
    sqlite3_bind_int64(q, 1, list_id);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_bind_text(q, 2, v[i].value, (int)v[i].len, SQLITE_STATIC);
        int src = sqlite3_step(q);
        sqlite3_reset(q);
        if (src != SQLITE_DONE)
            rc = sl_sqlite_fail(s, src, "deleting list values");
        else
            deleted += (size_t)sqlite3_changes(s->db);
    }
    sl_sqlite_done(q);
    if (rc == 0 && deleted > 0)
        rc = sl_sqlite_version_bump(s);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc) {
        sl_sqlite_rollback(s);
        return rc;
    }
    if (out_deleted)
        *out_deleted = deleted;
    return 0;
}

int sl_sqlite_list_values_expire(struct sl_store *st, const char *list_uuid, int64_t now_ms,
                                 size_t *out_deleted)
{
    struct sqlite_store *s = from_base(st);
    sqlite3_stmt *q = s->mst[MST_VALUES_EXPIRE];
    int64_t list_id = 0;
    size_t deleted = 0;
    int rc;
    if (out_deleted)
        *out_deleted = 0;
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    if (list_uuid)
        rc = meta_id(s, SL_META_LIST, list_uuid, &list_id);
    if (rc == 0) {
        if (list_uuid)
            sqlite3_bind_int64(q, 1, list_id);
        sqlite3_bind_int64(q, 2, now_ms);
        int src = sqlite3_step(q);
        sl_sqlite_done(q);
        if (src != SQLITE_DONE)
            rc = sl_sqlite_fail(s, src, "expiring list values");
        else
            deleted = (size_t)sqlite3_changes(s->db);
    }
    if (rc == 0 && deleted > 0)
        rc = sl_sqlite_version_bump(s);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc) {
        sl_sqlite_rollback(s);
        return rc;
    }
    if (out_deleted)
        *out_deleted = deleted;
    return 0;
}

/* Writes up to limit values after after_id as a JSON array into b; *out_next is the last one's
 * id when more follow. */
static int values_page(struct sqlite_store *s, int64_t list_id, int64_t after_id, size_t limit,
                       struct sl_sqlite_buf *b, int64_t *out_next)
{
    sqlite3_stmt *q = s->mst[MST_VALUES_PAGE];
    size_t n = 0;
    int64_t last = 0;
    int rc = sl_sqlite_buf_put(b, "[", 1), src = SQLITE_DONE;
    sqlite3_bind_int64(q, 1, list_id);
    sqlite3_bind_int64(q, 2, after_id);
    sqlite3_bind_int64(q, 3, (int64_t)limit + 1); /* one more: is there a next page? */
    *out_next = 0;
    while (rc == 0 && (src = sqlite3_step(q)) == SQLITE_ROW) {
        if (n == limit) {
            *out_next = last;
            src = SQLITE_DONE;
            break;
        }
        if (n++ > 0)
            rc = sl_sqlite_buf_put(b, ",", 1);
        if (rc == 0)
            rc = sl_sqlite_buf_json_str(b, (const char *)sqlite3_column_text(q, 1),
                                        (size_t)sqlite3_column_bytes(q, 1));
        last = sqlite3_column_int64(q, 0);
    }
    sl_sqlite_done(q);
    if (rc == 0 && src != SQLITE_DONE)
        rc = sl_sqlite_fail(s, src, "reading list values");
    if (rc == 0)
        rc = sl_sqlite_buf_put(b, "]", 1);
    return rc;
}

int sl_sqlite_list_values_page(struct sl_store *st, const char *list_uuid, int64_t after_id,
                               size_t limit, char **out_json, int64_t *out_next)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = VALUES_PAGE_BYTES};
    int64_t list_id = 0, next = 0;
    int rc;
    if (!out_json)
        return SL_EINVAL;
    *out_json = NULL;
    if (out_next)
        *out_next = 0;
    if (!list_uuid || after_id < 0 || limit < 1 || limit > VALUES_PAGE_MAX)
        return SL_EINVAL;
    /* One read transaction: the list and its values from one snapshot. */
    if ((rc = sl_sqlite_begin(s, 0)))
        return rc;
    rc = meta_id(s, SL_META_LIST, list_uuid, &list_id);
    if (rc == 0)
        rc = values_page(s, list_id, after_id, limit, &b, &next);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc) {
        sl_sqlite_rollback(s);
        free(b.p);
        return rc;
    }
    *out_json = b.p;
    if (out_next)
        *out_next = next;
    return 0;
}

int sl_sqlite_list_values_iter(struct sl_store *st, const char *list_uuid,
                               int (*cb)(void *ud, const char *value, size_t len), void *ud)
{
    struct sqlite_store *s = from_base(st);
    sqlite3_stmt *q = s->mst[MST_VALUES_ALL];
    int64_t list_id = 0;
    int rc, src = SQLITE_DONE;
    if (!list_uuid || !cb)
        return SL_EINVAL;
    if ((rc = sl_sqlite_begin(s, 0)))
        return rc;
    rc = meta_id(s, SL_META_LIST, list_uuid, &list_id);
    if (rc == 0) {
        sqlite3_bind_int64(q, 1, list_id);
        while ((src = sqlite3_step(q)) == SQLITE_ROW) {
            const char *v = (const char *)sqlite3_column_text(q, 0);
            if ((rc = cb(ud, v ? v : "", (size_t)sqlite3_column_bytes(q, 0))) != 0)
                break;
        }
        if (rc == 0 && src != SQLITE_DONE)
            rc = sl_sqlite_fail(s, src, "reading list values");
        sl_sqlite_done(q);
    }
    /* A read transaction: ending it early (cb stopped) loses nothing. */
    int end = sl_sqlite_commit(s);
    if (end)
        sl_sqlite_rollback(s);
    return rc ? rc : end;
}

int sl_sqlite_list_values_count(struct sl_store *st, const char *list_uuid, int64_t *out)
{
    struct sqlite_store *s = from_base(st);
    int64_t list_id = 0;
    int rc;
    if (!list_uuid || !out)
        return SL_EINVAL;
    if ((rc = sl_sqlite_begin(s, 0)))
        return rc;
    rc = meta_id(s, SL_META_LIST, list_uuid, &list_id);
    if (rc == 0) {
        sqlite3_bind_int64(s->mst[MST_VALUES_COUNT], 1, list_id);
        rc = query_one(s, s->mst[MST_VALUES_COUNT], out, "counting list values");
    }
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc)
        sl_sqlite_rollback(s);
    return rc;
}

/* ---- mutes ---- */

int sl_sqlite_mute_active(struct sl_store *st, int64_t now_ms, int64_t *out_count)
{
    struct sqlite_store *s = from_base(st);
    if (!out_count)
        return SL_EINVAL;
    sqlite3_bind_int64(s->mst[MST_MUTE_ACTIVE], 1, now_ms);
    return query_one(s, s->mst[MST_MUTE_ACTIVE], out_count, "counting mutes");
}

int sl_sqlite_mute_get(struct sl_store *st, const char *org, const char *signature, int64_t now_ms,
                       int64_t *out_until_ms, char out_rule[SL_UUID_LEN + 1])
{
    struct sqlite_store *s = from_base(st);
    sqlite3_stmt *q = s->mst[MST_MUTE_GET];
    char lower[SL_UUID_LEN + 1];
    if (out_until_ms)
        *out_until_ms = 0;
    if (out_rule)
        out_rule[0] = 0;
    if (!org || !signature)
        return SL_EINVAL;
    if (!sl_uuid_valid(org))
        return 0; /* no such organization: nothing of it is muted */
    sl_sqlite_uuid_lower(org, lower);
    sqlite3_bind_text(q, 1, lower, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, signature, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, now_ms);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        if (out_until_ms)
            *out_until_ms = sqlite3_column_int64(q, 0);
        if (out_rule)
            sl_sqlite_copy_col(out_rule, SL_UUID_LEN + 1, q, 1);
        rc = 1;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = sl_sqlite_fail(s, rc, "reading a mute");
    }
    sl_sqlite_done(q);
    return rc;
}

/* ---- effects of storing an event ---- */

int sl_sqlite_effects_valid(const struct sl_store_effects *fx)
{
    if (fx->nrules > 0 && !fx->rule_uuids)
        return 0;
    for (size_t i = 0; i < fx->nrules; i++)
        if (!fx->rule_uuids[i] || !sl_uuid_valid(fx->rule_uuids[i]))
            return 0;
    if (fx->case_uuid && !sl_uuid_valid(fx->case_uuid))
        return 0;
    if (fx->mute_rule && !sl_uuid_valid(fx->mute_rule))
        return 0;
    const struct sl_store_case *c = fx->new_case;
    if (c && (!sl_uuid_valid(c->uuid) || !sl_uuid_valid(c->org) || !c->title ||
              (c->rule_uuid && !sl_uuid_valid(c->rule_uuid)) ||
              (c->template_uuid && !sl_uuid_valid(c->template_uuid))))
        return 0;
    return 1;
}

int sl_sqlite_hits_flush(struct sqlite_store *s, struct sl_sqlite_hits *hits)
{
    sqlite3_stmt *q = s->mst[MST_HIT_ADD];
    for (int i = 0; i < hits->len; i++) {
        sqlite3_bind_text(q, 1, hits->uuid[i], SL_UUID_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, hits->n[i]);
        sqlite3_bind_int64(q, 3, hits->last_ms[i]);
        int rc = sl_sqlite_step_done(s, q, "counting rule hits");
        if (rc)
            return rc;
    }
    hits->len = 0;
    return 0;
}

static int hit_add(struct sqlite_store *s, struct sl_sqlite_hits *hits, const char *rule,
                   int64_t when_ms)
{
    char lower[SL_UUID_LEN + 1];
    sl_sqlite_uuid_lower(rule, lower);
    for (int i = 0; i < hits->len; i++) {
        if (memcmp(hits->uuid[i], lower, SL_UUID_LEN) == 0) {
            hits->n[i]++;
            if (when_ms > hits->last_ms[i])
                hits->last_ms[i] = when_ms;
            return 0;
        }
    }
    /* Sums are additive: writing some early costs a statement, never a wrong count. */
    if (hits->len == SL_SQLITE_HIT_SLOTS) {
        int rc = sl_sqlite_hits_flush(s, hits);
        if (rc)
            return rc;
    }
    memcpy(hits->uuid[hits->len], lower, SL_UUID_LEN + 1);
    hits->n[hits->len] = 1;
    hits->last_ms[hits->len++] = when_ms;
    return 0;
}

static int mute_put(struct sqlite_store *s, int64_t org_id, const char *signature, int64_t until_ms,
                    const char *rule)
{
    char lower[SL_UUID_LEN + 1];
    if (rule)
        sl_sqlite_uuid_lower(rule, lower);
    sqlite3_stmt *q = s->mst[MST_MUTE_PUT];
    sqlite3_bind_int64(q, 1, org_id);
    sqlite3_bind_text(q, 2, signature, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 3, until_ms);
    sl_sqlite_bind_opt_text(q, 4, rule ? lower : NULL);
    return sl_sqlite_step_done(s, q, "muting a signature");
}

int sl_sqlite_effects_apply(struct sqlite_store *s, const struct sl_store_event *ev, int64_t seq,
                            int64_t org_id, struct sl_sqlite_hits *hits)
{
    const struct sl_store_effects *fx = ev->effects;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < fx->nrules; i++)
        rc = hit_add(s, hits, fx->rule_uuids[i], ev->created_ms);
    /* The case first, so that the link below finds it. */
    if (rc == 0 && fx->new_case)
        rc = sl_sqlite_case_from_rule(s, fx->new_case);
    if (rc == 0 && fx->case_uuid)
        rc = sl_sqlite_case_link(s, seq, org_id, fx->case_uuid);
    /* The mute is for mute_org (the organization later events arrive with), else the event's
     * organization; no signature, nothing to mute. */
    int64_t mute_org_id = org_id;
    if (rc == 0 && fx->mute_until_ms > 0 && ev->signature && fx->mute_org)
        rc = sl_sqlite_org_resolve(s, fx->mute_org, &mute_org_id);
    if (rc == 0 && fx->mute_until_ms > 0 && ev->signature)
        rc = mute_put(s, mute_org_id, ev->signature, fx->mute_until_ms, fx->mute_rule);
    return rc;
}
