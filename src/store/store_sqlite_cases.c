/* The SQLite store's cases: creating, changing, closing, reopening, deleting and listing them,
 * their comments, and the link of events to them.
 *
 * The link is the event's: events.case_id (indexed only where it is set, so an event in no case
 * costs the index nothing) and the "case" member of its document. A case's events, its
 * event_count and its observables are read from its events through that index, so they cannot
 * drift from them.
 *
 * Deleting a case must not hold the write lock for as long as releasing a large case's events
 * takes. The case row and its comments go first, in one transaction with a record of the case's
 * id in case_releases, so the case is gone from every read at once; its events are then released
 * (back to New, without "case") in transactions of at most RELEASE_CHUNK, and the record goes
 * with the last of them. An event whose case_id names no case is in no case for every read here
 * (they all start from a case row) and for event_update (sl_sqlite_case_link drops such a link);
 * a new case's id is above every recorded one, so it never inherits such events; and a release a
 * crash interrupted is finished when the store is next opened, or by the next case_delete.
 *
 * The SQL is in store_sqlite_meta.c (MST_CASE_*, MST_RELEASE_*, MST_COMMENT*). */
#include "store/store_sqlite_int.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RELEASE_CHUNK   5000               /* events released per transaction of case_delete */
#define OWNER_MAX       255                /* bytes of an owner or of a comment's author */
#define DOC_MAX         ((size_t)16 << 20) /* one case or comment document */
#define LIST_MAX        ((size_t)32 << 20) /* one page of cases, events, observables, comments */
#define PAGE_MAX        1000               /* cases per case_list page */
#define OBSERVABLES_MAX 10000

/* The columns of CASE_COLS. */
enum case_col {
    CC_UUID,
    CC_ORG,
    CC_TITLE,
    CC_DESCRIPTION,
    CC_SEVERITY,
    CC_TLP,
    CC_STATUS,
    CC_OWNER,
    CC_TAGS,
    CC_TASKS,
    CC_EVENTS,
    CC_CREATED,
    CC_UPDATED,
    CC_CLOSED,
    CC_REASON,
    CC_COMMENT,
    CC_RULE,
    CC_TEMPLATE,
    CC_ID,
};

/* A case found by uuid. */
struct case_ref {
    int64_t id, org_id;
    int closed;
};

static struct sqlite_store *from_base(struct sl_store *st)
{
    return (struct sqlite_store *)st;
}

static int status_valid(const char *status)
{
    static const char *const statuses[] = {"New", "In Progress", "Hold", "Closed"};
    for (size_t i = 0; status && i < sizeof(statuses) / sizeof(statuses[0]); i++)
        if (strcmp(status, statuses[i]) == 0)
            return 1;
    return 0;
}

/* s is min..max bytes of valid UTF-8. */
static int text_valid(const char *s, size_t min, size_t max)
{
    size_t n = strnlen(s, max + 1);
    return n >= min && n <= max && sl_utf8_valid(s, n);
}

/* Steps q (bound) expecting one integer row; SL_ENOTFOUND without one. Resets q. */
static int step_int(struct sqlite_store *s, sqlite3_stmt *q, int64_t *out, const char *what)
{
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(q, 0);
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? SL_ENOTFOUND : sl_sqlite_fail(s, rc, what);
    }
    sl_sqlite_done(q);
    return rc;
}

/* Looks a case up by uuid (any case); SL_ENOTFOUND also for a malformed uuid. */
static int case_lookup(struct sqlite_store *s, const char *uuid, struct case_ref *out)
{
    char lower[SL_UUID_LEN + 1];
    if (!uuid || !sl_uuid_valid(uuid))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(uuid, lower);
    sqlite3_stmt *q = s->mst[MST_CASE_FIND];
    sqlite3_bind_text(q, 1, lower, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(q, 0);
        out->org_id = sqlite3_column_int64(q, 1);
        const char *status = (const char *)sqlite3_column_text(q, 2);
        out->closed = status && strcmp(status, "Closed") == 0;
        rc = 0;
    } else {
        rc = rc == SQLITE_DONE ? SL_ENOTFOUND : sl_sqlite_fail(s, rc, "looking up a case");
    }
    sl_sqlite_done(q);
    return rc;
}

/* The case uuid of org (NULL: any organization). SL_ENOTFOUND when it is absent or another
 * organization's, or when org is not an organization. */
static int case_find(struct sqlite_store *s, const char *org, const char *uuid,
                     struct case_ref *out)
{
    int64_t org_id = 0;
    int rc = org ? sl_sqlite_org_resolve(s, org, &org_id) : 0;
    if (rc == 0)
        rc = case_lookup(s, uuid, out);
    if (rc == 0 && org && out->org_id != org_id)
        rc = SL_ENOTFOUND;
    return rc;
}

/* Ends the transaction: COMMIT after success, ROLLBACK otherwise. Returns rc or COMMIT's error. */
static int finish(struct sqlite_store *s, int rc)
{
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc)
        sl_sqlite_rollback(s);
    return rc;
}

/* ---- documents ---- */

/* Appends ,"key": (or "key": when first). */
static int put_key(struct sl_sqlite_buf *b, const char *key, int first)
{
    char tmp[64];
    int n = snprintf(tmp, sizeof(tmp), "%s\"%s\":", first ? "" : ",", key);
    return sl_sqlite_buf_put(b, tmp, (size_t)n);
}

static int put_col(struct sl_sqlite_buf *b, const char *key, sqlite3_stmt *q, int col, int first)
{
    int rc = put_key(b, key, first);
    if (rc == 0)
        rc = sl_sqlite_buf_json_str(b, (const char *)sqlite3_column_text(q, col),
                                    (size_t)sqlite3_column_bytes(q, col));
    return rc;
}

/* A column holding JSON the store wrote (tags, tasks), or dflt when it is NULL. */
static int put_json_col(struct sl_sqlite_buf *b, const char *key, sqlite3_stmt *q, int col,
                        const char *dflt)
{
    const char *v = (const char *)sqlite3_column_text(q, col);
    int rc = put_key(b, key, 0);
    if (rc == 0)
        rc = v ? sl_sqlite_buf_put(b, v, (size_t)sqlite3_column_bytes(q, col))
               : sl_sqlite_buf_put(b, dflt, strlen(dflt));
    return rc;
}

static int put_int(struct sl_sqlite_buf *b, const char *key, int64_t v)
{
    char tmp[96];
    int n = snprintf(tmp, sizeof(tmp), ",\"%s\":%" PRId64, key, v);
    return sl_sqlite_buf_put(b, tmp, (size_t)n);
}

static int put_bool(struct sl_sqlite_buf *b, const char *key, int v)
{
    int rc = put_key(b, key, 0);
    return rc ? rc : sl_sqlite_buf_put(b, v ? "true" : "false", v ? 4 : 5);
}

/* ISO 8601 UTC with milliseconds; null for 0 when null_if_zero. */
static int put_time(struct sl_sqlite_buf *b, const char *key, int64_t ms, int null_if_zero)
{
    char when[25];
    int rc = put_key(b, key, 0);
    if (rc || (null_if_zero && ms == 0))
        return rc ? rc : sl_sqlite_buf_put(b, "null", 4);
    sl_time_format(ms, when);
    return sl_sqlite_buf_json_str(b, when, strlen(when));
}

/* A case of more events than this reports observable_count null: counting them reads every
 * event's observables, on every read of the case (GET /case/<uuid>/observables lists them, under
 * the read deadline). */
#define OBS_COUNT_EVENTS_MAX 10000
#define OBS_UNCOUNTED        (-2)

/* Renders a row of CASE_COLS as the case document; observable_count when obs >= 0, null when
 * obs is OBS_UNCOUNTED, absent otherwise. */
static int case_doc(sqlite3_stmt *q, int64_t obs, struct sl_sqlite_buf *b)
{
    const char *status = (const char *)sqlite3_column_text(q, CC_STATUS);
    int rc = sl_sqlite_buf_put(b, "{", 1);
    if (rc == 0)
        rc = put_col(b, "uuid", q, CC_UUID, 1);
    if (rc == 0)
        rc = put_col(b, "organization", q, CC_ORG, 0);
    if (rc == 0)
        rc = put_col(b, "title", q, CC_TITLE, 0);
    if (rc == 0)
        rc = put_col(b, "description", q, CC_DESCRIPTION, 0);
    if (rc == 0)
        rc = put_int(b, "severity", sqlite3_column_int64(q, CC_SEVERITY));
    if (rc == 0)
        rc = put_int(b, "tlp", sqlite3_column_int64(q, CC_TLP));
    if (rc == 0)
        rc = put_col(b, "status", q, CC_STATUS, 0);
    if (rc == 0)
        rc = put_bool(b, "closed", status && strcmp(status, "Closed") == 0);
    if (rc == 0)
        rc = put_col(b, "owner", q, CC_OWNER, 0);
    if (rc == 0)
        rc = put_json_col(b, "tags", q, CC_TAGS, "[]");
    if (rc == 0)
        rc = put_json_col(b, "tasks", q, CC_TASKS, "[]");
    if (rc == 0)
        rc = put_int(b, "event_count", sqlite3_column_int64(q, CC_EVENTS));
    if (rc == 0 && obs >= 0)
        rc = put_int(b, "observable_count", obs);
    else if (rc == 0 && obs == OBS_UNCOUNTED)
        rc = sl_sqlite_buf_put(b, ",\"observable_count\":null", 24);
    if (rc == 0)
        rc = put_time(b, "created_at", sqlite3_column_int64(q, CC_CREATED), 0);
    if (rc == 0)
        rc = put_time(b, "updated_at", sqlite3_column_int64(q, CC_UPDATED), 0);
    if (rc == 0)
        rc = put_time(b, "closed_at", sqlite3_column_int64(q, CC_CLOSED), 1);
    if (rc == 0)
        rc = put_col(b, "close_reason", q, CC_REASON, 0);
    if (rc == 0)
        rc = put_col(b, "closure_comment", q, CC_COMMENT, 0);
    if (rc == 0)
        rc = put_col(b, "event_rule", q, CC_RULE, 0);
    if (rc == 0)
        rc = put_col(b, "case_template", q, CC_TEMPLATE, 0);
    if (rc == 0)
        rc = sl_sqlite_buf_put(b, "}", 1);
    return rc;
}

/* ---- the link of events ---- */

int sl_sqlite_case_resolve(struct sqlite_store *s, const char *case_uuid, int64_t org_id,
                           int64_t *out_case_id, int *out_closed)
{
    struct case_ref ref;
    *out_case_id = 0;
    *out_closed = 0;
    int rc = case_lookup(s, case_uuid, &ref);
    if (rc == SL_ENOTFOUND || (rc == 0 && ref.org_id != org_id))
        return 0;
    if (rc == 0) {
        *out_case_id = ref.id;
        *out_closed = ref.closed;
    }
    return rc;
}

int sl_sqlite_case_link(struct sqlite_store *s, int64_t seq, int64_t org_id, const char *case_uuid)
{
    int64_t case_id = 0;
    int closed = 0, rc;
    if (case_uuid && (rc = sl_sqlite_case_resolve(s, case_uuid, org_id, &case_id, &closed)))
        return rc;
    if (case_id == 0) {
        sqlite3_stmt *q = s->mst[MST_CASE_UNLINK];
        sqlite3_bind_int64(q, 1, seq);
        sqlite3_bind_int(q, 2, case_uuid != NULL);
        return sl_sqlite_step_done(s, q, "taking an event out of a case");
    }
    char lower[SL_UUID_LEN + 1];
    sl_sqlite_uuid_lower(case_uuid, lower);
    sqlite3_stmt *q = s->mst[MST_CASE_LINK];
    sqlite3_bind_int64(q, 1, seq);
    sqlite3_bind_int64(q, 2, case_id);
    sqlite3_bind_int(q, 3, closed);
    sqlite3_bind_text(q, 4, lower, -1, SQLITE_STATIC);
    return sl_sqlite_step_done(s, q, "adding an event to a case");
}

/* ---- creating ---- */

/* A new case's row: strings borrowed, uuids lowercase. */
struct case_new {
    const char *uuid;
    int64_t org_id;
    const char *title, *description, *status, *owner, *tags, *tasks;
    int severity, tlp; /* negative: the template's or the default */
    int template_wins; /* a rule's case: the template's severity and tlp over the given ones */
    const char *rule;  /* or NULL */
    const char *tmpl;  /* the template's uuid, or NULL */
    const char *tmpl_doc;
};

/* The document of template uuid (lowercase) of org_id or the default organization, or
 * SL_ENOTFOUND. *out_doc is malloc'd. */
static int template_doc(struct sqlite_store *s, const char *uuid, int64_t org_id, char **out_doc)
{
    sqlite3_stmt *q = s->mst[MST_CASE_TEMPLATE];
    *out_doc = NULL;
    sqlite3_bind_text(q, 1, uuid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, org_id);
    sqlite3_bind_int(q, 3, (int)SL_META_CASE_TEMPLATE);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        const char *doc = (const char *)sqlite3_column_text(q, 0);
        size_t len = (size_t)sqlite3_column_bytes(q, 0);
        *out_doc = malloc(len + 1);
        if (*out_doc) {
            memcpy(*out_doc, doc ? doc : "", len);
            (*out_doc)[len] = 0;
        }
        rc = *out_doc ? 0 : SL_ENOMEM;
    } else {
        rc = rc == SQLITE_DONE ? SL_ENOTFOUND : sl_sqlite_fail(s, rc, "reading a case template");
    }
    sl_sqlite_done(q);
    return rc;
}

/* Inserts c unless its uuid exists (*out_inserted = 0). */
static int case_insert(struct sqlite_store *s, const struct case_new *c, int *out_inserted)
{
    sqlite3_stmt *q = s->mst[MST_CASE_INSERT];
    sqlite3_bind_text(q, 1, c->uuid, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, c->org_id);
    sqlite3_bind_text(q, 3, c->title, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, c->description ? c->description : "", -1, SQLITE_STATIC);
    if (c->severity >= 0)
        sqlite3_bind_int(q, 5, c->severity);
    if (c->tlp >= 0)
        sqlite3_bind_int(q, 6, c->tlp);
    sqlite3_bind_text(q, 7, c->status ? c->status : "New", -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 8, c->owner ? c->owner : "", -1, SQLITE_STATIC);
    sl_sqlite_bind_opt_text(q, 9, c->tags);
    sl_sqlite_bind_opt_text(q, 10, c->tasks);
    sl_sqlite_bind_opt_text(q, 11, c->rule);
    sl_sqlite_bind_opt_text(q, 12, c->tmpl);
    sqlite3_bind_int64(q, 13, sl_now_ms());
    sl_sqlite_bind_opt_text(q, 14, c->tmpl_doc);
    sqlite3_bind_int(q, 15, c->template_wins);
    int rc = sl_sqlite_step_done(s, q, "creating a case");
    *out_inserted = rc == 0 && sqlite3_changes(s->db) == 1;
    return rc;
}

int sl_sqlite_case_from_rule(struct sqlite_store *s, const struct sl_store_case *c)
{
    char uuid[SL_UUID_LEN + 1], rule[SL_UUID_LEN + 1], tmpl[SL_UUID_LEN + 1];
    struct case_new n = {.uuid = uuid,
                         .title = c->title,
                         .description = c->description,
                         .tags = c->tags_json,
                         .template_wins = 1};
    char *doc = NULL;
    int inserted = 0;
    int rc = sl_sqlite_org_resolve(s, c->org, &n.org_id);
    if (rc)
        return rc;
    sl_sqlite_uuid_lower(c->uuid, uuid);
    /* A level out of range (an event's severity, say) takes the template's or the default
     * rather than fail the batch on every retry. */
    n.severity = c->severity >= 0 && c->severity <= 4 ? c->severity : -1;
    n.tlp = c->tlp >= 0 && c->tlp <= 4 ? c->tlp : -1;
    if (c->rule_uuid) {
        sl_sqlite_uuid_lower(c->rule_uuid, rule);
        n.rule = rule;
    }
    if (c->template_uuid) {
        sl_sqlite_uuid_lower(c->template_uuid, tmpl);
        rc = template_doc(s, tmpl, n.org_id, &doc);
        if (rc == 0) {
            n.tmpl = tmpl;
            n.tmpl_doc = doc;
        } else if (rc == SL_ENOTFOUND) {
            rc = 0; /* deleted since the rule was written: the case is made without it */
        }
    }
    if (rc == 0)
        rc = case_insert(s, &n, &inserted);
    free(doc);
    return rc;
}

/* Whether tags (NULL: yes) is a JSON array of strings and tasks (NULL: yes) one of
 * {"title" (1..1024 bytes), "description", "status"} objects. */
static int json_fields_valid(struct sqlite_store *s, const char *tags, const char *tasks, int *out)
{
    sqlite3_stmt *q = s->mst[MST_CASE_JSON_OK];
    *out = 0;
    if ((tags && strnlen(tags, SL_CASE_TEXT_MAX + 1) > SL_CASE_TEXT_MAX) ||
        (tasks && strnlen(tasks, DOC_MAX + 1) > DOC_MAX))
        return 0;
    sl_sqlite_bind_opt_text(q, 1, tags);
    sl_sqlite_bind_opt_text(q, 2, tasks);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(q, 0) == 1 && sqlite3_column_int(q, 1) == 1;
        rc = 0;
    } else {
        rc = sl_sqlite_fail(s, rc, "checking a case's tags and tasks");
    }
    sl_sqlite_done(q);
    return rc;
}

/* The checks of sl_case_fields that need no SQL. On update, status may not be Closed (close
 * does that) and template_uuid and rule_uuid are not given. */
static int fields_valid(const struct sl_case_fields *f, int create)
{
    if (!f || (create && !f->title))
        return 0;
    if (f->title && !text_valid(f->title, 1, SL_CASE_TITLE_MAX))
        return 0;
    if (f->description && !text_valid(f->description, 0, SL_CASE_TEXT_MAX))
        return 0;
    if (f->owner && !text_valid(f->owner, 0, OWNER_MAX))
        return 0;
    if (f->severity > 4 || f->tlp > 4)
        return 0;
    if (f->status && (!status_valid(f->status) || strcmp(f->status, "Closed") == 0))
        return 0;
    if (create)
        return (!f->template_uuid || sl_uuid_valid(f->template_uuid)) &&
               (!f->rule_uuid || sl_uuid_valid(f->rule_uuid));
    return !f->template_uuid && !f->rule_uuid;
}

/* case_create inside its transaction; uuid lowercase. */
static int create_in(struct sqlite_store *s, const char *org, const char *uuid,
                     const struct sl_case_fields *f)
{
    char rule[SL_UUID_LEN + 1], tmpl[SL_UUID_LEN + 1], *doc = NULL;
    struct case_new n = {.uuid = uuid,
                         .title = f->title,
                         .description = f->description,
                         .status = f->status,
                         .owner = f->owner,
                         .tags = f->tags_json,
                         .tasks = f->tasks_json,
                         .severity = f->severity,
                         .tlp = f->tlp};
    int inserted = 0;
    int rc = sl_sqlite_org_resolve(s, org, &n.org_id);
    if (rc == 0 && f->rule_uuid) {
        sl_sqlite_uuid_lower(f->rule_uuid, rule);
        n.rule = rule;
    }
    if (rc == 0 && f->template_uuid) {
        sl_sqlite_uuid_lower(f->template_uuid, tmpl);
        rc = template_doc(s, tmpl, n.org_id, &doc);
        n.tmpl = tmpl;
        n.tmpl_doc = doc;
    }
    if (rc == 0)
        rc = case_insert(s, &n, &inserted);
    if (rc == 0 && !inserted)
        rc = SL_EEXIST;
    free(doc);
    return rc;
}

int sl_sqlite_case_create(struct sl_store *st, const char *org, const char *uuid,
                          const struct sl_case_fields *f)
{
    struct sqlite_store *s = from_base(st);
    char lower[SL_UUID_LEN + 1];
    int ok = 0, rc;
    if (!uuid || !sl_uuid_valid(uuid) || !fields_valid(f, 1))
        return SL_EINVAL;
    if ((rc = json_fields_valid(s, f->tags_json, f->tasks_json, &ok)))
        return rc;
    if (!ok)
        return SL_EINVAL;
    if (!org)
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(uuid, lower);
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    return finish(s, create_in(s, org, lower, f));
}

/* ---- changing, closing, reopening ---- */

int sl_sqlite_case_update(struct sl_store *st, const char *org, const char *uuid,
                          const struct sl_case_fields *f)
{
    struct sqlite_store *s = from_base(st);
    struct case_ref ref;
    int ok = 0, rc;
    if (!uuid || !fields_valid(f, 0))
        return SL_EINVAL;
    if ((rc = json_fields_valid(s, f->tags_json, f->tasks_json, &ok)))
        return rc;
    if (!ok)
        return SL_EINVAL;
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    rc = case_find(s, org, uuid, &ref);
    /* A closed case changes status only by reopen. */
    if (rc == 0 && f->status && ref.closed)
        rc = SL_EINVAL;
    if (rc == 0) {
        sqlite3_stmt *q = s->mst[MST_CASE_UPDATE];
        sqlite3_bind_int64(q, 1, ref.id);
        sl_sqlite_bind_opt_text(q, 2, f->title);
        sl_sqlite_bind_opt_text(q, 3, f->description);
        sqlite3_bind_int(q, 4, f->severity);
        sqlite3_bind_int(q, 5, f->tlp);
        sl_sqlite_bind_opt_text(q, 6, f->status);
        sl_sqlite_bind_opt_text(q, 7, f->owner);
        sl_sqlite_bind_opt_text(q, 8, f->tags_json);
        sl_sqlite_bind_opt_text(q, 9, f->tasks_json);
        sqlite3_bind_int64(q, 10, sl_now_ms());
        rc = sl_sqlite_step_done(s, q, "updating a case");
    }
    return finish(s, rc);
}

/* Runs the events statement id for case case_id at now_ms; *out_events (may be NULL) its
 * changes. */
static int case_events_set(struct sqlite_store *s, enum meta_stmt_id id, int64_t case_id,
                           int64_t now_ms, int64_t *out_events)
{
    char now[25];
    sl_time_format(now_ms, now);
    sqlite3_bind_int64(s->mst[id], 1, case_id);
    sqlite3_bind_text(s->mst[id], 2, now, -1, SQLITE_STATIC);
    int rc = sl_sqlite_step_done(s, s->mst[id], "changing the status of a case's events");
    if (rc == 0 && out_events)
        *out_events = sqlite3_changes64(s->db);
    return rc;
}

int sl_sqlite_case_close(struct sl_store *st, const char *org, const char *uuid,
                         const char *close_reason, const char *comment, const char *by,
                         int64_t *out_events)
{
    struct sqlite_store *s = from_base(st);
    char reason[SL_UUID_LEN + 1];
    struct case_ref ref;
    int64_t now = sl_now_ms();
    int rc;
    if (out_events)
        *out_events = 0;
    if (!uuid || (close_reason && !sl_uuid_valid(close_reason)) ||
        (comment && !text_valid(comment, 0, SL_CASE_TEXT_MAX)))
        return SL_EINVAL;
    if (close_reason)
        sl_sqlite_uuid_lower(close_reason, reason);
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    rc = case_find(s, org, uuid, &ref);
    if (rc == 0 && ref.closed)
        rc = SL_EEXIST;
    if (rc == 0) {
        sqlite3_stmt *q = s->mst[MST_CASE_CLOSE];
        sqlite3_bind_int64(q, 1, ref.id);
        sqlite3_bind_int64(q, 2, now);
        sl_sqlite_bind_opt_text(q, 3, close_reason ? reason : NULL);
        sl_sqlite_bind_opt_text(q, 4, comment);
        rc = sl_sqlite_step_done(s, q, "closing a case");
    }
    if (rc == 0)
        rc = case_events_set(s, MST_CASE_EVENTS_CLOSE, ref.id, now, out_events);
    rc = finish(s, rc);
    if (rc == 0)
        SL_DEBUG("store: case %s closed by %s", uuid, by ? by : "-");
    else if (out_events)
        *out_events = 0;
    return rc;
}

int sl_sqlite_case_reopen(struct sl_store *st, const char *org, const char *uuid, const char *by,
                          int64_t *out_events)
{
    struct sqlite_store *s = from_base(st);
    struct case_ref ref;
    int64_t now = sl_now_ms();
    int rc;
    if (out_events)
        *out_events = 0;
    if (!uuid)
        return SL_EINVAL;
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    rc = case_find(s, org, uuid, &ref);
    if (rc == 0 && !ref.closed)
        rc = SL_EEXIST;
    if (rc == 0) {
        sqlite3_stmt *q = s->mst[MST_CASE_REOPEN];
        sqlite3_bind_int64(q, 1, ref.id);
        sqlite3_bind_int64(q, 2, now);
        rc = sl_sqlite_step_done(s, q, "reopening a case");
    }
    if (rc == 0)
        rc = case_events_set(s, MST_CASE_EVENTS_REOPEN, ref.id, now, out_events);
    rc = finish(s, rc);
    if (rc == 0)
        SL_DEBUG("store: case %s reopened by %s", uuid, by ? by : "-");
    else if (out_events)
        *out_events = 0;
    return rc;
}

/* ---- deleting ---- */

/* Releases up to RELEASE_CHUNK events of deleted case case_id inside the caller's write
 * transaction, and forgets the case once none is left (*out_more = 0). */
static int release_chunk(struct sqlite_store *s, int64_t case_id, int64_t *out_n, int *out_more)
{
    sqlite3_stmt *q = s->mst[MST_CASE_RELEASE];
    char now[25];
    sl_time_format(sl_now_ms(), now);
    sqlite3_bind_int64(q, 1, case_id);
    sqlite3_bind_int(q, 2, RELEASE_CHUNK);
    sqlite3_bind_text(q, 3, now, -1, SQLITE_STATIC);
    int rc = sl_sqlite_step_done(s, q, "releasing a deleted case's events");
    if (rc)
        return rc;
    *out_n = sqlite3_changes64(s->db);
    *out_more = *out_n == RELEASE_CHUNK;
    if (*out_more)
        return 0;
    sqlite3_bind_int64(s->mst[MST_RELEASE_DONE], 1, case_id);
    return sl_sqlite_step_done(s, s->mst[MST_RELEASE_DONE], "forgetting a deleted case");
}

/* Releases the remaining events of deleted case case_id, one transaction per chunk. */
static int release_rest(struct sqlite_store *s, int64_t case_id, int64_t *out_n)
{
    int more = 1, rc = 0;
    while (rc == 0 && more) {
        int64_t n = 0;
        if ((rc = sl_sqlite_begin(s, 1)))
            break;
        rc = finish(s, release_chunk(s, case_id, &n, &more));
        if (rc == 0)
            *out_n += n;
    }
    return rc;
}

int sl_sqlite_case_release_pending(struct sqlite_store *s)
{
    for (;;) {
        int64_t case_id = 0, n = 0;
        int rc = step_int(s, s->mst[MST_RELEASE_NEXT], &case_id, "reading deleted cases");
        if (rc == SL_ENOTFOUND)
            return 0;
        if (rc == 0)
            rc = release_rest(s, case_id, &n);
        if (rc) {
            SL_WARN("store: the events of deleted case %" PRId64 " are not all released yet: %s",
                    case_id, sl_strerror(rc));
            return rc;
        }
        SL_INFO("store: released %" PRId64 " events of deleted case %" PRId64, n, case_id);
    }
}

/* The first transaction of case_delete: the case and its comments go, its id is recorded in
 * case_releases, and the first chunk of its events is released. */
static int delete_case_row(struct sqlite_store *s, const struct case_ref *ref, int64_t *out_n,
                           int *out_more)
{
    sqlite3_bind_int64(s->mst[MST_COMMENTS_CLEAR], 1, ref->id);
    int rc = sl_sqlite_step_done(s, s->mst[MST_COMMENTS_CLEAR], "deleting a case's comments");
    if (rc == 0) {
        sqlite3_bind_int64(s->mst[MST_CASE_DELETE], 1, ref->id);
        rc = sl_sqlite_step_done(s, s->mst[MST_CASE_DELETE], "deleting a case");
    }
    if (rc == 0) {
        sqlite3_stmt *q = s->mst[MST_RELEASE_PUT];
        sqlite3_bind_int64(q, 1, ref->id);
        sqlite3_bind_int64(q, 2, sl_now_ms());
        rc = sl_sqlite_step_done(s, q, "recording a deleted case");
    }
    if (rc == 0)
        rc = release_chunk(s, ref->id, out_n, out_more);
    return rc;
}

int sl_sqlite_case_delete(struct sl_store *st, const char *org, const char *uuid,
                          int64_t *out_events)
{
    struct sqlite_store *s = from_base(st);
    struct case_ref ref;
    int64_t n = 0;
    int more = 0, rc;
    if (out_events)
        *out_events = 0;
    if (!uuid)
        return SL_EINVAL;
    /* An earlier deletion a crash interrupted goes first, so releases never pile up. */
    if ((rc = sl_sqlite_case_release_pending(s)))
        return rc;
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    rc = case_find(s, org, uuid, &ref);
    if (rc == 0)
        rc = delete_case_row(s, &ref, &n, &more);
    if ((rc = finish(s, rc)))
        return rc;
    /* The case is gone for every reader now; what is left is releasing its events. */
    if (more && (rc = release_rest(s, ref.id, &n)))
        SL_WARN("store: case %s deleted; releasing its events stopped after %" PRId64
                " (%s), the rest follow when the store is next opened",
                uuid, n, sl_strerror(rc));
    if (out_events)
        *out_events = n;
    return 0;
}

/* ---- reading ---- */

/* The number of distinct (value, data_type) observables of case case_id's events. */
static int observable_count(struct sqlite_store *s, int64_t case_id, int64_t *out)
{
    sqlite3_stmt *q = s->mst[MST_CASE_OBS_COUNT];
    sqlite3_bind_int64(q, 1, case_id);
    return step_int(s, q, out, "counting a case's observables");
}

/* case_get inside its read transaction. */
static int get_in(struct sqlite_store *s, const char *org, const char *uuid,
                  struct sl_sqlite_buf *b)
{
    struct case_ref ref;
    int64_t obs = 0, events = 0;
    int rc = case_find(s, org, uuid, &ref);
    if (rc == 0) {
        sqlite3_stmt *q = s->mst[MST_CASE_EVENT_COUNT];
        sqlite3_bind_int64(q, 1, ref.id);
        rc = step_int(s, q, &events, "counting a case's events");
    }
    if (rc == 0 && events > OBS_COUNT_EVENTS_MAX)
        obs = OBS_UNCOUNTED;
    else if (rc == 0)
        rc = observable_count(s, ref.id, &obs);
    if (rc)
        return rc;
    sqlite3_stmt *q = s->mst[MST_CASE_GET];
    sqlite3_bind_int64(q, 1, ref.id);
    rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        rc = case_doc(q, obs, b);
    else
        rc = rc == SQLITE_DONE ? SL_ENOTFOUND : sl_sqlite_fail(s, rc, "reading a case");
    sl_sqlite_done(q);
    return rc;
}

int sl_sqlite_case_get(struct sl_store *st, const char *org, const char *uuid, char **out_doc)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = DOC_MAX};
    int rc;
    if (!out_doc || !uuid)
        return SL_EINVAL;
    *out_doc = NULL;
    /* One snapshot: the case, its count of events and of observables agree. */
    if ((rc = sl_sqlite_begin(s, 0)))
        return rc;
    rc = finish(s, get_in(s, org, uuid, &b));
    if (rc) {
        free(b.p);
        return rc;
    }
    *out_doc = b.p;
    return 0;
}

/* Steps q and writes its rows to b as a JSON array, row() appending one element per row; q is
 * reset afterwards. Every list this file answers is written through it. */
static int rows_array(struct sqlite_store *s, sqlite3_stmt *q, struct sl_sqlite_buf *b,
                      const char *what,
                      int (*row)(sqlite3_stmt *q, struct sl_sqlite_buf *b, const void *ud),
                      const void *ud)
{
    int rc = sl_sqlite_buf_put(b, "[", 1), src = SQLITE_DONE, n = 0;
    while (rc == 0 && (src = sqlite3_step(q)) == SQLITE_ROW) {
        if (n++ > 0)
            rc = sl_sqlite_buf_put(b, ",", 1);
        if (rc == 0)
            rc = row(q, b, ud);
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = sl_sqlite_fail(s, src, what);
    sl_sqlite_done(q);
    return rc ? rc : sl_sqlite_buf_put(b, "]", 1);
}

/* Column 0 as a JSON string. */
static int string_row(sqlite3_stmt *q, struct sl_sqlite_buf *b, const void *ud)
{
    (void)ud;
    return sl_sqlite_buf_json_str(b, (const char *)sqlite3_column_text(q, 0),
                                  (size_t)sqlite3_column_bytes(q, 0));
}

/* Column 0, a stored JSON document, as it is. */
static int doc_row(sqlite3_stmt *q, struct sl_sqlite_buf *b, const void *ud)
{
    (void)ud;
    return sl_sqlite_buf_put(b, (const char *)sqlite3_column_text(q, 0),
                             (size_t)sqlite3_column_bytes(q, 0));
}

/* A row of CASE_COLS as a case document without observable_count. */
static int case_row(sqlite3_stmt *q, struct sl_sqlite_buf *b, const void *ud)
{
    (void)ud;
    return case_doc(q, -1, b);
}

int sl_sqlite_case_events(struct sl_store *st, const char *case_uuid, char **out_json)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = LIST_MAX};
    struct case_ref ref;
    int rc;
    if (!out_json || !case_uuid)
        return SL_EINVAL;
    *out_json = NULL;
    if ((rc = sl_sqlite_begin(s, 0)))
        return rc;
    rc = case_lookup(s, case_uuid, &ref);
    if (rc == 0) {
        sqlite3_bind_int64(s->mst[MST_CASE_EVENTS], 1, ref.id);
        rc =
            rows_array(s, s->mst[MST_CASE_EVENTS], &b, "reading a case's events", string_row, NULL);
    }
    if ((rc = finish(s, rc))) {
        free(b.p);
        return rc;
    }
    *out_json = b.p;
    return 0;
}

/* One page of a case's event documents, through the partial index events_case: the count and
 * the page are one snapshot, and no more than the page is read. */
int sl_sqlite_case_event_docs(struct sl_store *st, const char *org, const char *case_uuid,
                              int64_t offset, size_t limit, char **out_json, int64_t *out_total)
{
    static const char count_sql[] = "SELECT count(*) FROM events WHERE case_id = ?1";
    static const char page_sql[] =
        "SELECT doc FROM events WHERE case_id = ?1 ORDER BY seq LIMIT ?2 OFFSET ?3";
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = LIST_MAX};
    sqlite3_stmt *count = NULL, *page = NULL;
    struct case_ref ref;
    int rc, src = SQLITE_DONE;
    if (!out_json || !out_total || !case_uuid || offset < 0 || limit < 1 || limit > 1000)
        return SL_EINVAL;
    *out_json = NULL;
    if ((rc = sl_sqlite_begin(s, 0)))
        return rc;
    rc = case_find(s, org, case_uuid, &ref);
    if (rc == 0 && ((src = sqlite3_prepare_v2(s->db, count_sql, -1, &count, NULL)) != SQLITE_OK ||
                    (src = sqlite3_prepare_v2(s->db, page_sql, -1, &page, NULL)) != SQLITE_OK))
        rc = sl_sqlite_fail(s, src, "preparing a case's events");
    if (rc == 0) {
        sqlite3_bind_int64(count, 1, ref.id);
        rc = step_int(s, count, out_total, "counting a case's events");
    }
    if (rc == 0) {
        sqlite3_bind_int64(page, 1, ref.id);
        sqlite3_bind_int64(page, 2, (int64_t)limit);
        sqlite3_bind_int64(page, 3, offset);
        rc = rows_array(s, page, &b, "reading a case's events", doc_row, NULL);
    }
    sqlite3_finalize(count);
    sqlite3_finalize(page);
    if ((rc = finish(s, rc))) {
        free(b.p);
        return rc;
    }
    *out_json = b.p;
    return 0;
}

/* Binds the filter of a case list statement (?1 the organization's row id or NULL). */
static void bind_case_filter(sqlite3_stmt *q, const struct sl_case_filter *f, int64_t org_id)
{
    if (org_id)
        sqlite3_bind_int64(q, 1, org_id);
    sl_sqlite_bind_opt_text(q, 2, f->status && *f->status ? f->status : NULL);
    sl_sqlite_bind_opt_text(q, 3, f->title && *f->title ? f->title : NULL);
    sl_sqlite_bind_opt_text(q, 4, f->tag && *f->tag ? f->tag : NULL);
    sl_sqlite_bind_opt_text(q, 5, f->owner && *f->owner ? f->owner : NULL);
    sqlite3_bind_int(q, 6, f->severity);
}

/* case_list inside its read transaction. */
static int list_in(struct sqlite_store *s, const struct sl_case_filter *f, int64_t org_id,
                   struct sl_sqlite_buf *b, int64_t *out_total)
{
    sqlite3_stmt *count = s->mst[org_id ? MST_CASE_COUNT_ORG : MST_CASE_COUNT_ALL];
    sqlite3_stmt *q = s->mst[org_id ? MST_CASE_LIST_ORG : MST_CASE_LIST_ALL];
    bind_case_filter(count, f, org_id);
    int rc = step_int(s, count, out_total, "counting cases");
    if (rc)
        return rc;
    bind_case_filter(q, f, org_id);
    sqlite3_bind_int64(q, 7, f->page_size);
    sqlite3_bind_int64(q, 8, (f->page - 1) * f->page_size);
    return rows_array(s, q, b, "listing cases", case_row, NULL);
}

int sl_sqlite_case_list(struct sl_store *st, const struct sl_case_filter *f, char **out_json,
                        int64_t *out_total)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = LIST_MAX};
    int64_t org_id = 0, total = 0;
    int rc;
    if (!out_json)
        return SL_EINVAL;
    *out_json = NULL;
    if (out_total)
        *out_total = 0;
    if (!f || f->page < 1 || f->page_size < 1 || f->page_size > PAGE_MAX ||
        f->page - 1 > INT64_MAX / f->page_size)
        return SL_EINVAL;
    if ((rc = sl_sqlite_begin(s, 0)))
        return rc;
    rc = f->org ? sl_sqlite_org_resolve(s, f->org, &org_id) : 0;
    if (rc == SL_ENOTFOUND) /* no such organization: it has no cases */
        rc = sl_sqlite_buf_put(&b, "[]", 2);
    else if (rc == 0)
        rc = list_in(s, f, org_id, &b, &total);
    if ((rc = finish(s, rc))) {
        free(b.p);
        return rc;
    }
    *out_json = b.p;
    if (out_total)
        *out_total = total;
    return 0;
}

/* A row of MST_CASE_OBSERVABLES as {"value","data_type","events"}. */
static int observable_row(sqlite3_stmt *q, struct sl_sqlite_buf *b, const void *ud)
{
    (void)ud;
    int rc = sl_sqlite_buf_put(b, "{", 1);
    if (rc == 0)
        rc = put_col(b, "value", q, 0, 1);
    if (rc == 0)
        rc = put_col(b, "data_type", q, 1, 0);
    if (rc == 0)
        rc = put_int(b, "events", sqlite3_column_int64(q, 2));
    return rc ? rc : sl_sqlite_buf_put(b, "}", 1);
}

int sl_sqlite_case_observables(struct sl_store *st, const char *org, const char *uuid, size_t limit,
                               char **out_json)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = LIST_MAX};
    struct case_ref ref;
    int rc;
    if (!out_json)
        return SL_EINVAL;
    *out_json = NULL;
    if (!uuid || limit < 1 || limit > OBSERVABLES_MAX)
        return SL_EINVAL;
    if ((rc = sl_sqlite_begin(s, 0)))
        return rc;
    rc = case_find(s, org, uuid, &ref);
    if (rc == 0) {
        sqlite3_stmt *q = s->mst[MST_CASE_OBSERVABLES];
        sqlite3_bind_int64(q, 1, ref.id);
        sqlite3_bind_int64(q, 2, (int64_t)limit);
        sl_sqlite_deadline_start(s); /* a case of millions of events: SL_ETIMEDOUT, not hours */
        rc = rows_array(s, q, &b, "reading a case's observables", observable_row, NULL);
        sl_sqlite_deadline_stop(s);
    }
    if ((rc = finish(s, rc))) {
        free(b.p);
        return rc;
    }
    *out_json = b.p;
    return 0;
}

/* ---- comments ---- */

/* Appends a comment {"uuid","case","author","text","created_at"}. */
static int comment_doc(struct sl_sqlite_buf *b, const char *uuid, const char *case_uuid,
                       const char *author, const char *text, int64_t created_ms)
{
    int rc = sl_sqlite_buf_put(b, "{", 1);
    if (rc == 0)
        rc = put_key(b, "uuid", 1);
    if (rc == 0)
        rc = sl_sqlite_buf_json_str(b, uuid, strlen(uuid));
    if (rc == 0)
        rc = put_key(b, "case", 0);
    if (rc == 0)
        rc = sl_sqlite_buf_json_str(b, case_uuid, strlen(case_uuid));
    if (rc == 0)
        rc = put_key(b, "author", 0);
    if (rc == 0)
        rc = sl_sqlite_buf_json_str(b, author, strlen(author));
    if (rc == 0)
        rc = put_key(b, "text", 0);
    if (rc == 0)
        rc = sl_sqlite_buf_json_str(b, text, strlen(text));
    if (rc == 0)
        rc = put_time(b, "created_at", created_ms, 0);
    if (rc == 0)
        rc = sl_sqlite_buf_put(b, "}", 1);
    return rc;
}

int sl_sqlite_case_comment_add(struct sl_store *st, const char *org, const char *case_uuid,
                               const char *author, const char *text, char **out_doc)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = DOC_MAX};
    char uuid[SL_UUID_LEN + 1], lower[SL_UUID_LEN + 1];
    struct case_ref ref;
    int64_t now = sl_now_ms();
    int rc;
    if (out_doc)
        *out_doc = NULL;
    if (!case_uuid || !author || !text || !sl_sqlite_name_valid(author, OWNER_MAX) ||
        !text_valid(text, 1, SL_CASE_TEXT_MAX))
        return SL_EINVAL;
    sl_uuid4(uuid);
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    rc = case_find(s, org, case_uuid, &ref);
    if (rc == 0) {
        sqlite3_stmt *q = s->mst[MST_COMMENT_ADD];
        sqlite3_bind_text(q, 1, uuid, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, ref.id);
        sqlite3_bind_text(q, 3, author, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, text, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, now);
        rc = sl_sqlite_step_done(s, q, "adding a comment");
    }
    if ((rc = finish(s, rc)))
        return rc;
    if (!out_doc)
        return 0;
    sl_sqlite_uuid_lower(case_uuid, lower);
    if ((rc = comment_doc(&b, uuid, lower, author, text, now))) {
        free(b.p);
        return rc;
    }
    *out_doc = b.p;
    return 0;
}

/* A row of MST_COMMENT_LIST as a comment of case ud (its uuid). */
static int comment_row(sqlite3_stmt *q, struct sl_sqlite_buf *b, const void *ud)
{
    const char *uuid = (const char *)sqlite3_column_text(q, 0);
    const char *author = (const char *)sqlite3_column_text(q, 1);
    const char *text = (const char *)sqlite3_column_text(q, 2);
    return comment_doc(b, uuid ? uuid : "", ud, author ? author : "", text ? text : "",
                       sqlite3_column_int64(q, 3));
}

int sl_sqlite_case_comment_list(struct sl_store *st, const char *org, const char *case_uuid,
                                char **out_json)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = LIST_MAX};
    char lower[SL_UUID_LEN + 1];
    struct case_ref ref;
    int rc;
    if (!out_json || !case_uuid)
        return SL_EINVAL;
    *out_json = NULL;
    if ((rc = sl_sqlite_begin(s, 0)))
        return rc;
    rc = case_find(s, org, case_uuid, &ref);
    if (rc == 0) {
        sl_sqlite_uuid_lower(case_uuid, lower);
        sqlite3_bind_int64(s->mst[MST_COMMENT_LIST], 1, ref.id);
        rc = rows_array(s, s->mst[MST_COMMENT_LIST], &b, "reading a case's comments", comment_row,
                        lower);
    }
    if ((rc = finish(s, rc))) {
        free(b.p);
        return rc;
    }
    *out_json = b.p;
    return 0;
}

int sl_sqlite_case_comment_delete(struct sl_store *st, const char *org, const char *case_uuid,
                                  const char *comment_uuid)
{
    struct sqlite_store *s = from_base(st);
    char lower[SL_UUID_LEN + 1];
    struct case_ref ref;
    int rc;
    if (!case_uuid || !comment_uuid)
        return SL_EINVAL;
    if (!sl_uuid_valid(comment_uuid))
        return SL_ENOTFOUND;
    sl_sqlite_uuid_lower(comment_uuid, lower);
    if ((rc = sl_sqlite_begin(s, 1)))
        return rc;
    rc = case_find(s, org, case_uuid, &ref);
    if (rc == 0) {
        sqlite3_stmt *q = s->mst[MST_COMMENT_DELETE];
        sqlite3_bind_text(q, 1, lower, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, ref.id);
        rc = sl_sqlite_step_done(s, q, "deleting a comment");
        if (rc == 0 && sqlite3_changes(s->db) == 0)
            rc = SL_ENOTFOUND;
    }
    return finish(s, rc);
}
