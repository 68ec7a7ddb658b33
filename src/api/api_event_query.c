/* The event queue beyond the flat list: one card per signature (GET /event?grouped=true), stats
 * buckets, select-all, a streamed export (NDJSON or CSV), and the bulk actions on events
 * (dismiss, acknowledge, unacknowledge, reopen, delete), which run as tasks (src/actions/).
 *
 * Scope: a key acts on its own organization; a key of the default organization acts on another
 * by naming it ("organization" in the query or the body, as for metadata). A selection by uuids
 * from a default key that names no organization is looked up in every organization: when all
 * the uuids are in one, the action is that organization's; when they are in several, it is
 * refused (400 "selection spans organizations"). A uuid in none of the organizations acted on is
 * 404 naming it, and nothing is done: another organization's event looks like no event. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "actions/actions.h"
#include "api/api_internal.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "event/event.h"

#define SELECT_MAX      100000   /* uuids bulk_select_all answers, and an action takes */
#define LIST_OFFSET_MAX 10000000 /* as GET /event: cards a page may skip */
#define SIGNATURES_MAX  1000     /* signatures one acknowledge names */
#define SIGNATURE_MAX   1024     /* bytes of one */
#define COMMENT_MAX     (64 * 1024)
#define TOP_DEFAULT     20
#define TOP_MAX         1000
#define SHOW_MAX        64 /* bytes of a bad value quoted in an error */

/* Export: a page is at most EXPORT_PAGE events (one read snapshot) and stops early once its
 * output passes EXPORT_TARGET, so what is held is that plus one event (a raw_log is at most
 * 1 MiB); EXPORT_BUF_MAX is a last bound. */
#define EXPORT_PAGE    1000
#define EXPORT_TARGET  (4u << 20)
#define EXPORT_BUF_MAX (64u << 20)

/* ---- shared ---- */

/* Answers a failed store read of the event list family. */
static void reply_read_error(struct sl_http_req *req, int rc)
{
    if (rc == SL_EINVAL)
        sl_http_reply_error(req, 400, "invalid parameter", "page or page_size out of range");
    else if (rc == SL_EFULL)
        sl_http_reply_error(req, 400, "page too large",
                            "the events of this page exceed 32 MiB; lower page_size");
    else if (rc == SL_ETIMEDOUT)
        sl_http_reply_error(req, 503, "query too expensive",
                            "the query ran longer than 10 s and was stopped; narrow the time "
                            "range (start/end) or the filters");
    else if (rc == SL_ENOMEM)
        sl_api_meta_reply_store(req, rc, "event", NULL);
    else
        sl_api_reply_store_error(req, rc);
}

/* Opens the request's context (scope, store) and reads the GET /event filter from the query.
 * On failure it has answered; call sl_api_meta_close either way. */
static int open_filtered(struct sl_api *api, struct sl_http_req *req, struct sl_api_meta_ctx *c,
                         struct sl_event_filter *f)
{
    char err[256];
    if (sl_api_meta_open(api, req, 0, c) != 0)
        return SL_EINVAL;
    f->org = c->org;
    if (sl_api_event_filter_parse(&req->query, f, err, sizeof(err)) != 0) {
        sl_http_reply_error(req, 400, "invalid parameter", err);
        return SL_EINVAL;
    }
    return 0;
}

/* Wraps a malloc'd JSON value v in place: head v tail (v moves up). Returns the body (v taken
 * over) or NULL (v still the caller's). */
static char *wrap(char *v, const char *head, const char *tail, size_t *out_len)
{
    size_t hlen = strlen(head), tlen = strlen(tail), len = strlen(v);
    char *out = realloc(v, hlen + len + tlen + 1);
    if (!out)
        return NULL;
    memmove(out + hlen, out, len);
    memcpy(out, head, hlen);
    memcpy(out + hlen + len, tail, tlen + 1);
    *out_len = hlen + len + tlen;
    return out;
}

static void reply_wrapped(struct sl_http_req *req, char *v, const char *head, const char *tail)
{
    size_t len = 0;
    char *body = wrap(v, head, tail, &len);
    if (!body) {
        free(v);
        sl_api_meta_reply_store(req, SL_ENOMEM, "event", NULL);
        return;
    }
    sl_http_reply(req, 200, "application/json", body, len);
}

/* ---- GET /api/v2.0/event?grouped=true ---- */

enum sl_http_next sl_api_event_grouped(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_event_filter f = {0};
    char err[256], tail[160], *cards = NULL;
    int64_t total = 0;
    if (open_filtered(api, req, &c, &f) != 0)
        goto out;
    if (f.page - 1 > LIST_OFFSET_MAX / f.page_size) {
        snprintf(err, sizeof(err),
                 "page=%lld: with page_size=%lld it skips more than %d signatures; narrow the "
                 "time range (start/end) instead",
                 (long long)f.page, (long long)f.page_size, LIST_OFFSET_MAX);
        sl_http_reply_error(req, 400, "invalid parameter", err);
        goto out;
    }
    int rc = sl_store_event_grouped(c.st, &f, &cards, &total);
    if (rc) {
        reply_read_error(req, rc);
        goto out;
    }
    snprintf(tail, sizeof(tail),
             ",\"pagination\":{\"total_results\":%lld,\"pages\":%lld,\"page\":%lld,"
             "\"page_size\":%lld}}",
             (long long)total, (long long)((total + f.page_size - 1) / f.page_size),
             (long long)f.page, (long long)f.page_size);
    reply_wrapped(req, cards, "{\"events\":", tail);
    cards = NULL;
out:
    free(cards);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* ---- GET /api/v2.0/event/stats ---- */

enum sl_http_next sl_api_event_stats(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_event_filter f = {0};
    char err[160], *json = NULL;
    int64_t top = TOP_DEFAULT;
    if (open_filtered(api, req, &c, &f) != 0)
        goto out;
    const char *v = sl_http_query_get(&req->query, "top");
    if (v && v[0] && sl_parse_int64(v, 1, TOP_MAX, &top) != 0) {
        snprintf(err, sizeof(err), "top=%.*s: expected an integer 1..%d", SHOW_MAX, v, TOP_MAX);
        sl_http_reply_error(req, 400, "invalid parameter", err);
        goto out;
    }
    int rc = sl_store_event_stats(c.st, &f, (size_t)top, &json);
    if (rc)
        reply_read_error(req, rc);
    else
        sl_http_reply(req, 200, "application/json", json, strlen(json));
out:
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* ---- GET /api/v2.0/event/bulk_select_all ---- */

enum sl_http_next sl_api_event_select_all(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_event_filter f = {0};
    char tail[96], *json = NULL;
    int64_t total = 0;
    if (open_filtered(api, req, &c, &f) != 0)
        goto out;
    struct sl_event_selection sel = {.org = c.org, .filter = &f};
    int rc = sl_store_event_select_ids(c.st, &sel, SELECT_MAX, &json, &total);
    if (rc) {
        reply_read_error(req, rc);
        goto out;
    }
    snprintf(tail, sizeof(tail), ",\"total\":%lld,\"truncated\":%s}", (long long)total,
             total > SELECT_MAX ? "true" : "false");
    reply_wrapped(req, json, "{\"uuids\":", tail);
out:
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* ---- GET /api/v2.0/event/export ---- */

struct export
{
    struct sl_api *api;
    char org[SL_UUID_LEN + 1];
    struct sl_event_filter f; /* its strings borrow the request's query: read only while the
                               * request lives, which is when MHD calls export_read */
    struct sl_event_selection sel;
    int csv;
    int64_t cursor;
    int more;
    size_t page_events; /* taken into the page being read */
    char *buf;          /* output not yet sent: buf[off..len) */
    size_t len, off, cap;
    int64_t events;
};

static int out_put(struct export *x, const char *s, size_t n)
{
    if (x->len + n > x->cap) {
        size_t cap = x->cap ? x->cap : 64 * 1024;
        while (cap < x->len + n)
            cap *= 2;
        if (cap > EXPORT_BUF_MAX) {
            if (x->len + n > EXPORT_BUF_MAX)
                return SL_EFULL;
            cap = EXPORT_BUF_MAX;
        }
        char *b = realloc(x->buf, cap);
        if (!b)
            return SL_ENOMEM;
        x->buf = b;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, s, n);
    x->len += n;
    return 0;
}

/* One CSV cell (RFC 4180): quoted when it holds a comma, quote, CR or LF (quotes doubled). A
 * cell a spreadsheet would take for a formula (starting with = + - @, tab or CR) is prefixed
 * with ' (OWASP's CSV injection advice). */
static int csv_cell(struct export *x, const char *s, size_t n, int first)
{
    int rc = first ? 0 : out_put(x, ",", 1);
    int quote = 0;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (!rc && quote)
        rc = out_put(x, "\"", 1);
    if (!rc && n && strchr("=+-@\t\r", s[0]))
        rc = out_put(x, "'", 1);
    size_t from = 0;
    for (size_t i = 0; !rc && i < n; i++)
        if (s[i] == '"') {
            rc = out_put(x, s + from, i + 1 - from); /* up to and with the quote: doubled */
            from = i;
        }
    if (!rc)
        rc = out_put(x, s + from, n - from);
    if (!rc && quote)
        rc = out_put(x, "\"", 1);
    return rc;
}

static const char *member_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* A cell joining the array's items with ';': strings (tags) or observables as value:type. */
static int csv_joined(struct export *x, const cJSON *arr, int observables)
{
    size_t len = 0, at = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        const char *a = observables         ? member_str(e, "value")
                        : cJSON_IsString(e) ? e->valuestring
                                            : "";
        const char *b = observables ? member_str(e, "data_type") : "";
        len += strlen(a) + strlen(b) + 2;
    }
    char *cell = malloc(len + 1);
    if (!cell)
        return SL_ENOMEM;
    cJSON_ArrayForEach(e, arr)
    {
        const char *a = observables         ? member_str(e, "value")
                        : cJSON_IsString(e) ? e->valuestring
                                            : "";
        if (at)
            cell[at++] = ';';
        memcpy(cell + at, a, strlen(a));
        at += strlen(a);
        if (observables) {
            const char *b = member_str(e, "data_type");
            cell[at++] = ':';
            memcpy(cell + at, b, strlen(b));
            at += strlen(b);
        }
    }
    int rc = csv_cell(x, cell, at, 0);
    free(cell);
    return rc;
}

static const char csv_header[] = "uuid,reference,title,severity,status,signature,source,tags,"
                                 "observables,original_date,created_at,case\r\n";

static int csv_row(struct export *x, const char *doc, size_t len)
{
    static const char *const first[] = {"uuid", "reference", "title"};
    static const char *const middle[] = {"signature", "source"};
    static const char *const last[] = {"original_date", "created_at", "case"};
    char sev[24];
    cJSON *o = cJSON_ParseWithLength(doc, len);
    if (!o)
        return cJSON_GetErrorPtr() ? SL_ECORRUPT : SL_ENOMEM;
    int rc = 0;
    for (size_t i = 0; !rc && i < 3; i++)
        rc = csv_cell(x, member_str(o, first[i]), strlen(member_str(o, first[i])), i == 0);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "severity");
    snprintf(sev, sizeof(sev), "%d", cJSON_IsNumber(s) ? s->valueint : 0);
    if (!rc)
        rc = csv_cell(x, sev, strlen(sev), 0);
    const char *status = member_str(cJSON_GetObjectItemCaseSensitive(o, "status"), "name");
    if (!rc)
        rc = csv_cell(x, status, strlen(status), 0);
    for (size_t i = 0; !rc && i < 2; i++)
        rc = csv_cell(x, member_str(o, middle[i]), strlen(member_str(o, middle[i])), 0);
    if (!rc)
        rc = csv_joined(x, cJSON_GetObjectItemCaseSensitive(o, "tags"), 0);
    if (!rc)
        rc = csv_joined(x, cJSON_GetObjectItemCaseSensitive(o, "observables"), 1);
    for (size_t i = 0; !rc && i < 3; i++)
        rc = csv_cell(x, member_str(o, last[i]), strlen(member_str(o, last[i])), 0);
    if (!rc)
        rc = out_put(x, "\r\n", 2);
    cJSON_Delete(o);
    return rc;
}

static int export_event(void *ud, const char *doc, size_t len)
{
    struct export *x = ud;
    int rc;
    /* A full page stops here: the store keeps the cursor at this event for the next page. */
    if (x->len - x->off > EXPORT_TARGET && x->page_events > 0)
        return SL_EAGAIN;
    x->page_events++;
    x->events++;
    if (x->csv)
        return csv_row(x, doc, len);
    /* Stored documents are compact JSON: one line each. */
    rc = out_put(x, doc, len);
    return rc ? rc : out_put(x, "\n", 1);
}

/* Reads the next page of events into the buffer (after what is still unsent), on the calling
 * server thread's store handle. */
static int export_page(struct export *x, struct sl_http_req *req)
{
    if (x->off == x->len) {
        x->off = x->len = 0;
        if (x->cap > 2 * EXPORT_TARGET) { /* grown by a large event: do not keep it */
            free(x->buf);
            x->buf = NULL;
            x->cap = 0;
        }
    }
    struct sl_store *st = sl_api_store_get(x->api, req);
    if (!st)
        return SL_EIO;
    int64_t cursor = x->cursor;
    x->page_events = 0;
    int rc = sl_store_event_export(st, &x->sel, &cursor, EXPORT_PAGE, export_event, x, &x->more);
    sl_api_store_put(x->api, req);
    if (rc == SL_EAGAIN) { /* the page is full: more remains */
        rc = 0;
        x->more = 1;
    }
    if (rc)
        return rc;
    if (x->more && cursor == x->cursor && x->page_events == 0)
        return SL_ECORRUPT; /* no progress: never loop */
    x->cursor = cursor;
    return 0;
}

static long export_read(void *ud, struct sl_http_req *req, char *buf, size_t max)
{
    struct export *x = ud;
    while (x->off == x->len) {
        if (!x->more) {
            SL_DEBUG("export: %lld events sent", (long long)x->events);
            return 0;
        }
        int rc = export_page(x, req);
        if (rc)
            return rc;
    }
    size_t n = x->len - x->off < max ? x->len - x->off : max;
    memcpy(buf, x->buf + x->off, n);
    x->off += n;
    return (long)n;
}

static void export_free(void *ud)
{
    struct export *x = ud;
    if (x)
        free(x->buf);
    free(x);
}

enum sl_http_next sl_api_event_export(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct export *x = calloc(1, sizeof(*x));
    char err[160], iso[25], disp[96];
    if (!x) {
        sl_api_meta_reply_store(req, SL_ENOMEM, "event", NULL);
        return SL_HTTP_DONE;
    }
    if (open_filtered(api, req, &c, &x->f) != 0) {
        sl_api_meta_close(&c);
        export_free(x);
        return SL_HTTP_DONE;
    }
    memcpy(x->org, c.org, sizeof(x->org));
    sl_api_meta_close(&c); /* export_page takes the handle for each page */
    x->api = api;
    x->f.org = x->org;
    x->sel.org = x->org;
    x->sel.filter = &x->f;
    x->more = 1;
    const char *fmt = sl_http_query_get(&req->query, "format");
    if (fmt && fmt[0] && strcasecmp(fmt, "ndjson") && strcasecmp(fmt, "csv")) {
        snprintf(err, sizeof(err), "format=%.*s: expected ndjson or csv", SHOW_MAX, fmt);
        sl_http_reply_error(req, 400, "invalid parameter", err);
        export_free(x);
        return SL_HTTP_DONE;
    }
    x->csv = fmt && !strcasecmp(fmt, "csv");
    /* The first page before the answer: a store that fails now gets a proper error status. */
    int rc = x->csv ? out_put(x, csv_header, sizeof(csv_header) - 1) : 0;
    if (!rc)
        rc = export_page(x, req);
    if (rc) {
        reply_read_error(req, rc);
        export_free(x);
        return SL_HTTP_DONE;
    }
    sl_time_format(sl_now_ms(), iso);
    snprintf(disp, sizeof(disp), "attachment; filename=\"events-%.4s%.2s%.2sT%.2s%.2s%.2sZ.%s\"",
             iso, iso + 5, iso + 8, iso + 11, iso + 14, iso + 17, x->csv ? "csv" : "ndjson");
    sl_http_req_add_header(req, "Content-Disposition", disp);
    sl_http_req_add_header(req, "Cache-Control", "no-store");
    sl_http_reply_stream(req, 200, x->csv ? "text/csv; charset=utf-8" : "application/x-ndjson",
                         export_read, x, export_free);
    return SL_HTTP_DONE;
}

/* ---- the actions: PUT /event/bulk_dismiss, dismiss_by_filter, acknowledge, unacknowledge,
 * reopen; POST /event/bulk_delete ---- */

struct action {
    struct sl_api_meta_ctx c;
    const char *name; /* the route's: "dismiss", ... */
    enum sl_event_action act;
    char org[SL_UUID_LEN + 1];
    char (*ids)[SL_UUID_LEN + 1]; /* the selected uuids, lowercase */
    const char **uuids;
    size_t nuuids;
    int by_signature;
    struct sl_http_query fq; /* the body's filter as a query */
    struct sl_event_filter f;
    int has_filter;
    int include_related;
    char reason[SL_META_NAME_MAX + 1];
    char reason_uuid[SL_UUID_LEN + 1];
    const char *comment;
};

static void invalid(struct action *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Answers 400 {"error": "<field>: ...", "field"} as the metadata endpoints do. */
static void invalid(struct action *r, const char *fmt, ...)
{
    char err[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, sizeof(err), fmt, ap);
    va_end(ap);
    sl_api_meta_reply_invalid(r->c.req, err);
}

static int known_field(const struct action *r, const char *k)
{
    static const char *const common[] = {"events", "filter", "include_related_events",
                                         "organization"};
    for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
        if (!strcmp(k, common[i]))
            return 1;
    if (r->act == SL_ACT_DISMISS)
        return !strcmp(k, "dismiss_reason_uuid") || !strcmp(k, "dismiss_comment");
    if (r->act == SL_ACT_ACK || r->act == SL_ACT_UNACK)
        return !strcmp(k, "signature") || !strcmp(k, "signatures");
    return 0;
}

static int check_fields(struct action *r)
{
    char names[256] = "";
    size_t n = 0, at = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, r->c.body)
    {
        if (known_field(r, it->string))
            continue;
        if (at < sizeof(names) - 1)
            at += (size_t)snprintf(names + at, sizeof(names) - at, "%s%.*s", n ? ", " : "",
                                   SHOW_MAX, it->string);
        n++;
    }
    if (at >= sizeof(names))
        at = sizeof(names) - 1;
    if (n) {
        invalid(r, "%s: unknown field%s", names, n > 1 ? "s" : "");
        return SL_EINVAL;
    }
    return 0;
}

/* The filter object as a query string's parameters, for sl_api_event_filter_parse. */
static const char *const filter_names[] = {
    "status", "severity", "title",     "signature",      "tag",    "tags", "observable", "start",
    "end",    "page",     "page_size", "sort_direction", "grouped"};

static int filter_value(const cJSON *v, char *num, size_t numlen, const char **out)
{
    if (cJSON_IsString(v))
        *out = v->valuestring;
    else if (cJSON_IsBool(v))
        *out = cJSON_IsTrue(v) ? "true" : "false";
    else if (cJSON_IsNumber(v) && v->valuedouble >= -9e15 && v->valuedouble <= 9e15 &&
             v->valuedouble == (double)(long long)v->valuedouble) {
        snprintf(num, numlen, "%lld", (long long)v->valuedouble);
        *out = num;
    } else {
        return SL_EINVAL;
    }
    return 0;
}

static int filter_parse(struct action *r, const cJSON *fo)
{
    size_t size = 0, n = 0;
    char num[32], err[300];
    const cJSON *it, *e;
    if (!cJSON_IsObject(fo)) {
        invalid(r, "filter: expected an object of GET /event parameters");
        return SL_EINVAL;
    }
    /* Pass 1: check names and values, and size the buffer. */
    cJSON_ArrayForEach(it, fo)
    {
        size_t k = 0, nf = sizeof(filter_names) / sizeof(filter_names[0]);
        while (k < nf && strcmp(filter_names[k], it->string))
            k++;
        if (k == nf) {
            invalid(r, "filter: unknown parameter %.*s (accepted: the GET /event parameters)",
                    SHOW_MAX, it->string);
            return SL_EINVAL;
        }
        if (cJSON_IsNull(it))
            continue;
        int arr = cJSON_IsArray(it);
        for (e = arr ? it->child : it; e; e = arr ? e->next : NULL) {
            const char *v;
            if (filter_value(e, num, sizeof(num), &v) != 0) {
                invalid(r,
                        "filter: %.*s: expected a string, number or boolean (or an array of "
                        "them)",
                        SHOW_MAX, it->string);
                return SL_EINVAL;
            }
            if (++n > SL_HTTP_QUERY_MAX) {
                invalid(r, "filter: more than %d values", SL_HTTP_QUERY_MAX);
                return SL_EINVAL;
            }
            size += strlen(it->string) + strlen(v) + 2;
        }
    }
    if (!(r->fq.buf = malloc(size ? size : 1)))
        return SL_ENOMEM;
    /* Pass 2: copy. */
    char *p = r->fq.buf;
    cJSON_ArrayForEach(it, fo)
    {
        int arr = cJSON_IsArray(it);
        for (e = cJSON_IsNull(it) ? NULL : arr ? it->child : it; e; e = arr ? e->next : NULL) {
            const char *v;
            filter_value(e, num, sizeof(num), &v);
            struct sl_http_param *pa = &r->fq.params[r->fq.n++];
            pa->key = p;
            p += strlen(strcpy(p, it->string)) + 1;
            pa->value = p;
            p += strlen(strcpy(p, v)) + 1;
        }
    }
    r->f.org = r->org;
    if (sl_api_event_filter_parse(&r->fq, &r->f, err, sizeof(err)) != 0) {
        invalid(r, "filter: %s", err);
        return SL_EINVAL;
    }
    r->has_filter = 1;
    return 0;
}

static int uuids_parse(struct action *r, const char *name, const cJSON *arr)
{
    int n = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    if (n < 1 || n > SELECT_MAX) {
        invalid(r, "%s: expected an array of 1..%d event uuids", name, SELECT_MAX);
        return SL_EINVAL;
    }
    r->ids = calloc((size_t)n, sizeof(*r->ids));
    r->uuids = calloc((size_t)n, sizeof(*r->uuids));
    if (!r->ids || !r->uuids)
        return SL_ENOMEM;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        size_t i = r->nuuids;
        if (!cJSON_IsString(e) || !sl_uuid_valid(e->valuestring)) {
            invalid(r, "%s[%zu]: expected an event uuid", name, i);
            return SL_EINVAL;
        }
        for (size_t k = 0; k <= SL_UUID_LEN; k++)
            r->ids[i][k] = (char)tolower((unsigned char)e->valuestring[k]);
        r->uuids[i] = r->ids[i];
        r->nuuids++;
    }
    return 0;
}

/* The selection's form: events, filter, or (acknowledge) signatures; and include_related. */
static int selection_parse(struct action *r)
{
    const cJSON *b = r->c.body;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(b, "events");
    const cJSON *fi = cJSON_GetObjectItemCaseSensitive(b, "filter");
    const cJSON *s1 = cJSON_GetObjectItemCaseSensitive(b, "signature");
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(b, "signatures");
    const cJSON *rel = cJSON_GetObjectItemCaseSensitive(b, "include_related_events");
    int forms = !!ev + !!fi + !!(s1 || sn);
    int ack = r->act == SL_ACT_ACK || r->act == SL_ACT_UNACK;
    if (forms != 1) {
        invalid(r, "%s: give exactly one of them",
                ack ? "events, filter, signature(s)" : "events, filter");
        return SL_EINVAL;
    }
    if (rel && !cJSON_IsBool(rel)) {
        invalid(r, "include_related_events: expected true or false");
        return SL_EINVAL;
    }
    if (rel)
        r->include_related = cJSON_IsTrue(rel);
    if (ev)
        return uuids_parse(r, "events", ev);
    if (fi)
        return 0; /* parsed once the organization is known */
    r->by_signature = 1;
    r->include_related = 1; /* every event of the signature */
    return 0;
}

/* Which organization holds uuid (one of orgs), or SL_ENOTFOUND. */
static int org_of(struct sl_store *st, const struct sl_org *orgs, size_t n, const char *uuid,
                  char out[SL_UUID_LEN + 1])
{
    char missing[SL_UUID_LEN + 1];
    for (size_t i = 0; i < n; i++) {
        struct sl_event_selection sel = {.org = orgs[i].uuid, .uuids = &uuid, .nuuids = 1};
        int rc = sl_store_event_select_check(st, &sel, missing);
        if (rc != SL_ENOTFOUND) {
            if (rc == 0)
                memcpy(out, orgs[i].uuid, SL_UUID_LEN + 1);
            return rc;
        }
    }
    return SL_ENOTFOUND;
}

/* A default key that named no organization: the one organization holding every selected uuid
 * (0, r->org), a uuid held by none (SL_ENOTFOUND, missing), or uuids in two organizations
 * (SL_EEXIST, r->org and other). */
static int resolve_org(struct action *r, char missing[SL_UUID_LEN + 1], char other[SL_UUID_LEN + 1])
{
    struct sl_org *orgs = NULL;
    size_t norgs = 0;
    struct sl_event_selection sel = {.org = r->c.org, .uuids = r->uuids, .nuuids = r->nuuids};
    int rc = sl_store_event_select_check(r->c.st, &sel, missing);
    if (rc != SL_ENOTFOUND) {
        memcpy(r->org, r->c.org, sizeof(r->org));
        return rc; /* all in the key's organization, or a store error */
    }
    if ((rc = sl_store_org_list(r->c.st, &orgs, &norgs)) != 0)
        return rc;
    /* The organization of the first uuid takes the selection... */
    rc = org_of(r->c.st, orgs, norgs, r->uuids[0], r->org);
    if (rc == SL_ENOTFOUND)
        memcpy(missing, r->uuids[0], SL_UUID_LEN + 1);
    if (rc == 0 && strcmp(r->org, r->c.org)) {
        sel.org = r->org;
        rc = sl_store_event_select_check(r->c.st, &sel, missing);
    } else if (rc == 0) {
        rc = SL_ENOTFOUND; /* the key's own: missing is from the first check */
    }
    /* ...and a uuid outside it is either nowhere or in another organization. */
    if (rc == SL_ENOTFOUND && strcmp(missing, r->uuids[0])) {
        rc = org_of(r->c.st, orgs, norgs, missing, other);
        if (rc == 0)
            rc = SL_EEXIST;
    }
    free(orgs);
    return rc;
}

/* One event of org with each signature: the action takes them with their related events. */
static int signatures_resolve(struct action *r)
{
    const cJSON *s1 = cJSON_GetObjectItemCaseSensitive(r->c.body, "signature");
    const cJSON *sn = cJSON_GetObjectItemCaseSensitive(r->c.body, "signatures");
    const cJSON *list = sn ? sn : s1;
    int n = sn ? (cJSON_IsArray(sn) ? cJSON_GetArraySize(sn) : -1) : 1;
    const char *what = sn ? "signatures" : "signature";
    if (s1 && sn) {
        invalid(r, "signature, signatures: give one of them");
        return SL_EINVAL;
    }
    if (n < 1 || n > SIGNATURES_MAX) {
        invalid(r, "signatures: expected an array of 1..%d signatures", SIGNATURES_MAX);
        return SL_EINVAL;
    }
    r->ids = calloc((size_t)n, sizeof(*r->ids));
    r->uuids = calloc((size_t)n, sizeof(*r->uuids));
    if (!r->ids || !r->uuids)
        return SL_ENOMEM;
    for (const cJSON *e = sn ? list->child : list; e; e = sn ? e->next : NULL) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strlen(e->valuestring) > SIGNATURE_MAX) {
            invalid(r, "%s: expected a non-empty string of at most %d bytes", what, SIGNATURE_MAX);
            return SL_EINVAL;
        }
        struct sl_event_filter f = {
            .org = r->org, .signature = e->valuestring, .page = 1, .page_size = 1};
        char *json = NULL;
        int64_t total = 0;
        int rc = sl_store_event_list(r->c.st, &f, &json, &total);
        if (rc) {
            reply_read_error(r->c.req, rc);
            return rc;
        }
        cJSON *arr = cJSON_Parse(json);
        free(json);
        if (!arr)
            return SL_ENOMEM;
        const char *u = member_str(cJSON_GetArrayItem(arr, 0), "uuid");
        int found = sl_uuid_valid(u);
        if (found) {
            memcpy(r->ids[r->nuuids], u, SL_UUID_LEN + 1);
            r->uuids[r->nuuids] = r->ids[r->nuuids];
            r->nuuids++;
        }
        cJSON_Delete(arr);
        if (!found) {
            char detail[SIGNATURE_MAX + 64];
            snprintf(detail, sizeof(detail), "no events with signature %.*s", SHOW_MAX,
                     e->valuestring);
            sl_http_reply_error(r->c.req, 404, "not found", detail);
            return SL_ENOTFOUND;
        }
    }
    return 0;
}

/* The organization acted on, and the explicit uuids all in it. Answers on failure. */
static int scope_selection(struct action *r)
{
    char missing[SL_UUID_LEN + 1] = "", other[SL_UUID_LEN + 1] = "", detail[200];
    int rc;
    memcpy(r->org, r->c.org, sizeof(r->org));
    if (!r->uuids)
        return 0;
    if (r->c.key_default && !r->c.org_given) {
        rc = resolve_org(r, missing, other);
    } else {
        struct sl_event_selection sel = {.org = r->org, .uuids = r->uuids, .nuuids = r->nuuids};
        rc = sl_store_event_select_check(r->c.st, &sel, missing);
    }
    if (rc == SL_ENOTFOUND) {
        snprintf(detail, sizeof(detail), "no such event: %s", missing);
        sl_http_reply_error(r->c.req, 404, "not found", detail);
    } else if (rc == SL_EEXIST) {
        snprintf(detail, sizeof(detail),
                 "the events are in organizations %s and %s: act on one organization's events "
                 "at a time",
                 r->org, other);
        sl_http_reply_error(r->c.req, 400, "selection spans organizations", detail);
    } else if (rc) {
        sl_api_reply_store_error(r->c.req, rc);
    }
    return rc;
}

/* dismiss_reason_uuid (a close reason of the organization or of the default one) and
 * dismiss_comment. */
static int dismiss_parse(struct action *r)
{
    const cJSON *ru = cJSON_GetObjectItemCaseSensitive(r->c.body, "dismiss_reason_uuid");
    const cJSON *cm = cJSON_GetObjectItemCaseSensitive(r->c.body, "dismiss_comment");
    struct sl_meta m = {0};
    if (!cJSON_IsString(ru) || !sl_uuid_valid(ru->valuestring)) {
        invalid(r, "dismiss_reason_uuid: %s", ru ? "expected a close reason uuid" : "required");
        return SL_EINVAL;
    }
    for (size_t k = 0; k <= SL_UUID_LEN; k++)
        r->reason_uuid[k] = (char)tolower((unsigned char)ru->valuestring[k]);
    if (cm && !cJSON_IsNull(cm) && (!cJSON_IsString(cm) || strlen(cm->valuestring) > COMMENT_MAX)) {
        invalid(r, "dismiss_comment: expected a string of at most %d bytes, or null", COMMENT_MAX);
        return SL_EINVAL;
    }
    r->comment = cJSON_IsString(cm) ? cm->valuestring : NULL;
    int rc = sl_store_meta_get(r->c.st, SL_META_CLOSE_REASON, r->reason_uuid, &m);
    if (rc == 0 && strcmp(m.org, r->org) && strcmp(m.org, r->c.default_org))
        rc = SL_ENOTFOUND;
    if (rc == SL_ENOTFOUND) {
        invalid(r, "dismiss_reason_uuid: no close reason %s in the organization", r->reason_uuid);
    } else if (rc) {
        sl_api_reply_store_error(r->c.req, rc);
    } else {
        cJSON *doc = cJSON_Parse(m.doc);
        const char *title = member_str(doc, "title");
        snprintf(r->reason, sizeof(r->reason), "%s", title[0] ? title : m.name);
        cJSON_Delete(doc);
    }
    free(m.doc);
    return rc;
}

static int action_prepare(struct action *r)
{
    int rc = check_fields(r);
    if (!rc)
        rc = selection_parse(r);
    if (!rc)
        rc = scope_selection(r);
    const cJSON *fi = cJSON_GetObjectItemCaseSensitive(r->c.body, "filter");
    if (!rc && fi)
        rc = filter_parse(r, fi);
    if (!rc && r->by_signature)
        rc = signatures_resolve(r);
    if (!rc && r->act == SL_ACT_DISMISS)
        rc = dismiss_parse(r);
    if (rc == SL_ENOMEM && !r->c.req->status)
        sl_api_meta_reply_store(r->c.req, rc, "event", NULL);
    return rc;
}

void sl_api_event_action(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_req *ar = req->app;
    struct action r;
    struct sl_task t;
    char err[300];
    int complete = 0;
    memset(&r, 0, sizeof(r));
    r.name = ar->route->data;
    r.act = sl_action_from_name(r.name);
    /* The reference UI's dismiss_by_filter takes the related events too. */
    r.include_related = r.act == SL_ACT_DISMISS && strstr(req->path, "dismiss_by_filter") != NULL;
    if (sl_api_meta_open(api, req, 1, &r.c) != 0 || action_prepare(&r) != 0)
        goto out;
    struct sl_event_selection sel = {.org = r.org,
                                     .uuids = r.uuids,
                                     .nuuids = r.nuuids,
                                     .filter = r.has_filter ? &r.f : NULL,
                                     .include_related = r.include_related};
    struct sl_event_action_args a = {.action = r.act,
                                     .by = r.c.who->key_id,
                                     .reason = r.reason[0] ? r.reason : NULL,
                                     .reason_uuid = r.reason_uuid[0] ? r.reason_uuid : NULL,
                                     .comment = r.comment,
                                     .now_ms = sl_now_ms()};
    int rc = sl_action_start(r.c.st, &sel, &a, &t, &complete, err, sizeof(err));
    if (rc == SL_EINVAL)
        sl_api_meta_reply_invalid(req, err);
    else if (rc == SL_ENOTFOUND)
        sl_http_reply_error(req, 404, "not found", err);
    else if (rc)
        sl_api_reply_store_error(req, rc);
    else
        sl_api_action_reply(req, &t, complete, NULL);
out:
    sl_api_meta_close(&r.c);
    sl_http_query_fini(&r.fq);
    free(r.ids);
    free(r.uuids);
}

void sl_api_action_reply(struct sl_http_req *req, const struct sl_task *t, int complete,
                         cJSON *extra)
{
    struct sl_api_req *ar = req->app;
    char loc[64];
    const char *action = NULL; /* extra's "action", when it has one, replaces it below */
    if (ar->route && ar->route->on_request == sl_api_event_action)
        action = ar->route->data;
    else if (t->ref[0])
        action = "add_to_case"; /* the case endpoints */
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddStringToObject(o, "task_id", t->id) &&
             cJSON_AddBoolToObject(o, "complete", complete) &&
             (!action || cJSON_AddStringToObject(o, "action", action)) &&
             cJSON_AddStringToObject(o, "state", t->state) &&
             cJSON_AddNumberToObject(o, "seen", (double)t->done) &&
             cJSON_AddNumberToObject(o, "changed", (double)t->matched);
    snprintf(loc, sizeof(loc), "/api/v2.0/task/%s", t->id);
    if (ok && !complete)
        ok = cJSON_AddStringToObject(o, "task", loc) != NULL;
    while (ok && extra && extra->child) {
        cJSON *it = cJSON_DetachItemViaPointer(extra, extra->child);
        cJSON_DeleteItemFromObjectCaseSensitive(o, it->string);
        if (!cJSON_AddItemToObject(o, it->string, it)) {
            cJSON_Delete(it);
            ok = 0;
        }
    }
    cJSON_Delete(extra);
    if (!complete)
        sl_http_req_add_header(req, "Location", loc);
    if (ok)
        sl_http_reply_json(req, complete ? 200 : 202, o);
    else
        sl_api_meta_reply_store(req, SL_ENOMEM, "task", NULL);
    cJSON_Delete(o);
}
