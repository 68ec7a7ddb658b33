/* The SQLite store's metadata: rules, lists, close reasons, statuses and data types as JSON
 * documents; intel list values; mutes; cases; and the side effects of storing an event. */
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
    /* tags that are not a JSON array become [] rather than fail the batch on every retry. */
    [MST_CASE_INSERT] = "INSERT INTO cases (uuid, org_id, title, description, severity, tlp,"
                        " status, tags, event_rule, case_template, created_ms, updated_ms)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Open', CASE WHEN json_valid(?7) THEN"
                        " (CASE WHEN json_type(?7) = 'array' THEN json(?7) ELSE '[]' END)"
                        " ELSE '[]' END, ?8, ?9, ?10, ?10) ON CONFLICT (uuid) DO NOTHING",
    [MST_CASE_LINK] = "INSERT INTO case_events (case_id, event_uuid)"
                      " SELECT id, ?2 FROM cases WHERE uuid = ?1 ON CONFLICT DO NOTHING",
    [MST_CASE_GET] = "SELECT c.uuid, o.uuid, c.title, c.description, c.severity, c.tlp, c.status,"
                     " c.tags, (SELECT count(*) FROM case_events e WHERE e.case_id = c.id),"
                     " c.created_ms, c.updated_ms, c.event_rule, c.case_template"
                     " FROM cases c JOIN orgs o ON o.id = c.org_id WHERE c.uuid = ?1",
    [MST_CASE_ID] = "SELECT id FROM cases WHERE uuid = ?1",
    [MST_CASE_EVENTS] = "SELECT event_uuid FROM case_events WHERE case_id = ?1"
                        " ORDER BY event_uuid",
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

/* ---- cases ---- */

/* Appends "key":<int> (with a leading comma). */
static int buf_int(struct sl_sqlite_buf *b, const char *key, int64_t v)
{
    char tmp[96];
    int n = snprintf(tmp, sizeof(tmp), ",\"%s\":%" PRId64, key, v);
    return sl_sqlite_buf_put(b, tmp, (size_t)n);
}

/* Appends "key":<string or null> from a text column (with a leading comma unless first). */
static int buf_col(struct sl_sqlite_buf *b, const char *key, sqlite3_stmt *q, int col, int first)
{
    char tmp[64];
    int n = snprintf(tmp, sizeof(tmp), "%s\"%s\":", first ? "" : ",", key);
    int rc = sl_sqlite_buf_put(b, tmp, (size_t)n);
    if (rc == 0)
        rc = sl_sqlite_buf_json_str(b, (const char *)sqlite3_column_text(q, col),
                                    (size_t)sqlite3_column_bytes(q, col));
    return rc;
}

static int buf_time(struct sl_sqlite_buf *b, const char *key, int64_t ms)
{
    char tmp[64], when[25];
    sl_time_format(ms, when);
    int n = snprintf(tmp, sizeof(tmp), ",\"%s\":\"%s\"", key, when);
    return sl_sqlite_buf_put(b, tmp, (size_t)n);
}

/* Renders the MST_CASE_GET row as the case document. */
static int case_doc(sqlite3_stmt *q, struct sl_sqlite_buf *b)
{
    const char *tags = (const char *)sqlite3_column_text(q, 7);
    int rc = sl_sqlite_buf_put(b, "{", 1);
    if (rc == 0)
        rc = buf_col(b, "uuid", q, 0, 1);
    if (rc == 0)
        rc = buf_col(b, "organization", q, 1, 0);
    if (rc == 0)
        rc = buf_col(b, "title", q, 2, 0);
    if (rc == 0)
        rc = buf_col(b, "description", q, 3, 0);
    if (rc == 0)
        rc = buf_int(b, "severity", sqlite3_column_int64(q, 4));
    if (rc == 0)
        rc = buf_int(b, "tlp", sqlite3_column_int64(q, 5));
    if (rc == 0)
        rc = buf_col(b, "status", q, 6, 0);
    /* tags was checked to be a JSON array when the case was written. */
    if (rc == 0)
        rc = sl_sqlite_buf_put(b, ",\"tags\":", 8);
    if (rc == 0)
        rc = tags ? sl_sqlite_buf_put(b, tags, (size_t)sqlite3_column_bytes(q, 7))
                  : sl_sqlite_buf_put(b, "[]", 2);
    if (rc == 0)
        rc = buf_int(b, "event_count", sqlite3_column_int64(q, 8));
    if (rc == 0)
        rc = buf_time(b, "created_at", sqlite3_column_int64(q, 9));
    if (rc == 0)
        rc = buf_time(b, "updated_at", sqlite3_column_int64(q, 10));
    if (rc == 0)
        rc = buf_col(b, "event_rule", q, 11, 0);
    if (rc == 0)
        rc = buf_col(b, "case_template", q, 12, 0);
    if (rc == 0)
        rc = sl_sqlite_buf_put(b, "}", 1);
    return rc;
}

int sl_sqlite_case_get(struct sl_store *st, const char *org, const char *uuid, char **out_doc)
{
    struct sqlite_store *s = from_base(st);
    sqlite3_stmt *q = s->mst[MST_CASE_GET];
    struct sl_sqlite_buf b = {.max = VALUES_PAGE_BYTES};
    char lower[SL_UUID_LEN + 1], want_org[SL_UUID_LEN + 1];
    if (!out_doc || !uuid)
        return SL_EINVAL;
    *out_doc = NULL;
    if (!sl_uuid_valid(uuid) || (org && !sl_uuid_valid(org)))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(uuid, lower);
    if (org)
        sl_sqlite_uuid_lower(org, want_org);
    sqlite3_bind_text(q, 1, lower, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        const char *have = (const char *)sqlite3_column_text(q, 1);
        rc = org && (!have || strcmp(have, want_org) != 0) ? SL_ENOTFOUND : case_doc(q, &b);
    } else if (rc == SQLITE_DONE) {
        rc = SL_ENOTFOUND;
    } else {
        rc = sl_sqlite_fail(s, rc, "reading a case");
    }
    sl_sqlite_done(q);
    if (rc) {
        free(b.p);
        return rc;
    }
    *out_doc = b.p;
    return 0;
}

int sl_sqlite_case_events(struct sl_store *st, const char *case_uuid, char **out_json)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = VALUES_PAGE_BYTES};
    char lower[SL_UUID_LEN + 1];
    int64_t case_id = 0;
    int rc, src = SQLITE_DONE;
    if (!out_json || !case_uuid)
        return SL_EINVAL;
    *out_json = NULL;
    if (!sl_uuid_valid(case_uuid))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(case_uuid, lower);
    if ((rc = sl_sqlite_begin(s, 0)))
        return rc;
    sqlite3_stmt *q = s->mst[MST_CASE_ID];
    sqlite3_bind_text(q, 1, lower, -1, SQLITE_STATIC);
    rc = lookup_id(s, q, &case_id, "looking up a case");
    if (rc == 0)
        rc = sl_sqlite_buf_put(&b, "[", 1);
    if (rc == 0) {
        int n = 0;
        q = s->mst[MST_CASE_EVENTS];
        sqlite3_bind_int64(q, 1, case_id);
        while (rc == 0 && (src = sqlite3_step(q)) == SQLITE_ROW) {
            if (n++ > 0)
                rc = sl_sqlite_buf_put(&b, ",", 1);
            if (rc == 0)
                rc = sl_sqlite_buf_json_str(&b, (const char *)sqlite3_column_text(q, 0),
                                            (size_t)sqlite3_column_bytes(q, 0));
        }
        if (rc == 0 && src != SQLITE_DONE)
            rc = sl_sqlite_fail(s, src, "reading a case's events");
        sl_sqlite_done(q);
    }
    if (rc == 0)
        rc = sl_sqlite_buf_put(&b, "]", 1);
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

static int case_insert(struct sqlite_store *s, const struct sl_store_case *c)
{
    char uuid[SL_UUID_LEN + 1], rule[SL_UUID_LEN + 1], tmpl[SL_UUID_LEN + 1];
    int64_t org_id = 0;
    int rc = sl_sqlite_org_resolve(s, c->org, &org_id);
    if (rc)
        return rc;
    sl_sqlite_uuid_lower(c->uuid, uuid);
    if (c->rule_uuid)
        sl_sqlite_uuid_lower(c->rule_uuid, rule);
    if (c->template_uuid)
        sl_sqlite_uuid_lower(c->template_uuid, tmpl);
    int64_t now = sl_now_ms();
    sqlite3_stmt *q = s->mst[MST_CASE_INSERT];
    sqlite3_bind_text(q, 1, uuid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, org_id);
    sqlite3_bind_text(q, 3, c->title, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, c->description ? c->description : "", -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 5, c->severity);
    sqlite3_bind_int(q, 6, c->tlp);
    sl_sqlite_bind_opt_text(q, 7, c->tags_json);
    sl_sqlite_bind_opt_text(q, 8, c->rule_uuid ? rule : NULL);
    sl_sqlite_bind_opt_text(q, 9, c->template_uuid ? tmpl : NULL);
    sqlite3_bind_int64(q, 10, now);
    return sl_sqlite_step_done(s, q, "creating a case");
}

static int case_link(struct sqlite_store *s, const char *case_uuid, const char *event_uuid)
{
    char c[SL_UUID_LEN + 1], e[SL_UUID_LEN + 1];
    sl_sqlite_uuid_lower(case_uuid, c);
    sl_sqlite_uuid_lower(event_uuid, e);
    sqlite3_stmt *q = s->mst[MST_CASE_LINK];
    sqlite3_bind_text(q, 1, c, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, e, -1, SQLITE_STATIC);
    return sl_sqlite_step_done(s, q, "adding an event to a case");
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

int sl_sqlite_effects_apply(struct sqlite_store *s, const struct sl_store_event *ev, int64_t org_id,
                            struct sl_sqlite_hits *hits)
{
    const struct sl_store_effects *fx = ev->effects;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < fx->nrules; i++)
        rc = hit_add(s, hits, fx->rule_uuids[i], ev->created_ms);
    if (rc == 0 && fx->new_case)
        rc = case_insert(s, fx->new_case);
    if (rc == 0 && fx->case_uuid)
        rc = case_link(s, fx->case_uuid, ev->uuid);
    /* The mute is for mute_org (the organization later events arrive with), else the event's
     * organization; no signature, nothing to mute. */
    int64_t mute_org_id = org_id;
    if (rc == 0 && fx->mute_until_ms > 0 && ev->signature && fx->mute_org)
        rc = sl_sqlite_org_resolve(s, fx->mute_org, &mute_org_id);
    if (rc == 0 && fx->mute_until_ms > 0 && ev->signature)
        rc = mute_put(s, mute_org_id, ev->signature, fx->mute_until_ms, fx->mute_rule);
    return rc;
}
