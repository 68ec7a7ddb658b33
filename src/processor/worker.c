/* The Event Worker loop: take a batch from the ingest stream, prepare each event, write the
 * batch to the store idempotently, and only then commit the stream offsets. A crash anywhere
 * before the commit means redelivery, and the store's (organization, reference) key makes the
 * second write a no-op: at-least-once delivery, exactly-once effect. */
#include "processor/processor.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "event/event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_TIMEOUT_MS 500
#define TRIM_INTERVAL_MS 10000
#define RETRY_MAX_MS 5000

struct worker {
    const struct sl_config *cfg;
    int index;
    struct sl_stats *stats;
    struct sl_worker_slot *slot;
    volatile sig_atomic_t *stop;
    struct sl_store *store;
    struct sl_stream *stream;
    struct sl_stream_consumer *consumer;
    struct sl_event_prepared *prepared; /* es_bulk_size of them */
    struct sl_store_event *rows;
    enum sl_put_outcome *outcomes;
    int64_t last_trim_ms;
};

static void set_status(struct worker *w, int status)
{
    atomic_store_explicit(&w->slot->status, status, memory_order_relaxed);
    atomic_store_explicit(&w->slot->heartbeat_ms, sl_mono_ms(), memory_order_relaxed);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int worker_open(struct worker *w, int count)
{
    char err[512];
    uint32_t parts = 0, mine[SL_STREAM_MAX_PARTITIONS];
    size_t nmine = 0;
    size_t bulk = (size_t)w->cfg->es_bulk_size;
    w->store = sl_store_open(w->cfg->data_dir, err, sizeof(err));
    if (!w->store) {
        SL_ERROR("cannot open the store: %s", err);
        return SL_EIO;
    }
    w->stream = sl_processor_open_stream(w->cfg, err, sizeof(err));
    if (!w->stream) {
        SL_ERROR("cannot open the stream: %s", err);
        return SL_EIO;
    }
    int rc = sl_stream_topic_ensure(w->stream, SL_TOPIC_EVENTS, (uint32_t)count, &parts);
    if (rc) {
        SL_ERROR("cannot open topic %s: %s", SL_TOPIC_EVENTS, sl_strerror(rc));
        return rc;
    }
    /* Partition p belongs to worker p mod count, as a consumer group would assign them. */
    for (uint32_t p = (uint32_t)w->index; p < parts; p += (uint32_t)count)
        mine[nmine++] = p;
    w->consumer =
        sl_stream_consumer_create(w->stream, SL_TOPIC_EVENTS, SL_GROUP_WORKERS, mine, nmine);
    w->prepared = calloc(bulk, sizeof(*w->prepared));
    w->rows = calloc(bulk, sizeof(*w->rows));
    w->outcomes = calloc(bulk, sizeof(*w->outcomes));
    if (!w->consumer || !w->prepared || !w->rows || !w->outcomes) {
        SL_ERROR("cannot create the consumer of topic %s", SL_TOPIC_EVENTS);
        return SL_ENOMEM;
    }
    SL_INFO("consuming %zu of %u partitions of %s", nmine, parts, SL_TOPIC_EVENTS);
    return 0;
}

static void worker_close(struct worker *w)
{
    sl_stream_consumer_destroy(w->consumer);
    sl_stream_destroy(w->stream);
    sl_store_close(w->store);
    free(w->prepared);
    free(w->rows);
    free(w->outcomes);
}

/* Writes the prepared rows, retrying transient failures with backoff until it succeeds or the
 * worker is asked to stop (then the batch is left uncommitted and will be redelivered). */
static int write_batch(struct worker *w, size_t nrows)
{
    int64_t delay = 50;
    for (;;) {
        int rc = sl_store_put_events(w->store, w->rows, nrows, w->outcomes);
        if (rc == 0)
            return 0;
        atomic_fetch_add(&w->slot->store_errors, 1);
        SL_WARN("store write of %zu events failed (%s); retrying in %lld ms", nrows,
                sl_strerror(rc), (long long)delay);
        if (*w->stop)
            return rc;
        set_status(w, SL_WORKER_PUSHING);
        sleep_ms(delay);
        delay = delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : delay * 2;
    }
}

static void count_outcomes(struct worker *w, size_t nrows)
{
    int64_t stored = 0, dup = 0, redo = 0;
    for (size_t i = 0; i < nrows; i++) {
        if (w->outcomes[i] == SL_PUT_STORED)
            stored++;
        else if (w->outcomes[i] == SL_PUT_DUPLICATE)
            dup++;
        else
            redo++;
    }
    atomic_fetch_add(&w->slot->stored, stored);
    atomic_fetch_add(&w->slot->duplicates, dup);
    atomic_fetch_add(&w->slot->redelivered, redo);
}

/* Prepares every record of the batch; records that are not valid events are counted, logged
 * and skipped (they can never become valid, so retrying them would block the partition). */
static size_t prepare_batch(struct worker *w, const struct sl_stream_record *recs, size_t n)
{
    char err[256];
    size_t nrows = 0;
    int64_t now = sl_now_ms();
    for (size_t i = 0; i < n; i++) {
        struct sl_event_prepared *p = &w->prepared[nrows];
        uint64_t origin = ((uint64_t)recs[i].partition << 48) | recs[i].offset;
        if (sl_event_prepare(recs[i].data, recs[i].len, origin, now, p, err, sizeof(err))) {
            SL_WARN("skipping record %u:%llu: %s", recs[i].partition,
                    (unsigned long long)recs[i].offset, err);
            atomic_fetch_add(&w->slot->invalid, 1);
            sl_event_prepared_fini(p);
            continue;
        }
        w->rows[nrows++] = p->row;
    }
    return nrows;
}

static int process_batch(struct worker *w, const struct sl_stream_record *recs, size_t n)
{
    int64_t t0 = sl_mono_ms();
    set_status(w, SL_WORKER_PROCESSING);
    atomic_store(&w->slot->events_in_processing, (int64_t)n);
    size_t nrows = prepare_batch(w, recs, n);
    set_status(w, SL_WORKER_PUSHING);
    int rc = nrows ? write_batch(w, nrows) : 0;
    for (size_t i = 0; i < nrows; i++)
        sl_event_prepared_fini(&w->prepared[i]);
    if (rc)
        return rc;
    count_outcomes(w, nrows);
    rc = sl_stream_commit(w->consumer);
    if (rc) {
        /* The batch is stored; a redelivery would only find it already there. */
        SL_ERROR("cannot commit stream offsets: %s", sl_strerror(rc));
        return rc;
    }
    atomic_fetch_add(&w->slot->processed_events, (int64_t)n);
    atomic_fetch_add(&w->slot->batches, 1);
    atomic_store(&w->slot->events_in_processing, 0);
    atomic_store(&w->slot->last_event_ms, sl_now_ms());
    sl_histogram_observe(&w->stats->batch_latency, (sl_mono_ms() - t0) * 1000);
    return 0;
}

/* Worker 0 trims what every group has committed and retention no longer keeps. */
static void maybe_trim(struct worker *w)
{
    uint64_t trimmed = 0;
    if (w->index != 0 || sl_mono_ms() - w->last_trim_ms < TRIM_INTERVAL_MS)
        return;
    w->last_trim_ms = sl_mono_ms();
    int rc = sl_stream_trim(w->stream, SL_TOPIC_EVENTS, &trimmed);
    if (rc)
        SL_WARN("stream trim failed: %s", sl_strerror(rc));
    else if (trimmed)
        SL_DEBUG("trimmed %llu records", (unsigned long long)trimmed);
}

int sl_worker_run(const struct sl_config *cfg, int index, int count, struct sl_stats *stats,
                  volatile sig_atomic_t *stop)
{
    struct worker w = {.cfg = cfg, .index = index, .stats = stats, .stop = stop,
                       .slot = &stats->workers[index]};
    snprintf(w.slot->name, sizeof(w.slot->name), "worker-%d", index);
    snprintf(w.slot->organization, sizeof(w.slot->organization), "all");
    atomic_store(&w.slot->started_ms, sl_now_ms());
    set_status(&w, SL_WORKER_STARTING);
    int rc = worker_open(&w, count);
    atomic_store(&w.slot->last_meta_refresh_ms, sl_now_ms());
    while (rc == 0 && !*stop) {
        const struct sl_stream_record *recs = NULL;
        size_t n = 0;
        set_status(&w, SL_WORKER_POLLING);
        rc = sl_stream_poll(w.consumer, (size_t)cfg->es_bulk_size, POLL_TIMEOUT_MS, &recs, &n);
        if (rc) {
            SL_ERROR("stream poll failed: %s", sl_strerror(rc));
            break;
        }
        if (n == 0) {
            set_status(&w, SL_WORKER_IDLE);
            maybe_trim(&w);
            continue;
        }
        rc = process_batch(&w, recs, n);
        maybe_trim(&w);
    }
    if (*stop && rc != 0)
        rc = 0; /* stopped mid-retry: the batch is redelivered to the next worker */
    set_status(&w, SL_WORKER_STOPPED);
    worker_close(&w);
    SL_INFO("worker stopped");
    return rc;
}
