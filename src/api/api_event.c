/* The event endpoints: bulk ingest into the stream, and listing and reading stored events. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_internal.h"
#include "api/api_task.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "event/event.h"
#include "processor/processor.h"

#define FILTER_TEXT_MAX 1024 /* longest status, signature, tag or observable filter */
#define PAGE_MAX        10000000
#define LIST_OFFSET_MAX 10000000 /* events a page may skip: deeper is what start/end is for */

/* ---- POST /api/v2.0/event/_bulk ---- */

enum sl_http_next sl_api_ingest_headers(struct sl_api *api, struct sl_http_req *req)
{
    atomic_fetch_add(&api->stats->ingest_requests, 1);
    if (sl_http_req_expect_body(req) != 0)
        return SL_HTTP_DONE;
    int64_t max = api->cfg->max_queue_size, backlog = sl_api_backlog(api);
    if (max > 0 && backlog >= max) {
        char ra[16];
        int secs = sl_api_retry_after(api, backlog);
        snprintf(ra, sizeof(ra), "%d", secs);
        sl_http_req_add_header(req, "Retry-After", ra);
        atomic_fetch_add(&api->stats->ingest_throttled, 1);
        cJSON *d = cJSON_CreateObject();
        if (d) {
            cJSON_AddNumberToObject(d, "backlog", (double)backlog);
            cJSON_AddNumberToObject(d, "max_queue_size", (double)max);
            cJSON_AddNumberToObject(d, "retry_after", secs);
        }
        sl_http_reply_error_json(req, 429, "queue full", d);
        return SL_HTTP_DONE;
    }
    return SL_HTTP_BODY;
}

static void reply_bad_body(struct sl_http_req *req, long offset, const char *msg)
{
    if (offset < 0) {
        sl_http_reply_error(req, 400, "invalid body", msg);
        return;
    }
    cJSON *d = cJSON_CreateObject();
    if (d) {
        cJSON_AddNumberToObject(d, "offset", (double)offset);
        cJSON_AddStringToObject(d, "message", msg);
    }
    sl_http_reply_error_json(req, 400, "malformed JSON", d);
}

/* Appends the records to one partition, round-robin over the topic's partitions. */
static int append(struct sl_api *api, const struct sl_stream_msg *msgs, size_t n)
{
    for (int attempt = 0;; attempt++) {
        uint32_t parts = atomic_load(&api->partitions);
        uint32_t p = (uint32_t)(atomic_fetch_add(&api->next_partition, 1) % (parts ? parts : 1));
        int rc = sl_stream_append(api->stream, SL_TOPIC_EVENTS, p, msgs, n, NULL);
        if (rc != SL_ENOTFOUND || attempt == 1)
            return rc;
        sl_api_partitions_refresh(api); /* the topic shrank or was recreated */
    }
}

static void reply_append_error(struct sl_http_req *req, int rc)
{
    sl_http_req_add_header(req, "Retry-After", "1");
    if (rc == SL_EFULL)
        sl_http_reply_error(req, 503, "stream full",
                            "the event stream is at its size bound (SLUICE_STREAM_MAX_BYTES); "
                            "nothing was accepted");
    else
        sl_http_reply_error(req, 503, "stream unavailable", sl_strerror(rc));
}

static void reply_accepted(struct sl_api *api, struct sl_http_req *req, const char *task_id,
                           size_t accepted, cJSON *rejected)
{
    int64_t us = sl_http_req_elapsed_us(req);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "task_id", task_id) ||
        !cJSON_AddNumberToObject(o, "response_time", (double)us / 1e6) ||
        !cJSON_AddNumberToObject(o, "accepted", (double)accepted) ||
        !cJSON_AddItemReferenceToObject(o, "rejected", rejected)) {
        /* The events are in the stream: say so even without the details. */
        char *body = malloc(96);
        if (body)
            snprintf(body, 96, "{\"task_id\":\"%s\",\"accepted\":%zu}", task_id, accepted);
        sl_http_reply(req, 200, "application/json", body, body ? strlen(body) : 0);
    } else {
        sl_http_reply_json(req, 200, o);
    }
    cJSON_Delete(o);
    atomic_fetch_add(&api->stats->events_accepted, (int64_t)accepted);
    atomic_fetch_add(&api->stats->events_rejected, (int64_t)cJSON_GetArraySize(rejected));
    sl_histogram_observe(&api->stats->ack_latency, sl_http_req_elapsed_us(req));
    SL_DEBUG("task %s: %zu accepted, %d rejected in %lld us", task_id, accepted,
             cJSON_GetArraySize(rejected), (long long)us);
}

static int add_rejection(cJSON *rejected, size_t index, const char *msg)
{
    cJSON *r = cJSON_CreateObject();
    if (!r || !cJSON_AddNumberToObject(r, "index", (double)index) ||
        !cJSON_AddStringToObject(r, "error", msg) || !cJSON_AddItemToArray(rejected, r)) {
        cJSON_Delete(r);
        return SL_ENOMEM;
    }
    return 0;
}

/* Normalizes every event into msgs (records malloc'd) and rejections; *out_n accepted. */
static int normalize_all(const cJSON *events, const struct sl_ingest_ctx *req_ctx,
                         struct sl_stream_msg *msgs, size_t *out_n, cJSON *rejected)
{
    const cJSON *ev;
    size_t i = 0, n = 0;
    char err[256];
    struct sl_ingest_ctx ctx = *req_ctx;
    cJSON_ArrayForEach(ev, events)
    {
        char *rec = NULL;
        size_t len = 0;
        ctx.ingest_index = (int64_t)i;
        int rc = sl_event_normalize(ev, &ctx, &rec, &len, err, sizeof(err));
        if (rc == 0) {
            msgs[n].data = rec;
            msgs[n].len = len;
            n++;
        } else if (rc != SL_EINVAL || add_rejection(rejected, i, err) != 0) {
            *out_n = n;
            return rc == SL_EINVAL ? SL_ENOMEM : rc;
        }
        i++;
    }
    *out_n = n;
    return 0;
}

/* The end of the request, folded into its last accepted record as a first member "_meta":
 * {"_meta":{"action":"task_end","task","accepted","rejected":[{"index","error"}...],
 * "received_ms"},<the record's members>}. A client's event can never start with a member
 * whose name starts with "_" (sl_event_normalize refuses them), so the worker knows the end by
 * the record's first bytes, and since the end travels in the request's last record, a worker
 * that has processed it has processed every event of the request (one append, one partition,
 * in order). The end costs no record of its own: the backlog stays a count of events. */
static int fold_task_end(struct sl_stream_msg *last, const char *task_id, size_t accepted,
                         cJSON *rejected, int64_t received_ms)
{
    static const char head[] = "{\"_meta\":";
    const char *rec = last->data;
    cJSON *meta = cJSON_CreateObject();
    char *text = NULL;
    int rc = SL_ENOMEM;
    if (!meta || !cJSON_AddStringToObject(meta, "action", "task_end") ||
        !cJSON_AddStringToObject(meta, "task", task_id) ||
        !cJSON_AddNumberToObject(meta, "accepted", (double)accepted) ||
        !cJSON_AddItemReferenceToObject(meta, "rejected", rejected) ||
        !cJSON_AddNumberToObject(meta, "received_ms", (double)received_ms) ||
        !(text = cJSON_PrintUnformatted(meta)))
        goto out;
    size_t hl = sizeof(head) - 1, ml = strlen(text);
    /* the record is a JSON object with members: "{...}" */
    char *folded = last->len > 2 && rec[0] == '{' ? malloc(hl + ml + last->len + 1) : NULL;
    if (!folded)
        goto out;
    memcpy(folded, head, hl);
    memcpy(folded + hl, text, ml);
    folded[hl + ml] = ',';
    memcpy(folded + hl + ml + 1, rec + 1, last->len - 1);
    folded[hl + ml + last->len] = 0;
    free((void *)last->data);
    last->data = folded;
    last->len = hl + ml + last->len;
    rc = 0;
out:
    free(text);
    cJSON_Delete(meta);
    return rc;
}

/* A request that put nothing in the stream (every event rejected, or none sent) ends at once:
 * its end and rejections are recorded in the store directly. */
static int record_ended_task(struct sl_api *api, struct sl_http_req *req, const char *task_id,
                             const char *org, cJSON *rejected, int64_t received_ms)
{
    size_t n = (size_t)cJSON_GetArraySize(rejected), i = 0;
    struct sl_store_outcome *o = calloc(n ? n : 1, sizeof(*o));
    const cJSON *r;
    if (!o)
        return SL_ENOMEM;
    cJSON_ArrayForEach(r, rejected)
    {
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(r, "index");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(r, "error");
        o[i].task = task_id;
        o[i].org = org;
        o[i].index = cJSON_IsNumber(idx) ? (int64_t)idx->valuedouble : (int64_t)i;
        o[i].outcome = SL_OUT_REJECTED;
        o[i].detail = cJSON_IsString(msg) ? msg->valuestring : NULL;
        i++;
    }
    struct sl_store_ingest_done done = {task_id, org, 0, (int64_t)n, received_ms};
    struct sl_store_batch batch = {o, n, &done, 1};
    struct sl_store *st = sl_api_store_get(api, req);
    int rc = st ? sl_store_put_batch(st, NULL, 0, &batch, NULL) : SL_EIO;
    if (st)
        sl_api_store_put(api, req);
    free(o);
    return rc;
}

void sl_api_ingest(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_req *ar = req->app;
    cJSON *root = NULL, *events = NULL, *rejected = NULL;
    struct sl_stream_msg *msgs = NULL;
    size_t n = 0, accepted = 0;
    long offset = -1;
    char err[256], task_id[SL_UUID_LEN + 1];

    int rc = sl_event_bulk_parse(req->body.data ? req->body.data : "", req->body.len, &root,
                                 &events, &offset, err, sizeof(err));
    if (rc == SL_EINVAL) {
        reply_bad_body(req, offset, err);
        goto out;
    } else if (rc == SL_EFULL) {
        sl_http_reply_error(req, 413, "body too large", err); /* too many tiny values */
        goto out;
    } else if (rc) {
        sl_http_req_add_header(req, "Retry-After", "1");
        sl_http_reply_error(req, 503, "out of memory", "nothing was accepted; try again");
        goto out;
    }
    n = (size_t)cJSON_GetArraySize(events);
    if ((int64_t)n > api->cfg->max_events_per_request) {
        cJSON *d = cJSON_CreateObject();
        if (d) {
            cJSON_AddNumberToObject(d, "max_events", (double)api->cfg->max_events_per_request);
            cJSON_AddNumberToObject(d, "received", (double)n);
        }
        sl_http_reply_error_json(req, 413, "too many events", d);
        goto out;
    }
    sl_uuid4(task_id);
    struct sl_ingest_ctx ctx = {.org_uuid = ar->who.org_uuid,
                                .agent_id = ar->who.key_id,
                                .agent_type = ar->who.role,
                                .task_id = task_id,
                                .received_ms = sl_now_ms()};
    msgs = calloc(n ? n : 1, sizeof(*msgs));
    rejected = cJSON_CreateArray();
    rc = msgs && rejected ? normalize_all(events, &ctx, msgs, &accepted, rejected) : SL_ENOMEM;
    cJSON_Delete(root); /* the records are self-contained: free the tree before the append */
    root = NULL;
    if (rc) {
        sl_http_req_add_header(req, "Retry-After", "1");
        sl_http_reply_error(req, 503, "out of memory", "nothing was accepted");
        goto out;
    }
    if (accepted &&
        fold_task_end(&msgs[accepted - 1], task_id, accepted, rejected, ctx.received_ms) != 0) {
        sl_http_req_add_header(req, "Retry-After", "1");
        sl_http_reply_error(req, 503, "out of memory", "nothing was accepted");
        goto out;
    }
    if (!accepted && (rc = record_ended_task(api, req, task_id, ar->who.org_uuid, rejected,
                                             ctx.received_ms)) != 0) {
        SL_WARN("task %s: cannot record its end: %s", task_id, sl_strerror(rc));
        sl_api_reply_store_error(req, rc);
        goto out;
    }
    rc = accepted ? append(api, msgs, accepted) : 0;
    if (rc) {
        SL_WARN("append of %zu events failed: %s", accepted, sl_strerror(rc));
        reply_append_error(req, rc);
        goto out;
    }
    /* Seen by concurrent requests before the next backlog refresh. */
    atomic_fetch_add(&api->backlog, (int64_t)accepted);
    sl_api_task_note(task_id, ar->who.org_uuid, (int64_t)accepted,
                     (int64_t)cJSON_GetArraySize(rejected), ctx.received_ms);
    reply_accepted(api, req, task_id, accepted, rejected);
out:
    for (size_t i = 0; msgs && i < accepted; i++)
        free((void *)msgs[i].data);
    free(msgs);
    cJSON_Delete(rejected);
    cJSON_Delete(root);
}

/* ---- GET /api/v2.0/event ---- */

static int bad_param(char *err, size_t errlen, const char *name, const char *value,
                     const char *expected)
{
    snprintf(err, errlen, "%s=%.64s%s: expected %s", name, value, strlen(value) > 64 ? "..." : "",
             expected);
    return SL_EINVAL;
}

static int parse_severities(const struct sl_http_query *q, struct sl_event_filter *f, char *err,
                            size_t errlen)
{
    size_t pos = 0;
    const char *v;
    while ((v = sl_http_query_next(q, "severity", &pos))) {
        const char *p = v;
        do {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            char tok[16];
            int64_t sev;
            while (len && isspace((unsigned char)*p))
                p++, len--;
            while (len && isspace((unsigned char)p[len - 1]))
                len--;
            if (len == 0 || len >= sizeof(tok))
                return bad_param(err, errlen, "severity", v, "integers 0..4, comma-separated");
            memcpy(tok, p, len);
            tok[len] = '\0';
            if (sl_parse_int64(tok, 0, 4, &sev) != 0)
                return bad_param(err, errlen, "severity", v, "integers 0..4, comma-separated");
            int dup = 0;
            for (int i = 0; i < f->nseverities; i++)
                dup |= f->severities[i] == (int)sev;
            if (!dup && f->nseverities < (int)(sizeof(f->severities) / sizeof(f->severities[0])))
                f->severities[f->nseverities++] = (int)sev;
            p = comma ? comma + 1 : NULL;
        } while (p);
    }
    return 0;
}

static int parse_text(const struct sl_http_query *q, const char *name, size_t max, const char **out,
                      char *err, size_t errlen)
{
    const char *v = sl_http_query_get(q, name);
    if (!v)
        return 0;
    if (strlen(v) > max) {
        char what[64];
        snprintf(what, sizeof(what), "at most %zu bytes", max);
        return bad_param(err, errlen, name, v, what);
    }
    *out = v[0] ? v : NULL; /* an empty filter does not filter */
    return 0;
}

static int parse_time(const struct sl_http_query *q, const char *name, int64_t *out, char *err,
                      size_t errlen)
{
    const char *v = sl_http_query_get(q, name);
    if (!v || !v[0])
        return 0;
    if (sl_time_parse(v, strlen(v), out) != 0)
        return bad_param(err, errlen, name, v,
                         "an ISO 8601 date or date-time (2024-05-01 or 2024-05-01T12:00:00Z)");
    return 0;
}

static int parse_int(const struct sl_http_query *q, const char *name, int64_t min, int64_t max,
                     int64_t *out, char *err, size_t errlen)
{
    const char *v = sl_http_query_get(q, name);
    if (!v)
        return 0;
    if (sl_parse_int64(v, min, max, out) != 0) {
        char what[64];
        snprintf(what, sizeof(what), "an integer %lld..%lld", (long long)min, (long long)max);
        return bad_param(err, errlen, name, v, what);
    }
    return 0;
}

int sl_api_event_filter_parse(const struct sl_http_query *q, struct sl_event_filter *f, char *err,
                              size_t errlen)
{
    const char *org = f->org;
    memset(f, 0, sizeof(*f));
    f->org = org;
    f->page = 1;
    f->page_size = 25;
    int rc = parse_text(q, "status", FILTER_TEXT_MAX, &f->status, err, errlen);
    if (!rc)
        rc = parse_severities(q, f, err, errlen);
    if (!rc)
        rc = parse_text(q, "title", SL_EVENT_TITLE_MAX, &f->title, err, errlen);
    if (!rc)
        rc = parse_text(q, "signature", FILTER_TEXT_MAX, &f->signature, err, errlen);
    if (!rc)
        rc = parse_text(q, "tags", SL_EVENT_TAG_MAX, &f->tag, err, errlen);
    if (!rc)
        rc = parse_text(q, "tag", SL_EVENT_TAG_MAX, &f->tag, err, errlen); /* tag wins */
    if (!rc)
        rc =
            parse_text(q, "observable", SL_EVENT_OBSERVABLE_VALUE_MAX, &f->observable, err, errlen);
    if (!rc)
        rc = parse_time(q, "start", &f->start_ms, err, errlen);
    if (!rc)
        rc = parse_time(q, "end", &f->end_ms, err, errlen);
    if (!rc)
        rc = parse_int(q, "page", 1, PAGE_MAX, &f->page, err, errlen);
    if (!rc)
        rc = parse_int(q, "page_size", 1, 1000, &f->page_size, err, errlen);
    if (rc)
        return rc;
    const char *dir = sl_http_query_get(q, "sort_direction");
    if (dir && strcasecmp(dir, "asc") == 0)
        f->sort_asc = 1;
    else if (dir && strcasecmp(dir, "desc") != 0)
        return bad_param(err, errlen, "sort_direction", dir, "asc or desc");
    if (f->start_ms && f->end_ms && f->start_ms > f->end_ms)
        return bad_param(err, errlen, "start", sl_http_query_get(q, "start"), "a time before end");
    return 0;
}

/* Wraps the store's array (malloc'd) into the answer in place: the buffer grows by the few
 * bytes of the wrapper and the array moves up, so a page of up to 32 MiB is never held twice.
 * Returns the body, which took events over, or NULL (events still the caller's). */
static char *list_body(char *events, const struct sl_event_filter *f, int64_t total,
                       size_t *out_len)
{
    static const char head[] = "{\"events\":";
    const size_t hlen = sizeof(head) - 1;
    int64_t pages = (total + f->page_size - 1) / f->page_size;
    char tail[160];
    int n =
        snprintf(tail, sizeof(tail),
                 ",\"pagination\":{\"total_results\":%lld,\"pages\":%lld,\"page\":%lld,"
                 "\"page_size\":%lld}}",
                 (long long)total, (long long)pages, (long long)f->page, (long long)f->page_size);
    if (n < 0 || (size_t)n >= sizeof(tail))
        return NULL;
    size_t len = strlen(events);
    char *out = realloc(events, hlen + len + (size_t)n + 1);
    if (!out)
        return NULL;
    memmove(out + hlen, out, len);
    memcpy(out, head, hlen);
    memcpy(out + hlen + len, tail, (size_t)n + 1);
    *out_len = hlen + len + (size_t)n;
    return out;
}

/* Answers a failed sl_store_event_list. Neither a too large page nor a too expensive query
 * gets better by retrying, so they carry no Retry-After. */
static void reply_list_error(struct sl_http_req *req, int rc)
{
    if (rc == SL_EINVAL)
        sl_http_reply_error(req, 400, "invalid parameter", "page or page_size out of range");
    else if (rc == SL_EFULL) /* the store's LIST_MAX_BYTES */
        sl_http_reply_error(req, 400, "page too large",
                            "the events of this page exceed 32 MiB; lower page_size");
    else if (rc == SL_ETIMEDOUT) /* the store's LIST_DEADLINE_MS */
        sl_http_reply_error(req, 503, "query too expensive",
                            "the query ran longer than 10 s and was stopped; narrow the time "
                            "range (start/end) or the filters");
    else
        sl_api_reply_store_error(req, rc);
}

static int key_is_default(struct sl_store *st, const struct sl_principal *who, int *out)
{
    struct sl_org org;
    int rc = sl_store_org_get(st, who->org_uuid, NULL, &org);
    *out = rc == 0 && org.is_default;
    return rc == SL_ENOTFOUND ? 0 : rc;
}

/* The organization whose events a list reads: the key's own, or the one ?organization= names
 * when the key is the default organization's (the parent of every other). Another key naming
 * another organization, or a default key naming none that exists, gets 404 (as for another
 * organization's event). Answers and returns non-zero on failure. */
static int list_org(struct sl_http_req *req, struct sl_store *st, char out[SL_UUID_LEN + 1])
{
    struct sl_api_req *ar = req->app;
    const char *v = sl_http_query_get(&req->query, "organization");
    struct sl_org org;
    char err[160];
    int is_default = 0, rc;
    memcpy(out, ar->who.org_uuid, SL_UUID_LEN + 1);
    if (!v || !v[0])
        return 0;
    if (strlen(v) != SL_UUID_LEN || !sl_uuid_valid(v)) {
        bad_param(err, sizeof(err), "organization", v, "an organization uuid");
        sl_http_reply_error(req, 400, "invalid parameter", err);
        return SL_EINVAL;
    }
    for (size_t i = 0; i <= SL_UUID_LEN; i++)
        out[i] = (char)tolower((unsigned char)v[i]);
    if (strcmp(out, ar->who.org_uuid) == 0)
        return 0;
    rc = key_is_default(st, &ar->who, &is_default);
    if (rc == 0 && is_default)
        rc = sl_store_org_get(st, out, NULL, &org);
    else if (rc == 0)
        rc = SL_ENOTFOUND;
    if (rc == SL_ENOTFOUND)
        sl_http_reply_error(req, 404, "not found", "no such organization");
    else if (rc)
        sl_api_reply_store_error(req, rc);
    return rc;
}

enum sl_http_next sl_api_event_list(struct sl_api *api, struct sl_http_req *req)
{
    const char *grouped = sl_http_query_get(&req->query, "grouped");
    if (grouped && (!strcmp(grouped, "true") || !strcmp(grouped, "1")))
        return sl_api_event_grouped(api, req);
    struct sl_event_filter f = {.org = NULL};
    char err[256], *events = NULL, org[SL_UUID_LEN + 1];
    int64_t total = 0;
    if (sl_api_event_filter_parse(&req->query, &f, err, sizeof(err)) != 0) {
        sl_http_reply_error(req, 400, "invalid parameter", err);
        return SL_HTTP_DONE;
    }
    /* (page-1)*page_size > LIST_OFFSET_MAX, without the overflow. The store would read and
     * drop every skipped event. */
    if (f.page - 1 > LIST_OFFSET_MAX / f.page_size) {
        snprintf(err, sizeof(err),
                 "page=%lld: with page_size=%lld it skips more than %d events; page through a "
                 "narrower time range (start/end) instead",
                 (long long)f.page, (long long)f.page_size, LIST_OFFSET_MAX);
        sl_http_reply_error(req, 400, "invalid parameter", err);
        return SL_HTTP_DONE;
    }
    struct sl_store *st = sl_api_store_get(api, req);
    if (!st) {
        sl_api_reply_store_error(req, 0);
        return SL_HTTP_DONE;
    }
    if (list_org(req, st, org) != 0) {
        sl_api_store_put(api, req);
        return SL_HTTP_DONE;
    }
    f.org = org;
    int rc = sl_store_event_list(st, &f, &events, &total);
    sl_api_store_put(api, req);
    if (rc) {
        reply_list_error(req, rc);
    } else {
        size_t len = 0;
        char *body = list_body(events, &f, total, &len);
        if (body) {
            events = NULL; /* now the body's */
            sl_http_reply(req, 200, "application/json", body, len);
        } else {
            sl_http_reply_error(req, 503, "out of memory", NULL);
        }
    }
    free(events);
    return SL_HTTP_DONE;
}

/* ---- GET /api/v2.0/event/<uuid> ---- */

/* For a key of the default organization, the event in whichever other organization holds it
 * (a rule may have moved it away from the one it arrived in); SL_ENOTFOUND for other keys. */
static int event_get_elsewhere(struct sl_store *st, const struct sl_principal *who,
                               const char *uuid, char **out_doc)
{
    struct sl_org *orgs = NULL;
    size_t n = 0;
    int is_default = 0;
    int rc = key_is_default(st, who, &is_default);
    if (rc || !is_default)
        return rc ? rc : SL_ENOTFOUND;
    if ((rc = sl_store_org_list(st, &orgs, &n)) != 0)
        return rc;
    rc = SL_ENOTFOUND;
    for (size_t i = 0; i < n && rc == SL_ENOTFOUND; i++)
        if (strcmp(orgs[i].uuid, who->org_uuid) != 0)
            rc = sl_store_event_get(st, orgs[i].uuid, uuid, out_doc);
    free(orgs);
    return rc;
}

enum sl_http_next sl_api_event_get(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_req *ar = req->app;
    const struct sl_route_param *id = &ar->match.params[0];
    char uuid[SL_UUID_LEN + 1], *doc = NULL;
    /* Another organization's event and a malformed id look the same as a missing one. */
    if (ar->match.nparams != 1 || id->len != SL_UUID_LEN) {
        sl_http_reply_error(req, 404, "not found", "no such event");
        return SL_HTTP_DONE;
    }
    for (size_t i = 0; i < SL_UUID_LEN; i++)
        uuid[i] = (char)tolower((unsigned char)id->ptr[i]);
    uuid[SL_UUID_LEN] = '\0';
    if (!sl_uuid_valid(uuid)) {
        sl_http_reply_error(req, 404, "not found", "no such event");
        return SL_HTTP_DONE;
    }
    struct sl_store *st = sl_api_store_get(api, req);
    if (!st) {
        sl_api_reply_store_error(req, 0);
        return SL_HTTP_DONE;
    }
    int rc = sl_store_event_get(st, ar->who.org_uuid, uuid, &doc);
    if (rc == SL_ENOTFOUND)
        rc = event_get_elsewhere(st, &ar->who, uuid, &doc);
    sl_api_store_put(api, req);
    if (rc == SL_ENOTFOUND)
        sl_http_reply_error(req, 404, "not found", "no such event");
    else if (rc)
        sl_api_reply_store_error(req, rc);
    else
        sl_http_reply(req, 200, "application/json", doc, strlen(doc));
    return SL_HTTP_DONE;
}
