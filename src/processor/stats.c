/* Shared-memory counters and latency histograms for queue_stats, /health and /metrics. */
#include "processor/stats.h"

#include <string.h>
#include <sys/mman.h>

const int64_t sl_latency_bounds_us[SL_LATENCY_BUCKETS - 1] = {
    250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000};

const int sl_http_codes[SL_HTTP_CODES] = {200, 201, 202, 204, 400, 401,
                                          403, 404, 405, 413, 429, 503};

struct sl_stats *sl_stats_create(void)
{
    void *p = mmap(NULL, sizeof(struct sl_stats), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0, sizeof(struct sl_stats));
    return p;
}

void sl_stats_destroy(struct sl_stats *st)
{
    if (st)
        munmap(st, sizeof(*st));
}

void sl_histogram_observe(struct sl_histogram *h, int64_t us)
{
    int i = 0;
    while (i < SL_LATENCY_BUCKETS - 1 && us > sl_latency_bounds_us[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

int64_t sl_histogram_quantile(const struct sl_histogram *h, double q)
{
    int64_t counts[SL_LATENCY_BUCKETS], total = 0;
    for (int i = 0; i < SL_LATENCY_BUCKETS; i++) {
        counts[i] = atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        total += counts[i];
    }
    if (total == 0)
        return 0;
    double rank = q * (double)total;
    int64_t seen = 0;
    for (int i = 0; i < SL_LATENCY_BUCKETS; i++) {
        if (counts[i] == 0)
            continue;
        if ((double)(seen + counts[i]) >= rank) {
            /* Linear interpolation inside the bucket, as Prometheus' histogram_quantile. */
            int64_t lo = i == 0 ? 0 : sl_latency_bounds_us[i - 1];
            int64_t hi = i < SL_LATENCY_BUCKETS - 1 ? sl_latency_bounds_us[i] : lo * 2;
            double frac = (rank - (double)seen) / (double)counts[i];
            return lo + (int64_t)((double)(hi - lo) * frac);
        }
        seen += counts[i];
    }
    return sl_latency_bounds_us[SL_LATENCY_BUCKETS - 2];
}

void sl_stats_count_http(struct sl_stats *st, int code)
{
    int i = 0;
    while (i < SL_HTTP_CODES && sl_http_codes[i] != code)
        i++;
    atomic_fetch_add_explicit(&st->http_requests[i], 1, memory_order_relaxed);
}

const char *sl_worker_status_name(int status)
{
    static const char *names[] = {"STOPPED", "STARTING", "POLLING", "PROCESSING",
                                  "PUSHING", "IDLE",     "DEAD"};
    return (status >= 0 && status <= SL_WORKER_DEAD) ? names[status] : "UNKNOWN";
}
