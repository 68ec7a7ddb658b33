/* GET /api/v2.0/task/<id>: the state and progress of a background task (today: the retroactive
 * application of an event rule), scoped like everything else: a task of another organization
 * is 404, except for keys of the default organization. */
#include <ctype.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/error.h"
#include "core/util.h"

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
    if (t->ref[0])
        cJSON_AddStringToObject(o, "event_rule", t->ref);
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

enum sl_http_next sl_api_task_get(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_req *ar = req->app;
    const struct sl_route_param *id = &ar->match.params[0];
    char uuid[SL_UUID_LEN + 1];
    struct sl_task t;
    struct sl_org org;
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
    if (rc == 0 && strcmp(t.org, ar->who.org_uuid)) {
        /* Another organization's task: visible to keys of the default organization only. */
        rc = sl_store_org_get(st, ar->who.org_uuid, NULL, &org);
        if (rc == 0 && !org.is_default)
            rc = SL_ENOTFOUND;
    }
    sl_api_store_put(api, req);
    if (rc == SL_ENOTFOUND) {
        sl_http_reply_error(req, 404, "not found", "no such task");
        return SL_HTTP_DONE;
    }
    if (rc) {
        sl_api_reply_store_error(req, rc);
        return SL_HTTP_DONE;
    }
    cJSON *o = task_json(&t);
    if (o)
        sl_http_reply_json(req, 200, o);
    else
        sl_api_reply_store_error(req, SL_ENOMEM);
    cJSON_Delete(o);
    return SL_HTTP_DONE;
}
