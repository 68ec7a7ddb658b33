/* The Intel List poller: fetches lists fed from a url (see poller.c). Runs as a thread of
 * worker 0, with its own store handle. */
#ifndef SL_PROCESSOR_POLLER_H
#define SL_PROCESSOR_POLLER_H

#include <signal.h>

#include "core/config.h"
#include "store/store.h"

struct sl_poller;

/* Starts the poller thread: every SLUICE_LIST_POLL_CHECK it polls the lists that are due.
 * It stops when *stop is set or at sl_poller_stop. NULL (logged) if it cannot start. */
struct sl_poller *sl_poller_start(const struct sl_config *cfg, volatile sig_atomic_t *stop);
/* Stops the thread (a fetch in progress is aborted) and frees the poller. NULL is ignored. */
void sl_poller_stop(struct sl_poller *p);

#endif
