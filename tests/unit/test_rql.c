/* Unit tests for src/rules/rql*.c: every operator, mutator and keyword spelling, precedence,
 * field resolution, compile errors with line:column, limits, and two threads evaluating one
 * program. The data-driven cases are in tests/rql/conformance (test_rql_conformance.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "rules/rql.h"

/* ---- a deterministic environment ---------------------------------------------------------- */

static _Thread_local char last_data_type[32]; /* what intel_match saw last ("-" for NULL) */

static int env_intel(void *ud, const char *list, const char *value, size_t len,
                     const char *data_type)
{
    (void)ud;
    snprintf(last_data_type, sizeof(last_data_type), "%s", data_type ? data_type : "-");
    if (!strcmp(list, "Bad Domains"))
        return (len == 8 && !memcmp(value, "evil.com", 8)) ||
               (len == 8 && !memcmp(value, "EVIL.COM", 8));
    if (!strcmp(list, "Bad IPs"))
        return len == 7 && !memcmp(value, "1.2.3.4", 7);
    if (!strcmp(list, "IP only"))
        return data_type && !strcmp(data_type, "ip") && len == 7 && !memcmp(value, "1.2.3.4", 7);
    if (!strcmp(list, "Ports"))
        return len == 3 && !memcmp(value, "443", 3);
    return 0;
}

static int env_cidr(void *ud, const char *list, const char *ip, size_t len)
{
    (void)ud;
    if (strcmp(list, "Internal"))
        return 0;
    return len > 3 && !memcmp(ip, "10.", 3);
}

static int env_geo(void *ud, enum sl_rql_geo kind, const char *ip, char *out, size_t outlen)
{
    (void)ud;
    if (strcmp(ip, "8.8.8.8"))
        return 0;
    const char *a = kind == SL_RQL_GEO_COUNTRY     ? "US"
                    : kind == SL_RQL_GEO_CONTINENT ? "NA"
                                                   : "America/Chicago";
    snprintf(out, outlen, "%s", a);
    return 1;
}

static int env_dns(void *ud, enum sl_rql_dns kind, const char *name, char out[][256], int max)
{
    (void)ud;
    if (kind == SL_RQL_DNS_REVERSE && !strcmp(name, "8.8.8.8") && max >= 1) {
        snprintf(out[0], 256, "dns.google");
        return 1;
    }
    if (kind == SL_RQL_DNS_A && !strcmp(name, "example.com") && max >= 2) {
        snprintf(out[0], 256, "93.184.216.34");
        snprintf(out[1], 256, "93.184.216.35");
        return 2;
    }
    if (kind == SL_RQL_DNS_MX && !strcmp(name, "example.com"))
        return 0;
    return -1; /* not cached */
}

static const struct sl_rql_env env = {
    .intel_match = env_intel, .intel_cidr = env_cidr, .geo = env_geo, .dns = env_dns};

/* ---- helpers ------------------------------------------------------------------------------ */

static struct sl_rql *compile_ok(const char *q)
{
    struct sl_rql *p = NULL;
    struct sl_rql_error err;
    int rc = sl_rql_compile(q, strlen(q), &p, &err);
    if (rc) {
        print_error("query %s: %d:%d %s\n", q, err.line, err.col, err.msg);
        fail();
    }
    return p;
}

/* Compiles q and evaluates it against the JSON event ev. */
static int M(const char *q, const char *ev)
{
    struct sl_rql *p = compile_ok(q);
    cJSON *event = cJSON_Parse(ev);
    if (!event) {
        print_error("bad test event %s\n", ev);
        fail();
    }
    struct sl_arena *scratch = sl_arena_create(4096, 0);
    struct sl_rql_input in = {.event = event};
    int oom = -1;
    int r = sl_rql_match(p, &in, &env, scratch, &oom);
    assert_int_equal(oom, 0);
    sl_rql_input_fini(&in);
    sl_arena_destroy(scratch);
    cJSON_Delete(event);
    sl_rql_free(p);
    return r;
}

#define YES(q, ev)                                                                                 \
    do {                                                                                           \
        if (M(q, ev) != 1) {                                                                       \
            print_error("expected a match: %s against %s\n", q, ev);                               \
            fail();                                                                                \
        }                                                                                          \
    } while (0)
#define NO(q, ev)                                                                                  \
    do {                                                                                           \
        if (M(q, ev) != 0) {                                                                       \
            print_error("expected no match: %s against %s\n", q, ev);                              \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

/* Asserts that q does not compile, at line:col, with a message containing what. */
static void ERR(const char *q, int line, int col, const char *what)
{
    struct sl_rql *p = NULL;
    struct sl_rql_error err;
    int rc = sl_rql_compile(q, strlen(q), &p, &err);
    if (rc != SL_EINVAL || p) {
        print_error("query %s compiled (rc %d), expected an error\n", q, rc);
        fail();
    }
    if (err.line != line || err.col != col || !strstr(err.msg, what)) {
        print_error("query %s: got %d:%d \"%s\", expected %d:%d \"...%s...\"\n", q, err.line,
                    err.col, err.msg, line, col, what);
        fail();
    }
}

static const char *EV =
    "{\"title\":\"Suspicious Login\",\"severity\":3,\"tags\":[\"auth\",\"brute\"],"
    "\"description\":\"3 failures then success\",\"tlp\":2,\"risk_score\":7.5,"
    "\"observables\":[{\"value\":\"10.1.2.3\",\"data_type\":\"ip\",\"ioc\":true,"
    "\"tags\":[\"internal\"]},{\"value\":\"alice\",\"data_type\":\"user\",\"ioc\":false},"
    "{\"value\":\"evil.com\",\"data_type\":\"domain\",\"tags\":[\"bad\",\"c2\"]}],"
    "\"source\":\"sensor\",\"empty\":\"\",\"nothing\":null,\"flag\":true,\"off\":false,"
    "\"count_s\":\"42\",\"float_s\":\"2.5\",\"obj\":{\"a\":{\"b\":1}},\"nums\":[1,2,3,10],"
    "\"entity\":{\"host\":{\"name\":\"WS-01\"}},\"@timestamp\":\"2024-01-01\"}";

/* ---- operators ---------------------------------------------------------------------------- */

static void test_equals(void **state)
{
    (void)state;
    YES("title = \"Suspicious Login\"", EV);
    NO("title = \"suspicious login\"", EV);
    NO("title = \"Suspicious\"", EV);
    YES("severity = 3", EV);
    YES("severity = \"3\"", EV); /* a string literal equals a number's canonical text */
    NO("severity = \"3.0\"", EV);
    NO("severity = \"03\"", EV);
    YES("count_s = 42", EV); /* a number literal equals a numeric string */
    YES("float_s = 2.5", EV);
    NO("count_s = 41", EV);
    YES("risk_score = 7.5", EV);
    YES("risk_score = \"7.5\"", EV);
    YES("tags = \"auth\"", EV); /* list: any element */
    NO("tags = \"aut\"", EV);
    YES("tags = 2", EV); /* list with a number: its length (kept quirk) */
    NO("tags = 3", EV);
    YES("flag = true", EV);
    NO("flag = false", EV);
    YES("off = false", EV);
    NO("flag = \"true\"", EV);
    NO("severity = true", EV);
    YES("empty = \"\"", EV);
    NO("nothing = \"x\"", EV);
    NO("missing = \"x\"", EV);
    /* != and not: a missing field counts as a match */
    YES("missing != \"x\"", EV);
    YES("nothing != \"x\"", EV);
    YES("title != \"x\"", EV);
    NO("title != \"Suspicious Login\"", EV);
    YES("title not = \"x\"", EV);
    NO("title not = \"Suspicious Login\"", EV);
    YES("missing not = \"x\"", EV);
    NO("title not != \"x\"", EV); /* double negation */
    YES("title not != \"Suspicious Login\"", EV);
    YES("title eq 'Suspicious Login'", EV);
    YES("title ne 'x'", EV);
    /* a string with a NUL byte never equals JSON text */
    NO("title = \"Suspicious\\x00Login\"", EV);
}

static void test_contains(void **state)
{
    (void)state;
    YES("title contains \"Login\"", EV);
    NO("title contains \"login\"", EV);
    YES("title containscis \"LOGIN\"", EV);
    YES("title contains \"\"", EV);
    YES("tags contains \"rut\"", EV);
    NO("tags contains \"xyz\"", EV);
    YES("title contains [\"nope\", \"Login\"]", EV);
    NO("title contains [\"nope\", \"login\"]", EV);
    YES("title|all contains [\"Suspicious\", \"Login\"]", EV);
    NO("title|all contains [\"Suspicious\", \"Logout\"]", EV);
    YES("tags|all contains [\"au\", \"br\"]", EV); /* each value in some element */
    NO("tags|all contains [\"au\", \"zz\"]", EV);
    YES("tags|all|any contains [\"au\", \"zz\"]", EV); /* the last mode wins */
    NO("severity contains \"3\"", EV);                 /* neither string nor list */
    NO("missing contains \"x\"", EV);
    YES("missing not contains \"x\"", EV);
    YES("title not contains \"xyz\"", EV);
    NO("title not contains \"Login\"", EV);
    YES("title containscis [\"SUSPICIOUS\"]", EV);
    YES("tags containscis \"BRU\"", EV);
    YES("nums contains 1", "{\"nums\":[\"a1\"]}"); /* a number is its text where text is needed */
    YES("t containscis \"ÉTÉ\"", "{\"t\":\"un été chaud\"}");
    YES("t containscis \"привет\"", "{\"t\":\"ПРИВЕТ мир\"}");
    YES("title CONTAINS \"Login\"", EV);
    YES("title ContainsCIS \"login\"", EV);
}

static void test_in(void **state)
{
    (void)state;
    YES("title in [\"a\", \"Suspicious Login\"]", EV);
    NO("title in [\"a\", \"b\"]", EV);
    YES("severity in [1, 3]", EV);
    YES("severity in [\"3\"]", EV);
    YES("count_s in [42]", EV);
    NO("count_s in [\"4\"]", EV);
    YES("observables.value in [\"alice\", \"bob\"]", EV);
    NO("observables.value in [\"bob\"]", EV);
    YES("observables.value|all in [\"alice\", \"evil.com\"]", EV);
    NO("observables.value|all in [\"alice\", \"bob\"]", EV);
    YES("observables.value|any in [\"bob\", \"alice\"]", EV);
    YES("tags in [\"brute\"]", EV);
    NO("missing in [\"x\"]", EV);
    YES("missing not in [\"x\"]", EV);
    NO("title in []", EV);
    YES("title in [\"a\", \"Suspicious Login\",]", EV); /* trailing comma */
    YES("title|lowercase in [\"suspicious login\"]", EV);
    YES("title|uppercase in [\"SUSPICIOUS LOGIN\"]", EV);
    YES("nums in [10]", EV);
    NO("flag in [\"true\"]", EV);
    /* |all counts distinct values: equal literals are one value */
    YES("l|all in [\"a\", \"3\", 3, 3.0, \"b\", \"a\"]", "{\"l\":[\"a\",3,\"b\"]}");
    YES("l|all in [\"a\", \"3\", 3, \"b\"]", "{\"l\":[\"a\",\"3\",\"b\"]}");
    NO("l|all in [\"a\", \"3\", 3, \"b\"]", "{\"l\":[\"a\",\"3.0\",\"b\"]}");
    YES("x|all in [3, \"3\", 3]", "{\"x\":3}");
    YES("x|all in [3, \"3\"]", "{\"x\":\"3\"}");
    NO("x|all in [3, \"3\"]", "{\"x\":\"3.0\"}");
    NO("x|all in [\"a\", \"b\"]", "{\"x\":\"a\"}");
    NO("l|all in []", "{\"l\":[\"a\"]}");
    /* many values: a hash set, not a scan */
    char *q = malloc(200000);
    size_t k = (size_t)sprintf(q, "title in [");
    for (int i = 0; i < 2000; i++)
        k += (size_t)sprintf(q + k, "\"value-%d\", %d, ", i, i * 1000);
    sprintf(q + k, "\"Suspicious Login\"]");
    YES(q, EV);
    sprintf(q + k, "\"x\"]");
    NO(q, EV);
    YES(q, "{\"title\":\"value-1999\"}");
    YES(q, "{\"title\":1999000}");
    YES(q, "{\"title\":\"7000\"}");
    NO(q, "{\"title\":7001}");
    /* |all over a large list and array: lookups, not a scan of the array per element */
    k = (size_t)sprintf(q, "l|all in [");
    for (int i = 0; i < 2000; i++)
        k += (size_t)sprintf(q + k, "\"v%d\", ", i);
    sprintf(q + k, "2000]");
    struct sl_rql *p = compile_ok(q);
    cJSON *ev = cJSON_CreateObject();
    cJSON *l = cJSON_AddArrayToObject(ev, "l");
    for (int i = 0; i <= 50000; i++) { /* "v50000" ... "v0" */
        char v[16];
        snprintf(v, sizeof(v), "v%d", 50000 - i);
        cJSON_AddItemToArray(l, cJSON_CreateString(v));
    }
    struct sl_rql_input in = {.event = ev};
    assert_int_equal(sl_rql_match(p, &in, &env, NULL, NULL), 0); /* no 2000 */
    cJSON_AddItemToArray(l, cJSON_CreateNumber(2000));
    struct sl_arena *scratch = sl_arena_create(4096, 0);
    assert_int_equal(sl_rql_match(p, &in, &env, scratch, NULL), 1);
    cJSON_DeleteItemFromArray(l, 50000 - 7); /* "v7" */
    assert_int_equal(sl_rql_match(p, &in, &env, scratch, NULL), 0);
    sl_arena_destroy(scratch);
    cJSON_Delete(ev);
    sl_rql_free(p);
    free(q);
}

static void test_regexp(void **state)
{
    (void)state;
    YES("title regexp \"Susp\"", EV); /* anchored at the start only, like re.match */
    NO("title regexp \"Login\"", EV);
    YES("title regexp \".*Login$\"", EV);
    YES("title regex \"S\\w+ L\"", EV);
    YES("title re '(?i)suspicious'", EV);
    YES("title RegExp \"[A-Z]\"", EV);
    YES("tags regexp \"br\"", EV); /* any element */
    NO("severity regexp \"3\"", EV);
    NO("missing regexp \".*\"", EV);
    YES("missing not regexp \"x\"", EV);
    YES("t regexp \"\\\\d+\"", "{\"t\":\"123\"}");
    YES("t regexp \"\\d+\"", "{\"t\":\"123\"}"); /* unknown escapes stay: \d */
    YES("t regexp \"caf\\u00e9\"", "{\"t\":\"café\"}");
    YES("t regexp \".\"", "{\"t\":\"\\u00ff\"}");
    /* a non-UTF-8 subject is matched, not rejected */
    struct sl_rql *p = compile_ok("t regexp \"a.c\"");
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "t",
                            "a\xff"
                            "c");
    struct sl_arena *scratch = sl_arena_create(4096, 0);
    struct sl_rql_input in = {.event = ev};
    (void)sl_rql_match(p, &in, &env, scratch, NULL);
    sl_arena_destroy(scratch);
    cJSON_Delete(ev);
    sl_rql_free(p);
    /* catastrophic backtracking stops at the match limit */
    char big[4096];
    memset(big, 'a', sizeof(big) - 40);
    strcpy(big + sizeof(big) - 40, "!");
    char evs[5000];
    snprintf(evs, sizeof(evs), "{\"t\":\"%s\"}", big);
    NO("t regexp \"(a+)+$\"", evs);
}

static void test_starts_ends(void **state)
{
    (void)state;
    YES("title startswith \"Susp\"", EV);
    NO("title startswith \"susp\"", EV);
    YES("title endswith \"Login\"", EV);
    NO("title endswith \"Log\"", EV);
    YES("tags startswith \"bru\"", EV);
    YES("tags endswith \"th\"", EV);
    NO("severity startswith \"3\"", EV);
    YES("title StartsWith \"S\" and title EndsWith \"n\"", EV);
    YES("title not startswith \"x\"", EV);
    YES("tags|all endswith \"e\"", "{\"tags\":[\"one\",\"three\"]}");
    NO("tags|all endswith \"e\"", "{\"tags\":[\"one\",\"two\"]}");
}

static void test_cidr(void **state)
{
    (void)state;
    YES("ip cidr \"10.0.0.0/8\"", "{\"ip\":\"10.1.2.3\"}");
    NO("ip cidr \"10.0.0.0/8\"", "{\"ip\":\"11.1.2.3\"}");
    YES("ip cidr \"10.1.2.3\"", "{\"ip\":\"10.1.2.3\"}");
    YES("ip incidr \"10.1.2.3/8\"", "{\"ip\":\"10.200.0.1\"}"); /* host bits cleared */
    YES("ip InCIDR [\"192.168.0.0/16\", \"2001:db8::/32\"]", "{\"ip\":\"2001:db8::1\"}");
    NO("ip cidr \"2001:db8::/32\"", "{\"ip\":\"2001:db9::1\"}");
    NO("ip cidr \"0.0.0.0/0\"", "{\"ip\":\"::1\"}"); /* families do not mix */
    YES("ip cidr \"0.0.0.0/0\"", "{\"ip\":\"1.1.1.1\"}");
    YES("ip cidr \"::/0\"", "{\"ip\":\"::1\"}");
    YES("ip cidr \"10.0.0.0/31\"", "{\"ip\":\"10.0.0.1\"}");
    NO("ip cidr \"10.0.0.0/31\"", "{\"ip\":\"10.0.0.2\"}");
    NO("ip cidr \"10.0.0.0/8\"", "{\"ip\":\"not an ip\"}");
    NO("ip cidr \"10.0.0.0/8\"", "{\"ip\":\"010.1.2.3\"}");
    NO("ip cidr \"10.0.0.0/8\"", "{\"ip\":167837953}");
    YES("observables.value cidr \"10.0.0.0/8\"", EV);
    YES("ip not cidr \"10.0.0.0/8\"", "{\"ip\":\"11.1.2.3\"}");
    YES("missing not cidr \"10.0.0.0/8\"", EV);
    YES("ip cidr intel('Internal')", "{\"ip\":\"10.9.9.9\"}");
    NO("ip cidr intel('Internal')", "{\"ip\":\"11.9.9.9\"}");
    YES("observables.value cidr intel(\"Internal\")", EV);
    ERR("ip cidr \"10.0.0.0/33\"", 1, 9, "bad CIDR '10.0.0.0/33'");
    ERR("ip cidr \"300.0.0.0\"", 1, 9, "bad CIDR");
    ERR("ip cidr [\"10.0.0.0/8\", \"x\"]", 1, 24, "bad CIDR 'x'");
    ERR("ip cidr \"10.0.0.0/\"", 1, 9, "bad CIDR");
    ERR("ip cidr 10", 1, 9, "expected a network string");
}

static void test_compare(void **state)
{
    (void)state;
    YES("severity > 2", EV);
    NO("severity > 3", EV);
    YES("severity >= 3", EV);
    YES("severity < 4", EV);
    YES("severity <= 3", EV);
    YES("severity gt 2 and severity gte 3 and severity lt 4 and severity lte 3", EV);
    YES("severity GT 2.5", EV);
    YES("risk_score > 7.25", EV);
    YES("severity > -1", EV);
    YES("tags > 1", EV); /* a list is its length */
    NO("tags > 2", EV);
    YES("count_s > 41", EV); /* a numeric string is its number */
    YES("title = \"Suspicious Login\" and title < 2 and title >= 1", EV); /* other strings: 1 */
    NO("flag > 0", EV);
    NO("nothing > 0", EV);
    NO("missing < 100", EV);
    NO("obj > 0", EV);
    YES("severity between \"1,3\"", EV);
    YES("severity between \"3,5\"", EV);
    NO("severity between \"4,5\"", EV);
    YES("severity inrange \" 0 , 10 \"", EV);
    YES("severity InRange \"-5,5\"", EV);
    YES("tags range \"2,2\"", EV);
    YES("risk_score between \"7,8\"", EV);
    YES("severity not between \"4,5\"", EV);
    NO("missing between \"0,5\"", EV);
    ERR("severity between \"1-3\"", 1, 18, "bad range");
    ERR("severity between \"a,3\"", 1, 18, "bad range");
    ERR("severity between \"1.5,3\"", 1, 18, "bad range");
    ERR("severity between 3", 1, 18, "expected a range string");
    ERR("severity > \"3\"", 1, 12, "expected a number");
}

static void test_is_exists(void **state)
{
    (void)state;
    YES("flag is true", EV);
    NO("flag is false", EV);
    YES("off is false", EV);
    YES("flag IS True", EV);
    YES("s is true", "{\"s\":\"TRUE\"}");
    YES("s is false", "{\"s\":\"False\"}");
    NO("s is true", "{\"s\":\"yes\"}");
    NO("severity is true", EV);
    YES("observables.ioc is true", EV);
    YES("observables.ioc is false", EV);
    YES("title exists", EV);
    YES("empty exists", EV);
    NO("nothing exists", EV);
    NO("missing exists", EV);
    YES("missing not exists", EV);
    YES("tags Exists and observables EXISTS", EV);
    YES("observables.tags exists", EV);
    NO("observables.nope exists", EV);
    YES("l exists", "{\"l\":[]}");
    NO("l.x exists", "{\"l\":[]}");
    YES("flag is true and not off is true", EV);
}

static void test_expand_intel(void **state)
{
    (void)state;
    YES("expand observables (data_type = \"ip\" and value = \"10.1.2.3\")", EV);
    NO("expand observables (data_type = \"ip\" and value = \"alice\")", EV);
    /* without expand the conditions may hold on different observables */
    YES("observables.data_type = \"ip\" and observables.value = \"alice\"", EV);
    YES("expand observables (tags contains \"c2\" and data_type = \"domain\")", EV);
    YES("Expand obj (a.b = 1)", EV); /* a single object */
    NO("expand title (x = 1)", EV);
    NO("expand missing (x = 1)", EV);
    YES("not expand observables (data_type = \"hash\")", EV);
    YES("expand observables (not value = \"alice\")", EV);
    YES("expand l (expand m (v = 2))", "{\"l\":[{\"m\":[{\"v\":1}]},{\"m\":[{\"v\":2}]}]}");
    YES("intel(observables.value, 'Bad Domains')", EV); /* any element (fixed) */
    NO("intel(title, 'Bad Domains')", EV);
    NO("intel(observables.value, 'No Such List')", EV);
    YES("intel(d|uppercase, 'Bad Domains')", "{\"d\":\"evil.com\"}");
    YES("threatlookup(d, 'Bad Domains')", "{\"d\":\"evil.com\"}");
    YES("threat_lookup(d, 'Bad Domains') and ThreatList(d, 'Bad Domains') and "
        "threat_list(d, 'Bad Domains') and threat(d, 'Bad Domains') and "
        "intel_list(d, 'Bad Domains') and IntelList(d, 'Bad Domains') and "
        "THREATLOOKUP(d, 'Bad Domains')",
        "{\"d\":\"evil.com\"}");
    YES("intel(port, 'Ports')", "{\"port\":443}"); /* numbers by their text */
    YES("not intel(d, 'Bad Domains')", "{\"d\":\"good.com\"}");
    /* data_type of the observable inside expand, for lookups of value */
    YES("expand observables (intel(value, 'IP only'))",
        "{\"observables\":[{\"value\":\"1.2.3.4\",\"data_type\":\"ip\"}]}");
    assert_string_equal(last_data_type, "ip");
    NO("expand observables (intel(value, 'IP only'))",
       "{\"observables\":[{\"value\":\"1.2.3.4\",\"data_type\":\"host\"}]}");
    NO("intel(observables.value, 'IP only')",
       "{\"observables\":[{\"value\":\"1.2.3.4\",\"data_type\":\"ip\"}]}");
    assert_string_equal(last_data_type, "-");
    /* callbacks are optional: a missing one means no value */
    struct sl_rql *p = compile_ok("intel(d, 'Bad Domains') or d cidr intel('Internal')");
    cJSON *ev = cJSON_Parse("{\"d\":\"evil.com\"}");
    struct sl_rql_env none = {0};
    struct sl_rql_input in = {.event = ev};
    assert_int_equal(sl_rql_match(p, &in, &none, NULL, NULL), 0);
    assert_int_equal(sl_rql_match(p, &in, NULL, NULL, NULL), 0);
    assert_int_equal(sl_rql_match(p, &in, &env, NULL, NULL), 1);
    cJSON_Delete(ev);
    sl_rql_free(p);
}

/* ---- fields ------------------------------------------------------------------------------- */

static void test_paths(void **state)
{
    (void)state;
    YES("entity.host.name = \"WS-01\"", EV);
    YES("@timestamp = \"2024-01-01\"", EV);
    YES("obj.a.b = 1", EV);
    NO("obj.a.c = 1", EV);
    NO("obj.a.b.c = 1", EV);
    YES("a.b = 1", "{\"a.b\":1}"); /* flat dotted key */
    YES("a.b.c = 1", "{\"a\":{\"b.c\":1}}");
    YES("a.b.c = 1", "{\"a.b\":{\"c\":1}}");
    YES("a.b.c = 1", "{\"a.b.c\":1,\"a\":{\"b\":{\"c\":2}}}");       /* the longest key first */
    YES("a.b.c = 2", "{\"a.b\":{\"x\":1},\"a\":{\"b\":{\"c\":2}}}"); /* then shorter ones */
    YES("observables.value = \"alice\"", EV);
    YES("observables.value = 3", EV);     /* the flattened list's length */
    YES("observables.tags = \"c2\"", EV); /* lists inside lists are spliced */
    YES("observables.tags|count = 3", EV);
    YES("observables.ioc|count = 2", EV);
    YES("a.b.c = \"x\"", "{\"a\":[{\"b\":[{\"c\":\"x\"}]},{\"b\":{\"c\":2}}]}");
    YES("a.b.c|count = 3", "{\"a\":[{\"b\":[{\"c\":1},{\"c\":3}]},{\"b\":{\"c\":2}}]}");
    YES("a.b = 1", "{\"a\":[[{\"b\":1}]]}");
    YES("x-y$z = 1 and _u = 2", "{\"x-y$z\":1,\"_u\":2}");
    YES("title . = \"Suspicious Login\"", EV); /* a stray dot is ignored */
    YES(". title = \"Suspicious Login\"", EV);
    /* raw_log: a string, parsed once when a query reads into it */
    const char *raw = "{\"raw_log\":\"{\\\"user\\\":{\\\"name\\\":\\\"bob\\\"},"
                      "\\\"winlog\\\":{\\\"event_id\\\":5038}}\"}";
    YES("raw_log.user.name = \"bob\"", raw);
    YES("raw_log.winlog.event_id = \"5038\"", raw);
    YES("raw_log contains \"bob\"", raw); /* bare raw_log is the string */
    NO("raw_log.user.name = \"bob\"", "{\"raw_log\":\"not json\"}");
    YES("raw_log.name = \"x\"", "{\"raw_log.name\":\"x\"}");
    YES("raw_log.user.name = \"x\"", "{\"raw_log\":{\"user.name\":\"x\"}}");
    YES("raw_log.user.name = \"x\"", "{\"raw_log\":{\"user\":{\"name\":\"x\"}}}");
    YES("raw_log.a = 1", "{\"raw_log\":\"[{\\\"a\\\":1}]\"}");
    YES("expand l (raw_log = \"{}\")", "{\"l\":[{\"raw_log\":\"{}\"}]}");
    NO("expand l (raw_log.a = 1)", "{\"l\":[{\"raw_log\":\"{\\\"a\\\":1}\"}]}");

    /* the parsed raw_log is kept in the input for the next query of the same event */
    struct sl_rql *p1 = compile_ok("raw_log.user.name = \"bob\"");
    struct sl_rql *p2 = compile_ok("raw_log.winlog.event_id = 5038");
    struct sl_rql *p3 = compile_ok("title = \"x\"");
    assert_true(sl_rql_uses_raw_log(p1));
    assert_false(sl_rql_uses_raw_log(p3));
    cJSON *ev = cJSON_Parse(raw);
    struct sl_rql_input in = {.event = ev};
    assert_int_equal(sl_rql_match(p3, &in, &env, NULL, NULL), 0);
    assert_int_equal(in.raw_log_state, 0);
    assert_int_equal(sl_rql_match(p1, &in, &env, NULL, NULL), 1);
    assert_int_equal(in.raw_log_state, 1);
    cJSON *tree = in.raw_log;
    assert_non_null(tree);
    assert_int_equal(sl_rql_match(p2, &in, &env, NULL, NULL), 1);
    assert_ptr_equal(in.raw_log, tree);
    sl_rql_input_fini(&in);
    assert_null(in.raw_log);
    assert_int_equal(in.raw_log_state, 0);
    cJSON_Delete(ev);
    sl_rql_free(p1);
    sl_rql_free(p2);
    sl_rql_free(p3);
    struct sl_rql *p4 = compile_ok("expand raw_log.items (a = 1)");
    assert_true(sl_rql_uses_raw_log(p4));
    sl_rql_free(p4);
    p4 = compile_ok("expand l (raw_log.a = 1)");
    assert_false(sl_rql_uses_raw_log(p4));
    sl_rql_free(p4);
}

/* ---- keywords, precedence, syntax ---------------------------------------------------------- */

static void test_keywords(void **state)
{
    (void)state;
    static const char *const spellings[] = {
        "title = 'Suspicious Login'",
        "title eq 'Suspicious Login'",
        "title Eq 'Suspicious Login'",
        "title EQ 'Suspicious Login'",
        "title ne 'x'",
        "title NE 'x'",
        "title Ne 'x'",
        "title != 'x'",
        "title contains 'Login'",
        "title Contains 'Login'",
        "title containscis 'login'",
        "title ContainsCIS 'login'",
        "title In ['Suspicious Login']",
        "title in ['Suspicious Login']",
        "title IN ['Suspicious Login']",
        "flag Is true",
        "flag is True",
        "flag IS TRUE",
        "off is false",
        "off is False",
        "title = 'x' or flag = true",
        "title = 'x' OR flag = true",
        "title = 'x' Or flag = true",
        "flag = true and off = false",
        "flag = true AND off = false",
        "flag = true And off = false",
        "title not = 'x'",
        "title NOT = 'x'",
        "title Not = 'x'",
        "severity > 1",
        "severity gt 1",
        "severity GT 1",
        "severity >= 3",
        "severity gte 3",
        "severity GTE 3",
        "severity < 4",
        "severity lt 4",
        "severity LT 4",
        "severity <= 3",
        "severity lte 3",
        "severity LTE 3",
        "title exists",
        "title Exists",
        "title EXISTS",
        "title RegExp 'S'",
        "title regexp 'S'",
        "title regex 'S'",
        "title re 'S'",
        "title REGEXP 'S'",
        "severity Between '1,3'",
        "severity between '1,3'",
        "severity InRange '1,3'",
        "severity range '1,3'",
        "severity BETWEEN '1,3'",
        "ip cidr '10.0.0.0/8'",
        "ip InCIDR '10.0.0.0/8'",
        "ip incidr '10.0.0.0/8'",
        "ip CIDR '10.0.0.0/8'",
        "title StartsWith 'S'",
        "title startswith 'S'",
        "title STARTSWITH 'S'",
        "title EndsWith 'n'",
        "title endswith 'n'",
        "Expand observables (value = 'alice')",
        "EXPAND observables (value = 'alice')",
        "expand observables (value = 'alice')",
    };
    const char *ev = "{\"title\":\"Suspicious Login\",\"severity\":3,\"flag\":true,"
                     "\"off\":false,\"ip\":\"10.0.0.1\",\"observables\":[{\"value\":\"alice\"}]}";
    for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++)
        YES(spellings[i], ev);
}

static void test_precedence(void **state)
{
    (void)state;
    const char *ev = "{\"a\":1,\"b\":2,\"c\":3}";
    /* and binds tighter than or */
    YES("a = 1 or b = 9 and c = 9", ev);
    NO("(a = 1 or b = 9) and c = 9", ev);
    YES("a = 9 and b = 9 or c = 3", ev);
    NO("a = 9 and (b = 9 or c = 3)", ev);
    /* not binds tighter than and */
    NO("not a = 1 and b = 2", ev);
    YES("not a = 9 and b = 2", ev);
    YES("not (a = 1 and b = 9)", ev);
    NO("not (a = 1 or b = 9)", ev);
    YES("not not a = 1", ev);
    YES("NOT (a = 9) and Not (b = 9)", ev);
    YES("not a = 1 or b = 2", ev);
    YES("((((a = 1))))", ev);
    YES("a = 1 and b = 2 and c = 3 and not (a = 2 or b = 3 or c = 4)", ev);
    YES("a = 1 # a comment\nand b = 2 # another", ev);
    YES("a = 1\n  and\n  b = 2", ev);
    YES("a=1 and b=2 and c>=3", ev);
    YES("(a = 1)and(b = 2)", ev);
    /* a long chain is one n-ary node, not a deep tree */
    char *q = malloc(60000);
    size_t k = 0;
    for (int i = 0; i < 5000; i++)
        k += (size_t)sprintf(q + k, "%sa = %d", i ? " or " : "", i + 2);
    strcpy(q + k, " or a = 1");
    YES(q, ev);
    free(q);
}

static void test_strings(void **state)
{
    (void)state;
    YES("t = \"a\\\"b\"", "{\"t\":\"a\\\"b\"}");
    YES("t = 'a\\'b'", "{\"t\":\"a'b\"}");
    YES("t = 'a\"b'", "{\"t\":\"a\\\"b\"}");
    YES("t = \"a'b\"", "{\"t\":\"a'b\"}");
    YES("t = \"a\\\\b\"", "{\"t\":\"a\\\\b\"}");
    YES("t = \"a\\nb\\tc\\r\"", "{\"t\":\"a\\nb\\tc\\r\"}");
    YES("t = \"\\x41\\u00e9\\U0001F600\"", "{\"t\":\"Aé😀\"}");
    YES("t = \"\\ud83d\\ude00\"", "{\"t\":\"😀\"}");
    YES("t = \"\\q\"", "{\"t\":\"\\\\q\"}");
    YES("t = \"# not a comment\"", "{\"t\":\"# not a comment\"}");
    YES("t = \"été\"", "{\"t\":\"été\"}");
    YES("t = \"\"", "{\"t\":\"\"}");
    YES("t = 1.5e2", "{\"t\":150}");
    YES("t = -2", "{\"t\":-2}");
    YES("t = 0.5", "{\"t\":0.5}");
    YES("t in [1.5, 'x'] and t = 1.5", "{\"t\":1.5}"); /* floats anywhere, arrays of numbers */
    ERR("t = \"abc", 1, 5, "unterminated string");
    ERR("t = 'abc\ndef'", 1, 5, "unterminated string");
    ERR("t = \"\\x4\"", 1, 6, "bad \\x escape");
    ERR("t = \"\\u12\"", 1, 6, "bad \\u escape");
    ERR("t = \"\\ud800\"", 1, 6, "lone surrogate");
}

/* ---- mutators ----------------------------------------------------------------------------- */

static void test_mutators(void **state)
{
    (void)state;
    YES("tags|count = 2", EV);
    YES("title|count = 0", EV);
    YES("title|length = 16", EV);
    YES("t|length = 3", "{\"t\":\"été\"}"); /* characters, not bytes */
    YES("tags|length = 2", EV);
    YES("severity|length = 0", EV);
    YES("tags|count > 1 and tags|length >= 2", EV);
    YES("title|lowercase = \"suspicious login\"", EV);
    YES("title|uppercase = \"SUSPICIOUS LOGIN\"", EV);
    YES("tags|uppercase = \"AUTH\"", EV);
    YES("t|uppercase = \"ÉTÉ ПРИВЕТ\"", "{\"t\":\"été привет\"}");
    YES("t|lowercase = \"straße ÿ\"", "{\"t\":\"STRAßE Ÿ\"}");
    YES("u|refang = \"http://evil.com:80/x.y\"", "{\"u\":\"hXXp://evil[.]com[:]80/x(.)y\"}");
    YES("u|refang = \"https://a.b\"", "{\"u\":\"hxxps://a[.]b\"}");
    YES("c|b64decode = \"Invoke-Mimikatz\"", "{\"c\":\"SW52b2tlLU1pbWlrYXR6\"}");
    YES("c|b64decode = \"not base64!\"", "{\"c\":\"not base64!\"}"); /* unchanged */
    YES("c|b64decode = \"a\"", "{\"c\":\"YQ==\"}");
    YES("c|b64decode = \"YQ\"", "{\"c\":\"YQ\"}"); /* bad padding: unchanged */
    YES("c|b64decode|lowercase contains [\"invoke-mimikatz\", \"invoke-bloodhound\"]",
        "{\"c\":\"SW52b2tlLU1pbWlrYXR6\"}");
    /* powershell -enc: UTF-16LE of "Write-Host hi" */
    YES("c|b64extract contains \"Write-Host hi\"",
        "{\"c\":\"powershell -enc VwByAGkAdABlAC0ASABvAHMAdAAgAGgAaQA=\"}");
    YES("c|b64extract = \"Invoke-Mimikatz -x\"", "{\"c\":\"run SW52b2tlLU1pbWlrYXR6IC14 now\"}");
    YES("c|b64extract = \"short YQ==\"", "{\"c\":\"short YQ==\"}");
    YES("u|urldecode = \"a b/c?d=é\"", "{\"u\":\"a%20b%2Fc?d=%C3%A9\"}");
    YES("u|urldecode = \"100%\"", "{\"u\":\"100%\"}");
    YES("u|urldecode = \"a+b\"", "{\"u\":\"a+b\"}");
    YES("nums|sum = 16", EV);
    YES("nums|max = 10 and nums|min = 1", EV);
    YES("nums|avg = 4", EV);
    YES("s|sum = 6 and s|avg = 2", "{\"s\":[\"1\",2,\"3\",\"x\"]}");
    YES("severity|sum = 3", EV);
    NO("title|max exists", EV);
    YES("l|sum = 0", "{\"l\":[]}");
    YES("d|split = \"b\" and d|split|count = 3", "{\"d\":\"a  b\\tc\"}");
    YES("ip|geo_country = \"US\" and ip|geo_continent = \"NA\" and "
        "ip|geo_timezone = \"America/Chicago\"",
        "{\"ip\":\"8.8.8.8\"}");
    NO("ip|geo_country exists", "{\"ip\":\"1.1.1.1\"}");
    YES("ips|geo_country = \"US\"", "{\"ips\":[\"1.1.1.1\",\"8.8.8.8\"]}");
    YES("ip|reverse_lookup = \"dns.google\"", "{\"ip\":\"8.8.8.8\"}");
    NO("ip|reverse_lookup exists", "{\"ip\":\"9.9.9.9\"}"); /* not cached: no value */
    YES("d|ns_lookup_a = \"93.184.216.35\" and d|ns_lookup_a|count = 2", "{\"d\":\"example.com\"}");
    YES("d|nslookup_a cidr \"93.184.216.0/24\"", "{\"d\":\"example.com\"}");
    YES("d|ns_lookup_mx|count = 0", "{\"d\":\"example.com\"}");
    NO("d|ns_lookup_aaaa exists", "{\"d\":\"example.com\"}");
    NO("d|ns_lookup_ns exists or d|ns_lookup_ptr exists", "{\"d\":\"example.com\"}");
    YES("ip|is_private is true", "{\"ip\":\"192.168.1.1\"}");
    YES("ip|is_private = false and ip|is_global = true", "{\"ip\":\"8.8.8.8\"}");
    YES("ip|is_private = false and ip|is_global = false", "{\"ip\":\"100.64.0.1\"}");
    YES("ip|is_private is true", "{\"ip\":\"fd00::1\"}");
    YES("ip|is_multicast is true", "{\"ip\":\"224.0.0.1\"}");
    YES("ip|is_multicast is true and ip|is_ipv6 is true", "{\"ip\":\"ff02::1\"}");
    YES("ip|is_ipv6 is false and ip|is_private is false", "{\"ip\":\"not an ip\"}");
    YES("ips|is_private = true", "{\"ips\":[\"8.8.8.8\",\"10.0.0.1\"]}");
    YES("s|to_integer = 42 and s|to_integer > 41", "{\"s\":\"42\"}");
    YES("s|to_integer = 3", "{\"s\":\"3.9\"}");
    YES("f|to_integer = 3", "{\"f\":3.9}");
    YES("s|to_integer = \"abc\"", "{\"s\":\"abc\"}"); /* unchanged */
    YES("severity|to_string = \"3\" and severity|to_string startswith \"3\"", EV);
    YES("flag|to_string = \"true\"", EV);
    YES("risk_score|to_string = \"7.5\"", EV);
    YES("title|lowercase|uppercase|lowercase|uppercase|lowercase = \"suspicious login\"", EV);
    YES("title|LOWERCASE = \"suspicious login\"", EV); /* mutator names in any case */
    NO("missing|count = 0", EV);                       /* a missing field stays missing */
    YES("missing|count != 0", EV);
    YES("nothing|lowercase not exists", EV);
    YES("observables.value|uppercase = \"ALICE\"", EV);
    YES("intel(observables.value|lowercase, 'Bad Domains')", EV);
    /* every mutator works with every operator */
    YES("title|length between \"10,20\"", EV);
    YES("title|lowercase regexp \"susp\"", EV);
    YES("title|lowercase startswith \"susp\"", EV);
    YES("title|split in [\"Login\"]", EV);
    YES("title|split|all in [\"Login\", \"Suspicious\"]", EV);
    YES("u|refang cidr \"10.0.0.0/8\"", "{\"u\":\"10[.]0[.]0[.]1\"}");
    YES("c|b64decode is true", "{\"c\":\"dHJ1ZQ==\"}");
}

/* ---- errors and limits -------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    ERR("title ==", 1, 7, "'=='");
    ERR("", 1, 1, "empty query");
    ERR("   # only a comment\n", 2, 1, "empty query");
    ERR("title", 1, 6, "unexpected end of query (expected an operator");
    ERR("title = ", 1, 9, "expected a string, a number, true or false");
    ERR("title and", 1, 7, "unexpected 'and' (expected an operator: =, !=, contains");
    ERR("title = \"x\" and", 1, 16, "expected a condition");
    ERR("title = \"x\" title = \"y\"", 1, 13, "unexpected 'title' (expected and, or");
    ERR("(title = \"x\"", 1, 13, "expected ) or an and/or");
    ERR("title = \"x\")", 1, 12, "unexpected ')'");
    ERR("title = \"x\" and\n  (sev = 1 or\n   sev foo 2)", 3, 8, "unexpected 'foo'");
    ERR("title|nosuch = 1", 1, 7, "unknown mutator 'nosuch'");
    ERR("title| = 1", 1, 8, "unexpected '=' (expected a mutator name after |)");
    ERR("title|", 1, 7, "unexpected end of query (expected a mutator name");
    ERR("title|'x' = 1", 1, 7, "expected a mutator name");
    ERR("title regexp \"(\"", 1, 14, "bad regular expression");
    ERR("title regexp 1", 1, 14, "expected a regular expression");
    ERR("title in \"x\"", 1, 10, "expected an array");
    ERR("title in [\"x\" \"y\"]", 1, 15, "expected , or ]");
    ERR("title in [[\"x\"]]", 1, 11, "expected a string, a number or ]");
    ERR("title is 1", 1, 10, "expected true or false");
    ERR("title = \"x\" or or", 1, 16, "unexpected 'or'");
    ERR("in = 1", 1, 1, "unexpected 'in' (expected a field");
    ERR("title ! = 1", 1, 7, "unexpected '!'");
    ERR("title = \"x\" ; y", 1, 13, "unexpected character ';'");
    ERR("title = \"x\" \x01", 1, 13, "byte 0x01");
    ERR("title = 3x", 1, 9, "bad number");
    ERR("expand (a = 1)", 1, 8, "expected a field name");
    ERR("expand obs a = 1", 1, 12, "expected ( after the expanded field");
    ERR("intel(title)", 1, 12, "expected , and the list name");
    ERR("intel(title, List)", 1, 14, "expected a list name string");
    ERR("intel title", 1, 7, "expected ( after intel");
    ERR("title not", 1, 10, "expected an operator");
    ERR("title not not = 1", 1, 11, "unexpected 'not'");
    ERR("title startswith [\"a\"]", 1, 18, "expected a string");
    ERR("not", 1, 4, "expected a condition");
    ERR("a = 1\n\n   and b ~ 2", 3, 10, "unexpected character '~'");
    ERR("t = 'é' and \xc3\xa9", 1, 14, "byte 0xc3");
}

static void test_limits(void **state)
{
    (void)state;
    struct sl_rql *p = NULL;
    struct sl_rql_error err;
    /* the query length limit */
    char *big = malloc(SL_RQL_MAX_QUERY + 2);
    memset(big, ' ', SL_RQL_MAX_QUERY + 1);
    memcpy(big, "a = 1", 5);
    assert_int_equal(sl_rql_compile(big, SL_RQL_MAX_QUERY, &p, &err), 0);
    sl_rql_free(p);
    assert_int_equal(sl_rql_compile(big, SL_RQL_MAX_QUERY + 1, &p, &err), SL_EINVAL);
    assert_null(p);
    assert_non_null(strstr(err.msg, "longer than the limit"));
    free(big);
    /* nesting */
    char q[4096];
    size_t k = 0;
    for (int i = 0; i < SL_RQL_MAX_DEPTH; i++)
        q[k++] = '(';
    k += (size_t)sprintf(q + k, "a = 1");
    for (int i = 0; i < SL_RQL_MAX_DEPTH; i++)
        q[k++] = ')';
    q[k] = '\0';
    YES(q, "{\"a\":1}");
    k = 0;
    for (int i = 0; i <= SL_RQL_MAX_DEPTH; i++)
        q[k++] = '(';
    strcpy(q + k, "a = 1");
    ERR(q, 1, SL_RQL_MAX_DEPTH + 1, "nesting deeper than 64");
    k = 0;
    for (int i = 0; i <= SL_RQL_MAX_DEPTH; i++)
        k += (size_t)sprintf(q + k, "not ");
    strcpy(q + k, "a = 1");
    ERR(q, 1, 4 * SL_RQL_MAX_DEPTH + 1, "nesting deeper");
    k = 0;
    for (int i = 0; i < SL_RQL_MAX_DEPTH; i++)
        k += (size_t)sprintf(q + k, "not ");
    strcpy(q + k, "a = 1");
    YES(q, "{\"a\":1}");
    k = 0;
    for (int i = 0; i <= SL_RQL_MAX_DEPTH; i++)
        k += (size_t)sprintf(q + k, "expand a (");
    ERR(q, 1, 10 * SL_RQL_MAX_DEPTH + 1, "nesting deeper");
    /* mutators */
    YES("t|lowercase|uppercase|lowercase|uppercase|lowercase = \"x\"", "{\"t\":\"X\"}");
    ERR("t|lowercase|uppercase|lowercase|uppercase|lowercase|any = \"x\"", 1, 53,
        "more than 5 mutators");
    /* distinct list references */
    k = 0;
    for (int i = 0; i < SL_RQL_MAX_LIST_REFS; i++)
        k += (size_t)sprintf(q + k, "%sintel(a, 'L%d')", i ? " or " : "", i);
    k += (size_t)sprintf(q + k, " or intel(a, 'L0')");
    assert_int_equal(sl_rql_compile(q, k, &p, &err), 0);
    const char *const *names;
    assert_int_equal(sl_rql_list_refs(p, &names), SL_RQL_MAX_LIST_REFS);
    assert_string_equal(names[0], "L0");
    assert_string_equal(names[63], "L63");
    sl_rql_free(p);
    sprintf(q + k, " or x cidr intel('L64')");
    ERR(q, 1, (int)k + 18, "more than 64 distinct intel lists");
    /* path segments */
    k = 0;
    for (int i = 0; i < 33; i++)
        k += (size_t)sprintf(q + k, "%sa", i ? "." : "");
    strcpy(q + k, " = 1");
    ERR(q, 1, 1, "more than 32 segments");
    /* not NUL-terminated: only len bytes are read */
    char *exact = malloc(5);
    memcpy(exact, "a = 1", 5);
    assert_int_equal(sl_rql_compile(exact, 5, &p, &err), 0);
    sl_rql_free(p);
    assert_int_equal(sl_rql_compile(exact, 4, &p, &err), SL_EINVAL);
    assert_int_equal(err.col, 5);
    free(exact);
    /* an unterminated string at the very end */
    char *s = malloc(5);
    memcpy(s, "a = \"", 5);
    assert_int_equal(sl_rql_compile(s, 5, &p, &err), SL_EINVAL);
    free(s);
    /* no text at all */
    assert_int_equal(sl_rql_compile(NULL, 5, &p, &err), SL_EINVAL);
    assert_non_null(strstr(err.msg, "empty query"));
    /* NUL bytes in the text */
    assert_int_equal(sl_rql_compile("a = 1\0 or b", 11, &p, &err), SL_EINVAL);
    assert_int_equal(err.col, 6);
}

static void test_list_refs(void **state)
{
    (void)state;
    struct sl_rql *p = compile_ok("intel(a, 'B') or x cidr intel('A') or intel(b, 'B') or "
                                  "expand observables (intel(value, 'C'))");
    const char *const *names;
    assert_int_equal(sl_rql_list_refs(p, &names), 3);
    assert_string_equal(names[0], "B");
    assert_string_equal(names[1], "A");
    assert_string_equal(names[2], "C");
    sl_rql_free(p);
    p = compile_ok("title = 1");
    assert_int_equal(sl_rql_list_refs(p, &names), 0);
    sl_rql_free(p);
}

/* Deep and large events evaluate in bounded time and stack. */
static void test_event_shapes(void **state)
{
    (void)state;
    struct sl_rql *p = compile_ok("a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a"
                                  " exists or l.v = 99999 or l.v|count > 5");
    /* nesting far deeper than any path */
    cJSON *deep = cJSON_CreateObject(), *cur = deep;
    for (int i = 0; i < 5000; i++) {
        cJSON *n = cJSON_CreateObject();
        cJSON_AddItemToObject(cur, "a", n);
        cur = n;
    }
    struct sl_arena *scratch = sl_arena_create(4096, 0);
    struct sl_rql_input in = {.event = deep};
    assert_int_equal(sl_rql_match(p, &in, &env, scratch, NULL), 1);
    cJSON_Delete(deep);
    /* a list of 100,000 objects: flattened past the stack buffer */
    cJSON *ev = cJSON_CreateObject();
    cJSON *l = cJSON_AddArrayToObject(ev, "l");
    for (int i = 0; i < 100000; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "v", i);
        cJSON_AddItemToArray(l, o);
    }
    in.event = ev;
    assert_int_equal(sl_rql_match(p, &in, &env, scratch, NULL), 1);
    sl_arena_reset(scratch);
    /* many dotted keys that each lead nowhere: the fallback budget bounds the work */
    struct sl_rql *p2 = compile_ok("a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a"
                                   ".a.b exists");
    cJSON *trap = cJSON_CreateObject();
    cur = trap;
    for (int i = 0; i < 31; i++) {
        cJSON *n = cJSON_CreateObject();
        cJSON_AddItemToObject(cur, "a", n);
        cJSON_AddItemToObject(cur, "a.a", cJSON_Duplicate(n, 0));
        cJSON_AddItemToObject(cur, "a.a.a", cJSON_CreateObject());
        cur = n;
    }
    in.event = trap;
    assert_int_equal(sl_rql_match(p2, &in, &env, scratch, NULL), 0);
    cJSON_Delete(trap);
    sl_rql_free(p2);
    /* no scratch memory: a query that needs it says so */
    struct sl_rql *p3 = compile_ok("l.v|count > 5");
    int oom = 0;
    in.event = ev;
    assert_int_equal(sl_rql_match(p3, &in, &env, NULL, &oom), 0);
    assert_int_equal(oom, 1);
    sl_rql_free(p3);
    cJSON_Delete(ev);
    sl_arena_destroy(scratch);
    sl_rql_free(p);
}

/* ---- threads -------------------------------------------------------------------------------- */

struct thread_arg {
    const struct sl_rql *prog;
    const cJSON *yes, *no;
    int failures;
};

static void *thread_main(void *argp)
{
    struct thread_arg *a = argp;
    struct sl_arena *scratch = sl_arena_create(4096, 65536);
    for (int i = 0; i < 20000; i++) {
        struct sl_rql_input in = {.event = (i % 2) ? a->yes : a->no};
        int r = sl_rql_match(a->prog, &in, &env, scratch, NULL);
        if (r != (i % 2))
            a->failures++;
        sl_rql_input_fini(&in);
        sl_arena_reset(scratch);
    }
    sl_arena_destroy(scratch);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct sl_rql *p = compile_ok(
        "title|lowercase regexp \"susp\\w+\" and raw_log.user = \"bob\" and "
        "observables.value|uppercase in [\"ALICE\"] and intel(observables.value, 'Bad Domains')"
        " and expand observables (data_type = \"ip\" and value cidr \"10.0.0.0/8\")");
    cJSON *yes =
        cJSON_Parse("{\"title\":\"Suspicious x\",\"raw_log\":\"{\\\"user\\\":\\\"bob\\\"}\","
                    "\"observables\":[{\"value\":\"alice\"},{\"value\":\"evil.com\"},"
                    "{\"value\":\"10.0.0.1\",\"data_type\":\"ip\"}]}");
    cJSON *no =
        cJSON_Parse("{\"title\":\"Suspicious x\",\"raw_log\":\"{\\\"user\\\":\\\"eve\\\"}\","
                    "\"observables\":[{\"value\":\"alice\"}]}");
    struct thread_arg a = {.prog = p, .yes = yes, .no = no}, b = a;
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, thread_main, &a), 0);
    assert_int_equal(pthread_create(&t2, NULL, thread_main, &b), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(a.failures, 0);
    assert_int_equal(b.failures, 0);
    cJSON_Delete(yes);
    cJSON_Delete(no);
    sl_rql_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equals),       cmocka_unit_test(test_contains),
        cmocka_unit_test(test_in),           cmocka_unit_test(test_regexp),
        cmocka_unit_test(test_starts_ends),  cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_compare),      cmocka_unit_test(test_is_exists),
        cmocka_unit_test(test_expand_intel), cmocka_unit_test(test_paths),
        cmocka_unit_test(test_keywords),     cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_strings),      cmocka_unit_test(test_mutators),
        cmocka_unit_test(test_errors),       cmocka_unit_test(test_limits),
        cmocka_unit_test(test_list_refs),    cmocka_unit_test(test_event_shapes),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
