/* Micro-benchmark of the per-event stages on one core: api-side normalize (from a parsed bulk
 * body) and worker-side prepare, on realistic ~1.2 KB events. Prints events/s per stage, the
 * median of several rounds; prepare is measured with malloc and with the worker's per-batch
 * arena (batches of 500). Usage: stage_bench [events per round] [rounds] */
#include "core/arena.h"
#include "core/util.h"
#include "event/event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *make_body(size_t n)
{
    size_t cap = n * 1600 + 64, len = 0;
    char *b = malloc(cap);
    len += (size_t)snprintf(b + len, cap - len, "{\"events\":[");
    for (size_t i = 0; i < n; i++) {
        unsigned h = (unsigned)(i * 2654435761u);
        len += (size_t)snprintf(
            b + len, cap - len,
            "%s{\"title\":\"Suspicious logon %u\",\"description\":\"A user logged on from an "
            "unusual host after several failures\",\"reference\":\"bench-%zu\",\"severity\":%u,"
            "\"tlp\":2,\"source\":\"winlogbeat\",\"tags\":[\"logon\",\"windows\",\"t%u\"],"
            "\"observables\":[{\"value\":\"10.%u.%u.%u\",\"data_type\":\"auto\"},"
            "{\"value\":\"user%u\",\"data_type\":\"user\",\"tags\":[\"source-user\"]},"
            "{\"value\":\"host-%u.corp.example.com\",\"data_type\":\"auto\"},"
            "{\"value\":\"C:\\\\Windows\\\\System32\\\\cmd.exe\",\"data_type\":\"auto\"},"
            "{\"value\":\"d41d8cd98f00b204e9800998ecf8427e\",\"data_type\":\"auto\"}],"
            "\"raw_log\":\"{\\\"@timestamp\\\":\\\"2026-11-24T22:00:00Z\\\",\\\"event\\\":{"
            "\\\"code\\\":4624,\\\"provider\\\":\\\"Microsoft-Windows-Security-Auditing\\\"},"
            "\\\"host\\\":{\\\"name\\\":\\\"host-%u\\\",\\\"os\\\":{\\\"family\\\":\\\"windows"
            "\\\"}},\\\"user\\\":{\\\"name\\\":\\\"user%u\\\",\\\"domain\\\":\\\"CORP\\\"},"
            "\\\"source\\\":{\\\"ip\\\":\\\"10.%u.%u.%u\\\",\\\"port\\\":%u},\\\"winlog\\\":{"
            "\\\"logon\\\":{\\\"type\\\":\\\"RemoteInteractive\\\"},\\\"channel\\\":\\\"Security"
            "\\\"},\\\"message\\\":\\\"An account was successfully logged on.\\\"}\"}",
            i ? "," : "", h % 50, i, 1 + h % 4, h % 7, h % 250, (h >> 8) % 250, (h >> 16) % 250,
            h % 300, h % 120, h % 120, h % 300, h % 250, (h >> 8) % 250, (h >> 16) % 250,
            1024 + h % 60000);
    }
    len += (size_t)snprintf(b + len, cap - len, "]}");
    return b;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : 20000;
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    char *body = make_body(n), err[256];
    cJSON *root = NULL, *events = NULL;
    char **recs = calloc(n, sizeof(*recs));
    size_t *lens = calloc(n, sizeof(*lens)), bytes = 0;
    double norm[16], prep[16], prepa[16];
    struct sl_arena *arena = sl_arena_create(1024 * 1024, 32 * 1024 * 1024);
    sl_event_alloc_install();
    struct sl_ingest_ctx ctx = {.org_uuid = "3f1b2c4d-1111-4222-8333-444455556666",
                                .agent_id = "0123456789abcdef",
                                .agent_type = "agent",
                                .task_id = "task",
                                .received_ms = sl_now_ms()};
    if (rounds > 16)
        rounds = 16;
    if (sl_event_bulk_parse(body, strlen(body), &root, &events, NULL, err, sizeof(err))) {
        fprintf(stderr, "bad generated body: %s\n", err);
        return 1;
    }
    for (int r = 0; r < rounds; r++) {
        int64_t t0 = sl_mono_ms();
        size_t i = 0;
        const cJSON *ev;
        cJSON_ArrayForEach(ev, events)
        {
            free(recs[i]);
            if (sl_event_normalize(ev, &ctx, &recs[i], &lens[i], err, sizeof(err))) {
                fprintf(stderr, "normalize: %s\n", err);
                return 1;
            }
            i++;
        }
        int64_t t1 = sl_mono_ms();
        for (i = 0; i < n; i++) {
            struct sl_event_prepared p;
            memset(&p, 0, sizeof(p));
            if (sl_event_prepare(recs[i], lens[i], i, sl_now_ms(), &p, err, sizeof(err))) {
                fprintf(stderr, "prepare: %s\n", err);
                return 1;
            }
            sl_event_prepared_fini(&p);
        }
        int64_t t2 = sl_mono_ms();
        struct sl_event_prepared *batch = calloc(500, sizeof(*batch));
        for (i = 0; i < n; i++) {
            if (i % 500 == 0) {
                sl_arena_reset(arena);
                sl_event_alloc_arena(arena);
            }
            if (sl_event_prepare(recs[i], lens[i], i, sl_now_ms(), &batch[i % 500], err,
                                 sizeof(err))) {
                fprintf(stderr, "prepare: %s\n", err);
                return 1;
            }
        }
        sl_event_alloc_arena(NULL);
        free(batch);
        int64_t t3 = sl_mono_ms();
        norm[r] = (double)n * 1000.0 / (double)(t1 - t0 ? t1 - t0 : 1);
        prep[r] = (double)n * 1000.0 / (double)(t2 - t1 ? t2 - t1 : 1);
        prepa[r] = (double)n * 1000.0 / (double)(t3 - t2 ? t3 - t2 : 1);
    }
    for (size_t i = 0; i < n; i++)
        bytes += lens[i];
    qsort(norm, (size_t)rounds, sizeof(double), cmp_double);
    qsort(prep, (size_t)rounds, sizeof(double), cmp_double);
    qsort(prepa, (size_t)rounds, sizeof(double), cmp_double);
    printf("events_per_round: %zu\nrounds: %d\navg_record_bytes: %zu\n", n, rounds, bytes / n);
    printf("normalize_events_per_s: %.0f\nprepare_events_per_s: %.0f\n"
           "prepare_arena_events_per_s: %.0f\n",
           norm[rounds / 2], prep[rounds / 2], prepa[rounds / 2]);
    for (size_t i = 0; i < n; i++)
        free(recs[i]);
    free(recs);
    free(lens);
    free(body);
    cJSON_Delete(root);
    sl_arena_destroy(arena);
    return 0;
}
