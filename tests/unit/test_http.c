/* Unit tests for src/http and the request parsing of src/api: query strings, routing, the
 * bounded body, the JSON error shape, Bearer parsing and the key cache, and the event-list
 * filter parameters. No server is started. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "api/api_internal.h"
#include "core/error.h"
#include "http/auth.h"
#include "http/router.h"
#include "http/server.h"

/* ---- query strings ---- */

static void parse(struct sl_http_query *q, const char *qs, int expect_rc)
{
    assert_int_equal(sl_http_query_parse(q, qs, strlen(qs)), expect_rc);
}

static void test_query_basic(void **state)
{
    (void)state;
    struct sl_http_query q;
    parse(&q, "page=2&title=hello+world&x=%41%62%2B&flag&&empty=", 0);
    assert_int_equal(q.n, 5);
    assert_string_equal(sl_http_query_get(&q, "page"), "2");
    assert_string_equal(sl_http_query_get(&q, "title"), "hello world");
    assert_string_equal(sl_http_query_get(&q, "x"), "Ab+");
    assert_string_equal(sl_http_query_get(&q, "flag"), "");
    assert_string_equal(sl_http_query_get(&q, "empty"), "");
    assert_null(sl_http_query_get(&q, "missing"));
    sl_http_query_fini(&q);

    parse(&q, "", 0);
    assert_int_equal(q.n, 0);
    assert_null(sl_http_query_get(&q, "a"));
    sl_http_query_fini(&q);

    parse(&q, "a%3Db=c%26d", 0); /* escaped separators are data */
    assert_int_equal(q.n, 1);
    assert_string_equal(sl_http_query_get(&q, "a=b"), "c&d");
    sl_http_query_fini(&q);
}

static void test_query_repeated(void **state)
{
    (void)state;
    struct sl_http_query q;
    parse(&q, "severity=1&tag=a&severity=3,4&severity=", 0);
    size_t pos = 0;
    assert_string_equal(sl_http_query_next(&q, "severity", &pos), "1");
    assert_string_equal(sl_http_query_next(&q, "severity", &pos), "3,4");
    assert_string_equal(sl_http_query_next(&q, "severity", &pos), "");
    assert_null(sl_http_query_next(&q, "severity", &pos));
    sl_http_query_fini(&q);
}

static void test_query_errors(void **state)
{
    (void)state;
    struct sl_http_query q;
    const char *bad[] = {"a=%zz", "a=%4", "a=%", "%0", "a=%00", "a=b%2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        parse(&q, bad[i], SL_EINVAL);
        sl_http_query_fini(&q);
    }
    char many[SL_HTTP_QUERY_MAX * 4 + 16] = "";
    for (int i = 0; i <= SL_HTTP_QUERY_MAX; i++)
        strcat(many, "a=1&");
    parse(&q, many, SL_EFULL);
    sl_http_query_fini(&q);
    many[strlen(many) - 4] = '\0'; /* exactly the maximum */
    parse(&q, many, 0);
    assert_int_equal(q.n, SL_HTTP_QUERY_MAX);
    sl_http_query_fini(&q);
}

/* Random bytes never crash the parser, and what it returns is consistent. */
static void test_query_random(void **state)
{
    (void)state;
    static const char alphabet[] = "ab=&%+0fFz9\x01";
    unsigned seed = 12345;
    for (int round = 0; round < 20000; round++) {
        char qs[64];
        size_t len = (size_t)(seed % sizeof(qs));
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            qs[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
        }
        seed = seed * 1103515245u + 12345u;
        struct sl_http_query q;
        int rc = sl_http_query_parse(&q, qs, len);
        assert_true(rc == 0 || rc == SL_EINVAL);
        if (rc == 0) {
            assert_true(q.n <= SL_HTTP_QUERY_MAX);
            for (size_t i = 0; i < q.n; i++)
                assert_true(strlen(q.params[i].key) + strlen(q.params[i].value) <= len);
        }
        sl_http_query_fini(&q);
    }
}

/* ---- routing ---- */

static const int d_bulk = 1, d_stats = 2, d_get = 3, d_list = 4, d_health = 5;
static const struct sl_route routes[] = {
    {"/api/v2.0/event/_bulk", SL_HTTP_POST, &d_bulk},
    {"/api/v2.0/event/queue_stats", SL_HTTP_GET, &d_stats},
    {"/api/v2.0/event/*", SL_HTTP_GET, &d_get},
    {"/api/v2.0/event", SL_HTTP_GET, &d_list},
    {"/health", SL_HTTP_GET, &d_health},
};
#define NR (sizeof(routes) / sizeof(routes[0]))

static const void *route_data(unsigned method, const char *path, enum sl_route_result expect,
                              struct sl_route_match *m)
{
    assert_int_equal(sl_router_match(routes, NR, method, path, m), expect);
    return expect == SL_ROUTE_OK ? m->route->data : NULL;
}

static void test_router_match(void **state)
{
    (void)state;
    struct sl_route_match m;
    assert_ptr_equal(route_data(SL_HTTP_POST, "/api/v2.0/event/_bulk", SL_ROUTE_OK, &m), &d_bulk);
    assert_ptr_equal(route_data(SL_HTTP_GET, "/api/v2.0/event", SL_ROUTE_OK, &m), &d_list);
    assert_ptr_equal(route_data(SL_HTTP_GET, "/api/v2.0/event/", SL_ROUTE_OK, &m), &d_list);
    assert_ptr_equal(route_data(SL_HTTP_HEAD, "/health", SL_ROUTE_OK, &m), &d_health);
    /* queue_stats is a literal and wins over the uuid wildcard. */
    assert_ptr_equal(route_data(SL_HTTP_GET, "/api/v2.0/event/queue_stats", SL_ROUTE_OK, &m),
                     &d_stats);
    assert_int_equal(m.nparams, 0);
    const char *uuid = "/api/v2.0/event/0d3d5e6f-93cf-87e0-888a-16841d5e1799";
    assert_ptr_equal(route_data(SL_HTTP_GET, uuid, SL_ROUTE_OK, &m), &d_get);
    assert_int_equal(m.nparams, 1);
    assert_int_equal(m.params[0].len, 36);
    assert_memory_equal(m.params[0].ptr, uuid + 16, 36);
}

static void test_router_errors(void **state)
{
    (void)state;
    struct sl_route_match m;
    char allow[64];
    route_data(SL_HTTP_GET, "/nope", SL_ROUTE_NO_PATH, &m);
    route_data(SL_HTTP_GET, "/api/v2.0/event/a/b", SL_ROUTE_NO_PATH, &m);
    route_data(SL_HTTP_GET, "/api//event", SL_ROUTE_NO_PATH, &m);
    route_data(SL_HTTP_GET, "", SL_ROUTE_NO_PATH, &m);
    route_data(SL_HTTP_GET, "/", SL_ROUTE_NO_PATH, &m);
    /* Known path, wrong method: 405 with the methods of the best-matching path only. */
    route_data(SL_HTTP_GET, "/api/v2.0/event/_bulk", SL_ROUTE_NO_METHOD, &m);
    sl_http_methods_format(m.allow, allow, sizeof(allow));
    assert_string_equal(allow, "POST");
    route_data(SL_HTTP_DELETE, "/api/v2.0/event/queue_stats", SL_ROUTE_NO_METHOD, &m);
    sl_http_methods_format(m.allow, allow, sizeof(allow));
    assert_string_equal(allow, "GET, HEAD");
    route_data(SL_HTTP_POST, "/health", SL_ROUTE_NO_METHOD, &m);
    route_data(SL_HTTP_OTHER, "/health", SL_ROUTE_NO_METHOD, &m);
}

static void test_methods(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(sl_http_method_parse("GET"), SL_HTTP_GET);
    assert_int_equal(sl_http_method_parse("POST"), SL_HTTP_POST);
    assert_int_equal(sl_http_method_parse("get"), SL_HTTP_OTHER);
    assert_int_equal(sl_http_method_parse("BREW"), SL_HTTP_OTHER);
    assert_int_equal(sl_http_methods_format(0, out, sizeof(out)), 0);
    assert_string_equal(out, "");
    sl_http_methods_format(SL_HTTP_POST | SL_HTTP_GET | SL_HTTP_DELETE, out, sizeof(out));
    assert_string_equal(out, "GET, POST, DELETE");
    sl_http_methods_format(SL_HTTP_POST | SL_HTTP_GET, out, 6); /* truncated, terminated */
    assert_string_equal(out, "GET");
}

/* ---- bounded body ---- */

static void test_body_limit(void **state)
{
    (void)state;
    struct sl_http_body b;
    char chunk[700];
    memset(chunk, 'x', sizeof(chunk));
    sl_http_body_init(&b, 2000);
    assert_int_equal(sl_http_body_append(&b, chunk, 700), 0);
    assert_int_equal(sl_http_body_append(&b, chunk, 700), 0);
    assert_true(b.cap <= b.max);
    assert_int_equal(sl_http_body_append(&b, chunk, 600), 0); /* exactly the limit */
    assert_int_equal(b.len, 2000);
    assert_int_equal(b.cap, 2000);
    assert_int_equal(b.data[2000], '\0');
    assert_false(b.too_large);
    assert_int_equal(sl_http_body_append(&b, chunk, 1), SL_EFULL);
    assert_true(b.too_large);
    assert_int_equal(b.len, 2000);
    assert_int_equal(b.cap, 2000); /* never grows past the limit */
    assert_int_equal(sl_http_body_append(&b, chunk, 10), SL_EFULL);
    assert_int_equal(b.discarded, 11);
    sl_http_body_fini(&b);
    assert_null(b.data);
}

static void test_body_growth_and_reserve(void **state)
{
    (void)state;
    struct sl_http_body b;
    char chunk[4096];
    memset(chunk, 'y', sizeof(chunk));
    /* Growth by doubling stays within a limit that is not a power of two. */
    sl_http_body_init(&b, 100000);
    for (int i = 0; i < 24; i++) {
        assert_int_equal(sl_http_body_append(&b, chunk, sizeof(chunk)), 0);
        assert_true(b.cap <= b.max && b.cap >= b.len);
    }
    assert_int_equal(sl_http_body_append(&b, chunk, sizeof(chunk)), SL_EFULL);
    assert_int_equal(b.len, 24 * 4096);
    sl_http_body_fini(&b);

    sl_http_body_init(&b, 1024);
    assert_int_equal(sl_http_body_reserve(&b, 1025), SL_EFULL); /* 413 before any byte */
    assert_true(b.too_large);
    assert_null(b.data);
    sl_http_body_fini(&b);

    sl_http_body_init(&b, 1024);
    assert_int_equal(sl_http_body_reserve(&b, 1024), 0);
    assert_int_equal(b.cap, 1024);
    assert_int_equal(sl_http_body_reserve(&b, 0), 0);
    assert_int_equal(sl_http_body_append(&b, "{}", 2), 0);
    assert_string_equal(b.data, "{}");
    sl_http_body_fini(&b);

    /* A spare buffer kept from a request with a larger limit is not taken past the limit. */
    sl_http_body_init(&b, 1 << 20);
    assert_int_equal(sl_http_body_reserve(&b, 1 << 20), 0);
    sl_http_body_fini(&b);
    sl_http_body_init(&b, 100);
    assert_int_equal(sl_http_body_append(&b, chunk, 50), 0);
    assert_true(b.cap <= 100);
    sl_http_body_fini(&b);
}

/* ---- JSON errors ---- */

static void test_error_body(void **state)
{
    (void)state;
    size_t len = 0;
    char *s = sl_http_error_body("not found", "no such event", NULL, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    cJSON *o = cJSON_Parse(s);
    assert_string_equal(cJSON_GetObjectItem(o, "error")->valuestring, "not found");
    assert_string_equal(cJSON_GetObjectItem(o, "detail")->valuestring, "no such event");
    cJSON_Delete(o);
    free(s);

    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "offset", 17);
    cJSON_AddStringToObject(d, "message", "unexpected \"}\"");
    s = sl_http_error_body("malformed JSON", NULL, d, NULL);
    o = cJSON_Parse(s);
    assert_non_null(o);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "detail"), "offset")->valueint, 17);
    cJSON_Delete(o);
    free(s);

    s = sl_http_error_body("queue full", NULL, NULL, NULL);
    assert_string_equal(s, "{\"error\":\"queue full\",\"detail\":null}");
    free(s);
}

/* ---- Bearer keys and the key cache ---- */

static void test_bearer(void **state)
{
    (void)state;
    const char *k;
    size_t n;
    assert_int_equal(sl_auth_bearer("Bearer abc123", &k, &n), 0);
    assert_int_equal(n, 6);
    assert_memory_equal(k, "abc123", 6);
    assert_int_equal(sl_auth_bearer("  bearer \t key  ", &k, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(k, "key", 3);
    assert_int_equal(sl_auth_bearer(NULL, &k, &n), SL_EINVAL);
    assert_int_equal(sl_auth_bearer("", &k, &n), SL_EINVAL);
    assert_int_equal(sl_auth_bearer("Bearer", &k, &n), SL_EINVAL);
    assert_int_equal(sl_auth_bearer("Bearer   ", &k, &n), SL_EINVAL);
    assert_int_equal(sl_auth_bearer("Basic dXNlcjpwdw==", &k, &n), SL_EINVAL);
    assert_int_equal(sl_auth_bearer("Bearerabc", &k, &n), SL_EINVAL);
    assert_int_equal(sl_auth_role_bit("admin"), SL_ROLE_ADMIN);
    assert_int_equal(sl_auth_role_bit("agent"), SL_ROLE_AGENT);
    assert_int_equal(sl_auth_role_bit("analyst"), SL_ROLE_ANALYST);
    assert_int_equal(sl_auth_role_bit("root"), 0);
    assert_int_equal(sl_auth_role_bit(NULL), 0);
}

/* A store that knows one key and counts lookups. */
static int lookups;
static int fake_lookup(struct sl_store *st, const char *key, struct sl_principal *out)
{
    (void)st;
    lookups++;
    if (strcmp(key, "good-key") != 0)
        return SL_ENOTFOUND;
    memset(out, 0, sizeof(*out));
    strcpy(out->org_uuid, "11111111-2222-4333-8444-555555555555");
    strcpy(out->role, "agent");
    strcpy(out->key_id, "k1");
    return 0;
}
static const struct sl_store_ops fake_ops = {.name = "fake", .apikey_lookup = fake_lookup};

static void test_auth_cache(void **state)
{
    (void)state;
    struct sl_store fake = {&fake_ops};
    struct sl_principal p;
    struct sl_auth *a = sl_auth_create(4, 5000);
    assert_non_null(a);
    lookups = 0;
    assert_int_equal(sl_auth_resolve(a, &fake, "good-key", 8, 1000, &p), 0);
    assert_string_equal(p.role, "agent");
    assert_int_equal(lookups, 1);
    memset(&p, 0, sizeof(p));
    assert_int_equal(sl_auth_resolve(a, &fake, "good-key", 8, 5999, &p), 0); /* cached */
    assert_string_equal(p.key_id, "k1");
    assert_int_equal(lookups, 1);
    assert_int_equal(sl_auth_resolve(a, &fake, "good-key", 8, 6000, &p), 0); /* expired */
    assert_int_equal(lookups, 2);
    /* Invalid keys are asked every time (not cached), and a key of impossible length never
     * reaches the store. */
    assert_int_equal(sl_auth_resolve(a, &fake, "bad-key", 7, 6001, &p), SL_ENOTFOUND);
    assert_int_equal(sl_auth_resolve(a, &fake, "bad-key", 7, 6002, &p), SL_ENOTFOUND);
    assert_int_equal(lookups, 4);
    char longkey[SL_APIKEY_MAX + 10];
    memset(longkey, 'k', sizeof(longkey));
    assert_int_equal(sl_auth_resolve(a, &fake, longkey, sizeof(longkey), 6003, &p), SL_ENOTFOUND);
    assert_int_equal(sl_auth_resolve(a, &fake, "good\0key", 8, 6003, &p), SL_ENOTFOUND);
    assert_int_equal(lookups, 4);
    /* A prefix of a valid key is not the key. */
    assert_int_equal(sl_auth_resolve(a, &fake, "good-key", 7, 6004, &p), SL_ENOTFOUND);
    sl_auth_destroy(a);
}

/* ---- Retry-After from the backlog and the drain rate ---- */

static void test_retry_after(void **state)
{
    (void)state;
    struct sl_config cfg = {.max_queue_size = 100};
    struct sl_api api = {.cfg = &cfg};
    atomic_store(&api.drain_milli_eps, 0);
    assert_int_equal(sl_api_retry_after(&api, 500), 1); /* no drain measured yet */
    atomic_store(&api.drain_milli_eps, 50 * 1000);      /* 50 events/s */
    assert_int_equal(sl_api_retry_after(&api, 100), 1);
    assert_int_equal(sl_api_retry_after(&api, 199), 2);      /* 100 over: 2 s */
    assert_int_equal(sl_api_retry_after(&api, 200), 3);      /* 101 over: rounds up */
    assert_int_equal(sl_api_retry_after(&api, 1000000), 60); /* capped */
}

/* ---- GET /api/v2.0/event parameters ---- */

static int filter(const char *qs, struct sl_event_filter *f, char *err, size_t errlen)
{
    struct sl_http_query q;
    static struct sl_http_query keep; /* the filter borrows from the query */
    sl_http_query_fini(&keep);
    assert_int_equal(sl_http_query_parse(&q, qs, strlen(qs)), 0);
    f->org = "org";
    int rc = sl_api_event_filter_parse(&q, f, err, errlen);
    keep = q;
    return rc;
}

static void test_filter_defaults(void **state)
{
    (void)state;
    struct sl_event_filter f;
    char err[256];
    assert_int_equal(filter("", &f, err, sizeof(err)), 0);
    assert_string_equal(f.org, "org");
    assert_int_equal(f.page, 1);
    assert_int_equal(f.page_size, 25);
    assert_int_equal(f.sort_asc, 0);
    assert_int_equal(f.nseverities, 0);
    assert_null(f.status);
    assert_null(f.title);

    assert_int_equal(filter("severity=1,2&severity=2&severity=4&status=New&title=login&tags=a"
                            "&page=3&page_size=1000&sort_direction=ASC&start=2024-01-01"
                            "&end=2024-02-01T00:00:00Z&observable=1.2.3.4&signature=abc",
                            &f, err, sizeof(err)),
                     0);
    assert_int_equal(f.nseverities, 3);
    assert_int_equal(f.severities[0], 1);
    assert_int_equal(f.severities[1], 2);
    assert_int_equal(f.severities[2], 4);
    assert_string_equal(f.status, "New");
    assert_string_equal(f.title, "login");
    assert_string_equal(f.tag, "a");
    assert_string_equal(f.observable, "1.2.3.4");
    assert_string_equal(f.signature, "abc");
    assert_int_equal(f.page, 3);
    assert_int_equal(f.page_size, 1000);
    assert_int_equal(f.sort_asc, 1);
    assert_int_equal(f.start_ms, INT64_C(1704067200000));
    assert_int_equal(f.end_ms, INT64_C(1706745600000));

    assert_int_equal(filter("tags=a&tag=b", &f, err, sizeof(err)), 0);
    assert_string_equal(f.tag, "b");
}

static void test_filter_errors(void **state)
{
    (void)state;
    struct sl_event_filter f;
    char err[256];
    static const struct {
        const char *qs, *names;
    } bad[] = {
        {"severity=5", "severity="},
        {"severity=1,,2", "severity="},
        {"severity=high", "severity="},
        {"page=0", "page="},
        {"page=-1", "page="},
        {"page_size=0", "page_size="},
        {"page_size=1001", "page_size="},
        {"page_size=ten", "page_size="},
        {"sort_direction=up", "sort_direction="},
        {"start=yesterday", "start="},
        {"end=2024-13-01", "end="},
        {"start=2024-02-01&end=2024-01-01", "start="},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(filter(bad[i].qs, &f, err, sizeof(err)), SL_EINVAL);
        if (strncmp(err, bad[i].names, strlen(bad[i].names)) != 0)
            fail_msg("%s: error \"%s\" does not name the parameter", bad[i].qs, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query_basic),
        cmocka_unit_test(test_query_repeated),
        cmocka_unit_test(test_query_errors),
        cmocka_unit_test(test_query_random),
        cmocka_unit_test(test_router_match),
        cmocka_unit_test(test_router_errors),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_body_growth_and_reserve),
        cmocka_unit_test(test_error_body),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_auth_cache),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_filter_defaults),
        cmocka_unit_test(test_filter_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
