/* Unit tests for src/core: configuration table, time parsing and formatting, identifiers,
 * strict number parsing, and the stats histogram. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/config.h"
#include "core/error.h"
#include "core/util.h"
#include "processor/stats.h"

static int warnings;
static char last_warning[512];

static void count_warning(const char *msg)
{
    warnings++;
    snprintf(last_warning, sizeof(last_warning), "%s", msg);
}

static void test_config_defaults(void **state)
{
    (void)state;
    char *env[] = {NULL};
    struct sl_config cfg;
    char err[512];
    assert_int_equal(sl_config_load(&cfg, env, err, sizeof(err), NULL), 0);
    assert_int_equal(cfg.disabled, 0);
    assert_int_equal(cfg.es_bulk_size, 500);
    assert_int_equal(cfg.meta_refresh_s, 300);
    assert_int_equal(cfg.worker_count, sl_config_default_workers());
    assert_true(cfg.worker_count >= 1);
    assert_int_equal(cfg.max_workers_per_org, 5);
    assert_int_equal(cfg.kafka_retention_s, 7 * 86400);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    assert_string_equal(cfg.data_dir, "./data");
    assert_int_equal(cfg.max_body_bytes, 16 * 1024 * 1024);
    assert_int_equal(cfg.max_queue_size, 1000000);
}

static void test_config_env_values(void **state)
{
    (void)state;
    char *env[] = {"REFLEX_EVENT_PROCESSOR_DISABLED=yes",
                   "REFLEX_EVENT_PROCESSOR_WORKER_COUNT=7",
                   "REFLEX_EVENT_PROCESSOR_LOG_LEVEL=debug",
                   "REFLEX_EVENT_PROCESSOR_WORKER_CHECK_INTERVAL=2m",
                   "REFLEX_EVENT_PROCESSOR_KAFKA_BOOTSTRAP_SERVERS=localhost:29092,k2:9092",
                   "SLUICE_MAX_BODY_BYTES=2M",
                   "SLUICE_LISTEN=[::1]:0",
                   "SLUICE_DATA_DIR=/tmp/x",
                   NULL};
    struct sl_config cfg;
    char err[512];
    assert_int_equal(sl_config_load(&cfg, env, err, sizeof(err), NULL), 0);
    assert_int_equal(cfg.disabled, 1);
    assert_int_equal(cfg.worker_count, 7);
    assert_int_equal(cfg.log_level, 0);
    assert_int_equal(cfg.worker_check_s, 120);
    assert_string_equal(cfg.kafka_bootstrap, "localhost:29092,k2:9092");
    assert_int_equal(cfg.max_body_bytes, 2 * 1024 * 1024);
    assert_string_equal(cfg.listen, "[::1]:0");
    assert_string_equal(cfg.data_dir, "/tmp/x");
}

static void expect_bad(const char *var, const char *needle)
{
    char *env[] = {(char *)var, NULL};
    struct sl_config cfg;
    char err[512] = "";
    assert_int_equal(sl_config_load(&cfg, env, err, sizeof(err), NULL), SL_EINVAL);
    /* The message names the variable, the value and what is accepted. */
    char name[128];
    const char *eq = strchr(var, '=');
    assert_non_null(eq);
    size_t nl = (size_t)(eq - var);
    memcpy(name, var, nl);
    name[nl] = 0;
    assert_non_null(strstr(err, name));
    assert_non_null(strstr(err, eq + 1));
    assert_non_null(strstr(err, needle));
}

static void test_config_bad_values(void **state)
{
    (void)state;
    expect_bad("REFLEX_EVENT_PROCESSOR_WORKER_COUNT=abc", "an integer 1..256");
    expect_bad("REFLEX_EVENT_PROCESSOR_WORKER_COUNT=0", "an integer 1..256");
    expect_bad("REFLEX_EVENT_PROCESSOR_WORKER_COUNT=12 ", "an integer");
    expect_bad("REFLEX_EVENT_PROCESSOR_DISABLED=maybe", "true or false");
    expect_bad("REFLEX_EVENT_PROCESSOR_LOG_LEVEL=LOUD", "DEBUG, INFO, WARN or ERROR");
    expect_bad("REFLEX_EVENT_PROCESSOR_ES_BULK_SIZE=-1", "an integer 1..100000");
    expect_bad("REFLEX_EVENT_PROCESSOR_WORKER_CHECK_INTERVAL=5x", "duration");
    expect_bad("REFLEX_EVENT_PROCESSOR_KAFKA_BOOTSTRAP_SERVERS=nohost", "host:port");
    expect_bad("SLUICE_LISTEN=8080", "host:port");
    expect_bad("SLUICE_LISTEN=127.0.0.1:70000", "host:port");
    expect_bad("SLUICE_MAX_BODY_BYTES=1T", "size");
    expect_bad("REFLEX_EVENT_PROCESSOR_MAX_QUEUE_SIZE=lots", "an integer");
    expect_bad("KAFKA_SASL=gssapi:alice:secret", "scram-sha-512:USER:PASSWORD");
    expect_bad("KAFKA_SASL=plain:alice", "plain:USER:PASSWORD");
    expect_bad("KAFKA_SASL=plain::secret", "plain:USER:PASSWORD");
    expect_bad("KAFKA_SASL=scram-sha-256:alice:", "plain:USER:PASSWORD");
    expect_bad("KAFKA_SSL_ENABLED=perhaps", "true or false");
}

/* The gateway-shared Kafka settings: parsed, checked together, secrets never printed. */
static void test_config_kafka(void **state)
{
    (void)state;
    char *env[] = {"REFLEX_EVENT_PROCESSOR_KAFKA_BOOTSTRAP_SERVERS=k1:9092,k2:9092",
                   "KAFKA_SASL=SCRAM-SHA-512:alice:pa:ss", "KAFKA_SSL_KEYFILE_PASS=hunter2",
                   "KAFKA_SSL_ENABLED=1", NULL};
    struct sl_config cfg;
    char err[512] = "", *buf = NULL;
    size_t len = 0;
    assert_int_equal(sl_config_load(&cfg, env, err, sizeof(err), NULL), 0);
    assert_int_equal(cfg.kafka_ssl, 1);
    assert_string_equal(cfg.kafka_sasl, "SCRAM-SHA-512:alice:pa:ss");
    /* A passphrase without a key file is a mistake worth stopping for. */
    assert_int_equal(sl_config_check_kafka(&cfg, err, sizeof(err), NULL), SL_EINVAL);
    assert_non_null(strstr(err, "KAFKA_SSL_KEYFILE_PASS"));
    snprintf(cfg.kafka_ssl_cert, sizeof(cfg.kafka_ssl_cert), "/nonexistent/client.pem");
    assert_int_equal(sl_config_check_kafka(&cfg, err, sizeof(err), NULL), SL_EINVAL);
    assert_non_null(strstr(err, "KAFKA_SSL_CERTFILE=/nonexistent/client.pem"));
    cfg.kafka_ssl_cert[0] = 0;
    cfg.kafka_ssl_key_pass[0] = 0;
    warnings = 0;
    cfg.kafka_ssl = 0;
    assert_int_equal(sl_config_check_kafka(&cfg, err, sizeof(err), count_warning), 0);
    assert_int_equal(warnings, 1); /* SASL in clear */
    FILE *f = open_memstream(&buf, &len);
    sl_config_print(&cfg, env, f, 0);
    fclose(f);
    assert_non_null(strstr(buf, "KAFKA_SASL=SCRAM-SHA-512:alice:(password)  (environment)"));
    assert_null(strstr(buf, "pa:ss"));
    free(buf);
}

static void test_config_unknown_warned(void **state)
{
    (void)state;
    char *env[] = {"SLUICE_LISTN=1.2.3.4:5", "SLUICE_TEST_SCALE=2", "OTHER=1", NULL};
    struct sl_config cfg;
    char err[512];
    warnings = 0;
    assert_int_equal(sl_config_load(&cfg, env, err, sizeof(err), count_warning), 0);
    assert_int_equal(warnings, 1);
    assert_non_null(strstr(last_warning, "SLUICE_LISTN"));
}

static void test_config_print(void **state)
{
    (void)state;
    char *env[] = {"REFLEX_EVENT_PROCESSOR_WORKER_COUNT=3", NULL};
    struct sl_config cfg;
    char err[512], *buf = NULL;
    size_t len = 0;
    assert_int_equal(sl_config_load(&cfg, env, err, sizeof(err), NULL), 0);
    FILE *f = open_memstream(&buf, &len);
    sl_config_print(&cfg, env, f, 0);
    fclose(f);
    assert_non_null(strstr(buf, "REFLEX_EVENT_PROCESSOR_WORKER_COUNT=3  (environment)"));
    assert_non_null(strstr(buf, "REFLEX_EVENT_PROCESSOR_ES_BULK_SIZE=500  (default)"));
    free(buf);
    f = open_memstream(&buf, &len);
    sl_config_print(&cfg, env, f, 2);
    fclose(f);
    assert_non_null(strstr(buf, "| `REFLEX_EVENT_PROCESSOR_MAX_QUEUE_SIZE` | `1000000` |"));
    free(buf);
}

static void test_time(void **state)
{
    (void)state;
    int64_t ms = 0;
    char out[25];
    assert_int_equal(sl_time_parse("1970-01-01T00:00:00Z", 20, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(sl_time_parse("2026-11-24T22:27:16.123Z", 24, &ms), 0);
    sl_time_format(ms, out);
    assert_string_equal(out, "2026-11-24T22:27:16.123Z");
    assert_int_equal(sl_time_parse("2026-11-24T23:27:16+01:00", 25, &ms), 0);
    sl_time_format(ms, out);
    assert_string_equal(out, "2026-11-24T22:27:16.000Z");
    assert_int_equal(sl_time_parse("2024-02-29", 10, &ms), 0);
    assert_int_equal(sl_time_parse("2024-02-29 10:00", 16, &ms), 0);
    assert_int_equal(sl_time_parse("2024-13-01", 10, &ms), SL_EINVAL);
    assert_int_equal(sl_time_parse("2024-02-30", 10, &ms), SL_EINVAL);
    assert_int_equal(sl_time_parse("2024-02-01T25:00", 16, &ms), SL_EINVAL);
    assert_int_equal(sl_time_parse("yesterday", 9, &ms), SL_EINVAL);
    assert_int_equal(sl_time_parse("2024-02-01T10:00:00Zjunk", 24, &ms), SL_EINVAL);
    assert_int_equal(sl_time_parse("2024-02-01T10:00:00.", 20, &ms), SL_EINVAL);
    /* Not NUL-terminated: only len bytes are read. */
    assert_int_equal(sl_time_parse("2024-02-01XXXX", 10, &ms), 0);
}

static void test_uuid_and_hashes(void **state)
{
    (void)state;
    char a[37], b[37], md5[33];
    sl_uuid4(a);
    sl_uuid4(b);
    assert_true(sl_uuid_valid(a));
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4');
    const char *parts[] = {"org", "ref"};
    size_t lens[] = {3, 3};
    assert_int_equal(sl_uuid_from_parts(parts, lens, 2, a), 0);
    assert_int_equal(sl_uuid_from_parts(parts, lens, 2, b), 0);
    assert_string_equal(a, b);
    assert_int_equal(a[14], '8');
    const char *parts2[] = {"orgr", "ef"};
    size_t lens2[] = {4, 2};
    assert_int_equal(sl_uuid_from_parts(parts2, lens2, 2, b), 0);
    assert_string_not_equal(a, b); /* the separator keeps ("org","ref") != ("orgr","ef") */
    sl_md5_hex("abc", 3, md5);
    assert_string_equal(md5, "900150983cd24fb0d6963f7d28e17f72");
    assert_false(sl_uuid_valid("not-a-uuid"));
    assert_false(sl_uuid_valid("00000000-0000-0000-0000-00000000000g"));
}

static void test_parse_numbers(void **state)
{
    (void)state;
    int64_t v;
    int b;
    assert_int_equal(sl_parse_int64("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(sl_parse_int64("101", 0, 100, &v), SL_EINVAL);
    assert_int_equal(sl_parse_int64("", 0, 100, &v), SL_EINVAL);
    assert_int_equal(sl_parse_int64(" 4", 0, 100, &v), SL_EINVAL);
    assert_int_equal(sl_parse_int64("99999999999999999999", 0, INT64_MAX, &v), SL_EINVAL);
    assert_int_equal(sl_parse_bool("On", &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(sl_parse_bool("2", &b), SL_EINVAL);
}

static void test_histogram(void **state)
{
    (void)state;
    struct sl_histogram h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(sl_histogram_quantile(&h, 0.5), 0);
    for (int i = 0; i < 99; i++)
        sl_histogram_observe(&h, 700); /* bucket (500, 1000] */
    sl_histogram_observe(&h, 2000000); /* bucket (1 s, 5 s] */
    int64_t p50 = sl_histogram_quantile(&h, 0.5);
    assert_true(p50 > 500 && p50 <= 1000);
    int64_t p999 = sl_histogram_quantile(&h, 0.999);
    assert_true(p999 > 1000000);
    assert_int_equal(h.count, 100);
}

static void test_arena(void **state)
{
    (void)state;
    struct sl_arena *a = sl_arena_create(4096, 8192);
    assert_non_null(a);
    for (int round = 0; round < 3; round++) {
        unsigned char *prev = NULL;
        for (int i = 0; i < 1000; i++) {
            unsigned char *p = sl_arena_alloc(a, (size_t)(1 + i % 100));
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % 16, 0);
            memset(p, 0xab, (size_t)(1 + i % 100)); /* ASan: every byte is ours */
            assert_true(p != prev);
            prev = p;
        }
        unsigned char *big = sl_arena_alloc(a, 100000); /* larger than a chunk */
        assert_non_null(big);
        memset(big, 1, 100000);
        assert_true(sl_arena_used(a) >= 100000);
        sl_arena_reset(a);
        assert_int_equal(sl_arena_used(a), 0);
    }
    assert_null(sl_arena_alloc(a, SIZE_MAX - 8));
    sl_arena_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_env_values),
        cmocka_unit_test(test_config_bad_values),
        cmocka_unit_test(test_config_unknown_warned),
        cmocka_unit_test(test_config_print),
        cmocka_unit_test(test_config_kafka),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_uuid_and_hashes),
        cmocka_unit_test(test_parse_numbers),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
