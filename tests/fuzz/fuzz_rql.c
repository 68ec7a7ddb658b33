/* libFuzzer target for RQL: sl_rql_compile on arbitrary bytes; a query that compiles is
 * evaluated against three fixed events (observables, nested and flat dotted keys, a JSON
 * raw_log, lists of lists, odd types) with environment callbacks that answer deterministically.
 * Beyond memory errors it aborts when an invariant breaks: a compile error outside the text or
 * without a printable message, a query that matches differently on a second evaluation, or a
 * list reference that is not a string of the query. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "rules/rql.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const event_texts[] = {
    "{\"title\":\"Suspicious Login\",\"description\":\"3 failures then success\","
    "\"severity\":3,\"tlp\":2,\"risk_score\":7.5,\"tags\":[\"auth\",\"brute\"],"
    "\"reference\":\"evt-1\",\"source\":\"sensor\",\"flag\":true,\"nothing\":null,"
    "\"observables\":[{\"value\":\"10.1.2.3\",\"data_type\":\"ip\",\"ioc\":true,"
    "\"tags\":[\"internal\"]},{\"value\":\"alice\",\"data_type\":\"user\"},"
    "{\"value\":\"evil.com\",\"data_type\":\"domain\",\"tags\":[\"c2\"]},"
    "{\"value\":\"8.8.8.8\",\"data_type\":\"ip\"},{\"value\":\"example.com\","
    "\"data_type\":\"domain\"}],"
    "\"raw_log\":\"{\\\"winlog\\\":{\\\"event_id\\\":4625,\\\"computer_name\\\":\\\"PC\\\"},"
    "\\\"user\\\":{\\\"name\\\":\\\"bob\\\"},\\\"items\\\":[{\\\"a\\\":1},{\\\"a\\\":[2,3]}],"
    "\\\"cmd\\\":\\\"powershell -enc VwByAGkAdABlAC0ASABvAHMAdAAgAGgAaQA=\\\"}\"}",
    "{\"a.b\":{\"c\":1,\"c.d\":[1,\"2\",null,{\"e\":\"x\"}]},\"a\":{\"b\":{\"c\":\"nested\"}},"
    "\"raw_log\":\"not json [\",\"raw_log.x\":\"flat\",\"l\":[[[{\"v\":1}]],[],{\"v\":\"2\"}],"
    "\"n\":-0.0,\"big\":1e308,\"s\":\"hXXp://evil[.]com%20a SW52b2tlLU1pbWlrYXR6IC14 \","
    "\"entity\":{\"host\":{\"name\":\"WS-01\",\"ip\":[\"192.168.1.1\",\"fe80::1\"]}},"
    "\"\":\"empty key\",\"@timestamp\":\"2024-01-01\"}",
    "{\"title\":\"\\u00e9t\\u00e9 \\u041f\\u0420\\u0418\",\"severity\":\"3\",\"tags\":[],"
    "\"observables\":[],\"raw_log\":\"[{\\\"a\\\":{\\\"b\\\":true}}]\",\"nums\":[1,2.5,\"3\",\"x\"]"
    ","
    "\"obj\":{},\"deep\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}",
};

static int cb_intel(void *ud, const char *list, const char *value, size_t len,
                    const char *data_type)
{
    (void)ud;
    if (!list || !value)
        abort();
    return ((len + strlen(list) + (data_type ? 1 : 0)) % 3) == 0;
}

static int cb_cidr(void *ud, const char *list, const char *ip, size_t len)
{
    (void)ud;
    (void)list;
    return len > 0 && ip[0] == '1';
}

static int cb_geo(void *ud, enum sl_rql_geo kind, const char *ip, char *out, size_t outlen)
{
    (void)ud;
    if (strlen(ip) % 2)
        return 0;
    snprintf(out, outlen, "%s", kind == SL_RQL_GEO_COUNTRY ? "US" : "NA");
    return 1;
}

static int cb_dns(void *ud, enum sl_rql_dns kind, const char *name, char out[][256], int max)
{
    (void)ud;
    size_t n = strlen(name);
    if (n % 3 == 0)
        return -1;
    int k = (int)(n % 3) + (int)kind % 2;
    if (k > max)
        k = max;
    for (int i = 0; i < k; i++)
        snprintf(out[i], 256, "%d.%zu.0.1", i, n);
    return k;
}

static void check_error(const struct sl_rql_error *err, const uint8_t *data, size_t size)
{
    int lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    if (err->line < 1 || err->line > lines || err->col < 1 || (size_t)err->col > size + 1) {
        fprintf(stderr, "error position %d:%d outside the text (%d lines, %zu bytes)\n", err->line,
                err->col, lines, size);
        abort();
    }
    size_t n = strnlen(err->msg, sizeof(err->msg));
    if (n == 0 || n == sizeof(err->msg)) {
        fprintf(stderr, "empty or unterminated message\n");
        abort();
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)err->msg[i] < 0x20 || (unsigned char)err->msg[i] >= 0x7f) {
            fprintf(stderr, "non-printable byte in message: %s\n", err->msg);
            abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cJSON *events[3];
    static struct sl_arena *scratch;
    if (!scratch) {
        for (int i = 0; i < 3; i++)
            if (!(events[i] = cJSON_Parse(event_texts[i])))
                abort();
        scratch = sl_arena_create(65536, 1 << 20);
    }
    /* An exact-size copy, so reading past size is caught. */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    struct sl_rql *prog = NULL;
    struct sl_rql_error err;
    int rc = sl_rql_compile(text, size, &prog, &err);
    if (rc != 0) {
        if (prog)
            abort();
        if (rc == SL_EINVAL && size <= SL_RQL_MAX_QUERY)
            check_error(&err, data, size);
        free(text);
        return 0;
    }
    const char *const *names;
    size_t nlists = sl_rql_list_refs(prog, &names);
    if (nlists > SL_RQL_MAX_LIST_REFS)
        abort();
    for (size_t i = 0; i < nlists; i++)
        if (!names[i])
            abort();
    (void)sl_rql_uses_raw_log(prog);
    static const struct sl_rql_env env = {
        .intel_match = cb_intel, .intel_cidr = cb_cidr, .geo = cb_geo, .dns = cb_dns};
    for (int i = 0; i < 3; i++) {
        struct sl_rql_input in = {.event = events[i]};
        int oom1 = 0, oom2 = 0;
        int r1 = sl_rql_match(prog, &in, &env, scratch, &oom1);
        int r2 = sl_rql_match(prog, &in, &env, scratch, &oom2);
        if ((r1 != 0 && r1 != 1) || (!oom1 && !oom2 && r1 != r2)) {
            fprintf(stderr, "evaluation is not a pure function: %d then %d\n", r1, r2);
            abort();
        }
        (void)sl_rql_match(prog, &in, NULL, NULL, NULL);
        sl_rql_input_fini(&in);
        sl_arena_reset(scratch);
    }
    sl_rql_free(prog);
    free(text);
    return 0;
}
