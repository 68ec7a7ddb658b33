/* GET /api/v2.0/task/<id>: the state and progress of a background task (the retroactive
 * application of an event rule, a bulk action) or of a bulk ingest request (what became of each
 * of its events), scoped like everything else: a task of another organization is 404, except
 * for keys of the default organization. Agents read only their bulk requests' tasks. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "actions/actions.h"
#include "api/api_task.h"
#include "core/error.h"
#include "core/util.h"

/* ---- the bulk requests answered recently ---- */

static pthread_mutex_t recent_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sl_api_recent_task *recent; /* a ring of SL_API_RECENT_TASKS, made on first use */
static size_t recent_next;

void sl_api_task_note(const char *task, const char *org, int64_t accepted, int64_t rejected,
                      int64_t received_ms)
{
    pthread_mutex_lock(&recent_lock);
    if (!recent)
        recent = calloc(SL_API_RECENT_TASKS, sizeof(*recent));
    if (recent) {
        struct sl_api_recent_task *r = &recent[recent_next++ % SL_API_RECENT_TASKS];
        snprintf(r->task, sizeof(r->task), "%s", task);
        snprintf(r->org, sizeof(r->org), "%s", org);
        r->accepted = accepted;
        r->rejected = rejected;
        r->received_ms = received_ms;
    }
    pthread_mutex_unlock(&recent_lock);
}

int sl_api_task_recent(const char *task, struct sl_api_recent_task *out)
{
    int rc = SL_ENOTFOUND;
    pthread_mutex_lock(&recent_lock);
    /* Newest first; only a GET of a task the store does not know yet gets here. */
    size_t n = recent_next < SL_API_RECENT_TASKS ? recent_next : SL_API_RECENT_TASKS;
    for (size_t i = 0; recent && i < n && rc; i++) {
        const struct sl_api_recent_task *r = &recent[(recent_next - 1 - i) % SL_API_RECENT_TASKS];
        if (r->task[0] == task[0] && strcmp(r->task, task) == 0) {
            *out = *r;
            rc = 0;
        }
    }
    pthread_mutex_unlock(&recent_lock);
    return rc;
}

static void add_time(cJSON *o, const char *name, int64_t ms)
{
    char iso[25];
    if (ms <= 0) {
        cJSON_AddNullToObject(o, name);
        return;
    }
    sl_time_format(ms, iso);
    cJSON_AddStringToObject(o, name, iso);
}

static cJSON *task_json(const struct sl_task *t)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "task_id", t->id);
    cJSON_AddStringToObject(o, "kind", t->kind);
    cJSON_AddStringToObject(o, "organization", t->org);
    cJSON_AddStringToObject(o, "state", t->state);
    cJSON_AddBoolToObject(o, "complete", !strcmp(t->state, "done") || !strcmp(t->state, "failed"));
    /* What the task is about: the rule a retro task applies, the case events are added to. */
    if (t->ref[0])
        cJSON_AddStringToObject(o, strcmp(t->kind, SL_TASK_EVENT_ACTION) ? "event_rule" : "case",
                                t->ref);
    cJSON_AddNumberToObject(o, "total", (double)t->total);
    cJSON_AddNumberToObject(o, "done", (double)t->done);
    cJSON_AddNumberToObject(o, "matched", (double)t->matched);
    double pct = t->total > 0 ? 100.0 * (double)t->done / (double)t->total : 0;
    cJSON_AddNumberToObject(o, "progress_percent", pct > 100 ? 100 : pct);
    add_time(o, "created_at", t->created_ms);
    add_time(o, "started_at", t->started_ms);
    add_time(o, "finished_at", t->finished_ms);
    if (t->error[0])
        cJSON_AddStringToObject(o, "error", t->error);
    else
        cJSON_AddNullToObject(o, "error");
    return o;
}

/* ---- bulk ingest tasks ---- */

/* What is known of a bulk request: its recorded end and outcomes, and what the api remembers. */
struct ingest_task {
    int done;
    int64_t accepted, rejected, received_ms, done_ms; /* -1: unknown (rejected, accepted) */
    char org[SL_UUID_LEN + 1];                        /* "" when unknown */
    char *outcomes;                                   /* JSON array (malloc'd), or NULL */
};

/* Looks the request up: the store first, then the requests the api answered recently (a
 * request no worker has got to yet). SL_ENOTFOUND when neither knows it. */
static int ingest_task_load(struct sl_store *st, const char *id, struct ingest_task *it)
{
    struct sl_api_recent_task r;
    memset(it, 0, sizeof(*it));
    int rc = sl_store_ingest_task_get(st, NULL, id, &it->done, &it->accepted, &it->rejected,
                                      &it->received_ms, &it->done_ms, it->org, &it->outcomes);
    if ((rc && rc != SL_ENOTFOUND) || (rc == 0 && it->done))
        return rc;
    int known = sl_api_task_recent(id, &r) == 0;
    if (rc == SL_ENOTFOUND && !known)
        return rc;
    /* Pending: the figures the api answered, when it remembers them. */
    it->accepted = known ? r.accepted : -1;
    it->rejected = known ? r.rejected : -1;
    it->received_ms = known ? r.received_ms : 0;
    if (known) /* the sender's (a row may name the organization a rule moved its event to) */
        memcpy(it->org, r.org, sizeof(it->org));
    return 0;
}

static void add_count(cJSON *o, const char *name, int64_t n)
{
    if (n < 0)
        cJSON_AddNullToObject(o, name);
    else
        cJSON_AddNumberToObject(o, name, (double)n);
}

/* The answer for a bulk request; NULL when memory ran out. */
static cJSON *ingest_task_json(const char *id, const struct ingest_task *it)
{
    static const char *const names[] = {"stored",    "duplicate", "rejected",
                                        "dismissed", "merged",    "muted"};
    int64_t counts[6] = {0, 0, 0, 0, 0, 0}, rows = 0;
    cJSON *o = cJSON_CreateObject(), *c = cJSON_CreateObject(), *ev, *e;
    ev = it->outcomes ? cJSON_Parse(it->outcomes) : cJSON_CreateArray();
    if (!o || !c || !cJSON_IsArray(ev)) {
        cJSON_Delete(o);
        cJSON_Delete(c);
        cJSON_Delete(ev);
        return NULL;
    }
    cJSON_ArrayForEach(e, ev)
    {
        const cJSON *out = cJSON_GetObjectItemCaseSensitive(e, "outcome");
        for (int k = 1; k < 6 && cJSON_IsString(out); k++)
            if (strcmp(out->valuestring, names[k]) == 0)
                counts[k]++;
        rows++;
    }
    /* Stored events have no row: the accepted ones without one, once every one is processed
     * (the api's rejections are rows too, recorded with the end). */
    counts[0] = it->done ? it->accepted - (rows - it->rejected) : -1;
    if (it->done && counts[0] < 0)
        counts[0] = 0;
    for (int k = 0; k < 6; k++)
        add_count(c, names[k], counts[k]);
    cJSON_AddStringToObject(o, "task_id", id);
    cJSON_AddStringToObject(o, "kind", "event_bulk");
    cJSON_AddStringToObject(o, "organization", it->org);
    cJSON_AddStringToObject(o, "state", it->done ? "done" : "pending");
    cJSON_AddBoolToObject(o, "complete", it->done);
    add_count(o, "accepted", it->accepted);
    add_count(o, "rejected", it->rejected);
    cJSON_AddItemToObject(o, "counts", c);
    cJSON_AddItemToObject(o, "events", ev);
    add_time(o, "received_at", it->received_ms);
    add_time(o, "finished_at", it->done ? it->done_ms : 0);
    return o;
}

/* Whether the key may read a task of org: its own organization's, or any for a key of the
 * default organization. 0, SL_ENOTFOUND, or a store error. */
static int may_read(struct sl_store *st, const struct sl_principal *who, const char *org)
{
    struct sl_org o;
    if (org[0] && strcmp(org, who->org_uuid) == 0)
        return 0;
    int rc = sl_store_org_get(st, who->org_uuid, NULL, &o);
    if (rc == 0 && !o.is_default)
        rc = SL_ENOTFOUND;
    return rc;
}

static void reply_json(struct sl_http_req *req, cJSON *o)
{
    if (o)
        sl_http_reply_json(req, 200, o);
    else
        sl_api_reply_store_error(req, SL_ENOMEM);
    cJSON_Delete(o);
}

enum sl_http_next sl_api_task_get(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_req *ar = req->app;
    const struct sl_route_param *id = &ar->match.params[0];
    char uuid[SL_UUID_LEN + 1];
    struct sl_task t;
    struct ingest_task it = {0};
    int ingest = 0;
    if (ar->match.nparams != 1 || id->len != SL_UUID_LEN) {
        sl_http_reply_error(req, 404, "not found", "no such task");
        return SL_HTTP_DONE;
    }
    for (size_t i = 0; i < SL_UUID_LEN; i++)
        uuid[i] = (char)tolower((unsigned char)id->ptr[i]);
    uuid[SL_UUID_LEN] = '\0';
    struct sl_store *st = sl_api_store_get(api, req);
    if (!st) {
        sl_api_reply_store_error(req, 0);
        return SL_HTTP_DONE;
    }
    int rc = sl_uuid_valid(uuid) ? sl_store_task_get(st, uuid, &t) : SL_ENOTFOUND;
    /* Agents send events: they read what became of them, not the other kinds of task. */
    if (rc == 0 && strcmp(ar->who.role, "agent") == 0)
        rc = SL_ENOTFOUND;
    else if (rc == SL_ENOTFOUND && sl_uuid_valid(uuid) &&
             (rc = ingest_task_load(st, uuid, &it)) == 0)
        ingest = 1;
    if (rc == 0)
        rc = may_read(st, &ar->who, ingest ? it.org : t.org);
    sl_api_store_put(api, req);
    if (rc == SL_ENOTFOUND)
        sl_http_reply_error(req, 404, "not found", "no such task");
    else if (rc == SL_EFULL)
        sl_http_reply_error(req, 500, "task too large",
                            "the outcomes of this bulk request exceed 16 MiB of JSON");
    else if (rc)
        sl_api_reply_store_error(req, rc);
    else
        reply_json(req, ingest ? ingest_task_json(uuid, &it) : task_json(&t));
    free(it.outcomes);
    return SL_HTTP_DONE;
}
