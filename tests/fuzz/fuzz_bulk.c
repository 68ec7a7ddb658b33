/* libFuzzer target for the bulk-ingest path: sl_event_bulk_parse, then sl_event_normalize on
 * each event, then sl_event_prepare on each record. Beyond memory errors it aborts when an
 * invariant breaks: an error offset outside [0, len], an error message that is not printable
 * UTF-8, or a record made by sl_event_normalize that sl_event_prepare refuses. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "event/event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Messages reach clients inside JSON: they must be valid UTF-8 without control characters. */
static void check_message(const char *msg)
{
    const unsigned char *s = (const unsigned char *)msg;
    size_t n = strlen(msg);
    if (n == 0) {
        fprintf(stderr, "empty error message\n");
        abort();
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            fprintf(stderr, "control character in message: %s\n", msg);
            abort();
        }
        if (s[i] >= 0x80) {
            size_t len = s[i] >= 0xf0 ? 4 : s[i] >= 0xe0 ? 3 : 2;
            if (s[i] < 0xc2 || s[i] > 0xf4 || i + len > n) {
                fprintf(stderr, "invalid UTF-8 in message: %s\n", msg);
                abort();
            }
            for (size_t k = 1; k < len; k++)
                if ((s[i + k] & 0xc0) != 0x80) {
                    fprintf(stderr, "invalid UTF-8 in message: %s\n", msg);
                    abort();
                }
            i += len - 1;
        }
    }
}

/* The stored doc must say exactly what the prepared tree says: same top-level members, each
 * printing the same. (cJSON_Compare is exponential in the nesting depth.) */
static void check_doc(const struct sl_event_prepared *p)
{
    cJSON *doc = cJSON_Parse(p->row.doc);
    int ok = doc && cJSON_GetArraySize(doc) == cJSON_GetArraySize(p->tree);
    for (const cJSON *m = p->tree->child; ok && m; m = m->next) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(doc, m->string);
        const cJSON *first = cJSON_GetObjectItemCaseSensitive(p->tree, m->string);
        char *a = d ? cJSON_PrintUnformatted(d) : NULL, *b = cJSON_PrintUnformatted(first);
        ok = a && b && strcmp(a, b) == 0;
        cJSON_free(a);
        cJSON_free(b);
    }
    if (!ok) {
        fprintf(stderr, "doc differs from the prepared event:\n%s\n", p->row.doc);
        abort();
    }
    cJSON_Delete(doc);
}

/* Any bytes as a stream record: prepare may refuse them, but what it accepts must be right. */
static void prepare_raw(const uint8_t *data, size_t size)
{
    struct sl_event_prepared p;
    char err[256];
    if (sl_event_prepare(data, size, 2, 1700000002000LL, &p, err, sizeof(err)) == 0)
        check_doc(&p);
    sl_event_prepared_fini(&p);
}

static void prepare_record(const char *rec, size_t len)
{
    struct sl_event_prepared p;
    char err[256];
    int rc = sl_event_prepare(rec, len, 1, 1700000001000LL, &p, err, sizeof(err));
    if (rc == 0)
        check_doc(&p);
    if (rc == 0 && (!p.row.doc || strlen(p.row.doc) != p.row.doc_len || !p.row.uuid[0] ||
                    strlen(p.row.signature) != 32)) {
        fprintf(stderr, "prepared row is incomplete\n");
        abort();
    }
    if (rc != 0 && rc != SL_ENOMEM) {
        fprintf(stderr, "prepare refused a normalized record: %s\n%.*s\n", err, (int)len, rec);
        abort();
    }
    sl_event_prepared_fini(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    prepare_raw(data, size);
    static const struct sl_ingest_ctx ctx = {.org_uuid = "11111111-2222-3333-4444-555555555555",
                                             .agent_id = "key-1",
                                             .agent_type = "agent",
                                             .task_id = "task-1",
                                             .received_ms = 1700000000000LL};
    cJSON *root = NULL, *events = NULL, *ev;
    long off = -2;
    char err[256];
    /* An exact-size copy, so reading past size is caught even if data is followed by more. */
    char *body = malloc(size ? size : 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    int rc = sl_event_bulk_parse(body, size, &root, &events, &off, err, sizeof(err));
    if (rc != 0) {
        if (off < -1 || off > (long)size) {
            fprintf(stderr, "error offset %ld outside [0, %zu]\n", off, size);
            abort();
        }
        check_message(err);
        free(body);
        return 0;
    }
    cJSON_ArrayForEach(ev, events)
    {
        char *rec = NULL;
        size_t len = 0;
        if (sl_event_normalize(ev, &ctx, &rec, &len, err, sizeof(err)) != 0) {
            check_message(err);
            continue;
        }
        prepare_record(rec, len);
        free(rec);
    }
    cJSON_Delete(root);
    free(body);
    return 0;
}
