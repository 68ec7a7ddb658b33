/* The api process: starts the HTTP server, routes and authenticates requests, keeps the
 * backlog and partition figures fresh, heartbeats, and drains on stop. */
#include "api/api.h"
#include "event/event.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "api/api_internal.h"

#define READ_DEADLINE_MS 10000 /* the store's LIST_DEADLINE_MS */
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "processor/processor.h"

#define AUTH_CACHE_ENTRIES    1024
#define AUTH_CACHE_TTL_MS     5000
#define CONN_TIMEOUT_S        30
#define CONN_MEMORY_LIMIT     (32 * 1024)
#define CONN_LIMIT_MAX        10000
#define TICK_MS               100 /* the backlog is re-read every tick */
#define HEARTBEAT_MS          500
#define PARTITIONS_REFRESH_MS 2000
#define RATE_MS               1000

static const struct sl_api_route r_ingest = {SL_ROLE_ADMIN | SL_ROLE_AGENT, "send events",
                                             sl_api_ingest_headers, sl_api_ingest, NULL};
static const struct sl_api_route r_queue_stats = {SL_ROLE_ANY, "read queue stats",
                                                  sl_api_queue_stats, NULL, NULL};
/* Agents read the tasks of their own bulk requests (api_task.c refuses them other kinds). */
static const struct sl_api_route r_task_get = {SL_ROLE_ANY, "read tasks", sl_api_task_get, NULL,
                                               NULL};
static const struct sl_api_route r_event_get = {SL_ROLE_ADMIN | SL_ROLE_ANALYST, "read events",
                                                sl_api_event_get, NULL, NULL};
static const struct sl_api_route r_event_list = {SL_ROLE_ADMIN | SL_ROLE_ANALYST, "read events",
                                                 sl_api_event_list, NULL, NULL};
static const struct sl_api_route r_health = {0, NULL, sl_api_health, NULL, NULL};

/* Metadata: analysts read everything and write rules and lists; statuses, close reasons and
 * data types change the vocabulary of every event, so only admins write them. */
#define META_READ  (SL_ROLE_ADMIN | SL_ROLE_ANALYST)
#define META_ADMIN SL_ROLE_ADMIN
static const struct sl_api_route r_rule_list = {META_READ, "read event rules", sl_api_rule_list,
                                                NULL, NULL};
static const struct sl_api_route r_rule_get = {META_READ, "read event rules", sl_api_rule_get, NULL,
                                               NULL};
static const struct sl_api_route r_rule_create = {
    META_READ, "change event rules", sl_api_meta_expect_body, sl_api_rule_create, NULL};
static const struct sl_api_route r_rule_update = {
    META_READ, "change event rules", sl_api_meta_expect_body, sl_api_rule_update, NULL};
static const struct sl_api_route r_rule_delete = {META_READ, "change event rules",
                                                  sl_api_rule_delete, NULL, NULL};
static const struct sl_api_route r_rule_test = {META_READ, "test event rules",
                                                sl_api_meta_expect_body, sl_api_rule_test, NULL};
static const struct sl_api_route r_list_list = {META_READ, "read intel lists", sl_api_list_list,
                                                NULL, NULL};
static const struct sl_api_route r_list_get = {META_READ, "read intel lists", sl_api_list_get, NULL,
                                               NULL};
static const struct sl_api_route r_list_create = {
    META_READ, "change intel lists", sl_api_meta_expect_body, sl_api_list_create, NULL};
static const struct sl_api_route r_list_update = {
    META_READ, "change intel lists", sl_api_meta_expect_body, sl_api_list_update, NULL};
static const struct sl_api_route r_list_delete = {META_READ, "change intel lists",
                                                  sl_api_list_delete, NULL, NULL};
static const struct sl_api_route r_list_poll = {META_READ, "change intel lists", sl_api_list_poll,
                                                NULL, NULL};
static const struct sl_api_route r_values_get = {META_READ, "read intel lists",
                                                 sl_api_list_values_get, NULL, NULL};
static const struct sl_api_route r_values_add = {
    META_READ, "change intel lists", sl_api_meta_expect_body, sl_api_list_values_add, NULL};
static const struct sl_api_route r_values_delete = {
    META_READ, "change intel lists", sl_api_meta_expect_body, sl_api_list_values_delete, NULL};
static const struct sl_api_route r_reason_list = {
    META_READ, "read close reasons", sl_api_simple_list, NULL, &sl_api_kind_close_reason};
static const struct sl_api_route r_reason_get = {META_READ, "read close reasons", sl_api_simple_get,
                                                 NULL, &sl_api_kind_close_reason};
static const struct sl_api_route r_reason_create = {META_ADMIN, "change close reasons",
                                                    sl_api_meta_expect_body, sl_api_simple_create,
                                                    &sl_api_kind_close_reason};
static const struct sl_api_route r_reason_update = {META_ADMIN, "change close reasons",
                                                    sl_api_meta_expect_body, sl_api_simple_update,
                                                    &sl_api_kind_close_reason};
static const struct sl_api_route r_reason_delete = {
    META_ADMIN, "change close reasons", sl_api_simple_delete, NULL, &sl_api_kind_close_reason};
static const struct sl_api_route r_status_list = {META_READ, "read event statuses",
                                                  sl_api_simple_list, NULL, &sl_api_kind_status};
static const struct sl_api_route r_status_get = {META_READ, "read event statuses",
                                                 sl_api_simple_get, NULL, &sl_api_kind_status};
static const struct sl_api_route r_status_create = {META_ADMIN, "change event statuses",
                                                    sl_api_meta_expect_body, sl_api_simple_create,
                                                    &sl_api_kind_status};
static const struct sl_api_route r_status_update = {META_ADMIN, "change event statuses",
                                                    sl_api_meta_expect_body, sl_api_simple_update,
                                                    &sl_api_kind_status};
static const struct sl_api_route r_status_delete = {
    META_ADMIN, "change event statuses", sl_api_simple_delete, NULL, &sl_api_kind_status};
static const struct sl_api_route r_type_list = {META_READ, "read data types", sl_api_simple_list,
                                                NULL, &sl_api_kind_data_type};
static const struct sl_api_route r_type_get = {META_READ, "read data types", sl_api_simple_get,
                                               NULL, &sl_api_kind_data_type};
static const struct sl_api_route r_type_create = {META_ADMIN, "change data types",
                                                  sl_api_meta_expect_body, sl_api_simple_create,
                                                  &sl_api_kind_data_type};
static const struct sl_api_route r_type_update = {META_ADMIN, "change data types",
                                                  sl_api_meta_expect_body, sl_api_simple_update,
                                                  &sl_api_kind_data_type};
static const struct sl_api_route r_type_delete = {
    META_ADMIN, "change data types", sl_api_simple_delete, NULL, &sl_api_kind_data_type};

/* Events: analysts triage (dismiss, acknowledge, reopen, export); only admins delete. */
#define EV_WORK (SL_ROLE_ADMIN | SL_ROLE_ANALYST)
static const struct sl_api_route r_event_stats = {EV_WORK, "read events", sl_api_event_stats, NULL,
                                                  NULL};
static const struct sl_api_route r_event_select_all = {EV_WORK, "read events",
                                                       sl_api_event_select_all, NULL, NULL};
static const struct sl_api_route r_event_export = {EV_WORK, "export events", sl_api_event_export,
                                                   NULL, NULL};
static const struct sl_api_route r_event_dismiss = {
    EV_WORK, "dismiss events", sl_api_meta_expect_body, sl_api_event_action, "dismiss"};
static const struct sl_api_route r_event_ack = {
    EV_WORK, "acknowledge events", sl_api_meta_expect_body, sl_api_event_action, "acknowledge"};
static const struct sl_api_route r_event_unack = {
    EV_WORK, "acknowledge events", sl_api_meta_expect_body, sl_api_event_action, "unacknowledge"};
static const struct sl_api_route r_event_reopen = {
    EV_WORK, "reopen events", sl_api_meta_expect_body, sl_api_event_action, "reopen"};
static const struct sl_api_route r_event_delete = {
    SL_ROLE_ADMIN, "delete events", sl_api_meta_expect_body, sl_api_event_action, "delete"};

/* Cases and case templates: analysts work cases; only admins delete a case or change templates. */
static const struct sl_api_route r_case_list = {EV_WORK, "read cases", sl_api_case_list, NULL,
                                                NULL};
static const struct sl_api_route r_case_get = {EV_WORK, "read cases", sl_api_case_get, NULL, NULL};
static const struct sl_api_route r_case_create = {EV_WORK, "change cases", sl_api_meta_expect_body,
                                                  sl_api_case_create, NULL};
static const struct sl_api_route r_case_update = {EV_WORK, "change cases", sl_api_meta_expect_body,
                                                  sl_api_case_update, NULL};
static const struct sl_api_route r_case_delete = {SL_ROLE_ADMIN, "delete cases", sl_api_case_delete,
                                                  NULL, NULL};
static const struct sl_api_route r_case_add_events = {
    EV_WORK, "change cases", sl_api_meta_expect_body, sl_api_case_add_events, NULL};
static const struct sl_api_route r_case_close = {EV_WORK, "change cases", sl_api_meta_expect_body,
                                                 sl_api_case_close, NULL};
static const struct sl_api_route r_case_reopen = {EV_WORK, "change cases", sl_api_meta_expect_body,
                                                  sl_api_case_reopen, NULL};
static const struct sl_api_route r_case_events = {EV_WORK, "read cases", sl_api_case_events, NULL,
                                                  NULL};
static const struct sl_api_route r_case_observables = {EV_WORK, "read cases",
                                                       sl_api_case_observables, NULL, NULL};
static const struct sl_api_route r_comment_list = {EV_WORK, "read cases", sl_api_case_comment_list,
                                                   NULL, NULL};
static const struct sl_api_route r_comment_add = {EV_WORK, "change cases", sl_api_meta_expect_body,
                                                  sl_api_case_comment_add, NULL};
static const struct sl_api_route r_comment_delete = {EV_WORK, "change cases",
                                                     sl_api_case_comment_delete, NULL, NULL};
static const struct sl_api_route r_tmpl_list = {
    META_READ, "read case templates", sl_api_simple_list, NULL, &sl_api_kind_case_template};
static const struct sl_api_route r_tmpl_get = {META_READ, "read case templates", sl_api_simple_get,
                                               NULL, &sl_api_kind_case_template};
static const struct sl_api_route r_tmpl_create = {META_ADMIN, "change case templates",
                                                  sl_api_meta_expect_body, sl_api_simple_create,
                                                  &sl_api_kind_case_template};
static const struct sl_api_route r_tmpl_update = {META_ADMIN, "change case templates",
                                                  sl_api_meta_expect_body, sl_api_simple_update,
                                                  &sl_api_kind_case_template};
static const struct sl_api_route r_tmpl_delete = {
    META_ADMIN, "change case templates", sl_api_simple_delete, NULL, &sl_api_kind_case_template};

static const struct sl_api_route r_metrics = {0, NULL, sl_api_metrics, NULL, NULL};

/* Literal segments beat "*", so _bulk and queue_stats are never taken for an event uuid. */
static const struct sl_route routes[] = {
    {"/api/v2.0/event/_bulk", SL_HTTP_POST, &r_ingest},
    {"/api/v2.0/event/queue_stats", SL_HTTP_GET, &r_queue_stats},
    {"/api/v2.0/event/stats", SL_HTTP_GET, &r_event_stats},
    {"/api/v2.0/event/bulk_select_all", SL_HTTP_GET, &r_event_select_all},
    {"/api/v2.0/event/export", SL_HTTP_GET, &r_event_export},
    {"/api/v2.0/event/bulk_dismiss", SL_HTTP_PUT, &r_event_dismiss},
    {"/api/v2.0/event/dismiss_by_filter", SL_HTTP_PUT, &r_event_dismiss},
    {"/api/v2.0/event/acknowledge", SL_HTTP_PUT, &r_event_ack},
    {"/api/v2.0/event/unacknowledge", SL_HTTP_PUT, &r_event_unack},
    {"/api/v2.0/event/reopen", SL_HTTP_PUT, &r_event_reopen},
    {"/api/v2.0/event/bulk_delete", SL_HTTP_POST, &r_event_delete},
    {"/api/v2.0/event/*", SL_HTTP_GET, &r_event_get},
    {"/api/v2.0/task/*", SL_HTTP_GET, &r_task_get},
    {"/api/v2.0/event", SL_HTTP_GET, &r_event_list},
    {"/api/v2.0/event_rule/test_rql", SL_HTTP_POST, &r_rule_test},
    {"/api/v2.0/event_rule/*", SL_HTTP_GET, &r_rule_get},
    {"/api/v2.0/event_rule/*", SL_HTTP_PUT, &r_rule_update},
    {"/api/v2.0/event_rule/*", SL_HTTP_DELETE, &r_rule_delete},
    {"/api/v2.0/event_rule", SL_HTTP_GET, &r_rule_list},
    {"/api/v2.0/event_rule", SL_HTTP_POST, &r_rule_create},
    {"/api/v2.0/list/*/poll", SL_HTTP_POST, &r_list_poll},
    {"/api/v2.0/list/*/values", SL_HTTP_GET, &r_values_get},
    {"/api/v2.0/list/*/values", SL_HTTP_POST, &r_values_add},
    {"/api/v2.0/list/*/values", SL_HTTP_DELETE, &r_values_delete},
    {"/api/v2.0/list/*", SL_HTTP_GET, &r_list_get},
    {"/api/v2.0/list/*", SL_HTTP_PUT, &r_list_update},
    {"/api/v2.0/list/*", SL_HTTP_DELETE, &r_list_delete},
    {"/api/v2.0/list", SL_HTTP_GET, &r_list_list},
    {"/api/v2.0/list", SL_HTTP_POST, &r_list_create},
    {"/api/v2.0/close_reason/*", SL_HTTP_GET, &r_reason_get},
    {"/api/v2.0/close_reason/*", SL_HTTP_PUT, &r_reason_update},
    {"/api/v2.0/close_reason/*", SL_HTTP_DELETE, &r_reason_delete},
    {"/api/v2.0/close_reason", SL_HTTP_GET, &r_reason_list},
    {"/api/v2.0/close_reason", SL_HTTP_POST, &r_reason_create},
    {"/api/v2.0/event_status/*", SL_HTTP_GET, &r_status_get},
    {"/api/v2.0/event_status/*", SL_HTTP_PUT, &r_status_update},
    {"/api/v2.0/event_status/*", SL_HTTP_DELETE, &r_status_delete},
    {"/api/v2.0/event_status", SL_HTTP_GET, &r_status_list},
    {"/api/v2.0/event_status", SL_HTTP_POST, &r_status_create},
    {"/api/v2.0/data_type/*", SL_HTTP_GET, &r_type_get},
    {"/api/v2.0/data_type/*", SL_HTTP_PUT, &r_type_update},
    {"/api/v2.0/data_type/*", SL_HTTP_DELETE, &r_type_delete},
    {"/api/v2.0/data_type", SL_HTTP_GET, &r_type_list},
    {"/api/v2.0/data_type", SL_HTTP_POST, &r_type_create},
    {"/api/v2.0/case/*/add_events", SL_HTTP_PUT, &r_case_add_events},
    {"/api/v2.0/case/*/close", SL_HTTP_PUT, &r_case_close},
    {"/api/v2.0/case/*/reopen", SL_HTTP_PUT, &r_case_reopen},
    {"/api/v2.0/case/*/events", SL_HTTP_GET, &r_case_events},
    {"/api/v2.0/case/*/observables", SL_HTTP_GET, &r_case_observables},
    {"/api/v2.0/case/*/comments/*", SL_HTTP_DELETE, &r_comment_delete},
    {"/api/v2.0/case/*/comments", SL_HTTP_GET, &r_comment_list},
    {"/api/v2.0/case/*/comments", SL_HTTP_POST, &r_comment_add},
    {"/api/v2.0/case/*", SL_HTTP_GET, &r_case_get},
    {"/api/v2.0/case/*", SL_HTTP_PUT, &r_case_update},
    {"/api/v2.0/case/*", SL_HTTP_DELETE, &r_case_delete},
    {"/api/v2.0/case", SL_HTTP_GET, &r_case_list},
    {"/api/v2.0/case", SL_HTTP_POST, &r_case_create},
    {"/api/v2.0/case_template/*", SL_HTTP_GET, &r_tmpl_get},
    {"/api/v2.0/case_template/*", SL_HTTP_PUT, &r_tmpl_update},
    {"/api/v2.0/case_template/*", SL_HTTP_DELETE, &r_tmpl_delete},
    {"/api/v2.0/case_template", SL_HTTP_GET, &r_tmpl_list},
    {"/api/v2.0/case_template", SL_HTTP_POST, &r_tmpl_create},
    {"/health", SL_HTTP_GET, &r_health},
    {"/metrics", SL_HTTP_GET, &r_metrics},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* ---- store handles ---- */

struct sl_store *sl_api_store_get(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_req *ar = req->app;
    struct sl_store **slot;
    char err[256];
    if (ar->store)
        return ar->store;
    int i = sl_http_req_slot(req);
    if (i >= 0 && i < api->nstores) {
        slot = &api->stores[i];
    } else {
        pthread_mutex_lock(&api->shared_lock);
        ar->store_shared = 1;
        slot = &api->shared_store;
    }
    if (!*slot) {
        *slot = sl_store_open(api->cfg->data_dir, err, sizeof(err));
        if (!*slot) {
            int64_t now = sl_mono_ms(), last = atomic_load(&api->store_fail_log_ms);
            if ((last == 0 || now - last >= 60000) &&
                atomic_compare_exchange_strong(&api->store_fail_log_ms, &last, now))
                SL_ERROR("cannot open the store in %s: %s", api->cfg->data_dir, err);
            sl_api_store_put(api, req);
            return NULL;
        }
    }
    ar->store = *slot;
    return ar->store;
}

void sl_api_store_put(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_req *ar = req->app;
    ar->store = NULL;
    if (ar->store_shared) {
        ar->store_shared = 0;
        pthread_mutex_unlock(&api->shared_lock);
    }
}

void sl_api_reply_store_error(struct sl_http_req *req, int rc)
{
    sl_http_req_add_header(req, "Retry-After", "1");
    sl_http_reply_error(req, 503, "store unavailable", rc ? sl_strerror(rc) : NULL);
}

/* ---- backlog and drain rate ---- */

int64_t sl_api_backlog(const struct sl_api *api)
{
    return atomic_load(&api->backlog);
}

int sl_api_retry_after(const struct sl_api *api, int64_t backlog)
{
    int64_t rate_milli = atomic_load(&api->drain_milli_eps);
    int64_t excess = backlog - api->cfg->max_queue_size + 1;
    if (rate_milli <= 0 || excess <= 0)
        return 1;
    int64_t s = (excess * 1000 + rate_milli - 1) / rate_milli;
    return s < 1 ? 1 : s > 60 ? 60 : (int)s;
}

static void refresh_backlog(struct sl_api *api)
{
    uint64_t n = 0;
    pthread_mutex_lock(&api->stream_lock);
    int rc = sl_stream_backlog(api->stream, SL_TOPIC_EVENTS, SL_GROUP_WORKERS, &n);
    pthread_mutex_unlock(&api->stream_lock);
    if (rc == SL_ENOTFOUND)
        n = 0, rc = 0;
    if (rc != 0) {
        SL_DEBUG("backlog: %s", sl_strerror(rc));
        return;
    }
    atomic_store(&api->backlog, (int64_t)n);
    atomic_store(&api->stats->backlog, (int64_t)n);
}

static void refresh_partitions(struct sl_api *api)
{
    uint32_t n = 0;
    pthread_mutex_lock(&api->stream_lock);
    int rc = sl_stream_topic_ensure(api->stream, SL_TOPIC_EVENTS, 1, &n);
    pthread_mutex_unlock(&api->stream_lock);
    if (rc == 0 && n > 0 && n != atomic_load(&api->partitions)) {
        SL_INFO("topic %s has %u partitions", SL_TOPIC_EVENTS, n);
        atomic_store(&api->partitions, n);
    }
}

void sl_api_partitions_refresh(struct sl_api *api)
{
    refresh_partitions(api);
}

static int64_t workers_processed(const struct sl_stats *st)
{
    int64_t sum = 0;
    for (int i = 0; i < SL_MAX_WORKERS; i++)
        sum += atomic_load(&st->workers[i].processed_events);
    return sum;
}

/* The drain rate (events/s) as an exponentially weighted average over RATE_MS samples. */
static void update_rate(struct sl_api *api, int64_t *last_count, int64_t *last_ms)
{
    int64_t now = sl_mono_ms(), count = workers_processed(api->stats);
    if (*last_ms && now > *last_ms) {
        int64_t delta = count - *last_count;
        int64_t sample = delta > 0 ? delta * 1000 * 1000 / (now - *last_ms) : 0;
        int64_t old = atomic_load(&api->drain_milli_eps);
        atomic_store(&api->drain_milli_eps, old ? (old + sample) / 2 : sample);
    }
    *last_count = count;
    *last_ms = now;
}

/* ---- routing and authentication ---- */

static int authenticate(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_req *ar = req->app;
    const char *key;
    size_t len;
    if (sl_auth_bearer(sl_http_req_header(req, "Authorization"), &key, &len) != 0) {
        sl_http_req_add_header(req, "WWW-Authenticate", "Bearer realm=\"sluice\"");
        sl_http_reply_error(req, 401, "unauthorized",
                            "expected the header Authorization: Bearer <API key>");
        return SL_EINVAL;
    }
    struct sl_store *st = sl_api_store_get(api, req);
    if (!st) {
        sl_api_reply_store_error(req, 0);
        return SL_EIO;
    }
    int rc = sl_auth_resolve(api->auth, st, key, len, sl_mono_ms(), &ar->who);
    sl_api_store_put(api, req);
    if (rc == SL_ENOTFOUND) {
        sl_http_req_add_header(req, "WWW-Authenticate",
                               "Bearer realm=\"sluice\", error=\"invalid_token\"");
        sl_http_reply_error(req, 401, "unauthorized", "invalid API key");
        return rc;
    }
    if (rc) {
        sl_api_reply_store_error(req, rc);
        return rc;
    }
    sl_http_req_set_org(req, ar->who.org_uuid);
    if (!(sl_auth_role_bit(ar->who.role) & ar->route->roles)) {
        char detail[160];
        snprintf(detail, sizeof(detail), "role %s may not %s (allowed: %s%s%s)", ar->who.role,
                 ar->route->action, ar->route->roles & SL_ROLE_ADMIN ? "admin" : "",
                 ar->route->roles & SL_ROLE_ANALYST ? ", analyst" : "",
                 ar->route->roles & SL_ROLE_AGENT ? ", agent" : "");
        sl_http_reply_error(req, 403, "forbidden", detail);
        return SL_EINVAL;
    }
    return 0;
}

static enum sl_http_next on_headers(struct sl_http_req *req, void *ud)
{
    struct sl_api *api = ud;
    struct sl_api_req *ar = req->app;
    char detail[320];
    switch (sl_router_match(routes, NROUTES, req->method, req->path, &ar->match)) {
    case SL_ROUTE_NO_PATH:
        snprintf(detail, sizeof(detail), "no such endpoint: %.200s", req->path);
        sl_http_reply_error(req, 404, "not found", detail);
        return SL_HTTP_DONE;
    case SL_ROUTE_NO_METHOD: {
        char allow[64];
        sl_http_methods_format(ar->match.allow, allow, sizeof(allow));
        sl_http_req_add_header(req, "Allow", allow);
        snprintf(detail, sizeof(detail), "%.16s %.200s: allowed methods are %s", req->method_name,
                 req->path, allow);
        sl_http_reply_error(req, 405, "method not allowed", detail);
        return SL_HTTP_DONE;
    }
    case SL_ROUTE_OK:
        break;
    }
    ar->route = ar->match.route->data;
    if (ar->route->roles && authenticate(api, req) != 0)
        return SL_HTTP_DONE;
    return ar->route->on_headers(api, req);
}

static void on_request(struct sl_http_req *req, void *ud)
{
    struct sl_api_req *ar = req->app;
    if (ar->route && ar->route->on_request)
        ar->route->on_request(ud, req);
}

static const struct sl_http_handlers handlers = {on_headers, on_request};

/* ---- life cycle ---- */

static unsigned conn_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return CONN_LIMIT_MAX;
    /* Leave descriptors for the store, the stream and logging. */
    rlim_t n = rl.rlim_cur > 64 ? rl.rlim_cur - 64 : 16;
    return n < CONN_LIMIT_MAX ? (unsigned)n : CONN_LIMIT_MAX;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal cuts it short, which is what we want */
}

/* The heartbeat says "serving": withheld while a handler call is stuck (for half the hang
 * timeout), so the supervisor restarts an api whose threads hang, not only one whose main
 * thread does. */
static void heartbeat(struct sl_api *api, int *stuck)
{
    int64_t limit_ms = api->cfg->worker_hang_s * 1000 / 2;
    /* A list query may legitimately run up to the store's read deadline (10 s, store_sqlite.c
     * LIST_DEADLINE_MS): never call that a hang. */
    if (limit_ms < READ_DEADLINE_MS + 5000)
        limit_ms = READ_DEADLINE_MS + 5000;
    int64_t busiest = api->srv ? sl_http_server_busiest_ms(api->srv) : 0;
    if (limit_ms > 0 && busiest > limit_ms) {
        if (!*stuck)
            SL_ERROR("a request handler has been running for %lld ms: withholding the "
                     "heartbeat",
                     (long long)busiest);
        *stuck = 1;
        return;
    }
    *stuck = 0;
    atomic_store(&api->stats->api_heartbeat_ms, sl_mono_ms());
}

static void serve(struct sl_api *api, volatile sig_atomic_t *stop)
{
    int64_t last_hb = 0, last_parts = sl_mono_ms(), rate_ms = 0, rate_count = 0;
    int stuck = 0;
    while (!*stop) {
        int64_t now = sl_mono_ms();
        refresh_backlog(api);
        if (now - last_hb >= HEARTBEAT_MS) {
            heartbeat(api, &stuck);
            last_hb = now;
        }
        if (now - last_parts >= PARTITIONS_REFRESH_MS) {
            refresh_partitions(api);
            last_parts = now;
        }
        if (now - rate_ms >= RATE_MS)
            update_rate(api, &rate_count, &rate_ms);
        sleep_ms(TICK_MS);
    }
}

static void drain(struct sl_api *api)
{
    int stuck = 0;
    int64_t deadline = sl_mono_ms() + api->cfg->drain_timeout_s * 1000;
    SL_INFO("draining: %lld requests in flight", (long long)sl_http_server_inflight(api->srv));
    sl_http_server_quiesce(api->srv);
    while (sl_http_server_inflight(api->srv) > 0 && sl_mono_ms() < deadline) {
        heartbeat(api, &stuck);
        sleep_ms(20);
    }
    if (sl_http_server_inflight(api->srv) > 0)
        SL_WARN("drain timeout: closing %lld unfinished requests",
                (long long)sl_http_server_inflight(api->srv));
}

static int api_open(struct sl_api *api, int listen_fd)
{
    char err[512];
    api->stream = sl_processor_open_stream(api->cfg, err, sizeof(err));
    if (!api->stream) {
        SL_ERROR("cannot open the stream: %s", err);
        return SL_EIO;
    }
    uint32_t n = 0;
    int rc = sl_stream_topic_ensure(api->stream, SL_TOPIC_EVENTS, 1, &n);
    if (rc) {
        SL_ERROR("cannot open topic %s: %s", SL_TOPIC_EVENTS, sl_strerror(rc));
        return rc;
    }
    atomic_store(&api->partitions, n ? n : 1);
    refresh_backlog(api);
    api->auth = sl_auth_create(AUTH_CACHE_ENTRIES, AUTH_CACHE_TTL_MS);
    api->nstores = (api->cfg->http_threads > 0 ? api->cfg->http_threads : 1) + 1;
    api->stores = calloc((size_t)api->nstores, sizeof(*api->stores));
    if (!api->auth || !api->stores)
        return SL_ENOMEM;
    struct sl_http_server_config sc = {
        .listen_fd = listen_fd,
        .threads = api->cfg->http_threads,
        .conn_timeout_s = CONN_TIMEOUT_S,
        .conn_limit = conn_limit(),
        .conn_memory_limit = CONN_MEMORY_LIMIT,
        .max_body = (size_t)api->cfg->max_body_bytes,
        .app_size = sizeof(struct sl_api_req),
        .stats = api->stats,
        .handlers = &handlers,
        .ud = api,
    };
    api->srv = sl_http_server_start(&sc, err, sizeof(err));
    if (!api->srv) {
        SL_ERROR("cannot start the HTTP server: %s", err);
        return SL_EIO;
    }
    return 0;
}

static void api_close(struct sl_api *api)
{
    sl_http_server_stop(api->srv); /* joins the threads: nothing uses the handles after */
    sl_api_rule_cache_fini();
    for (int i = 0; i < api->nstores; i++)
        if (api->stores[i])
            sl_store_close(api->stores[i]);
    if (api->shared_store)
        sl_store_close(api->shared_store);
    free(api->stores);
    sl_auth_destroy(api->auth);
    sl_stream_destroy(api->stream);
}

int sl_api_run(const struct sl_config *cfg, int listen_fd, struct sl_stats *stats,
               volatile sig_atomic_t *stop)
{
    struct sl_api api;
    /* Before any JSON exists: lets a bulk parse tell "out of memory" (503) from "malformed"
     * (400), and bounds the tree a body may make (413). */
    sl_event_alloc_install_checked();
    memset(&api, 0, sizeof(api));
    api.cfg = cfg;
    api.stats = stats;
    api.started_ms = sl_now_ms();
    pthread_mutex_init(&api.stream_lock, NULL);
    pthread_mutex_init(&api.shared_lock, NULL);
    atomic_store(&stats->api_heartbeat_ms, sl_mono_ms());
    int rc = api_open(&api, listen_fd);
    if (rc == 0) {
        SL_INFO("api serving with %d threads (max body %lld bytes, max queue %lld events)",
                cfg->http_threads, (long long)cfg->max_body_bytes, (long long)cfg->max_queue_size);
        serve(&api, stop);
        drain(&api);
    }
    api_close(&api);
    pthread_mutex_destroy(&api.stream_lock);
    pthread_mutex_destroy(&api.shared_lock);
    SL_INFO("api stopped");
    return rc;
}
