/* The monitoring endpoints: queue_stats (Reflex's Event Queue figures), /health and /metrics. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "core/error.h"
#include "core/util.h"

#define METRICS_MAX (64 * 1024) /* the whole exposition; it has a fixed set of series */

int sl_api_worker_alive(const struct sl_worker_slot *w)
{
    int32_t pid = atomic_load(&w->pid);
    if (pid <= 0 || atomic_load(&w->status) == SL_WORKER_DEAD)
        return 0;
    return kill(pid, 0) == 0 || errno == EPERM;
}

static int configured_workers(const struct sl_api *api)
{
    int n = atomic_load(&api->stats->worker_count);
    return n < 0 ? 0 : n > SL_MAX_WORKERS ? SL_MAX_WORKERS : n;
}

static int alive_workers(const struct sl_api *api)
{
    int alive = 0, n = configured_workers(api);
    for (int i = 0; i < n; i++)
        alive += sl_api_worker_alive(&api->stats->workers[i]);
    return alive;
}

static int processing_disabled(const struct sl_api *api)
{
    return api->cfg->disabled || atomic_load(&api->stats->disabled);
}

/* Worker counters summed over every slot (a slot keeps its counts across restarts). */
struct worker_totals {
    int64_t stored, duplicates, redelivered, invalid, restarts;
    int64_t rule_hits, intel_hits, muted, dns_misses, rule_errors;
};

static void worker_totals(const struct sl_stats *st, struct worker_totals *t)
{
    memset(t, 0, sizeof(*t));
    for (int i = 0; i < SL_MAX_WORKERS; i++) {
        const struct sl_worker_slot *w = &st->workers[i];
        t->stored += atomic_load(&w->stored);
        t->duplicates += atomic_load(&w->duplicates);
        t->redelivered += atomic_load(&w->redelivered);
        t->invalid += atomic_load(&w->invalid);
        t->restarts += atomic_load(&w->restarts);
        t->rule_hits += atomic_load(&w->rule_hits);
        t->intel_hits += atomic_load(&w->intel_hits);
        t->muted += atomic_load(&w->muted);
        t->dns_misses += atomic_load(&w->dns_misses);
        t->rule_errors += atomic_load(&w->rule_errors);
    }
}

/* ---- GET /api/v2.0/event/queue_stats ---- */

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

static cJSON *worker_json(const struct sl_api *api, const struct sl_worker_slot *w)
{
    char name[sizeof(w->name) + 1], org[sizeof(w->organization) + 1];
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    /* Written by another process: copy with a bound rather than trust the terminator. */
    snprintf(name, sizeof(name), "%.*s", (int)sizeof(w->name), w->name);
    snprintf(org, sizeof(org), "%.*s", (int)sizeof(w->organization), w->organization);
    int64_t refresh = atomic_load(&w->last_meta_refresh_ms);
    int64_t due_s = refresh > 0 ? api->cfg->meta_refresh_s - (sl_now_ms() - refresh) / 1000 : 0;
    cJSON_AddNumberToObject(o, "pid", atomic_load(&w->pid));
    cJSON_AddStringToObject(o, "organization", org);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddBoolToObject(o, "alive", sl_api_worker_alive(w));
    cJSON_AddStringToObject(o, "status", sl_worker_status_name(atomic_load(&w->status)));
    cJSON_AddNumberToObject(o, "processed_events", (double)atomic_load(&w->processed_events));
    cJSON_AddNumberToObject(o, "events_in_processing",
                            (double)atomic_load(&w->events_in_processing));
    add_time(o, "last_event", atomic_load(&w->last_event_ms));
    add_time(o, "last_meta_refresh", refresh);
    cJSON_AddNumberToObject(o, "time_to_refresh", (double)(due_s > 0 ? due_s : 0));
    cJSON_AddNumberToObject(o, "stored", (double)atomic_load(&w->stored));
    cJSON_AddNumberToObject(o, "duplicates", (double)atomic_load(&w->duplicates));
    cJSON_AddNumberToObject(o, "restarts", (double)atomic_load(&w->restarts));
    cJSON_AddNumberToObject(o, "event_rules", (double)atomic_load(&w->rules_loaded));
    cJSON_AddNumberToObject(o, "intel_lists", (double)atomic_load(&w->lists_loaded));
    return o;
}

static cJSON *queue_stats_json(const struct sl_api *api)
{
    const struct sl_stats *st = api->stats;
    struct worker_totals t;
    int n = configured_workers(api), alive = 0;
    cJSON *o = cJSON_CreateObject(), *workers = cJSON_CreateArray(), *ev = cJSON_CreateObject();
    if (!o || !workers || !ev)
        goto fail;
    for (int i = 0; i < n; i++) {
        cJSON *w = worker_json(api, &st->workers[i]);
        if (!w || !cJSON_AddItemToArray(workers, w)) {
            cJSON_Delete(w);
            goto fail;
        }
        alive += sl_api_worker_alive(&st->workers[i]);
    }
    worker_totals(st, &t);
    cJSON_AddNumberToObject(ev, "accepted", (double)atomic_load(&st->events_accepted));
    cJSON_AddNumberToObject(ev, "rejected", (double)atomic_load(&st->events_rejected));
    cJSON_AddNumberToObject(ev, "stored", (double)t.stored);
    cJSON_AddNumberToObject(ev, "duplicates", (double)t.duplicates);
    cJSON_AddNumberToObject(ev, "redelivered", (double)t.redelivered);
    cJSON_AddNumberToObject(ev, "invalid", (double)t.invalid);
    cJSON_AddNumberToObject(ev, "rule_hits", (double)t.rule_hits);
    cJSON_AddNumberToObject(ev, "intel_hits", (double)t.intel_hits);
    cJSON_AddNumberToObject(ev, "muted", (double)t.muted);
    cJSON_AddNumberToObject(ev, "dns_misses", (double)t.dns_misses);
    cJSON_AddNumberToObject(o, "size", (double)sl_api_backlog(api));
    cJSON_AddItemToObject(o, "workers", workers);
    cJSON_AddNumberToObject(o, "respawns", (double)atomic_load(&st->respawns));
    cJSON_AddNumberToObject(o, "worker_count", n);
    cJSON_AddNumberToObject(o, "dead_workers", processing_disabled(api) ? 0 : n - alive);
    cJSON_AddBoolToObject(o, "processing_disabled", processing_disabled(api));
    cJSON_AddItemToObject(o, "events", ev);
    return o;
fail:
    cJSON_Delete(o);
    cJSON_Delete(workers);
    cJSON_Delete(ev);
    return NULL;
}

enum sl_http_next sl_api_queue_stats(struct sl_api *api, struct sl_http_req *req)
{
    cJSON *o = queue_stats_json(api);
    if (o)
        sl_http_reply_json(req, 200, o);
    else
        sl_http_reply_error(req, 503, "out of memory", NULL);
    cJSON_Delete(o);
    return SL_HTTP_DONE;
}

/* ---- GET /health ---- */

static int store_ok(struct sl_api *api, struct sl_http_req *req)
{
    int64_t n;
    struct sl_store *st = sl_api_store_get(api, req);
    if (!st)
        return 0;
    int rc = sl_store_org_count(st, &n);
    sl_api_store_put(api, req);
    return rc == 0;
}

enum sl_http_next sl_api_health(struct sl_api *api, struct sl_http_req *req)
{
    int disabled = processing_disabled(api), n = configured_workers(api);
    int alive = alive_workers(api), store = store_ok(api, req);
    int degraded = (!disabled && alive == 0) || !store;
    int64_t started = atomic_load(&api->stats->started_ms);
    if (started <= 0)
        started = api->started_ms;
    cJSON *o = cJSON_CreateObject(), *w = cJSON_CreateObject();
    if (!o || !w ||
        !cJSON_AddItemToObject(o, "status", cJSON_CreateString(degraded ? "degraded" : "ok"))) {
        cJSON_Delete(o);
        cJSON_Delete(w);
        sl_http_reply_error(req, 503, "out of memory", NULL);
        return SL_HTTP_DONE;
    }
    cJSON_AddStringToObject(o, "processing", disabled ? "disabled" : "enabled");
    cJSON_AddNumberToObject(w, "alive", alive);
    cJSON_AddNumberToObject(w, "dead", disabled ? 0 : n - alive);
    cJSON_AddNumberToObject(w, "configured", n);
    cJSON_AddItemToObject(o, "workers", w);
    cJSON_AddStringToObject(o, "store", store ? "ok" : "unavailable");
    cJSON_AddNumberToObject(o, "backlog", (double)sl_api_backlog(api));
    cJSON_AddNumberToObject(o, "uptime_s", (double)((sl_now_ms() - started) / 1000));
    sl_http_reply_json(req, degraded ? 503 : 200, o);
    cJSON_Delete(o);
    return SL_HTTP_DONE;
}

/* ---- GET /metrics ---- */

/* A fixed-size text buffer; output past its end is dropped and flagged. */
struct mbuf {
    char *p;
    size_t len, cap;
    int overflow;
};

__attribute__((format(printf, 2, 3))) static void mb_printf(struct mbuf *b, const char *fmt, ...)
{
    if (b->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    b->len += (size_t)n;
}

static void metric(struct mbuf *b, const char *name, const char *type, const char *help,
                   int64_t value)
{
    mb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", name, help, name, type, name,
              (long long)value);
}

static void histogram(struct mbuf *b, const char *name, const char *help,
                      const struct sl_histogram *h)
{
    int64_t cum = 0;
    mb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < SL_LATENCY_BUCKETS; i++) {
        cum += atomic_load(&h->buckets[i]);
        if (i < SL_LATENCY_BUCKETS - 1)
            mb_printf(b, "%s_bucket{le=\"%g\"} %lld\n", name, (double)sl_latency_bounds_us[i] / 1e6,
                      (long long)cum);
        else
            mb_printf(b, "%s_bucket{le=\"+Inf\"} %lld\n", name, (long long)cum);
    }
    /* _count from the buckets, so it always equals the +Inf bucket. */
    mb_printf(b, "%s_sum %.6f\n%s_count %lld\n", name, (double)atomic_load(&h->sum_us) / 1e6, name,
              (long long)cum);
}

static void http_responses(struct mbuf *b, const struct sl_stats *st)
{
    const char *name = "sluice_http_responses_total";
    mb_printf(b, "# HELP %s HTTP answers by status code.\n# TYPE %s counter\n", name, name);
    for (int i = 0; i < SL_HTTP_CODES; i++)
        mb_printf(b, "%s{code=\"%d\"} %lld\n", name, sl_http_codes[i],
                  (long long)atomic_load(&st->http_requests[i]));
    mb_printf(b, "%s{code=\"other\"} %lld\n", name,
              (long long)atomic_load(&st->http_requests[SL_HTTP_CODES]));
}

static void metrics_text(const struct sl_api *api, struct mbuf *b)
{
    const struct sl_stats *st = api->stats;
    struct worker_totals t;
    worker_totals(st, &t);
    metric(b, "sluice_ingest_requests_total", "counter", "Bulk ingest requests received.",
           atomic_load(&st->ingest_requests));
    metric(b, "sluice_events_accepted_total", "counter",
           "Events acknowledged to clients (durably in the stream).",
           atomic_load(&st->events_accepted));
    metric(b, "sluice_events_rejected_total", "counter", "Events refused at ingest by validation.",
           atomic_load(&st->events_rejected));
    metric(b, "sluice_ingest_throttled_total", "counter",
           "Bulk requests answered 429 because the backlog was at MAX_QUEUE_SIZE.",
           atomic_load(&st->ingest_throttled));
    metric(b, "sluice_events_stored_total", "counter", "Events written to the store by workers.",
           t.stored);
    metric(b, "sluice_events_duplicate_total", "counter",
           "Events dropped as duplicates of a stored (organization, reference).", t.duplicates);
    metric(b, "sluice_events_redelivered_total", "counter",
           "Stream records delivered again after a crash and found already stored.", t.redelivered);
    metric(b, "sluice_events_invalid_total", "counter",
           "Stream records workers could not turn into events.", t.invalid);
    metric(b, "sluice_rule_hits_total", "counter",
           "Event rule matches (an event two rules hit counts twice).", t.rule_hits);
    metric(b, "sluice_intel_hits_total", "counter",
           "Observables that matched an intel list at ingest.", t.intel_hits);
    metric(b, "sluice_events_muted_total", "counter",
           "Events stored dismissed because a mute_event rule muted their signature.", t.muted);
    metric(b, "sluice_dns_misses_total", "counter",
           "RQL DNS mutators evaluated as no value because the answer was not cached yet.",
           t.dns_misses);
    metric(b, "sluice_rule_errors_total", "counter",
           "Rule evaluations that could not finish (evaluation memory ran out).", t.rule_errors);
    metric(b, "sluice_backlog_events", "gauge",
           "Events in the stream not yet committed by the workers.", sl_api_backlog(api));
    metric(b, "sluice_worker_restarts_total", "counter",
           "Worker processes restarted by the supervisor.", t.restarts);
    metric(b, "sluice_workers_alive", "gauge", "Worker processes running.", alive_workers(api));
    metric(b, "sluice_workers_configured", "gauge", "Worker processes configured.",
           configured_workers(api));
    metric(b, "sluice_processing_disabled", "gauge",
           "1 when REFLEX_EVENT_PROCESSOR_DISABLED is set.", processing_disabled(api));
    http_responses(b, st);
    histogram(b, "sluice_ingest_ack_seconds",
              "Bulk ingest: request received to 200 answered (events durable).", &st->ack_latency);
    histogram(b, "sluice_worker_batch_seconds", "Worker: batch polled to its offset committed.",
              &st->batch_latency);
}

enum sl_http_next sl_api_metrics(struct sl_api *api, struct sl_http_req *req)
{
    struct mbuf b = {malloc(METRICS_MAX), 0, METRICS_MAX, 0};
    if (!b.p) {
        sl_http_reply_error(req, 503, "out of memory", NULL);
        return SL_HTTP_DONE;
    }
    metrics_text(api, &b);
    if (b.overflow) {
        free(b.p);
        sl_http_reply_error(req, 500, "internal error", "metrics exposition too large");
        return SL_HTTP_DONE;
    }
    sl_http_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    return SL_HTTP_DONE;
}
