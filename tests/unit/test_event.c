/* Unit tests of the event model: bulk parsing, validation and normalization, preparation for
 * the store, signatures and automatic data typing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/error.h"
#include "core/arena.h"
#include "event/event.h"

#define ORG    "11111111-2222-3333-4444-555555555555"
#define ORG2   "99999999-2222-3333-4444-555555555555"
#define RX_MS  1700000000000LL /* 2023-11-14T22:13:20.000Z */
#define NOW_MS 1700000001000LL /* 2023-11-14T22:13:21.000Z */
#define ERRLEN 512

static const struct sl_ingest_ctx ctx = {ORG, "key-1", "agent", "task-1", RX_MS, 0};

/* ---- helpers -------------------------------------------------------------------------------- */

/* Test JSON is written with single quotes; this turns them into double quotes (malloc'd). */
static char *json(const char *s)
{
    char *out = strdup(s);
    assert_non_null(out);
    for (char *p = out; *p; p++)
        if (*p == '\'')
            *p = '"';
    return out;
}

/* Normalizes one event given as (single-quoted) JSON text with ctx. On success *out_rec (if not
 * NULL) receives the record parsed back, and *out_text (if not NULL) the record text. */
static int normalize_text(const char *event, const struct sl_ingest_ctx *c, cJSON **out_rec,
                          char **out_text, char *err)
{
    char *text = json(event);
    cJSON *ev = cJSON_Parse(text);
    char *rec = (char *)1;
    size_t len = 99;
    free(text);
    assert_non_null(ev);
    err[0] = 0;
    int rc = sl_event_normalize(ev, c, &rec, &len, err, ERRLEN);
    cJSON_Delete(ev);
    if (out_rec)
        *out_rec = NULL;
    if (rc != 0) {
        assert_null(rec);
        assert_int_equal(len, 0);
        assert_true(err[0] != 0);
        return rc;
    }
    assert_non_null(rec);
    assert_int_equal(strlen(rec), len);
    if (out_rec) {
        *out_rec = cJSON_Parse(rec);
        assert_non_null(*out_rec);
    }
    if (out_text)
        *out_text = rec;
    else
        free(rec);
    return 0;
}

static cJSON *normalize_ok(const char *event)
{
    char err[ERRLEN];
    cJSON *rec = NULL;
    int rc = normalize_text(event, &ctx, &rec, NULL, err);
    if (rc != 0)
        fail_msg("normalize failed: %s (event %s)", err, event);
    return rec;
}

static void normalize_fails(const char *event, const char *message)
{
    char err[ERRLEN];
    int rc = normalize_text(event, &ctx, NULL, NULL, err);
    if (rc != SL_EINVAL)
        fail_msg("expected SL_EINVAL for %s, got %d", event, rc);
    assert_string_equal(err, message);
}

static const char *str_member(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static double num_member(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

/* The compact rendering of member key, for comparing whole values. */
static void assert_member_json(const cJSON *obj, const char *key, const char *expected_sq)
{
    char *expected = json(expected_sq);
    char *got = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(obj, key));
    assert_non_null(got);
    assert_string_equal(got, expected);
    free(got);
    free(expected);
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = 0;
    return s;
}

/* {'title':'t','<key>':'<n x c>'} */
static char *event_with_long_string(const char *key, size_t n)
{
    char *fill = repeat('x', n);
    size_t cap = n + strlen(key) + 64;
    char *ev = malloc(cap);
    assert_non_null(ev);
    snprintf(ev, cap, "{'title':'t','%s':'%s'}", key, fill);
    free(fill);
    return ev;
}

/* ---- sl_event_bulk_parse ------------------------------------------------------------------- */

static void bulk_parse_valid(void **state)
{
    (void)state;
    char *body = json("{'events':[{'title':'a'},{'title':'b'}],'other':1}");
    cJSON *root = NULL, *events = NULL;
    long off = 7;
    char err[ERRLEN];
    assert_int_equal(sl_event_bulk_parse(body, strlen(body), &root, &events, &off, err, ERRLEN), 0);
    assert_non_null(root);
    assert_int_equal(cJSON_GetArraySize(events), 2);
    assert_string_equal(str_member(cJSON_GetArrayItem(events, 1), "title"), "b");
    assert_int_equal(off, -1);
    cJSON_Delete(root);
    free(body);
}

static void bulk_parse_not_nul_terminated(void **state)
{
    (void)state;
    /* The body ends at the '}' before "GARBAGE"; nothing past len may be read. */
    static const char text[] = "{\"events\":[{\"title\":\"a\"}]}GARBAGE";
    size_t len = strlen(text) - strlen("GARBAGE");
    char *body = malloc(len);
    cJSON *root = NULL, *events = NULL;
    long off;
    char err[ERRLEN];
    assert_non_null(body);
    memcpy(body, text, len);
    assert_int_equal(sl_event_bulk_parse(body, len, &root, &events, &off, err, ERRLEN), 0);
    assert_int_equal(cJSON_GetArraySize(events), 1);
    cJSON_Delete(root);
    /* Truncated one byte short: an unterminated object, reported at the end. */
    assert_int_equal(sl_event_bulk_parse(body, len - 1, &root, &events, &off, err, ERRLEN),
                     SL_EINVAL);
    assert_int_equal(off, (long)len - 1);
    assert_null(root);
    assert_null(events);
    free(body);
    /* The same through the text itself, with the garbage counted. */
    assert_int_equal(sl_event_bulk_parse(text, strlen(text), &root, &events, &off, err, ERRLEN),
                     SL_EINVAL);
    assert_int_equal(off, (long)len);
    assert_string_equal(err, "malformed JSON at byte 26: unexpected data after the JSON value");
}

static void bulk_parse_malformed(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        size_t len; /* 0: strlen(body) */
        long offset;
        const char *message;
    } cases[] = {
        {"", 0, 0, "malformed JSON at byte 0: empty body"},
        {"  \n ", 0, 4, "malformed JSON at byte 4: empty body"},
        {"{", 0, 1, "malformed JSON at byte 1: unexpected end of input"},
        {"{\"events\":[", 0, 11, "malformed JSON at byte 11: unexpected end of input"},
        {"{\"events\":\"abc", 0, 14, "malformed JSON at byte 14: unexpected end of input"},
        {"{\"events\":[tru", 0, 14, "malformed JSON at byte 14: unexpected end of input"},
        {"{\"events\":[12.5e", 0, 16, "malformed JSON at byte 16: unexpected end of input"},
        {"{\"events\":[xyz", 0, 11, "malformed JSON at byte 11: near \"xyz\""},
        {"{\"a\":xyz,\"b\":\"abc", 0, 5,
         "malformed JSON at byte 5: near \"xyz,\\\"b\\\":\\\"abc\""},
        {"{\"events\":[1,2,]}", 0, 15, "malformed JSON at byte 15: near \"]}\""},
        {"{\"events\":tru}", 0, 10, "malformed JSON at byte 10: near \"tru}\""},
        {"xyz", 0, 0, "malformed JSON at byte 0: near \"xyz\""},
        {"{\"events\":[]} x", 0, 14,
         "malformed JSON at byte 14: unexpected data after the JSON value"},
        {"{\"events\":[]}{}", 0, 13,
         "malformed JSON at byte 13: unexpected data after the JSON value"},
        {"{\"events\":[\"\xff\"]}", 0, 12, "malformed JSON at byte 12: invalid UTF-8"},
        {"{\"events\":[\"\xc3\"]}", 0, 12, "malformed JSON at byte 12: invalid UTF-8"},
        {"{\"events\":[\"\xed\xa0\x80\"]}", 0, 12, "malformed JSON at byte 12: invalid UTF-8"},
        {"{\"events\":[\"a\tb\"]}", 0, 13,
         "malformed JSON at byte 13: control character in a string (escape it)"},
        {"{\"events\":[\"a\\u0000b\"]}", 0, 13,
         "malformed JSON at byte 13: \\u0000 is not accepted in strings"},
        {"{\"events\":\x01[]}", 0, 10, "malformed JSON at byte 10: unexpected control character"},
        {"{\"events\":[]}\0", 14, 13, "malformed JSON at byte 13: unexpected control character"},
        {"{\"events\":[{\"title\":\"a\"},]}", 0, 25, "malformed JSON at byte 25: near \"]}\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].body);
        cJSON *root = (cJSON *)1, *events = (cJSON *)1;
        long off = -7;
        char err[ERRLEN];
        int rc = sl_event_bulk_parse(cases[i].body, len, &root, &events, &off, err, ERRLEN);
        assert_int_equal(rc, SL_EINVAL);
        assert_null(root);
        assert_null(events);
        if (off != cases[i].offset || strcmp(err, cases[i].message) != 0)
            fail_msg("case %zu: offset %ld, message \"%s\"", i, off, err);
        assert_true(off >= 0 && (size_t)off <= len);
    }
}

static void bulk_parse_offset_in_range(void **state)
{
    (void)state;
    /* Every prefix of a valid body fails with an offset within [0, len]. */
    static const char body[] = "{\"events\": [{\"title\": \"x\", \"tags\": [\"a\", 1e5, null]}]}";
    for (size_t len = 0; len < strlen(body); len++) {
        cJSON *root, *events;
        long off = -7;
        char err[ERRLEN];
        assert_int_equal(sl_event_bulk_parse(body, len, &root, &events, &off, err, ERRLEN),
                         SL_EINVAL);
        assert_true(off >= 0 && (size_t)off <= len);
        assert_non_null(strstr(err, "malformed JSON at byte"));
    }
}

static void bulk_parse_wrong_shape(void **state)
{
    (void)state;
    static const struct {
        const char *body, *message;
    } cases[] = {
        {"[]", "body must be an object with an \"events\" array, got an array"},
        {"\"events\"", "body must be an object with an \"events\" array, got \"events\""},
        {"{}", "body must be an object with an \"events\" array, got an object without "
               "\"events\""},
        {"{\"Events\":[]}", "body must be an object with an \"events\" array, got an object "
                            "without \"events\""},
        {"{\"events\":{}}", "body must be an object with an \"events\" array, got \"events\": "
                            "an object"},
        {"{\"events\":null}", "body must be an object with an \"events\" array, got "
                              "\"events\": null"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *root = (cJSON *)1, *events = (cJSON *)1;
        long off = 5;
        char err[ERRLEN];
        assert_int_equal(sl_event_bulk_parse(cases[i].body, strlen(cases[i].body), &root, &events,
                                             &off, err, ERRLEN),
                         SL_EINVAL);
        assert_int_equal(off, -1);
        assert_null(root);
        assert_null(events);
        assert_string_equal(err, cases[i].message);
    }
    /* A NULL offset pointer is allowed. */
    cJSON *root, *events;
    char err[ERRLEN];
    assert_int_equal(sl_event_bulk_parse("{", 1, &root, &events, NULL, err, ERRLEN), SL_EINVAL);
}

static void bulk_parse_nesting(void **state)
{
    (void)state;
    size_t depth = CJSON_NESTING_LIMIT + 1;
    const char *head = "{\"events\":";
    size_t len = strlen(head) + 2 * depth + 1;
    char *body = malloc(len);
    cJSON *root, *events;
    long off;
    char err[ERRLEN];
    assert_non_null(body);
    memcpy(body, head, strlen(head));
    memset(body + strlen(head), '[', depth);
    memset(body + strlen(head) + depth, ']', depth);
    body[len - 1] = '}';
    /* The top-level object is one level, so the 1000th '[' is one too deep. */
    assert_int_equal(sl_event_bulk_parse(body, len, &root, &events, &off, err, ERRLEN), SL_EINVAL);
    assert_int_equal(off, (long)(strlen(head) + CJSON_NESTING_LIMIT - 1));
    assert_string_equal(err, "malformed JSON at byte 1009: nesting deeper than 1000 levels");
    free(body);
}

/* ---- sl_event_normalize: accepted events --------------------------------------------------- */

static void normalize_minimal_defaults(void **state)
{
    (void)state;
    cJSON *rec = normalize_ok("{'title':'Failed login'}");
    assert_string_equal(str_member(rec, "title"), "Failed login");
    assert_string_equal(str_member(rec, "description"), "");
    assert_int_equal((int)num_member(rec, "severity"), 1);
    assert_int_equal((int)num_member(rec, "tlp"), 2);
    assert_true(sl_uuid_valid(str_member(rec, "reference")));
    assert_string_equal(str_member(rec, "organization"), ORG);
    assert_string_equal(str_member(rec, "agent_uuid"), "key-1");
    assert_string_equal(str_member(rec, "agent_type"), "agent");
    assert_string_equal(str_member(rec, "ingest_task"), "task-1");
    assert_int_equal((int)num_member(rec, "ingest_index"), 0);
    assert_string_equal(str_member(rec, "received_at"), "2023-11-14T22:13:20.000Z");
    assert_null(cJSON_GetObjectItemCaseSensitive(rec, "observables"));
    assert_int_equal(cJSON_GetArraySize(rec), 11);
    cJSON_Delete(rec);
}

static void normalize_record_contents(void **state)
{
    (void)state;
    char err[ERRLEN];
    char *text = NULL;
    int rc = normalize_text("{'title':'T','description':'D','reference':'ref-1','severity':4,"
                            "'tlp':0,'source':'edr','signature':'sig','detection_id':'d1',"
                            "'category':'alert','risk_score':12.5,'tags':['a'],"
                            "'raw_log':'{\\'k\\':1}','my_field':{'x':[1,true,null]}}",
                            &ctx, NULL, &text, err);
    assert_int_equal(rc, 0);
    /* Client fields in client order, defaults, then the server's fields. */
    assert_string_equal(
        text, "{\"title\":\"T\",\"description\":\"D\",\"reference\":\"ref-1\",\"severity\":4,"
              "\"tlp\":0,\"source\":\"edr\",\"signature\":\"sig\",\"detection_id\":\"d1\","
              "\"category\":\"alert\",\"risk_score\":12.5,\"tags\":[\"a\"],"
              "\"raw_log\":\"{\\\"k\\\":1}\",\"my_field\":{\"x\":[1,true,null]},"
              "\"organization\":\"" ORG "\",\"agent_uuid\":\"key-1\",\"agent_type\":\"agent\","
              "\"ingest_task\":\"task-1\",\"ingest_index\":0,"
              "\"received_at\":\"2023-11-14T22:13:20.000Z\"}");
    free(text);
}

static void normalize_context_strings_escaped(void **state)
{
    (void)state;
    struct sl_ingest_ctx odd = {"org\"1", NULL, "a\\b", NULL, 0, 0};
    char err[ERRLEN];
    cJSON *rec = NULL;
    assert_int_equal(normalize_text("{'title':'t'}", &odd, &rec, NULL, err), 0);
    assert_string_equal(str_member(rec, "organization"), "org\"1");
    assert_string_equal(str_member(rec, "agent_uuid"), "");
    assert_string_equal(str_member(rec, "agent_type"), "a\\b");
    assert_string_equal(str_member(rec, "received_at"), "1970-01-01T00:00:00.000Z");
    cJSON_Delete(rec);
    struct sl_ingest_ctx no_org = {NULL, "k", "agent", "t", 0, 0};
    assert_int_equal(normalize_text("{'title':'t'}", &no_org, NULL, NULL, err), SL_EINVAL);
    assert_string_equal(err, "event: no organization in the request context");
}

static void normalize_reference(void **state)
{
    (void)state;
    cJSON *a = normalize_ok("{'title':'t'}");
    cJSON *b = normalize_ok("{'title':'t'}");
    const char *ra = str_member(a, "reference"), *rb = str_member(b, "reference");
    assert_true(sl_uuid_valid(ra));
    assert_int_equal(ra[14], '4'); /* version 4 */
    assert_string_not_equal(ra, rb);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON *c = normalize_ok("{'title':'t','reference':'abc-123'}");
    assert_string_equal(str_member(c, "reference"), "abc-123");
    cJSON_Delete(c);
    normalize_fails("{'title':'t','reference':12345}",
                    "reference: expected a non-empty string of at most 256 bytes, got 12345");
    normalize_fails("{'title':'t','reference':''}",
                    "reference: expected a non-empty string of at most 256 bytes, got \"\"");
    char *ev = event_with_long_string("reference", SL_EVENT_REFERENCE_MAX);
    cJSON *d = normalize_ok(ev);
    cJSON_Delete(d);
    free(ev);
    ev = event_with_long_string("reference", SL_EVENT_REFERENCE_MAX + 1);
    normalize_fails(ev, "reference: expected a non-empty string of at most 256 bytes, got a "
                        "string of 257 bytes");
    free(ev);
}

static void normalize_title(void **state)
{
    (void)state;
    normalize_fails("{'description':'x'}", "title: required");
    normalize_fails("{'title':null}", "title: required");
    normalize_fails("{'title':''}",
                    "title: expected a non-empty string of at most 1024 bytes, got \"\"");
    normalize_fails("{'title':5}",
                    "title: expected a non-empty string of at most 1024 bytes, got 5");
    normalize_fails("{'title':['a']}",
                    "title: expected a non-empty string of at most 1024 bytes, got an array");
    char *fill = repeat('t', SL_EVENT_TITLE_MAX);
    char ev[SL_EVENT_TITLE_MAX + 64];
    snprintf(ev, sizeof(ev), "{'title':'%s'}", fill);
    cJSON *rec = normalize_ok(ev);
    assert_int_equal(strlen(str_member(rec, "title")), SL_EVENT_TITLE_MAX);
    cJSON_Delete(rec);
    snprintf(ev, sizeof(ev), "{'title':'%sx'}", fill);
    normalize_fails(ev, "title: expected a non-empty string of at most 1024 bytes, got a string "
                        "of 1025 bytes");
    free(fill);
}

static void normalize_description(void **state)
{
    (void)state;
    cJSON *rec = normalize_ok("{'title':'t','description':'line1\\nline2'}");
    assert_string_equal(str_member(rec, "description"), "line1\nline2");
    cJSON_Delete(rec);
    normalize_fails("{'title':'t','description':false}",
                    "description: expected a string of at most 65536 bytes, got false");
    char *ev = event_with_long_string("description", SL_EVENT_TEXT_MAX);
    rec = normalize_ok(ev);
    cJSON_Delete(rec);
    free(ev);
    ev = event_with_long_string("description", SL_EVENT_TEXT_MAX + 1);
    normalize_fails(ev, "description: expected a string of at most 65536 bytes, got a string of "
                        "65537 bytes");
    free(ev);
}

static void normalize_severity_tlp(void **state)
{
    (void)state;
    for (int level = 0; level <= 4; level++) {
        char ev[96];
        snprintf(ev, sizeof(ev), "{'title':'t','severity':%d,'tlp':%d.0}", level, 4 - level);
        cJSON *rec = normalize_ok(ev);
        assert_int_equal((int)num_member(rec, "severity"), level);
        assert_int_equal((int)num_member(rec, "tlp"), 4 - level);
        cJSON_Delete(rec);
    }
    normalize_fails("{'title':'t','severity':'high'}",
                    "severity: expected an integer 0..4, got \"high\"");
    normalize_fails("{'title':'t','severity':5}", "severity: expected an integer 0..4, got 5");
    normalize_fails("{'title':'t','severity':-1}", "severity: expected an integer 0..4, got -1");
    normalize_fails("{'title':'t','severity':1.5}", "severity: expected an integer 0..4, got 1.5");
    normalize_fails("{'title':'t','severity':'2'}",
                    "severity: expected an integer 0..4, got \"2\"");
    normalize_fails("{'title':'t','tlp':9}", "tlp: expected an integer 0..4, got 9");
    normalize_fails("{'title':'t','tlp':true}", "tlp: expected an integer 0..4, got true");
}

static void normalize_short_strings(void **state)
{
    (void)state;
    static const char *const keys[] = {"source", "detection_id", "category"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char ev[128], msg[128];
        snprintf(ev, sizeof(ev), "{'title':'t','%s':''}", keys[i]);
        cJSON *rec = normalize_ok(ev);
        assert_string_equal(str_member(rec, keys[i]), "");
        cJSON_Delete(rec);
        snprintf(ev, sizeof(ev), "{'title':'t','%s':1}", keys[i]);
        snprintf(msg, sizeof(msg), "%s: expected a string of at most 1024 bytes, got 1", keys[i]);
        normalize_fails(ev, msg);
        char *big = event_with_long_string(keys[i], 1025);
        snprintf(msg, sizeof(msg),
                 "%s: expected a string of at most 1024 bytes, got a string of 1025 bytes",
                 keys[i]);
        normalize_fails(big, msg);
        free(big);
    }
    char *ev = event_with_long_string("signature", 256);
    cJSON *rec = normalize_ok(ev);
    cJSON_Delete(rec);
    free(ev);
    ev = event_with_long_string("signature", 257);
    normalize_fails(ev, "signature: expected a string of at most 256 bytes, got a string of 257 "
                        "bytes");
    free(ev);
    normalize_fails("{'title':'t','signature':{}}",
                    "signature: expected a string of at most 256 bytes, got an object");
}

static void normalize_risk_score(void **state)
{
    (void)state;
    cJSON *rec = normalize_ok("{'title':'t','risk_score':-3.25e2}");
    assert_true(num_member(rec, "risk_score") == -325.0);
    cJSON_Delete(rec);
    normalize_fails("{'title':'t','risk_score':'10'}", "risk_score: expected a number, got \"10\"");
    normalize_fails("{'title':'t','risk_score':1e999}",
                    "risk_score: expected a number, got a number out of range");
}

static void normalize_tags(void **state)
{
    (void)state;
    cJSON *rec = normalize_ok("{'title':'t','tags':['b','a','b','c','a','A']}");
    assert_member_json(rec, "tags", "['b','a','c','A']");
    cJSON_Delete(rec);
    rec = normalize_ok("{'title':'t','tags':[]}");
    assert_member_json(rec, "tags", "[]");
    cJSON_Delete(rec);
    normalize_fails("{'title':'t','tags':'a'}", "tags: expected an array of strings, got \"a\"");
    normalize_fails("{'title':'t','tags':['a',1]}",
                    "tags[1]: expected a non-empty string of at most 256 bytes, got 1");
    normalize_fails("{'title':'t','tags':['a','']}",
                    "tags[1]: expected a non-empty string of at most 256 bytes, got \"\"");
    char *long_tag = repeat('g', SL_EVENT_TAG_MAX + 1);
    char ev[1024];
    snprintf(ev, sizeof(ev), "{'title':'t','tags':['%s']}", long_tag);
    normalize_fails(ev, "tags[0]: expected a non-empty string of at most 256 bytes, got a string "
                        "of 257 bytes");
    free(long_tag);

    /* 100 distinct tags, each twice: accepted, 100 kept; a 101st distinct one is refused. */
    size_t cap = 16 * 1024, o = 0;
    char *big = malloc(cap);
    assert_non_null(big);
    o += (size_t)snprintf(big + o, cap - o, "{'title':'t','tags':[");
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < SL_EVENT_TAGS_MAX; i++)
            o += (size_t)snprintf(big + o, cap - o, "%s'tag%d'", round || i ? "," : "", i);
    snprintf(big + o, cap - o, "]}");
    rec = normalize_ok(big);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(rec, "tags")),
                     SL_EVENT_TAGS_MAX);
    cJSON_Delete(rec);
    snprintf(big + o, cap - o, ",'one more']}");
    normalize_fails(big, "tags: expected at most 100 distinct tags, got more");
    free(big);
}

static void normalize_observables(void **state)
{
    (void)state;
    cJSON *rec = normalize_ok(
        "{'title':'t','observables':[{'value':'10.0.0.1','data_type':'IP','ioc':true,"
        "'spotted':false,'safe':false,'tlp':3,'tags':['x','x','y'],'source_field':'src.ip',"
        "'original_source_field':'source.ip','extra':{'k':1}},"
        "{'value':443,'data_type':'auto'},{'value':-1.5,'data_type':'Port'},"
        "{'value':'','data_type':'generic'},{'value':'-','data_type':'generic','tlp':null}]}");
    assert_member_json(
        rec, "observables",
        "[{'value':'10.0.0.1','data_type':'ip','ioc':true,'spotted':false,'safe':false,'tlp':3,"
        "'tags':['x','y'],'source_field':'src.ip','original_source_field':'source.ip',"
        "'extra':{'k':1}},{'value':'443','data_type':'auto'},{'value':'-1.5','data_type':'port'},"
        "{'value':'','data_type':'generic'},{'value':'-','data_type':'generic'}]");
    cJSON_Delete(rec);
    rec = normalize_ok("{'title':'t','observables':[{'value':12345678901234,'data_type':'a'},"
                       "{'value':0.1,'data_type':'a'},{'value':1e300,'data_type':'a'}]}");
    assert_member_json(rec, "observables",
                       "[{'value':'12345678901234','data_type':'a'},{'value':'0.1','data_type':"
                       "'a'},{'value':'1e+300','data_type':'a'}]");
    cJSON_Delete(rec);
}

static void normalize_observables_refused(void **state)
{
    (void)state;
    normalize_fails("{'title':'t','observables':{}}",
                    "observables: expected an array of objects, got an object");
    normalize_fails("{'title':'t','observables':['1.2.3.4']}",
                    "observables[0]: expected an object, got \"1.2.3.4\"");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':'x'},{'data_type':'x'},"
                    "{'value':'b','data_type':'x'},{'value':'c','data_type':'x'}]}",
                    "observables[1].value: required");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':'x'},"
                    "{'value':'b','data_type':'x'},{'value':'c','data_type':'x'},"
                    "{'value':null,'data_type':'x'}]}",
                    "observables[3].value: required");
    normalize_fails("{'title':'t','observables':[{'value':'a'}]}",
                    "observables[0].data_type: required");
    normalize_fails("{'title':'t','observables':[{'value':true,'data_type':'x'}]}",
                    "observables[0].value: expected a string of at most 8192 bytes or a number, "
                    "got true");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':''}]}",
                    "observables[0].data_type: expected a non-empty string of at most 64 bytes, "
                    "got \"\"");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':7}]}",
                    "observables[0].data_type: expected a non-empty string of at most 64 bytes, "
                    "got 7");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':'x','ioc':'yes'}]}",
                    "observables[0].ioc: expected true or false, got \"yes\"");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':'x','spotted':1}]}",
                    "observables[0].spotted: expected true or false, got 1");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':'x','safe':[]}]}",
                    "observables[0].safe: expected true or false, got an array");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':'x','tlp':5}]}",
                    "observables[0].tlp: expected an integer 0..4, got 5");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':'x','tags':['']}]}",
                    "observables[0].tags[0]: expected a non-empty string of at most 256 bytes, "
                    "got \"\"");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':'x','source_field':1}]}",
                    "observables[0].source_field: expected a string of at most 1024 bytes, got 1");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':'x',"
                    "'original_source_field':{}}]}",
                    "observables[0].original_source_field: expected a string of at most 1024 "
                    "bytes, got an object");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':'x','value':'b'}]}",
                    "observables[0]: duplicate key \"value\"");
    normalize_fails("{'title':'t','observables':[{'value':'a','data_type':'x','n\\u0001\\\"':"
                    "[1e999]}]}",
                    "observables[0].n?\\\": contains a number out of range or an unsupported "
                    "value");

    char *big = repeat('v', SL_EVENT_OBSERVABLE_VALUE_MAX + 1);
    size_t cap = SL_EVENT_OBSERVABLE_VALUE_MAX + 128;
    char *ev = malloc(cap);
    assert_non_null(ev);
    snprintf(ev, cap, "{'title':'t','observables':[{'value':'%s','data_type':'x'}]}", big + 1);
    cJSON *rec = normalize_ok(ev);
    cJSON_Delete(rec);
    snprintf(ev, cap, "{'title':'t','observables':[{'value':'%s','data_type':'x'}]}", big);
    normalize_fails(ev, "observables[0].value: expected a string of at most 8192 bytes, got a "
                        "string of 8193 bytes");
    free(ev);
    free(big);
}

static void normalize_observables_limit(void **state)
{
    (void)state;
    const char *one = ",{'value':'v','data_type':'x'}";
    size_t cap = (SL_EVENT_OBSERVABLES_MAX + 2) * strlen(one) + 64, o = 0;
    char *ev = malloc(cap);
    assert_non_null(ev);
    o += (size_t)snprintf(ev, cap, "{'title':'t','observables':[");
    for (int i = 0; i < SL_EVENT_OBSERVABLES_MAX; i++)
        o += (size_t)snprintf(ev + o, cap - o, "%s", i ? one : one + 1);
    snprintf(ev + o, cap - o, "]}");
    cJSON *rec = normalize_ok(ev);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(rec, "observables")),
                     SL_EVENT_OBSERVABLES_MAX);
    cJSON_Delete(rec);
    snprintf(ev + o, cap - o, "%s]}", one);
    normalize_fails(ev, "observables: expected at most 1000 observables, got 1001");
    free(ev);
}

static void normalize_raw_log(void **state)
{
    (void)state;
    cJSON *rec = normalize_ok("{'title':'t','raw_log':{'a':[1,{'b':'c'}]}}");
    assert_member_json(rec, "raw_log", "{'a':[1,{'b':'c'}]}");
    cJSON_Delete(rec);
    rec = normalize_ok("{'title':'t','raw_log':[1,2]}");
    assert_member_json(rec, "raw_log", "[1,2]");
    cJSON_Delete(rec);
    rec = normalize_ok("{'title':'t','raw_log':'plain text'}");
    assert_string_equal(str_member(rec, "raw_log"), "plain text");
    cJSON_Delete(rec);
    normalize_fails("{'title':'t','raw_log':42}",
                    "raw_log: expected a string of at most 1048576 bytes, an object or an array, "
                    "got 42");
    char *ev = event_with_long_string("raw_log", SL_EVENT_RAW_LOG_MAX);
    rec = normalize_ok(ev);
    cJSON_Delete(rec);
    free(ev);
    ev = event_with_long_string("raw_log", SL_EVENT_RAW_LOG_MAX + 1);
    normalize_fails(ev, "raw_log: expected a string of at most 1048576 bytes, got a string of "
                        "1048577 bytes");
    free(ev);
}

static void normalize_original_date(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } ok[] = {
        {"2024-05-01T12:00:00Z", "2024-05-01T12:00:00.000Z"},
        {"2024-05-01T12:00:00.5+02:00", "2024-05-01T10:00:00.500Z"},
        {"2024-05-01 12:00:00", "2024-05-01T12:00:00.000Z"},
        {"2024-05-01", "2024-05-01T00:00:00.000Z"},
        {"1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"},
        {"9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char ev[128];
        snprintf(ev, sizeof(ev), "{'title':'t','original_date':'%s'}", ok[i].in);
        cJSON *rec = normalize_ok(ev);
        assert_string_equal(str_member(rec, "original_date"), ok[i].out);
        cJSON_Delete(rec);
    }
    static const char *const bad[] = {"yesterday", "2024-13-01", "2024-05-01T25:00:00Z",
                                      "1969-12-31T23:59:59Z", "9999-12-31T23:59:59-01:00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char ev[128], msg[256];
        snprintf(ev, sizeof(ev), "{'title':'t','original_date':'%s'}", bad[i]);
        snprintf(msg, sizeof(msg),
                 "original_date: expected an ISO 8601 date-time from 1970 to 9999 such as "
                 "\"2024-05-01T12:00:00Z\", got \"%s\"",
                 bad[i]);
        normalize_fails(ev, msg);
    }
    normalize_fails("{'title':'t','original_date':1714557600}",
                    "original_date: expected an ISO 8601 date-time from 1970 to 9999 such as "
                    "\"2024-05-01T12:00:00Z\", got 1714557600");
}

static void normalize_entity_and_unknown(void **state)
{
    (void)state;
    cJSON *rec = normalize_ok("{'title':'t','entity':{'host':{'name':'h1'},'user':{}},"
                              "'x':1,'y':'s','z':[null],'Organization':'client-owned'}");
    assert_member_json(rec, "entity", "{'host':{'name':'h1'},'user':{}}");
    assert_member_json(rec, "x", "1");
    assert_member_json(rec, "y", "'s'");
    assert_member_json(rec, "z", "[null]");
    assert_string_equal(str_member(rec, "Organization"), "client-owned");
    assert_string_equal(str_member(rec, "organization"), ORG);
    cJSON_Delete(rec);
    normalize_fails("{'title':'t','entity':'host1'}", "entity: expected an object, got \"host1\"");
    normalize_fails("{'title':'t','entity':[]}", "entity: expected an object, got an array");
    normalize_fails("{'title':'t','x':{'deep':[1e999]}}",
                    "x: contains a number out of range or an unsupported value");
}

static void normalize_internal_fields(void **state)
{
    (void)state;
    static const char *const internal[] = {
        "organization",
        "uuid",
        "status",
        "status_name",
        "_meta",
        "case",
        "event_rules",
        "created_at",
        "updated_at",
        "agent_uuid",
        "agent_type",
        "ingest_task",
        "ingest_index",
        "received_at",
        "dismissed_at",
        "dismiss_reason",
        "dismissed_by_rule",
        "signature_client",
        "metrics",
    };
    for (size_t i = 0; i < sizeof(internal) / sizeof(internal[0]); i++) {
        char ev[128], msg[160];
        snprintf(ev, sizeof(ev), "{'title':'t','%s':'x'}", internal[i]);
        snprintf(msg, sizeof(msg),
                 internal[i][0] == '_'
                     ? "%s: fields starting with \"_\" are internal; not accepted from clients"
                     : "%s: internal field set by the server; not accepted from clients",
                 internal[i]);
        normalize_fails(ev, msg);
        /* null does not make it acceptable */
        snprintf(ev, sizeof(ev), "{'%s':null,'title':'t'}", internal[i]);
        normalize_fails(ev, msg);
    }
    normalize_fails("{'title':'t','_id':'abc'}",
                    "_id: fields starting with \"_\" are internal; not accepted from clients");
    normalize_fails("{'title':'t','_':{}}",
                    "_: fields starting with \"_\" are internal; not accepted from clients");
    normalize_fails("{'_meta':{'action':'dismiss','_id':'x'},'title':'t'}",
                    "_meta: fields starting with \"_\" are internal; not accepted from clients");
}

static void normalize_null_is_absent(void **state)
{
    (void)state;
    cJSON *rec = normalize_ok("{'title':'t','description':null,'reference':null,'severity':null,"
                              "'tlp':null,'tags':null,'observables':null,'raw_log':null,"
                              "'original_date':null,'entity':null,'source':null,'custom':null}");
    assert_string_equal(str_member(rec, "description"), "");
    assert_int_equal((int)num_member(rec, "severity"), 1);
    assert_int_equal((int)num_member(rec, "tlp"), 2);
    assert_true(sl_uuid_valid(str_member(rec, "reference")));
    assert_null(cJSON_GetObjectItemCaseSensitive(rec, "tags"));
    assert_null(cJSON_GetObjectItemCaseSensitive(rec, "entity"));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(rec, "custom"))); /* kept */
    cJSON_Delete(rec);
}

static void normalize_duplicates_and_shape(void **state)
{
    (void)state;
    normalize_fails("{'title':'a','title':'b'}", "event: duplicate key \"title\"");
    normalize_fails("{'title':'a','x':1,'x':2}", "event: duplicate key \"x\"");
    /* Many fields (the sorted path of the duplicate check). */
    char ev[2048];
    size_t o = (size_t)snprintf(ev, sizeof(ev), "{'title':'a'");
    for (int i = 0; i < 40; i++)
        o += (size_t)snprintf(ev + o, sizeof(ev) - o, ",'f%d':%d", i, i);
    snprintf(ev + o, sizeof(ev) - o, "}");
    cJSON *rec = normalize_ok(ev);
    cJSON_Delete(rec);
    snprintf(ev + o, sizeof(ev) - o, ",'f17':0}");
    normalize_fails(ev, "event: duplicate key \"f17\"");
    /* Keys the duplicate filter cannot tell apart (same length, first and last byte). */
    o = (size_t)snprintf(ev, sizeof(ev), "{'title':'a'");
    for (int i = 0; i < 30; i++)
        o += (size_t)snprintf(ev + o, sizeof(ev) - o, ",'k%02dz':%d", i, i);
    snprintf(ev + o, sizeof(ev) - o, "}");
    rec = normalize_ok(ev);
    cJSON_Delete(rec);
    snprintf(ev + o, sizeof(ev) - o, ",'k00z':0}");
    normalize_fails(ev, "event: duplicate key \"k00z\"");
    normalize_fails("['title']", "event: expected an object, got an array");
    normalize_fails("'x'", "event: expected an object, got \"x\"");
    normalize_fails("null", "event: expected an object, got null");
}

static void normalize_record_limit(void **state)
{
    (void)state;
    /* Three raw strings of 800 KB each: every field is within its own limit, the record not. */
    size_t n = 800 * 1024, cap = 3 * n + 128;
    char *fill = repeat('r', n);
    char *ev = malloc(cap);
    assert_non_null(ev);
    snprintf(ev, cap, "{'title':'t','raw_log':'%s','a':'%s'}", fill, fill);
    cJSON *rec = normalize_ok(ev);
    cJSON_Delete(rec);
    snprintf(ev, cap, "{'title':'t','raw_log':'%s','a':'%s','b':'%s'}", fill, fill, fill);
    normalize_fails(ev, "event: the record would be larger than 2097152 bytes (2 MiB) at b");
    /* Escaping counts: 400 K newlines become 800 K bytes. */
    memset(fill, '\n', 400 * 1024);
    fill[400 * 1024] = 0;
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "title", "t");
    cJSON_AddStringToObject(obj, "raw_log", fill);
    cJSON_AddStringToObject(obj, "a", fill);
    cJSON_AddStringToObject(obj, "b", fill);
    char *out = NULL, err[ERRLEN];
    size_t len = 0;
    assert_int_equal(sl_event_normalize(obj, &ctx, &out, &len, err, ERRLEN), SL_EINVAL);
    assert_string_equal(err, "event: the record would be larger than 2097152 bytes (2 MiB) at b");
    assert_null(out);
    cJSON_Delete(obj);
    free(ev);
    free(fill);
}

static void normalize_escaping(void **state)
{
    (void)state;
    /* Control characters, quotes and non-ASCII text survive the record. */
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "title", "q\"b\\s\x01\x1f\t\u00e9\xe2\x82\xac");
    char *out = NULL, err[ERRLEN];
    size_t len = 0;
    assert_int_equal(sl_event_normalize(obj, &ctx, &out, &len, err, ERRLEN), 0);
    assert_non_null(strstr(out, "\"title\":\"q\\\"b\\\\s\\u0001\\u001f\\t\u00e9\xe2\x82\xac\""));
    cJSON *rec = cJSON_Parse(out);
    assert_string_equal(str_member(rec, "title"), "q\"b\\s\x01\x1f\t\u00e9\xe2\x82\xac");
    cJSON_Delete(rec);
    free(out);
    /* A client string quoted in a message is cut and kept printable. */
    cJSON_ReplaceItemInObject(obj, "title", cJSON_CreateNumber(1));
    cJSON_AddStringToObject(obj, "severity", "\"quoted\"\n and a long tail of text after it ...");
    assert_int_equal(sl_event_normalize(obj, &ctx, &out, &len, err, ERRLEN), SL_EINVAL);
    assert_string_equal(err, "title: expected a non-empty string of at most 1024 bytes, got 1");
    cJSON_ReplaceItemInObject(obj, "title", cJSON_CreateString("t"));
    assert_int_equal(sl_event_normalize(obj, &ctx, &out, &len, err, ERRLEN), SL_EINVAL);
    assert_string_equal(err, "severity: expected an integer 0..4, got \"\\\"quoted\\\"? and a "
                             "long tail of text after ...\"");
    /* A small err buffer is cut, not overrun. */
    char small[8];
    assert_int_equal(sl_event_normalize(obj, &ctx, &out, &len, small, sizeof(small)), SL_EINVAL);
    assert_string_equal(small, "severit");
    assert_int_equal(sl_event_normalize(obj, &ctx, &out, &len, NULL, 0), SL_EINVAL);
    cJSON_Delete(obj);
}

/* ---- sl_event_prepare --------------------------------------------------------------------- */

/* Normalizes the event and prepares its record at NOW_MS; the record text is freed. */
static int prepare_event(const char *event, struct sl_event_prepared *p, char *err)
{
    char *rec = NULL;
    assert_int_equal(normalize_text(event, &ctx, NULL, &rec, err), 0);
    int rc = sl_event_prepare(rec, strlen(rec), 77, NOW_MS, p, err, ERRLEN);
    free(rec);
    return rc;
}

static void prepare_full(void **state)
{
    (void)state;
    struct sl_event_prepared p;
    char err[ERRLEN];
    assert_int_equal(
        prepare_event("{'title':'Failed login','reference':'ref-1','severity':3,"
                      "'observables':[{'value':'evil.com','data_type':'auto'},"
                      "{'value':'10.0.0.1','data_type':'AUTO'},{'value':443,'data_type':'auto'},"
                      "{'value':'-','data_type':'ip'},{'value':'','data_type':'auto'}],"
                      "'original_date':'2024-05-01T12:00:00+02:00'}",
                      &p, err),
        0);
    cJSON *doc = cJSON_Parse(p.row.doc);
    assert_non_null(doc);
    assert_int_equal(strlen(p.row.doc), p.row.doc_len);
    assert_ptr_equal(p.row.doc, p.doc);
    assert_member_json(doc, "observables",
                       "[{'value':'evil.com','data_type':'domain'},"
                       "{'value':'10.0.0.1','data_type':'ip'},{'value':'443','data_type':'port'}]");
    /* fallback: md5(md5("Failed login\x1f" "10.0.0.1\x1f" "443\x1f" "evil.com") + ORG) */
    assert_string_equal(p.row.signature, "1fc88310d2cf3e004f994dd5540a3ed5");
    assert_string_equal(str_member(doc, "signature"), "1fc88310d2cf3e004f994dd5540a3ed5");
    assert_null(cJSON_GetObjectItemCaseSensitive(doc, "signature_client"));
    /* uuid: sha256(ORG \0 "ref-1" \0), version 8 (vector from python3 hashlib) */
    assert_string_equal(p.row.uuid, "2fc098ea-569c-8df0-986a-803dc4e655cc");
    assert_string_equal(str_member(doc, "uuid"), p.row.uuid);
    assert_member_json(doc, "status", "{'name':'New','closed':false}");
    assert_string_equal(p.row.status, "New");
    assert_string_equal(str_member(doc, "created_at"), "2023-11-14T22:13:21.000Z");
    assert_string_equal(str_member(doc, "original_date"), "2024-05-01T10:00:00.000Z");
    assert_string_equal(p.row.org, ORG);
    assert_string_equal(p.row.reference, "ref-1");
    assert_string_equal(p.row.title, "Failed login");
    assert_int_equal(p.row.severity, 3);
    assert_int_equal(p.row.original_date_ms, 1714557600000LL);
    assert_int_equal(p.row.created_ms, NOW_MS);
    assert_int_equal(p.row.origin, 77);
    assert_ptr_equal(p.row.uuid, p.uuid);
    assert_ptr_equal(p.row.signature, p.signature);
    assert_non_null(p.tree);
    cJSON_Delete(doc);
    sl_event_prepared_fini(&p);
    assert_null(p.tree);
    sl_event_prepared_fini(&p); /* twice is harmless */
}

static void prepare_client_signature(void **state)
{
    (void)state;
    struct sl_event_prepared p;
    char err[ERRLEN];
    assert_int_equal(prepare_event("{'title':'t','signature':'abc','observables':[{'value':'x',"
                                   "'data_type':'auto'}]}",
                                   &p, err),
                     0);
    /* md5("abc" + ORG) */
    assert_string_equal(p.row.signature, "26c3ba00c0ab0f73b3ee8d324721cb17");
    cJSON *doc = cJSON_Parse(p.row.doc);
    assert_string_equal(str_member(doc, "signature"), "26c3ba00c0ab0f73b3ee8d324721cb17");
    assert_string_equal(str_member(doc, "signature_client"), "abc");
    cJSON_Delete(doc);
    sl_event_prepared_fini(&p);
    /* An empty client signature means none: the fallback, and no signature_client. */
    assert_int_equal(prepare_event("{'title':'Failed login','signature':''}", &p, err), 0);
    assert_string_equal(p.row.signature, "c62465849c3852f9cacde0b49f46f8b1");
    assert_null(cJSON_GetObjectItemCaseSensitive(p.tree, "signature_client"));
    sl_event_prepared_fini(&p);
}

static void prepare_uuid_determinism(void **state)
{
    (void)state;
    struct sl_event_prepared a, b, c, d;
    char err[ERRLEN];
    static const char rec1[] = "{\"title\":\"t\",\"reference\":\"r\",\"organization\":\"" ORG "\"}";
    static const char rec2[] =
        "{\"title\":\"other\",\"reference\":\"r\",\"organization\":\"" ORG "\",\"severity\":2}";
    static const char rec3[] =
        "{\"title\":\"t\",\"reference\":\"r\",\"organization\":\"" ORG2 "\"}";
    static const char rec4[] =
        "{\"title\":\"t\",\"reference\":\"r2\",\"organization\":\"" ORG "\"}";
    assert_int_equal(sl_event_prepare(rec1, strlen(rec1), 1, NOW_MS, &a, err, ERRLEN), 0);
    assert_int_equal(sl_event_prepare(rec2, strlen(rec2), 2, NOW_MS + 5, &b, err, ERRLEN), 0);
    assert_int_equal(sl_event_prepare(rec3, strlen(rec3), 3, NOW_MS, &c, err, ERRLEN), 0);
    assert_int_equal(sl_event_prepare(rec4, strlen(rec4), 4, NOW_MS, &d, err, ERRLEN), 0);
    assert_string_equal(a.uuid, b.uuid);               /* same org and reference */
    assert_string_not_equal(a.uuid, c.uuid);           /* another organization */
    assert_string_not_equal(a.uuid, d.uuid);           /* another reference */
    assert_string_not_equal(a.signature, c.signature); /* signatures are per organization */
    sl_event_prepared_fini(&a);
    sl_event_prepared_fini(&b);
    sl_event_prepared_fini(&c);
    sl_event_prepared_fini(&d);
}

static void prepare_minimal_record(void **state)
{
    (void)state;
    struct sl_event_prepared p;
    char err[ERRLEN];
    /* No severity, observables, received_at or original_date: defaults apply. */
    static const char rec[] = "{\"title\":\"t\",\"reference\":\"r\",\"organization\":\"" ORG "\"}";
    assert_int_equal(sl_event_prepare(rec, strlen(rec), 9, NOW_MS, &p, err, ERRLEN), 0);
    assert_int_equal(p.row.severity, 1);
    assert_int_equal(p.row.original_date_ms, NOW_MS);
    assert_string_equal(str_member(p.tree, "original_date"), "2023-11-14T22:13:21.000Z");
    sl_event_prepared_fini(&p);
    /* Without original_date the receive time is used. */
    static const char rec_rx[] =
        "{\"title\":\"t\",\"reference\":\"r\",\"organization\":\"" ORG "\","
        "\"received_at\":\"2023-11-14T22:13:20.000Z\"}";
    assert_int_equal(sl_event_prepare(rec_rx, strlen(rec_rx), 9, NOW_MS, &p, err, ERRLEN), 0);
    assert_int_equal(p.row.original_date_ms, RX_MS);
    assert_string_equal(str_member(p.tree, "original_date"), "2023-11-14T22:13:20.000Z");
    sl_event_prepared_fini(&p);
    /* The record need not be NUL-terminated. */
    char *copy = malloc(sizeof(rec) - 1);
    assert_non_null(copy);
    memcpy(copy, rec, sizeof(rec) - 1);
    assert_int_equal(sl_event_prepare(copy, sizeof(rec) - 1, 9, NOW_MS, &p, err, ERRLEN), 0);
    sl_event_prepared_fini(&p);
    free(copy);
}

static void prepare_invalid_records(void **state)
{
    (void)state;
    static const struct {
        const char *rec, *message;
    } cases[] = {
        {"{\"reference\":\"r\",\"title\":\"t\"}", "organization: required (a non-empty string)"},
        {"{\"organization\":\"" ORG "\",\"title\":\"t\"}",
         "reference: required (a non-empty string)"},
        {"{\"organization\":\"" ORG "\",\"reference\":\"r\"}",
         "title: required (a non-empty string)"},
        {"{\"organization\":\"" ORG "\",\"reference\":\"r\",\"title\":5}",
         "title: required (a non-empty string)"},
        {"{\"organization\":\"\",\"reference\":\"r\",\"title\":\"t\"}",
         "organization: required (a non-empty string)"},
        {"{\"organization\":\"" ORG "\",\"reference\":\"r\",\"title\":\"t\",\"severity\":9}",
         "severity: expected an integer 0..4"},
        {"{\"organization\":\"" ORG "\",\"reference\":\"r\",\"title\":\"t\",\"observables\":{}}",
         "observables: expected an array"},
        {"{\"organization\":\"" ORG "\",\"reference\":\"r\",\"title\":\"t\",\"observables\":[1]}",
         "observables[0]: expected an object"},
        {"{\"organization\":\"" ORG "\",\"reference\":\"r\",\"title\":\"t\",\"observables\":"
         "[{\"value\":5}]}",
         "observables[0].value: expected a string"},
        {"{\"organization\":\"" ORG "\",\"reference\":\"r\",\"title\":\"t\",\"observables\":"
         "[{\"value\":\"x\",\"data_type\":[]}]}",
         "observables[0].data_type: expected a string"},
        {"{\"organization\":\"" ORG "\",\"reference\":\"r\",\"title\":\"t\",\"signature\":1}",
         "signature: expected a string"},
        {"{\"organization\":\"" ORG
         "\",\"reference\":\"r\",\"title\":\"t\",\"original_date\":\"x\"}",
         "original_date: expected an ISO 8601 date-time"},
        {"{\"organization\":\"o\"", "record: malformed JSON"},
        {"{\"organization\":\"o\",\"reference\":\"r\",\"title\":\"t\"}",
         "record: organization is not a uuid"},
        {"", "record: malformed JSON"},
        {"[]", "record: expected an object"},
        {"{} {}", "record: unexpected data after the JSON value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sl_event_prepared p;
        char err[ERRLEN];
        int rc = sl_event_prepare(cases[i].rec, strlen(cases[i].rec), 0, NOW_MS, &p, err, ERRLEN);
        if (rc != SL_EINVAL || strcmp(err, cases[i].message) != 0)
            fail_msg("case %zu: rc %d, message \"%s\"", i, rc, err);
        sl_event_prepared_fini(&p);
    }
}

static void prepare_observable_edge_cases(void **state)
{
    (void)state;
    struct sl_event_prepared p;
    char err[ERRLEN];
    /* Missing or null values are dropped; a missing data_type is detected. */
    static const char rec[] =
        "{\"organization\":\"" ORG "\",\"reference\":\"r\",\"title\":\"t\",\"observables\":["
        "{\"data_type\":\"ip\"},{\"value\":null},{\"value\":\"a@b.co\"},"
        "{\"value\":\"-\",\"data_type\":\"auto\"},{\"value\":\"x\",\"data_type\":\"user\"}]}";
    assert_int_equal(sl_event_prepare(rec, strlen(rec), 0, NOW_MS, &p, err, ERRLEN), 0);
    assert_member_json(p.tree, "observables",
                       "[{'value':'a@b.co','data_type':'email'},{'value':'x','data_type':'user'}]");
    sl_event_prepared_fini(&p);
}

/* ---- sl_event_signature --------------------------------------------------------------------- */

/* Vectors computed independently with python3 hashlib:
 *   md5((client + org).encode()), and
 *   md5((md5((title + "\x1f" + "\x1f".join(sorted(values))).encode()) + org).encode()). */
static void signature_vectors(void **state)
{
    (void)state;
    char out[33];
    sl_event_signature(ORG, "abc", "ignored", NULL, 0, out);
    assert_string_equal(out, "26c3ba00c0ab0f73b3ee8d324721cb17");
    sl_event_signature(ORG2, "abc", "ignored", NULL, 0, out);
    assert_string_equal(out, "d8c46e1da8e16fbbcf95cb2b2d48a5dc");
    sl_event_signature(ORG, NULL, "Failed login", NULL, 0, out);
    assert_string_equal(out, "c62465849c3852f9cacde0b49f46f8b1");
    sl_event_signature(ORG, "", "Failed login", NULL, 0, out);
    assert_string_equal(out, "c62465849c3852f9cacde0b49f46f8b1");
    const char *three[] = {"evil.com", "10.0.0.1", "443"};
    sl_event_signature(ORG, NULL, "Failed login", three, 3, out);
    assert_string_equal(out, "1fc88310d2cf3e004f994dd5540a3ed5");
    const char *reordered[] = {"443", "evil.com", "10.0.0.1"};
    sl_event_signature(ORG, NULL, "Failed login", reordered, 3, out);
    assert_string_equal(out, "1fc88310d2cf3e004f994dd5540a3ed5");
    /* Byte order (strcmp), duplicates kept: sorted is B a a b \u00e9 */
    const char *utf8[] = {"b", "B", "\u00e9", "a", "a"};
    sl_event_signature(ORG, NULL, "\u00dcn\u00efcode", utf8, 5, out);
    assert_string_equal(out, "bdf54cb891b4bab4fc3e4db0438cf447");
    /* More values than sort on the stack: v099 .. v000 */
    const char *many[100];
    char names[100][8];
    for (int i = 0; i < 100; i++) {
        snprintf(names[i], sizeof(names[i]), "v%03d", 99 - i);
        many[i] = names[i];
    }
    sl_event_signature(ORG, NULL, "big", many, 100, out);
    assert_string_equal(out, "6e60cb45b6d762bb1b3ac10f5be3ccd5");
}

/* ---- sl_event_detect_type ------------------------------------------------------------------- */

static const struct {
    const char *value, *type;
} detect_cases[] = {
    {"10.0.0.1", "ip"},
    {"255.255.255.255", "ip"},
    {"0.0.0.0", "ip"},
    {"192.168.1.0/24", "ip"},
    {"10.0.0.0/8", "ip"},
    {"::1", "ip"},
    {"2001:db8::1", "ip"},
    {"fe80::1ff:fe23:4567:890a", "ip"},
    {"::ffff:192.0.2.128", "ip"},
    {"2001:db8::/32", "ip"},
    {"256.1.1.1", "generic"},
    {"1.2.3", "generic"},
    {"1.2.3.4/33", "generic"},
    {"1.2.3.4.5", "generic"},
    {"1.2.3.4:80", "generic"},
    {"alice@example.com", "email"},
    {"first.last+tag@mail.example.co.uk", "email"},
    {"alice@localhost", "generic"},
    {"@example.com", "generic"},
    {"https://example.com/login?x=1", "url"},
    {"http://10.0.0.1:8080/", "url"},
    {"ftp://files.example.org", "url"},
    {"hxxp://bad.example", "url"},
    {"https://", "generic"},
    {"https://exa mple.com", "generic"},
    {"d41d8cd98f00b204e9800998ecf8427e", "md5hash"},
    {"D41D8CD98F00B204E9800998ECF8427E", "md5hash"},
    {"da39a3ee5e6b4b0d3255bfef95601890afd80709", "sha1hash"},
    {"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "sha256hash"},
    {"d41d8cd98f00b204e9800998ecf8427", "generic"},
    {"g41d8cd98f00b204e9800998ecf8427e", "generic"},
    {"00:1a:2b:3c:4d:5e", "mac"},
    {"00-1A-2B-3C-4D-5E", "mac"},
    {"00:1a-2b:3c:4d:5e", "generic"},
    {"00:1a:2b:3c:4d", "generic"},
    {"S-1-5-18", "sid"},
    {"S-1-5-21-3623811015-3361044348-30300820-1013", "sid"},
    {"S-1-5-", "generic"},
    {"S-2-5-18", "generic"},
    {"443", "port"},
    {"1", "port"},
    {"65535", "port"},
    {"65536", "generic"},
    {"0", "generic"},
    {"0443", "generic"},
    {"example.com", "domain"},
    {"sub.example.co.uk", "domain"},
    {"xn--bcher-kva.example", "domain"},
    {"EXAMPLE.COM", "domain"},
    {"-bad.example.com", "generic"},
    {"example.c0m", "generic"},
    {"example", "generic"},
    {"cmd.exe", "process"},
    {"EVIL.DLL", "process"},
    {"run.bat", "process"},
    {"script.ps1", "process"},
    {"my_script.sh", "process"},
    {"C:\\Windows\\System32\\cmd.exe", "process"},
    {"/usr/bin/python3", "process"},
    {"/usr/bin/", "generic"},
    {"./run", "process"},
    {"../bin/tool", "process"},
    {"~/x", "process"},
    {"C:/Tools/nc", "process"},
    {"tools\\nc", "process"},
    {"example.com/login", "generic"},
    {"hello world", "generic"},
    {"", "generic"},
    {"-", "generic"},
};

static void detect_type_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(detect_cases) / sizeof(detect_cases[0]); i++) {
        const char *value = detect_cases[i].value, *type = detect_cases[i].type;
        const char *got = sl_event_detect_type(value, strlen(value));
        if (strcmp(got, type) != 0)
            fail_msg("detect_type(\"%s\") = %s, expected %s", value, got, type);
    }
    /* Only len bytes are looked at. */
    assert_string_equal(sl_event_detect_type("10.0.0.1garbage", 8), "ip");
    assert_string_equal(sl_event_detect_type("443443", 3), "port");
}

/* The doc says what the prepared event says, whatever the record's spacing, escapes or
 * nesting, and a key spelled with escapes never yields a member twice. */
static void prepare_doc_matches(void **state)
{
    (void)state;
    struct sl_event_prepared p;
    char err[ERRLEN];
    static const char rec[] =
        "{ \"organization\" : \"" ORG "\" , \"reference\":\"r\", \"title\":\"t\\\"q\", "
        "\"n\": 1.50, \"nested\": {\"a\": [1, {\"b\": \"}\"}]}, \"observables\":["
        "{\"value\":\"1.2.3.4\",\"data_type\":\"auto\"}], \"signature\": \"s\" }";
    assert_int_equal(sl_event_prepare(rec, strlen(rec), 0, NOW_MS, &p, err, ERRLEN), 0);
    assert_non_null(strstr(p.row.doc, "\"n\":1.5"));
    assert_non_null(strstr(p.row.doc, "\"nested\":{\"a\":[1,{\"b\":\"}\"}]}"));
    cJSON *doc = cJSON_Parse(p.row.doc);
    assert_non_null(doc);
    assert_string_equal(str_member(doc, "title"), "t\"q");
    assert_string_equal(str_member(doc, "signature_client"), "s");
    assert_string_equal(str_member(doc, "signature"), p.signature);
    assert_string_equal(str_member(doc, "uuid"), p.uuid);
    assert_member_json(doc, "observables", "[{'value':'1.2.3.4','data_type':'ip'}]");
    assert_int_equal(cJSON_GetArraySize(doc), cJSON_GetArraySize(p.tree));
    cJSON_Delete(doc);
    sl_event_prepared_fini(&p);

    static const char escaped[] = "{\"organization\":\"" ORG "\",\"reference\":\"r\","
                                  "\"title\":\"t\",\"sign\\u0061ture\":\"s\"}";
    assert_int_equal(sl_event_prepare(escaped, strlen(escaped), 0, NOW_MS, &p, err, ERRLEN), 0);
    doc = cJSON_Parse(p.row.doc);
    assert_non_null(doc);
    int signatures = 0;
    for (cJSON *m = doc->child; m; m = m->next)
        signatures += strcmp(m->string, "signature") == 0;
    assert_int_equal(signatures, 1);
    assert_string_equal(str_member(doc, "signature"), p.signature);
    cJSON_Delete(doc);
    sl_event_prepared_fini(&p);
}

/* Runs last: installs the tagged cJSON allocator for the whole process. A batch prepared with an
 * arena is released by one reset; heap trees made around it still free normally. */
static void prepare_in_arena(void **state)
{
    (void)state;
    char err[ERRLEN], *rec = NULL;
    sl_event_alloc_install();
    struct sl_arena *arena = sl_arena_create(4096, 64 * 1024);
    assert_non_null(arena);
    assert_int_equal(normalize_text("{'title': 'in an arena', 'reference': 'a-1', 'observables': "
                                    "[{'value': '10.0.0.1', 'data_type': 'auto'}]}",
                                    &ctx, NULL, &rec, err),
                     0);
    cJSON *heap_tree = cJSON_Parse("{\"made\": \"before the arena\"}");
    assert_non_null(heap_tree);
    struct sl_event_prepared batch[40];
    memset(batch, 0, sizeof(batch));
    for (int round = 0; round < 3; round++) {
        sl_arena_reset(arena);
        assert_int_equal(sl_arena_used(arena), 0);
        sl_event_alloc_arena(arena);
        for (int i = 0; i < 40; i++) {
            assert_int_equal(
                sl_event_prepare(rec, strlen(rec), (uint64_t)i, RX_MS, &batch[i], err, ERRLEN), 0);
            assert_non_null(strstr(batch[i].row.doc, "\"data_type\":\"ip\""));
        }
        sl_event_alloc_arena(NULL);
        assert_true(sl_arena_used(arena) > 40 * strlen(rec));
        /* fini is harmless on arena memory (its frees do nothing) */
        sl_event_prepared_fini(&batch[0]);
    }
    cJSON_Delete(heap_tree); /* a heap block: really freed (ASan would report a leak) */
    sl_arena_destroy(arena);
    free(rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bulk_parse_valid),
        cmocka_unit_test(bulk_parse_not_nul_terminated),
        cmocka_unit_test(bulk_parse_malformed),
        cmocka_unit_test(bulk_parse_offset_in_range),
        cmocka_unit_test(bulk_parse_wrong_shape),
        cmocka_unit_test(bulk_parse_nesting),
        cmocka_unit_test(normalize_minimal_defaults),
        cmocka_unit_test(normalize_record_contents),
        cmocka_unit_test(normalize_context_strings_escaped),
        cmocka_unit_test(normalize_reference),
        cmocka_unit_test(normalize_title),
        cmocka_unit_test(normalize_description),
        cmocka_unit_test(normalize_severity_tlp),
        cmocka_unit_test(normalize_short_strings),
        cmocka_unit_test(normalize_risk_score),
        cmocka_unit_test(normalize_tags),
        cmocka_unit_test(normalize_observables),
        cmocka_unit_test(normalize_observables_refused),
        cmocka_unit_test(normalize_observables_limit),
        cmocka_unit_test(normalize_raw_log),
        cmocka_unit_test(normalize_original_date),
        cmocka_unit_test(normalize_entity_and_unknown),
        cmocka_unit_test(normalize_internal_fields),
        cmocka_unit_test(normalize_null_is_absent),
        cmocka_unit_test(normalize_duplicates_and_shape),
        cmocka_unit_test(normalize_record_limit),
        cmocka_unit_test(normalize_escaping),
        cmocka_unit_test(prepare_full),
        cmocka_unit_test(prepare_client_signature),
        cmocka_unit_test(prepare_uuid_determinism),
        cmocka_unit_test(prepare_minimal_record),
        cmocka_unit_test(prepare_invalid_records),
        cmocka_unit_test(prepare_observable_edge_cases),
        cmocka_unit_test(signature_vectors),
        cmocka_unit_test(detect_type_table),
        cmocka_unit_test(prepare_doc_matches),
        cmocka_unit_test(prepare_in_arena), /* last: it installs the allocator */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
