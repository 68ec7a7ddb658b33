/* The Event Processor: the supervisor that forks and heals the api and the workers, and the
 * worker loop (stream -> prepare -> store -> commit). */
#ifndef SL_PROCESSOR_PROCESSOR_H
#define SL_PROCESSOR_PROCESSOR_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "processor/stats.h"
#include "store/store.h"
#include "stream/stream.h"

/* The ingest stream of shared mode and the consumer group of its workers. */
#define SL_TOPIC_EVENTS  "events"
#define SL_GROUP_WORKERS "workers"

/* Opens the stream configured by cfg: Kafka when REFLEX_EVENT_PROCESSOR_KAFKA_BOOTSTRAP_SERVERS
 * is set, else the embedded stream in <data_dir>/stream. Returns NULL and a message in err. */
struct sl_stream *sl_processor_open_stream(const struct sl_config *cfg, char *err, size_t errlen);

/* Runs `sluice serve`: validates, prepares the data directory (bootstrapping the default
 * organization and admin key on first start), binds the listener, forks and supervises the api
 * and the workers until SIGTERM/SIGINT, then drains. Returns the process exit code. */
int sl_supervisor_run(const struct sl_config *cfg);

/* The worker loop of worker `index` (0-based) of `count`; returns when *stop is set, after
 * finishing and committing its batch. Returns 0, or a negative SL_E* code when it cannot run. */
int sl_worker_run(const struct sl_config *cfg, int index, int count, struct sl_stats *stats,
                  volatile sig_atomic_t *stop);

#endif
