/* Retroactive application of Event Rules (see retro.c), run by the poller thread of worker 0. */
#ifndef SL_PROCESSOR_RETRO_H
#define SL_PROCESSOR_RETRO_H

#include <signal.h>
#include <stdatomic.h>

#include "store/store.h"

#define SL_TASK_RETRO "retro_apply_event_rule"

/* Runs the retro tasks that are running (resumed after a restart) or pending, one after the
 * other, until they are done or *stop / *quit is set (a stopped task stays "running" and is
 * resumed on the next call). */
void sl_retro_run(struct sl_store *st, volatile sig_atomic_t *stop, _Atomic int *quit);

#endif
