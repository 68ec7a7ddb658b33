/* What an analyst does with stored events, on the SQLite store: the Event Queue's cards (one per
 * signature) and stats buckets, and selections of events with the actions taken on them
 * (dismiss, acknowledge, unacknowledge, reopen, add to a case, delete), their export and the
 * list of their uuids.
 *
 * A selection (struct sl_event_selection) has up to three parts, called phases here:
 * - E: the explicit uuids, resolved through the dedup keys (sl_sqlite_event_find) in sel->org;
 *   a uuid that is not an event of the organization is passed over;
 * - F: the events matching the filter (the WHERE of event_list), in seq order;
 * - R: the related events: New or Acknowledged events of the organization whose signature is
 *   one of S, the signatures of E and F, in seq order.
 * The phases are disjoint (R leaves out E and F, F leaves out E), so an event is looked at
 * once, however many parts select it.
 *
 * Cursor. An action or an export runs in calls of at most `limit` events, each its own
 * transaction, resumed from a 64-bit cursor (kept in the task between calls, so a restart
 * resumes too): cursor = (phase << 56) | pos, phase 1 = E, 2 = R, 3 = F. In E, pos is the index
 * of the next explicit uuid; in R and F, every event with seq <= pos is done. 0 is the start
 * (the first phase, pos 0); a finished phase moves the cursor to (next phase, 0); the end is 0
 * with more = 0. The phases run in the order E, R, F, except for delete with related events:
 * R, F, E. The order matters because R is paged over several calls and S must be the same at
 * each of them. No action changes a signature except delete (a tombstone has none), and the
 * events R acts on are in neither E nor F, so during R, E and F are what they were at the start
 * (only R's own events may join F, and their signatures are in S already). F is evaluated
 * afresh at each call, so F's own changes (dismissing what "status=New" matched takes it out
 * of the filter) must come after R. E keeps its signatures across E's own changes, except
 * under delete, which is why delete takes E last. Otherwise E comes first, so a selection of
 * at most `limit` explicit uuids is done by the first call.
 *
 * Bounded calls. R and F are paged in seq order by one of two plans (as event_scan's): the
 * organization's entries of events_org_date when it has at most ACT_WINDOW events (each call
 * reads at most that many rows), else the table in seq order, one window of ACT_WINDOW seqs per
 * phase and call (a call may then look at no event yet return more = 1). Selections also run
 * under event_list's read deadline (SL_ETIMEDOUT), so an action never holds the write lock
 * longer than that while it searches; R's S reads every match of the filter at each call.
 *
 * Delete keeps the row as a tombstone: organization 0, document '{}', no title, signature,
 * status or case, so the dedup key still leads to the uuid (a resend is a duplicate, and a
 * probe chain keeps no hole) while no reader sees it: every read names an organization (ids
 * start at 1), event_get passes over a slot of another organization, the scan of all
 * organizations skips organization 0, event_update skips a tombstone, and event_counts is
 * decremented in the same transaction. */
#include "store/store_sqlite_int.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define STATS_TOP_MAX 1000
#define ACT_LIMIT_MAX 5000   /* events per event_act / event_export call */
#define IDS_MAX       100000 /* uuids of event_select_ids */
#define IDS_CHUNK     5000
#define ACT_WINDOW    65536 /* rows one call of a paged phase reads at most (see the header) */
#define PHASE_SHIFT   56
#define POS_MASK      ((INT64_C(1) << PHASE_SHIFT) - 1)

/* ---- SQL ---- */

/* Cards: the signatures of the page, then each one's newest matching event, read through
 * events_org_date with the filter's date range narrowed to that event's date (?2 = ?3). */
#define GROUP_FROM " FROM events" SL_SQLITE_LIST_WHERE " AND signature IS NOT NULL"
static const char group_count_sql[] = "SELECT count(DISTINCT signature)" GROUP_FROM;
static const char group_desc_sql[] =
    "SELECT signature, count(*), max(original_date_ms) AS newest" GROUP_FROM
    " GROUP BY signature ORDER BY newest DESC, signature DESC LIMIT ?18 OFFSET ?19";
static const char group_asc_sql[] =
    "SELECT signature, count(*), max(original_date_ms) AS newest" GROUP_FROM
    " GROUP BY signature ORDER BY newest ASC, signature ASC LIMIT ?18 OFFSET ?19";
static const char group_doc_sql[] =
    "SELECT doc FROM events" SL_SQLITE_LIST_WHERE " AND signature = ?18 ORDER BY seq DESC LIMIT 1";

/* Stats: one pass over the matching events. The columns give title, status, severity and
 * signature; one json_extract with four paths parses each document once and hands back only
 * what the array buckets need, counted in C (see stats_event). */
static const char stats_sql[] =
    "SELECT title, status, severity, signature,"
    " json_extract(doc, '$.source', '$.tags', '$.observables', '$.event_rules')"
    " FROM events" SL_SQLITE_LIST_WHERE;
static const char *const stats_names[] = {"title",     "observable", "source",
                                          "tag",       "status",     "severity",
                                          "data_type", "event_rule", "signature"};

/* Paged phases: ?1..?17 the filter, ?18 < seq <= ?19, ?20 whether there is a filter, ?21 the
 * explicit events' seqs (a JSON array), ?22 the limit. */
#define PLAN_INDEX " INDEXED BY events_org_date"
#define PLAN_SEQ   " NOT INDEXED"
#define PAGE_TAIL                                                                                  \
    " AND seq > ?18 AND seq <= ?19 AND seq NOT IN (SELECT value FROM json_each(?21))"              \
    " ORDER BY seq LIMIT ?22"
#define FILTER_SQL(plan) "SELECT seq FROM events" plan SL_SQLITE_LIST_WHERE PAGE_TAIL
#define RELATED_SQL(plan)                                                                          \
    "SELECT seq FROM events" plan " WHERE org_id = (SELECT id FROM orgs WHERE uuid = ?1)"          \
    " AND status IN ('New', 'Acknowledged')"                                                       \
    " AND (?20 = 0 OR coalesce((" SL_SQLITE_LIST_COND "), 0) = 0)"                                 \
    " AND signature IN (SELECT signature FROM events"                                              \
    " WHERE seq IN (SELECT value FROM json_each(?21))"                                             \
    " UNION SELECT signature FROM events" SL_SQLITE_LIST_WHERE " AND ?20 = 1)" PAGE_TAIL
static const char *const page_sql[2][2] = {
    {RELATED_SQL(PLAN_SEQ), RELATED_SQL(PLAN_INDEX)},
    {FILTER_SQL(PLAN_SEQ), FILTER_SQL(PLAN_INDEX)},
};
static const char plan_sql[] = "SELECT coalesce((SELECT n FROM event_counts WHERE org_id = ?1), 0),"
                               " (SELECT coalesce(max(seq), 0) FROM events)";
static const char row_uuid_sql[] = "SELECT uuid FROM events WHERE seq = ?1";
static const char row_doc_sql[] = "SELECT doc FROM events WHERE seq = ?1 AND org_id = ?2";

/* Actions: ?1 seq, ?2 org id, ?3 now (ISO), ?4 by, ?5 now (ms), ?6 reason, ?7 reason uuid,
 * ?8 comment, ?9 case id, ?10 case uuid, ?11 the case is closed. Each changes the row only
 * when the action applies to it, so a repeated call changes nothing. */
#define DISMISS_FIELDS                                                                             \
    "'$.dismiss_reason', '$.dismiss_reason_uuid', '$.dismiss_comment', '$.dismissed_at',"          \
    " '$.dismissed_by', '$.time_to_dismiss', '$.dismissed_by_rule'"
#define ACT_ROW       " WHERE seq = ?1 AND org_id = ?2"
#define CASE_STATUS   "CASE WHEN ?11 THEN 'Closed' ELSE 'Open' END"
#define REOPEN_STATUS "CASE WHEN case_id IS NULL THEN 'New' ELSE 'Open' END"
/* The document's status objects. */
#define JSON_DISMISSED "json_object('name', 'Dismissed', 'closed', json('true'))"
#define JSON_ACK       "json_object('name', 'Acknowledged', 'closed', json('false'))"
#define JSON_NEW       "json_object('name', 'New', 'closed', json('false'))"
#define JSON_REOPEN    "json_object('name', " REOPEN_STATUS ", 'closed', json('false'))"
#define JSON_CASE                                                                                  \
    "json_object('name', " CASE_STATUS ", 'closed', json(CASE WHEN ?11 THEN 'true' ELSE 'false'"   \
    " END))"
/* Not in a case (by the column or the document) and not closed. */
#define DISMISSABLE                                                                                \
    " AND case_id IS NULL AND coalesce(json_type(doc, '$.case'), 'null') = 'null'"                 \
    " AND coalesce(json_extract(doc, '$.status.closed'), 0) = 0"                                   \
    " AND coalesce(status, '') NOT IN ('Dismissed', 'Closed')"
static const char act_dismiss_sql[] =
    "UPDATE events SET status = 'Dismissed', doc = json_set(doc, '$.status', " JSON_DISMISSED
    ", '$.dismiss_reason', ?6, '$.dismiss_reason_uuid', ?7, '$.dismiss_comment', ?8,"
    " '$.dismissed_at', ?3, '$.dismissed_by', ?4,"
    " '$.time_to_dismiss', max(0, round((?5 - created_ms) / 1000.0, 3)),"
    " '$.updated_at', ?3)" ACT_ROW DISMISSABLE;
static const char act_ack_sql[] =
    "UPDATE events SET status = 'Acknowledged', doc = json_set(doc, '$.status', " JSON_ACK
    ", '$.acknowledged_at', ?3, '$.acknowledged_by', ?4, '$.updated_at', ?3)" ACT_ROW
    " AND status = 'New'";
static const char act_unack_sql[] =
    "UPDATE events SET status = 'New',"
    " doc = json_set(json_remove(doc, '$.acknowledged_at', '$.acknowledged_by'),"
    " '$.status', " JSON_NEW ", '$.updated_at', ?3)" ACT_ROW " AND status = 'Acknowledged'";
/* An event dismissed while in a case (a rule may do both) goes back to Open, not New. */
static const char act_reopen_sql[] =
    "UPDATE events SET status = " REOPEN_STATUS ", doc = json_set(json_remove(doc, " DISMISS_FIELDS
    "), '$.status', " JSON_REOPEN ", '$.updated_at', ?3)" ACT_ROW " AND status = 'Dismissed'";
/* Joining a case ends a dismissal: its fields go. An event of another case moves. */
static const char act_case_sql[] =
    "UPDATE events SET case_id = ?9, status = " CASE_STATUS
    ", doc = json_set(json_remove(doc, " DISMISS_FIELDS "), '$.case', ?10,"
    " '$.status', " JSON_CASE ", '$.updated_at', ?3)" ACT_ROW
    " AND (case_id IS NOT ?9 OR status IS NOT " CASE_STATUS
    " OR json_extract(doc, '$.case') IS NOT ?10)";
/* The tombstone (see the file header): the uuid, reference and dates stay, for the dedup key. */
static const char act_delete_sql[] =
    "UPDATE events SET org_id = 0, doc = '{}', title = NULL, signature = NULL, status = NULL,"
    " case_id = NULL" ACT_ROW;
static const char *const act_sql[] = {
    [SL_ACT_DISMISS] = act_dismiss_sql,  [SL_ACT_ACK] = act_ack_sql,
    [SL_ACT_UNACK] = act_unack_sql,      [SL_ACT_REOPEN] = act_reopen_sql,
    [SL_ACT_ADD_TO_CASE] = act_case_sql, [SL_ACT_DELETE] = act_delete_sql,
};

/* ---- helpers ---- */

static struct sqlite_store *from_base(struct sl_store *st)
{
    return (struct sqlite_store *)st;
}

static int prep(struct sqlite_store *s, const char *sql, sqlite3_stmt **out)
{
    int rc = sqlite3_prepare_v2(s->db, sql, -1, out, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(*out);
        *out = NULL;
        return sl_sqlite_fail(s, rc, "preparing an event query");
    }
    return 0;
}

/* Ends a read transaction (and its deadline); rc is the result so far. */
static int read_end(struct sqlite_store *s, int rc)
{
    sl_sqlite_deadline_stop(s);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc)
        sl_sqlite_rollback(s);
    return rc;
}

/* Whether f may select events (page ignored): an organization and 0..8 severities. */
static int filter_usable(const struct sl_event_filter *f)
{
    return f && f->org && f->nseverities >= 0 && f->nseverities <= 8;
}

static int put_str(struct sl_sqlite_buf *b, const char *s)
{
    return sl_sqlite_buf_put(b, s, strlen(s));
}

static int put_i64(struct sl_sqlite_buf *b, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", (long long)v);
    return sl_sqlite_buf_put(b, num, (size_t)n);
}

/* ---- cards ---- */

/* Appends the card of one signature row of the page statement q. */
static int group_card(struct sqlite_store *s, sqlite3_stmt *q, sqlite3_stmt *docq,
                      const struct sl_event_filter *f, struct sl_sqlite_buf *b)
{
    const char *sig = (const char *)sqlite3_column_text(q, 0);
    size_t siglen = (size_t)sqlite3_column_bytes(q, 0);
    int rc = put_str(b, "{\"signature\":");
    if (rc == 0)
        rc = sl_sqlite_buf_json_str(b, sig, siglen);
    if (rc == 0)
        rc = put_str(b, ",\"occurrences\":");
    if (rc == 0)
        rc = put_i64(b, sqlite3_column_int64(q, 1));
    if (rc == 0)
        rc = put_str(b, ",\"event\":");
    if (rc)
        return rc;
    sl_sqlite_bind_filter(docq, f);
    sqlite3_bind_int64(docq, 2, sqlite3_column_int64(q, 2));
    sqlite3_bind_int64(docq, 3, sqlite3_column_int64(q, 2));
    sqlite3_bind_text(docq, 18, sig, (int)siglen, SQLITE_STATIC);
    int src = sqlite3_step(docq);
    if (src == SQLITE_ROW) {
        const char *doc = (const char *)sqlite3_column_text(docq, 0);
        rc = sl_sqlite_buf_put(b, doc ? doc : "null",
                               doc ? (size_t)sqlite3_column_bytes(docq, 0) : 4);
    } else if (src == SQLITE_DONE) {
        rc = put_str(b, "null"); /* not in the same snapshot: cannot happen */
    } else {
        rc = sl_sqlite_fail(s, src, "reading a card's event");
    }
    sl_sqlite_done(docq);
    return rc ? rc : put_str(b, "}");
}

static int group_page(struct sqlite_store *s, const struct sl_event_filter *f, sqlite3_stmt *q,
                      sqlite3_stmt *docq, struct sl_sqlite_buf *b)
{
    int rc = put_str(b, "["), src = SQLITE_DONE, first = 1;
    sl_sqlite_bind_filter(q, f);
    sqlite3_bind_int64(q, 18, f->page_size);
    sqlite3_bind_int64(q, 19, (f->page - 1) * f->page_size);
    while (rc == 0 && (src = sqlite3_step(q)) == SQLITE_ROW) {
        if (!first)
            rc = put_str(b, ",");
        if (rc == 0)
            rc = group_card(s, q, docq, f, b);
        first = 0;
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = sl_sqlite_fail(s, src, "grouping events");
    sl_sqlite_done(q);
    return rc ? rc : put_str(b, "]");
}

int sl_sqlite_event_grouped(struct sl_store *st, const struct sl_event_filter *f, char **out_json,
                            int64_t *out_total)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = s->list_max_bytes};
    sqlite3_stmt *count = NULL, *page = NULL, *docq = NULL;
    int rc;
    if (!out_json || !out_total)
        return SL_EINVAL;
    *out_json = NULL;
    if (!sl_sqlite_filter_valid(f))
        return SL_EINVAL;
    if ((rc = prep(s, group_count_sql, &count)) ||
        (rc = prep(s, f->sort_asc ? group_asc_sql : group_desc_sql, &page)) ||
        (rc = prep(s, group_doc_sql, &docq)) || (rc = sl_sqlite_begin(s, 0)))
        goto out;
    /* One read transaction: the number of signatures and the page from one snapshot. */
    sl_sqlite_deadline_start(s);
    sl_sqlite_bind_filter(count, f);
    int src = sqlite3_step(count);
    if (src == SQLITE_ROW)
        *out_total = sqlite3_column_int64(count, 0);
    else
        rc = sl_sqlite_fail(s, src, "counting signatures");
    sl_sqlite_done(count);
    if (rc == 0)
        rc = group_page(s, f, page, docq, &b);
    rc = read_end(s, rc);
out:
    sqlite3_finalize(count);
    sqlite3_finalize(page);
    sqlite3_finalize(docq);
    if (rc) {
        free(b.p);
        return rc;
    }
    *out_json = b.p;
    return 0;
}

/* ---- stats ---- */

#define STATS_N        (sizeof(stats_names) / sizeof(stats_names[0]))
#define STATS_KEYS_MAX (1u << 20) /* distinct values counted per bucket; later new ones are not */
#define STATS_BYTES_MAX                                                                            \
    ((size_t)64 << 20)       /* bytes of distinct values kept per bucket, likewise                 \
                              */
#define STATS_EVENT_MAX 1000 /* values of one array bucket deduplicated per event */

enum {
    SB_TITLE,
    SB_OBSERVABLE,
    SB_SOURCE,
    SB_TAG,
    SB_STATUS,
    SB_SEVERITY,
    SB_DATA_TYPE,
    SB_RULE,
    SB_SIGNATURE
};

struct stats_slot {
    char *key; /* malloc'd; NULL: free slot */
    size_t len;
    int64_t n;
};

/* Counts per value of one bucket: open addressing, doubled at 3/4 full. */
struct stats_map {
    struct stats_slot *v;
    size_t cap, len;
    size_t bytes; /* of the keys held */
};

static uint64_t stats_hash(const char *k, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    return h;
}

static int stats_grow(struct stats_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 256;
    struct stats_slot *nv = calloc(ncap, sizeof(*nv));
    if (!nv)
        return SL_ENOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->v[i].key)
            continue;
        size_t j = stats_hash(m->v[i].key, m->v[i].len) & (ncap - 1);
        while (nv[j].key)
            j = (j + 1) & (ncap - 1);
        nv[j] = m->v[i];
    }
    free(m->v);
    m->v = nv;
    m->cap = ncap;
    return 0;
}

static int stats_add(struct stats_map *m, const char *k, size_t len)
{
    if (m->len + 1 > m->cap / 4 * 3 && m->len < STATS_KEYS_MAX && stats_grow(m))
        return SL_ENOMEM;
    size_t j = stats_hash(k, len) & (m->cap - 1);
    while (m->v[j].key) {
        if (m->v[j].len == len && !memcmp(m->v[j].key, k, len)) {
            m->v[j].n++;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (m->len >= STATS_KEYS_MAX || m->bytes + len > STATS_BYTES_MAX)
        return 0; /* bounded memory: a value first seen past the bounds is not counted */
    char *c = malloc(len + 1);
    if (!c)
        return SL_ENOMEM;
    memcpy(c, k, len);
    c[len] = 0;
    m->v[j] = (struct stats_slot){c, len, 1};
    m->len++;
    m->bytes += len;
    return 0;
}

static void stats_free(struct stats_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->v[i].key);
    free(m->v);
}

static int stats_cmp(const void *a, const void *b)
{
    const struct stats_slot *x = a, *y = b;
    if (x->n != y->n)
        return x->n > y->n ? -1 : 1;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int stats_col(struct stats_map *m, sqlite3_stmt *q, int col)
{
    const char *v = (const char *)sqlite3_column_text(q, col);
    return v ? stats_add(m, v, (size_t)sqlite3_column_bytes(q, col)) : 0;
}

/* Counts the strings of one event in a bucket, each distinct value once (an event counts once
 * under "ip" however many ip observables it has). */
struct stats_seen {
    const char *v[STATS_EVENT_MAX];
    size_t n;
};

static int stats_once(struct stats_map *m, struct stats_seen *seen, const char *v)
{
    for (size_t i = 0; i < seen->n; i++) {
        if (!strcmp(seen->v[i], v))
            return 0;
    }
    if (seen->n < STATS_EVENT_MAX)
        seen->v[seen->n++] = v;
    return stats_add(m, v, strlen(v));
}

static int stats_strings(struct stats_map *m, const cJSON *arr)
{
    struct stats_seen seen = {.n = 0};
    const cJSON *e;
    int rc = 0;
    cJSON_ArrayForEach(e, arr)
    {
        if (rc == 0 && cJSON_IsString(e))
            rc = stats_once(m, &seen, e->valuestring);
    }
    return rc;
}

/* The array buckets of one event, from [source, tags, observables, event_rules]. */
static int stats_event(struct stats_map *maps, const char *json, size_t len)
{
    cJSON *a = json ? cJSON_ParseWithLength(json, len) : NULL;
    if (!a)
        return json ? SL_ENOMEM : 0; /* the store wrote valid JSON: a failure is memory */
    const cJSON *src = cJSON_GetArrayItem(a, 0), *obs = cJSON_GetArrayItem(a, 2), *o;
    int rc = cJSON_IsString(src)
                 ? stats_add(&maps[SB_SOURCE], src->valuestring, strlen(src->valuestring))
                 : 0;
    if (rc == 0)
        rc = stats_strings(&maps[SB_TAG], cJSON_GetArrayItem(a, 1));
    if (rc == 0)
        rc = stats_strings(&maps[SB_RULE], cJSON_GetArrayItem(a, 3));
    struct stats_seen values = {.n = 0}, types = {.n = 0};
    cJSON_ArrayForEach(o, obs)
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "value");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "data_type");
        if (rc == 0 && cJSON_IsString(v))
            rc = stats_once(&maps[SB_OBSERVABLE], &values, v->valuestring);
        if (rc == 0 && cJSON_IsString(t))
            rc = stats_once(&maps[SB_DATA_TYPE], &types, t->valuestring);
    }
    cJSON_Delete(a);
    return rc;
}

/* Writes the buckets as the JSON object: each its top `top` values, most frequent first. */
static int stats_render(struct stats_map *maps, size_t top, struct sl_sqlite_buf *b)
{
    int rc = put_str(b, "{");
    for (size_t i = 0; rc == 0 && i < STATS_N; i++) {
        struct stats_map *m = &maps[i];
        size_t n = 0;
        for (size_t j = 0; j < m->cap; j++) {
            if (m->v[j].key)
                m->v[n++] = m->v[j]; /* compacts in place: the map is not probed again */
        }
        if (n < m->cap)
            memset(&m->v[n], 0, (m->cap - n) * sizeof(*m->v)); /* no key is held twice */
        if (n > 1)
            qsort(m->v, n, sizeof(*m->v), stats_cmp);
        rc = put_str(b, i ? ",\"" : "\"");
        if (rc == 0)
            rc = put_str(b, stats_names[i]);
        if (rc == 0)
            rc = put_str(b, "\":{");
        for (size_t j = 0; rc == 0 && j < n && j < top; j++) {
            rc = j ? put_str(b, ",") : 0;
            if (rc == 0)
                rc = sl_sqlite_buf_json_str(b, m->v[j].key, m->v[j].len);
            if (rc == 0)
                rc = put_str(b, ":");
            if (rc == 0)
                rc = put_i64(b, m->v[j].n);
        }
        if (rc == 0)
            rc = put_str(b, "}");
    }
    return rc ? rc : put_str(b, "}");
}

static int stats_rows(struct sqlite_store *s, sqlite3_stmt *q, struct stats_map *maps)
{
    int rc = 0, src;
    while (rc == 0 && (src = sqlite3_step(q)) == SQLITE_ROW) {
        rc = stats_col(&maps[SB_TITLE], q, 0);
        if (rc == 0)
            rc = stats_col(&maps[SB_STATUS], q, 1);
        if (rc == 0)
            rc = stats_col(&maps[SB_SEVERITY], q, 2);
        if (rc == 0)
            rc = stats_col(&maps[SB_SIGNATURE], q, 3);
        if (rc == 0)
            rc = stats_event(maps, (const char *)sqlite3_column_text(q, 4),
                             (size_t)sqlite3_column_bytes(q, 4));
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = sl_sqlite_fail(s, src, "counting event stats");
    return rc;
}

int sl_sqlite_event_stats(struct sl_store *st, const struct sl_event_filter *f, size_t top,
                          char **out_json)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = s->list_max_bytes};
    struct stats_map maps[STATS_N];
    sqlite3_stmt *q = NULL;
    int rc;
    if (!out_json)
        return SL_EINVAL;
    *out_json = NULL;
    if (!filter_usable(f) || top < 1 || top > STATS_TOP_MAX)
        return SL_EINVAL;
    memset(maps, 0, sizeof(maps));
    if ((rc = prep(s, stats_sql, &q)) || (rc = sl_sqlite_begin(s, 0)))
        goto out;
    sl_sqlite_deadline_start(s);
    sl_sqlite_bind_filter(q, f);
    rc = stats_rows(s, q, maps);
    sl_sqlite_done(q);
    rc = read_end(s, rc);
    if (rc == 0)
        rc = stats_render(maps, top, &b);
out:
    sqlite3_finalize(q);
    for (size_t i = 0; i < STATS_N; i++)
        stats_free(&maps[i]);
    if (rc) {
        free(b.p);
        return rc;
    }
    *out_json = b.p;
    return 0;
}

/* ---- selections ---- */

enum phase { PH_EXPLICIT = 1, PH_RELATED = 2, PH_FILTER = 3 };

/* One call's walk over a selection (see the file header). */
struct walk {
    struct sqlite_store *s;
    const struct sl_event_selection *sel;
    char org[SL_UUID_LEN + 1]; /* sel->org in lowercase, as orgs.uuid holds it */
    struct sl_event_filter f;  /* sel->filter (on org), or one of org alone */
    int has_filter;
    int64_t org_id;
    unsigned char *skip;       /* per explicit uuid: malformed or a repeat */
    struct sl_sqlite_buf eset; /* the explicit events' seqs as a JSON array (for R and F) */
    enum phase order[3];
    int norder;
    int by_index;       /* the plan of the paged phases */
    int64_t max_seq;    /* the last event stored when the call began */
    sqlite3_stmt *q[2]; /* R and F, prepared when first needed */
    int64_t *page;      /* one page's seqs */
    size_t page_cap;
    int pause; /* take the read deadline off around visits (writes) */
    int (*visit)(void *ud, int64_t seq);
    void *ud;
};

static void phase_order(struct walk *w, int action)
{
    int e = w->sel->nuuids > 0, f = w->has_filter, r = w->sel->include_related && (e || f);
    w->norder = 0;
    if (action == SL_ACT_DELETE && r) {
        w->order[w->norder++] = PH_RELATED;
        if (f)
            w->order[w->norder++] = PH_FILTER;
        if (e)
            w->order[w->norder++] = PH_EXPLICIT;
        return;
    }
    if (e)
        w->order[w->norder++] = PH_EXPLICIT;
    if (r)
        w->order[w->norder++] = PH_RELATED;
    if (f)
        w->order[w->norder++] = PH_FILTER;
}

/* An explicit uuid in canonical form and its index in sel->uuids. */
struct uuid_ix {
    char uuid[SL_UUID_LEN + 1];
    size_t i;
};

static int uuid_ix_cmp(const void *a, const void *b)
{
    const struct uuid_ix *x = a, *y = b;
    int c = strcmp(x->uuid, y->uuid);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* Marks the explicit uuids to pass over: malformed ones and repeats of an earlier one (in any
 * letter case), so each event is visited once, without a lookup. */
static int explicit_dedup(struct walk *w)
{
    size_t n = w->sel->nuuids, m = 0;
    struct uuid_ix *v = malloc(n * sizeof(*v));
    w->skip = calloc(n, 1);
    if (!v || !w->skip) {
        free(v);
        return SL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *u = w->sel->uuids[i];
        if (!u || !sl_uuid_valid(u)) {
            w->skip[i] = 1;
            continue;
        }
        sl_sqlite_uuid_lower(u, v[m].uuid);
        v[m++].i = i;
    }
    qsort(v, m, sizeof(*v), uuid_ix_cmp);
    for (size_t k = 1; k < m; k++)
        if (strcmp(v[k].uuid, v[k - 1].uuid) == 0)
            w->skip[v[k].i] = 1;
    free(v);
    return 0;
}

/* The seq of explicit uuid i in the organization, 0 when it is passed over or not found. */
static int explicit_seq(struct walk *w, size_t i, int64_t *out)
{
    *out = 0;
    if (w->skip[i])
        return 0;
    int rc = sl_sqlite_event_find(w->s, w->sel->uuids[i], w->org_id, out);
    if (rc == SL_ENOTFOUND)
        *out = 0, rc = 0;
    return rc;
}

/* Resolves the explicit uuids for R and F, which leave their events out (and R takes their
 * signatures): their seqs as a JSON array. */
static int explicit_set(struct walk *w)
{
    size_t n = w->sel->nuuids;
    int need = 0, rc;
    w->eset.max = n * 21 + 3; /* "[", n numbers and commas, "]" */
    for (int k = 0; k < w->norder; k++)
        need |= w->order[k] != PH_EXPLICIT;
    if ((rc = put_str(&w->eset, "[")))
        return rc;
    for (size_t i = 0; need && i < n && rc == 0; i++) {
        int64_t seq = 0;
        rc = explicit_seq(w, i, &seq);
        if (rc == 0 && seq > 0 && w->eset.len > 1)
            rc = put_str(&w->eset, ",");
        if (rc == 0 && seq > 0)
            rc = put_i64(&w->eset, seq);
    }
    return rc ? rc : put_str(&w->eset, "]");
}

/* Chooses the plan of the paged phases from the organization's event count. */
static int walk_plan(struct walk *w)
{
    sqlite3_stmt *q = NULL;
    int rc = prep(w->s, plan_sql, &q);
    if (rc)
        return rc;
    sqlite3_bind_int64(q, 1, w->org_id);
    int src = sqlite3_step(q);
    if (src == SQLITE_ROW) {
        w->by_index = sqlite3_column_int64(q, 0) <= ACT_WINDOW;
        w->max_seq = sqlite3_column_int64(q, 1);
    } else {
        rc = sl_sqlite_fail(w->s, src, "planning an event selection");
    }
    sqlite3_finalize(q);
    return rc;
}

/* Checks sel and sets w up for calls of at most limit events, inside the caller's
 * transaction; action (or 0) orders the phases. SL_EINVAL, SL_ENOTFOUND (sel->org),
 * SL_ENOMEM. Release with walk_fini, whatever it returned. */
static int walk_init(struct walk *w, struct sqlite_store *s, const struct sl_event_selection *sel,
                     int action, size_t limit)
{
    memset(w, 0, sizeof(*w));
    w->s = s;
    w->sel = sel;
    int rc = sl_sqlite_org_resolve(s, sel->org, &w->org_id);
    if (rc)
        return rc;
    sl_sqlite_uuid_lower(sel->org, w->org);
    if (sel->filter) {
        char forg[SL_UUID_LEN + 1];
        if (!filter_usable(sel->filter) || !sl_uuid_valid(sel->filter->org))
            return SL_EINVAL;
        sl_sqlite_uuid_lower(sel->filter->org, forg);
        if (strcmp(forg, w->org) != 0)
            return SL_EINVAL;
        w->f = *sel->filter;
        w->has_filter = 1;
    }
    w->f.org = w->org;
    phase_order(w, action);
    w->page_cap = limit + 1;
    if (!(w->page = malloc(w->page_cap * sizeof(*w->page))))
        return SL_ENOMEM;
    if (sel->nuuids && !sel->uuids)
        return SL_EINVAL;
    if ((sel->nuuids && (rc = explicit_dedup(w))) || (rc = explicit_set(w)))
        return rc;
    return w->norder > 0 ? walk_plan(w) : 0;
}

static void walk_fini(struct walk *w)
{
    sqlite3_finalize(w->q[0]);
    sqlite3_finalize(w->q[1]);
    free(w->skip);
    free(w->eset.p);
    free(w->page);
}

static int walk_visit(struct walk *w, int64_t seq)
{
    if (w->pause)
        sl_sqlite_deadline_pause(w->s, 1);
    int rc = w->visit(w->ud, seq);
    if (w->pause)
        sl_sqlite_deadline_pause(w->s, 0);
    return rc;
}

/* Phase E from index *pos. *done once every uuid is visited. */
static int walk_explicit(struct walk *w, int64_t *pos, size_t *budget, int *done)
{
    *done = 0;
    while ((uint64_t)*pos < w->sel->nuuids) {
        if (*budget == 0)
            return 0;
        int64_t seq = 0;
        int rc = explicit_seq(w, (size_t)*pos, &seq);
        if (rc == 0 && seq > 0)
            rc = walk_visit(w, seq);
        if (rc)
            return rc; /* *pos stays at the event the visit refused */
        (*budget)--;
        (*pos)++;
    }
    *done = 1;
    return 0;
}

/* Reads the next page of phase R or F, seqs in (pos, hi]: at most budget + 1 of them into
 * w->page (one more than a call visits tells whether more remain). */
static int page_read(struct walk *w, enum phase ph, int64_t pos, size_t budget, int64_t hi,
                     size_t *out_n)
{
    int which = ph == PH_FILTER, rc = 0, src;
    *out_n = 0;
    if (!w->q[which] && (rc = prep(w->s, page_sql[which][w->by_index], &w->q[which])))
        return rc;
    sqlite3_stmt *q = w->q[which];
    sl_sqlite_bind_filter(q, &w->f);
    sqlite3_bind_int64(q, 18, pos);
    sqlite3_bind_int64(q, 19, hi);
    sqlite3_bind_int(q, 20, w->has_filter);
    sqlite3_bind_text(q, 21, w->eset.p, (int)w->eset.len, SQLITE_STATIC);
    sqlite3_bind_int64(q, 22, (int64_t)budget + 1);
    while (*out_n < w->page_cap && (src = sqlite3_step(q)) == SQLITE_ROW)
        w->page[(*out_n)++] = sqlite3_column_int64(q, 0);
    if (*out_n < w->page_cap && src != SQLITE_DONE)
        rc = sl_sqlite_fail(w->s, src, "selecting events");
    sl_sqlite_done(q);
    return rc;
}

/* Phase R or F after seq *pos (see the file header for the plans). */
static int walk_paged(struct walk *w, enum phase ph, int64_t *pos, size_t *budget, int *done)
{
    int64_t hi = INT64_MAX;
    size_t n = 0, i;
    *done = 0;
    if (!w->by_index) {
        if (*pos >= w->max_seq) {
            *done = 1;
            return 0;
        }
        hi = w->max_seq - *pos > ACT_WINDOW ? *pos + ACT_WINDOW : w->max_seq;
    }
    int rc = page_read(w, ph, *pos, *budget, hi, &n);
    for (i = 0; rc == 0 && i<n && * budget> 0; i++) {
        if ((rc = walk_visit(w, w->page[i])))
            *pos = w->page[i] - 1; /* resume at the event the visit refused */
        else
            *pos = w->page[i], (*budget)--;
    }
    if (rc || i < n)
        return rc; /* more in this phase */
    if (w->by_index || hi >= w->max_seq)
        *done = 1;
    else
        *pos = hi; /* the window is done; the next call reads the next one */
    return 0;
}

/* Visits the events of the selection after cursor, at most limit of them; *out_cursor and
 * *out_more say where the next call starts. Returns 0, a store error, or the visit's non-zero
 * value (the cursor is then at the event the visit refused). */
static int walk_run(struct walk *w, int64_t cursor, size_t limit, int64_t *out_cursor,
                    int *out_more)
{
    int k = 0, rc = 0;
    int64_t pos = 0;
    size_t budget = limit;
    *out_more = 0;
    *out_cursor = 0;
    if (cursor < 0)
        return SL_EINVAL;
    if (cursor != 0) {
        int ph = (int)(cursor >> PHASE_SHIFT);
        while (k < w->norder && (int)w->order[k] != ph)
            k++;
        if (k == w->norder)
            return SL_EINVAL; /* not a cursor of this selection */
        pos = cursor & POS_MASK;
    }
    for (; k < w->norder; k++, pos = 0) {
        int done = 0;
        if (w->order[k] == PH_EXPLICIT)
            rc = walk_explicit(w, &pos, &budget, &done);
        else
            rc = walk_paged(w, w->order[k], &pos, &budget, &done);
        if (rc || !done) {
            *out_more = 1;
            *out_cursor = ((int64_t)w->order[k] << PHASE_SHIFT) | pos;
            return rc;
        }
    }
    return 0;
}

/* ---- check ---- */

int sl_sqlite_event_select_check(struct sl_store *st, const struct sl_event_selection *sel,
                                 char missing[SL_UUID_LEN + 1])
{
    struct sqlite_store *s = from_base(st);
    int64_t org_id = 0, seq = 0;
    if (!sel || !missing || (sel->nuuids && !sel->uuids))
        return SL_EINVAL;
    missing[0] = 0;
    int rc = sl_sqlite_begin(s, 0);
    if (rc)
        return rc;
    rc = sl_sqlite_org_resolve(s, sel->org, &org_id);
    for (size_t i = 0; rc == 0 && i < sel->nuuids; i++) {
        rc = sl_sqlite_event_find(s, sel->uuids[i], org_id, &seq);
        if (rc == SL_ENOTFOUND)
            snprintf(missing, SL_UUID_LEN + 1, "%s", sel->uuids[i] ? sel->uuids[i] : "");
    }
    if (rc == SL_ENOTFOUND && !missing[0] && sel->nuuids && sel->uuids[0])
        snprintf(missing, SL_UUID_LEN + 1, "%s", sel->uuids[0]); /* the organization is unknown */
    return read_end(s, rc);
}

/* ---- actions ---- */

struct act_ctx {
    struct sqlite_store *s;
    sqlite3_stmt *q;
    int64_t seen, changed;
};

static int act_visit(void *ud, int64_t seq)
{
    struct act_ctx *c = ud;
    sqlite3_bind_int64(c->q, 1, seq);
    int src = sqlite3_step(c->q);
    sqlite3_reset(c->q); /* the other parameters stay bound */
    if (src != SQLITE_DONE)
        return sl_sqlite_fail(c->s, src, "acting on an event");
    c->seen++;
    c->changed += sqlite3_changes(c->s->db) > 0;
    return 0;
}

static int act_valid(const struct sl_event_selection *sel, const struct sl_event_action_args *a,
                     const int64_t *cursor, size_t limit)
{
    if (!sel || !a || !cursor || *cursor < 0 || limit < 1 || limit > ACT_LIMIT_MAX)
        return 0;
    if (a->action < SL_ACT_DISMISS || a->action > SL_ACT_DELETE)
        return 0;
    return a->action != SL_ACT_ADD_TO_CASE || a->case_uuid;
}

/* Binds the action's parameters (?2..?11) inside the transaction; add_to_case resolves its
 * case (SL_ENOTFOUND). */
static int act_bind(struct sqlite_store *s, sqlite3_stmt *q, const struct sl_event_action_args *a,
                    int64_t org_id, char iso[25], char case_uuid[SL_UUID_LEN + 1])
{
    int64_t case_id = 0;
    int closed = 0;
    sl_time_format(a->now_ms, iso);
    if (a->action == SL_ACT_ADD_TO_CASE) {
        if (!sl_uuid_valid(a->case_uuid))
            return SL_ENOTFOUND;
        sl_sqlite_uuid_lower(a->case_uuid, case_uuid);
        int rc = sl_sqlite_case_resolve(s, case_uuid, org_id, &case_id, &closed);
        if (rc)
            return rc;
        if (case_id == 0)
            return SL_ENOTFOUND;
    }
    /* Every statement gets every parameter: one past a statement's last is refused
     * (SQLITE_RANGE) and means nothing. */
    sqlite3_bind_int64(q, 2, org_id);
    sqlite3_bind_text(q, 3, iso, -1, SQLITE_STATIC);
    sl_sqlite_bind_opt_text(q, 4, a->by);
    sqlite3_bind_int64(q, 5, a->now_ms);
    sl_sqlite_bind_opt_text(q, 6, a->reason);
    sl_sqlite_bind_opt_text(q, 7, a->reason_uuid);
    sl_sqlite_bind_opt_text(q, 8, a->comment);
    sqlite3_bind_int64(q, 9, case_id);
    sqlite3_bind_text(q, 10, case_uuid, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 11, closed);
    return 0;
}

/* The organization's event count after deletions. */
static int act_count(struct sqlite_store *s, int64_t org_id, int64_t deleted)
{
    sqlite3_stmt *q = s->st[ST_COUNT_ADD];
    sqlite3_bind_int64(q, 1, org_id);
    sqlite3_bind_int64(q, 2, -deleted);
    return sl_sqlite_step_done(s, q, "updating event counts");
}

int sl_sqlite_event_act(struct sl_store *st, const struct sl_event_selection *sel,
                        const struct sl_event_action_args *a, int64_t *cursor, size_t limit,
                        int64_t *out_seen, int64_t *out_changed, int *out_more)
{
    struct sqlite_store *s = from_base(st);
    struct act_ctx c = {.s = s};
    struct walk w;
    char iso[25], case_uuid[SL_UUID_LEN + 1] = "";
    int64_t next = 0;
    int more = 0, rc;
    if (!out_seen || !out_changed || !out_more || !act_valid(sel, a, cursor, limit))
        return SL_EINVAL;
    *out_seen = *out_changed = 0;
    *out_more = 0;
    memset(&w, 0, sizeof(w));
    if ((rc = prep(s, act_sql[a->action], &c.q)))
        return rc;
    if ((rc = sl_sqlite_begin(s, 1)))
        goto out;
    /* The deadline bounds the searches (the write lock is held meanwhile), not the writes. */
    sl_sqlite_deadline_start(s);
    rc = walk_init(&w, s, sel, (int)a->action, limit);
    if (rc == 0)
        rc = act_bind(s, c.q, a, w.org_id, iso, case_uuid);
    if (rc == 0) {
        w.visit = act_visit, w.ud = &c, w.pause = 1;
        rc = walk_run(&w, *cursor, limit, &next, &more);
    }
    sl_sqlite_deadline_stop(s);
    if (rc == 0 && a->action == SL_ACT_DELETE && c.changed > 0)
        rc = act_count(s, w.org_id, c.changed);
    if (rc == 0)
        rc = sl_sqlite_commit(s);
    if (rc)
        sl_sqlite_rollback(s);
out:
    walk_fini(&w);
    sqlite3_finalize(c.q);
    if (rc)
        return rc;
    *cursor = next;
    *out_seen = c.seen;
    *out_changed = c.changed;
    *out_more = more;
    return 0;
}

/* ---- reading a selection ---- */

struct read_ctx {
    struct sqlite_store *s;
    sqlite3_stmt *q;
    int64_t org_id;
    /* export */
    int (*cb)(void *ud, const char *doc, size_t len);
    void *ud;
    int stopped;
    /* ids */
    struct sl_sqlite_buf *b;
    size_t max;
    int64_t total;
};

static int ids_visit(void *ud, int64_t seq)
{
    struct read_ctx *c = ud;
    int rc = 0;
    if (++c->total > (int64_t)c->max)
        return 0;
    sqlite3_bind_int64(c->q, 1, seq);
    int src = sqlite3_step(c->q);
    if (src == SQLITE_ROW) {
        if (c->b->len > 1)
            rc = put_str(c->b, ",");
        if (rc == 0)
            rc = sl_sqlite_buf_json_str(c->b, (const char *)sqlite3_column_text(c->q, 0),
                                        (size_t)sqlite3_column_bytes(c->q, 0));
    } else if (src != SQLITE_DONE) {
        rc = sl_sqlite_fail(c->s, src, "reading an event's uuid");
    }
    sl_sqlite_done(c->q);
    return rc;
}

int sl_sqlite_event_select_ids(struct sl_store *st, const struct sl_event_selection *sel,
                               size_t max, char **out_json, int64_t *out_total)
{
    struct sqlite_store *s = from_base(st);
    struct sl_sqlite_buf b = {.max = max * (SL_UUID_LEN + 3) + 2};
    struct read_ctx c = {.s = s, .b = &b, .max = max};
    struct walk w;
    int64_t cursor = 0;
    int more = 0, rc;
    if (!out_json || !out_total)
        return SL_EINVAL;
    *out_json = NULL;
    *out_total = 0;
    if (!sel || max < 1 || max > IDS_MAX)
        return SL_EINVAL;
    memset(&w, 0, sizeof(w));
    if ((rc = prep(s, row_uuid_sql, &c.q)) || (rc = put_str(&b, "[")) ||
        (rc = sl_sqlite_begin(s, 0)))
        goto out;
    /* One snapshot, and one deadline for the whole of it. */
    sl_sqlite_deadline_start(s);
    rc = walk_init(&w, s, sel, 0, IDS_CHUNK);
    w.visit = ids_visit, w.ud = &c;
    while (rc == 0 && (rc = walk_run(&w, cursor, IDS_CHUNK, &cursor, &more)) == 0 && more)
        ;
    rc = read_end(s, rc);
    if (rc == 0)
        rc = put_str(&b, "]");
out:
    walk_fini(&w);
    sqlite3_finalize(c.q);
    if (rc) {
        free(b.p);
        return rc;
    }
    *out_json = b.p;
    *out_total = c.total;
    return 0;
}

static int export_visit(void *ud, int64_t seq)
{
    struct read_ctx *c = ud;
    int rc = 0;
    sqlite3_bind_int64(c->q, 1, seq);
    sqlite3_bind_int64(c->q, 2, c->org_id);
    int src = sqlite3_step(c->q);
    if (src == SQLITE_ROW) {
        const char *doc = (const char *)sqlite3_column_text(c->q, 0);
        rc = c->cb(c->ud, doc ? doc : "", (size_t)sqlite3_column_bytes(c->q, 0));
        c->stopped = rc != 0;
    } else if (src != SQLITE_DONE) {
        rc = sl_sqlite_fail(c->s, src, "reading an event");
    }
    sl_sqlite_done(c->q);
    return rc;
}

int sl_sqlite_event_export(struct sl_store *st, const struct sl_event_selection *sel,
                           int64_t *cursor, size_t limit,
                           int (*cb)(void *ud, const char *doc, size_t len), void *ud,
                           int *out_more)
{
    struct sqlite_store *s = from_base(st);
    struct read_ctx c = {.s = s, .cb = cb, .ud = ud};
    struct walk w;
    int64_t next = 0;
    int more = 0, rc;
    if (!sel || !cursor || *cursor < 0 || !cb || !out_more || limit < 1 || limit > ACT_LIMIT_MAX)
        return SL_EINVAL;
    *out_more = 0;
    memset(&w, 0, sizeof(w));
    if ((rc = prep(s, row_doc_sql, &c.q)) || (rc = sl_sqlite_begin(s, 0)))
        goto out;
    sl_sqlite_deadline_start(s);
    rc = walk_init(&w, s, sel, 0, limit);
    c.org_id = w.org_id;
    w.visit = export_visit, w.ud = &c;
    if (rc == 0)
        rc = walk_run(&w, *cursor, limit, &next, &more);
    /* A stop by cb is not a failure of the read: the cursor is kept at the refused event. */
    int cbrc = c.stopped ? rc : 0;
    rc = read_end(s, c.stopped ? 0 : rc);
    if (rc == 0) {
        *cursor = next;
        *out_more = more;
        rc = cbrc;
    }
out:
    walk_fini(&w);
    sqlite3_finalize(c.q);
    return rc;
}
