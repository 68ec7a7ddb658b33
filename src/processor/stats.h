/* Counters and worker slots in memory shared by the supervisor, the api and the workers: the
 * heartbeat the supervisor checks and the figures queue_stats, /health and /metrics report. */
#ifndef SL_PROCESSOR_STATS_H
#define SL_PROCESSOR_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/config.h"

enum sl_worker_status {
    SL_WORKER_STOPPED = 0,
    SL_WORKER_STARTING,
    SL_WORKER_POLLING,
    SL_WORKER_PROCESSING,
    SL_WORKER_PUSHING,
    SL_WORKER_IDLE,
    SL_WORKER_DEAD, /* exited or killed; the supervisor restarts it after its backoff */
};

/* Buckets (upper bounds, microseconds) of the latency histograms; the last is +Inf. */
#define SL_LATENCY_BUCKETS 14
extern const int64_t sl_latency_bounds_us[SL_LATENCY_BUCKETS - 1];

struct sl_histogram {
    _Atomic int64_t buckets[SL_LATENCY_BUCKETS]; /* non-cumulative counts */
    _Atomic int64_t sum_us;
    _Atomic int64_t count;
};

struct sl_worker_slot {
    _Atomic int32_t pid;
    _Atomic int32_t status;        /* enum sl_worker_status */
    char name[32];                 /* "worker-0" */
    char organization[40];         /* "all" in shared mode */
    _Atomic int64_t heartbeat_ms;  /* sl_mono_ms() of the last loop */
    _Atomic int64_t started_ms;    /* wall clock */
    _Atomic int64_t last_event_ms; /* wall clock of the last stored batch */
    _Atomic int64_t last_meta_refresh_ms;
    _Atomic int64_t processed_events; /* records handled (stored + duplicates + invalid) */
    _Atomic int64_t events_in_processing;
    _Atomic int64_t stored;
    _Atomic int64_t duplicates;
    _Atomic int64_t redelivered;
    _Atomic int64_t invalid;
    _Atomic int64_t batches;
    _Atomic int64_t store_errors;
    _Atomic int64_t restarts;
    _Atomic int64_t rules_loaded; /* active event rules in the loaded ruleset */
    _Atomic int64_t lists_loaded; /* active intel lists */
    _Atomic int64_t rule_hits;    /* rule matches (an event hit by 2 rules counts 2) */
    _Atomic int64_t intel_hits;   /* observables that matched a list */
    _Atomic int64_t muted;        /* events that arrived with a muted signature */
    _Atomic int64_t dns_misses;   /* DNS mutators evaluated before the answer was cached */
    _Atomic int64_t rule_errors;  /* rule evaluations that ran out of scratch memory */
};

/* HTTP status classes counted per exact code for these; others go to "other". */
#define SL_HTTP_CODES 12
extern const int sl_http_codes[SL_HTTP_CODES];

struct sl_stats {
    _Atomic int64_t started_ms;   /* supervisor start, wall clock */
    _Atomic int32_t disabled;     /* REFLEX_EVENT_PROCESSOR_DISABLED */
    _Atomic int32_t worker_count; /* configured workers */
    _Atomic int64_t respawns;     /* children restarted by the supervisor */
    _Atomic int64_t api_restarts;
    _Atomic int32_t api_pid;
    _Atomic int64_t api_heartbeat_ms;
    _Atomic int32_t draining; /* SIGTERM received */
    /* api */
    _Atomic int64_t http_requests[SL_HTTP_CODES + 1]; /* per code in sl_http_codes, then other */
    _Atomic int64_t ingest_requests;
    _Atomic int64_t events_accepted;
    _Atomic int64_t events_rejected;
    _Atomic int64_t ingest_throttled; /* 429 answers */
    _Atomic int64_t backlog;          /* last measured stream backlog (events) */
    struct sl_histogram ack_latency;  /* bulk ingest: request received to response */
    /* workers */
    struct sl_histogram batch_latency; /* worker: batch polled to offset committed */
    struct sl_worker_slot workers[SL_MAX_WORKERS];
};

/* Maps a zeroed struct sl_stats shared with every process forked afterwards. Start-up only;
 * returns NULL on failure. */
struct sl_stats *sl_stats_create(void);
void sl_stats_destroy(struct sl_stats *st);

/* Adds one observation to h. Async-signal-safe and lock-free. */
void sl_histogram_observe(struct sl_histogram *h, int64_t us);
/* The q-quantile (0..1) estimated from the buckets, in microseconds (0 when empty). */
int64_t sl_histogram_quantile(const struct sl_histogram *h, double q);
/* Counts one HTTP answer with status code. */
void sl_stats_count_http(struct sl_stats *st, int code);
const char *sl_worker_status_name(int status);

#endif
