/* What the api's source files share: the process-wide api state, the per-request state and the
 * route handlers. Not for use outside src/api/. */
#ifndef SL_API_API_INTERNAL_H
#define SL_API_API_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/config.h"
#include "http/auth.h"
#include "http/router.h"
#include "http/server.h"
#include "processor/stats.h"
#include "store/store.h"
#include "stream/stream.h"

/* The api process: one per process, shared by every server thread. */
struct sl_api {
    const struct sl_config *cfg;
    struct sl_stats *stats;
    struct sl_stream *stream; /* sl_stream_append is thread-safe; other calls take stream_lock */
    pthread_mutex_t stream_lock;
    struct sl_http_server *srv;
    struct sl_auth *auth;
    /* One store handle per server thread (a handle is single-threaded), opened lazily. */
    int nstores;
    struct sl_store **stores;
    pthread_mutex_t shared_lock; /* guards shared_store, for a thread without a slot */
    struct sl_store *shared_store;
    _Atomic uint32_t partitions; /* of SL_TOPIC_EVENTS, refreshed by the main loop */
    _Atomic uint64_t next_partition;
    _Atomic int64_t backlog;         /* events not yet committed by the workers, ~100 ms old */
    _Atomic int64_t drain_milli_eps; /* workers' drain rate, events/s x 1000 (EWMA) */
    _Atomic int64_t store_fail_log_ms;
    int64_t started_ms;
};

struct sl_api_route;

/* req->app: what the api keeps per request. */
struct sl_api_req {
    const struct sl_api_route *route;
    struct sl_route_match match;
    struct sl_principal who; /* when the route needs a key */
    struct sl_store *store;  /* while a handler holds one (sl_api_store_get) */
    int store_shared;
};

/* A route's handling: roles that may call it (0: no key needed), a handler run when the
 * headers are in, and, for routes with a body, one run when the body is in. */
struct sl_api_route {
    unsigned roles;
    const char *action; /* for the 403 message: "send events" */
    enum sl_http_next (*on_headers)(struct sl_api *api, struct sl_http_req *req);
    void (*on_request)(struct sl_api *api, struct sl_http_req *req);
};

/* The store handle of the calling server thread, opened on first use. Returns NULL (and logs,
 * at most once a minute) if the store cannot be opened. Pair with sl_api_store_put in the same
 * handler call. */
struct sl_store *sl_api_store_get(struct sl_api *api, struct sl_http_req *req);
void sl_api_store_put(struct sl_api *api, struct sl_http_req *req);

/* Answers 503 {"error": "store unavailable"} with Retry-After. */
void sl_api_reply_store_error(struct sl_http_req *req, int rc);

/* The cached backlog of SL_TOPIC_EVENTS for SL_GROUP_WORKERS. */
int64_t sl_api_backlog(const struct sl_api *api);
/* Seconds a throttled client should wait, from the backlog over the limit and the drain rate
 * (1..60). */
int sl_api_retry_after(const struct sl_api *api, int64_t backlog);

/* Re-reads the partition count of SL_TOPIC_EVENTS (after an append found none). */
void sl_api_partitions_refresh(struct sl_api *api);

/* Bulk ingest (api_event.c). */
enum sl_http_next sl_api_ingest_headers(struct sl_api *api, struct sl_http_req *req);
void sl_api_ingest(struct sl_api *api, struct sl_http_req *req);
/* Event list and get (api_event.c). */
enum sl_http_next sl_api_event_list(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_event_get(struct sl_api *api, struct sl_http_req *req);

/* Fills f (f->org excepted) from the query of GET /api/v2.0/event. Pointers in f borrow from q.
 * Returns 0, or SL_EINVAL with "<parameter>=<value>: expected ..." in err. Pure. */
int sl_api_event_filter_parse(const struct sl_http_query *q, struct sl_event_filter *f, char *err,
                              size_t errlen);

/* queue_stats, /health, /metrics (api_status.c). */
enum sl_http_next sl_api_queue_stats(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_health(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_metrics(struct sl_api *api, struct sl_http_req *req);

/* Whether the worker in slot w runs: a pid, not marked dead, and the process exists. */
int sl_api_worker_alive(const struct sl_worker_slot *w);

#endif
