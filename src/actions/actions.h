/* Bulk actions on stored events: dismiss, acknowledge, unacknowledge, reopen, add to a case,
 * delete. An action is a task (kind SL_TASK_EVENT_ACTION) whose params hold the selection and
 * the action, so it is resumable: the api runs a small one to the end before it answers, and
 * leaves a larger one to worker 0, which runs it in store transactions of a bounded size (so
 * ingest is never held up for long) and records progress in the task as it goes. A server
 * stopped mid-task resumes it on the next start. */
#ifndef SL_ACTIONS_ACTIONS_H
#define SL_ACTIONS_ACTIONS_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define SL_TASK_EVENT_ACTION "event_action"
/* Events the api looks at before it answers; past that the task goes on in worker 0. */
#define SL_ACTION_INLINE_MAX 2000
/* Events looked at per store transaction. */
#define SL_ACTION_CHUNK 1000

/* Names of actions in params and answers: "dismiss", "acknowledge", "unacknowledge", "reopen",
 * "add_to_case", "delete". NULL / 0 for an unknown one. */
const char *sl_action_name(enum sl_event_action a);
enum sl_event_action sl_action_from_name(const char *name);

/* Starts an action: records a task of org (state running) holding sel and a as params, then
 * applies the action to up to SL_ACTION_INLINE_MAX events. When the selection is exhausted the
 * task is done (*out_complete = 1); otherwise it is left pending for worker 0
 * (*out_complete = 0). *out_task is the task as recorded. Returns 0; SL_EINVAL (a malformed
 * selection: message in err), SL_ENOTFOUND (the case of add_to_case), or a store error (the
 * task is then marked failed when it could be written). */
int sl_action_start(struct sl_store *st, const struct sl_event_selection *sel,
                    const struct sl_event_action_args *a, struct sl_task *out_task,
                    int *out_complete, char *err, size_t errlen);

/* Runs the action tasks that are pending, or running without an update for 30 s (the api's
 * inline pass marks its task running, so a fresh one is not taken over), one after the other,
 * until they are done or *stop / *quit is set (a stopped task goes back to "pending" and is
 * resumed on the next call). Worker 0's task thread calls it between list polls. */
void sl_actions_run_pending(struct sl_store *st, volatile sig_atomic_t *stop, _Atomic int *quit);

#endif
