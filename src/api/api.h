/* The api role: the HTTP server (REST API, bulk ingest, /health, /metrics). */
#ifndef SL_API_API_H
#define SL_API_API_H

#include <signal.h>

#include "core/config.h"
#include "processor/stats.h"

/* Runs the api process until *stop becomes non-zero, serving on listen_fd (a bound, listening
 * socket owned by the caller; the api does not close it). Opens its own store and stream
 * handles from cfg. On stop it stops accepting, finishes the requests in flight (bounded by
 * cfg->drain_timeout_s), and returns 0; returns a negative SL_E* code if it could not start. */
int sl_api_run(const struct sl_config *cfg, int listen_fd, struct sl_stats *stats,
               volatile sig_atomic_t *stop);

#endif
