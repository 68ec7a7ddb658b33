/* The bulk requests the api answered recently, so that GET /api/v2.0/task/<id> can answer
 * "pending" for a request whose events no worker has processed yet (the store knows a request
 * only once a worker recorded an outcome or its end). Process-wide, thread-safe. */
#ifndef SL_API_API_TASK_H
#define SL_API_API_TASK_H

#include <stdint.h>

#include "core/util.h"

/* Requests remembered: the oldest is forgotten first. A request the api no longer remembers
 * (older, or answered before the api restarted) is known again once a worker processed it. */
#define SL_API_RECENT_TASKS 32768

struct sl_api_recent_task {
    char task[SL_UUID_LEN + 1];
    char org[SL_UUID_LEN + 1];
    int64_t accepted, rejected; /* as the api answered */
    int64_t received_ms;
};

/* Remembers a bulk request the api accepted (strings copied). */
void sl_api_task_note(const char *task, const char *org, int64_t accepted, int64_t rejected,
                      int64_t received_ms);
/* Copies the remembered request task into *out: 0, or SL_ENOTFOUND. */
int sl_api_task_recent(const char *task, struct sl_api_recent_task *out);

#endif
