/* The rule stage: intel marks, rule order, every action, expiry, mutes and the result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/util.h"
#include "rules/ruleset.h"

#define ORG   "11111111-1111-4111-8111-111111111111"
#define OTHER "22222222-2222-4222-8222-222222222222"
#define DEF   "33333333-3333-4333-8333-333333333333"

static const char event_json[] =
    "{\"title\":\"Port scan\",\"organization\":\"" ORG "\",\"uuid\":\"aaaaaaaa-aaaa-4aaa-8aaa-"
    "aaaaaaaaaaaa\",\"signature\":\"sig1\",\"severity\":2,\"tags\":[\"edr\"],"
    "\"status\":{\"name\":\"New\",\"closed\":false},"
    "\"description\":\"seen by sensor 7\",\"raw_log\":\"{\\\"winlog\\\":{\\\"event_id\\\":4625}}\","
    "\"observables\":[{\"value\":\"10.1.2.3\",\"data_type\":\"ip\",\"tags\":[]},"
    "{\"value\":\"Evil.Example\",\"data_type\":\"domain\",\"tags\":[]},"
    "{\"value\":\"ABCDEF\",\"data_type\":\"md5hash\",\"tags\":[]}]}";

static struct sl_ruleset *build(const char *rules, const char *lists, const char *reasons)
{
    char err[512];
    struct sl_ruleset *rs = NULL;
    cJSON *r = cJSON_Parse(rules), *l = cJSON_Parse(lists ? lists : "[]");
    cJSON *c = reasons ? cJSON_Parse(reasons) : NULL;
    assert_non_null(r);
    assert_non_null(l);
    int rc = sl_ruleset_build(r, l, c, DEF, sl_now_ms(), &rs, err, sizeof(err));
    if (rc)
        fail_msg("build: %s", err);
    cJSON_Delete(r);
    cJSON_Delete(l);
    cJSON_Delete(c);
    return rs;
}

static cJSON *apply(const struct sl_ruleset *rs, struct sl_rules_result *res)
{
    struct sl_arena *scratch = sl_arena_create(4096, 65536);
    cJSON *ev = cJSON_Parse(event_json);
    assert_non_null(ev);
    assert_int_equal(sl_ruleset_apply(rs, ev, sl_now_ms(), NULL, scratch, res), 0);
    sl_arena_destroy(scratch);
    return ev;
}

static int has_tag(const cJSON *obj, const char *tag)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(obj, "tags"))
    {
        if (cJSON_IsString(t) && !strcmp(t->valuestring, tag))
            return 1;
    }
    return 0;
}

static const char *str(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void intel_marks(void **state)
{
    (void)state;
    struct sl_rules_result res;
    struct sl_ruleset *rs = build(
        "[]",
        "[{\"uuid\":\"l1\",\"organization\":\"" ORG "\",\"name\":\"Bad Nets\",\"list_type\":"
        "\"values\",\"data_type\":\"ip\",\"tag_on_match\":true,\"flag_ioc\":true,"
        "\"values\":[\"10.0.0.0/8\"]},"
        "{\"uuid\":\"l2\",\"organization\":\"" ORG "\",\"name\":\"Domains\",\"list_type\":"
        "\"values\",\"data_type\":\"domain\",\"flag_spotted\":true,\"values\":[\"evil.example\"]},"
        "{\"uuid\":\"l3\",\"organization\":\"" OTHER "\",\"name\":\"Theirs\",\"list_type\":"
        "\"values\",\"data_type\":\"md5hash\",\"tag_on_match\":true,\"values\":[\"abcdef\"]},"
        "{\"uuid\":\"l4\",\"organization\":\"" DEF "\",\"name\":\"Global Hashes\",\"global_list\":"
        "true,\"list_type\":\"csv\",\"data_type\":\"generic\",\"tag_on_match\":true,"
        "\"csv_headers\":[\"d\",\"md5\"],\"csv_header_map\":{\"d\":\"none\",\"md5\":\"md5hash\"},"
        "\"values\":[[\"2026\",\"ABCDEF\"]]}]",
        NULL);
    assert_int_equal(sl_ruleset_list_count(rs), 4);
    cJSON *ev = apply(rs, &res);
    const cJSON *obs = cJSON_GetObjectItem(ev, "observables");
    const cJSON *ip = cJSON_GetArrayItem(obs, 0), *dom = cJSON_GetArrayItem(obs, 1),
                *md5 = cJSON_GetArrayItem(obs, 2);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(ip, "ioc")));
    assert_true(has_tag(ip, "list: bad-nets"));
    assert_true(has_tag(ev, "list: bad-nets"));
    /* case-insensitive by default; no tag without tag_on_match */
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(dom, "spotted")));
    assert_false(has_tag(ev, "list: domains"));
    /* another organization's list never matches; the default org's global csv list does */
    assert_false(has_tag(ev, "list: theirs"));
    assert_true(has_tag(md5, "list: global-hashes"));
    assert_int_equal(res.intel_hits, 3);
    cJSON_Delete(ev);
    sl_ruleset_free(rs);
}

static void rules_in_priority_order(void **state)
{
    (void)state;
    struct sl_rules_result res;
    /* r2 runs after r1 (priority) and sees r1's tag and severity. */
    struct sl_ruleset *rs = build(
        "[{\"uuid\":\"r2\",\"organization\":\"" ORG "\",\"name\":\"second\",\"priority\":5,"
        "\"query\":\"tags contains 'scan' and severity = 4\",\"dismiss\":true,"
        "\"dismiss_reason\":\"cr1\",\"dismiss_comment\":\"noise\"},"
        "{\"uuid\":\"r1\",\"organization\":\"" ORG "\",\"name\":\"first\",\"priority\":1,"
        "\"query\":\"title = 'Port scan'\",\"add_tags\":true,\"tags_to_add\":[\"scan\"],"
        "\"remove_tags\":true,\"tags_to_remove\":[\"edr\"],\"update_severity\":true,"
        "\"target_severity\":4},"
        "{\"uuid\":\"r3\",\"organization\":\"" ORG "\",\"name\":\"inactive\",\"active\":false,"
        "\"query\":\"title exists\",\"add_tags\":true,\"tags_to_add\":[\"never\"]},"
        "{\"uuid\":\"r4\",\"organization\":\"" OTHER "\",\"name\":\"theirs\","
        "\"query\":\"title exists\",\"add_tags\":true,\"tags_to_add\":[\"never\"]},"
        "{\"uuid\":\"r5\",\"organization\":\"" DEF "\",\"name\":\"global\",\"global_rule\":true,"
        "\"priority\":9,\"query\":\"raw_log.winlog.event_id = 4625\",\"add_tags\":true,"
        "\"tags_to_add\":[\"logon-failure\"]}]",
        NULL, "[{\"uuid\":\"cr1\",\"title\":\"False positive\"}]");
    cJSON *ev = apply(rs, &res);
    assert_int_equal(res.nrules, 3);
    assert_string_equal(res.rules[0], "r1");
    assert_string_equal(res.rules[1], "r2");
    assert_string_equal(res.rules[2], "r5");
    assert_true(has_tag(ev, "scan"));
    assert_false(has_tag(ev, "edr"));
    assert_false(has_tag(ev, "never"));
    assert_true(has_tag(ev, "logon-failure"));
    assert_int_equal((int)cJSON_GetObjectItem(ev, "severity")->valuedouble, 4);
    const cJSON *status = cJSON_GetObjectItem(ev, "status");
    assert_string_equal(str(status, "name"), "Dismissed");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(status, "closed")));
    assert_string_equal(str(ev, "dismiss_reason"), "False positive");
    assert_string_equal(str(ev, "dismiss_comment"), "noise");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(ev, "dismissed_by_rule")));
    const cJSON *hits = cJSON_GetObjectItem(ev, "event_rules");
    assert_int_equal(cJSON_GetArraySize(hits), 3);
    cJSON_Delete(ev);
    sl_ruleset_free(rs);
}

static void cases_orgs_and_mutes(void **state)
{
    (void)state;
    struct sl_rules_result res;
    struct sl_ruleset *rs =
        build("[{\"uuid\":\"c1\",\"organization\":\"" ORG "\",\"name\":\"new case\",\"priority\":1,"
              "\"query\":\"title = 'Port scan'\",\"create_new_case\":true},"
              "{\"uuid\":\"m1\",\"organization\":\"" ORG "\",\"name\":\"mute\",\"priority\":2,"
              "\"query\":\"title = 'Port scan'\",\"mute_event\":true,\"mute_period\":10},"
              "{\"uuid\":\"o1\",\"organization\":\"" ORG "\",\"name\":\"not allowed to move\","
              "\"priority\":3,\"query\":\"title exists\",\"set_organization\":true,"
              "\"target_organization\":\"" OTHER "\"}]",
              NULL, NULL);
    int64_t before = sl_now_ms();
    cJSON *ev = apply(rs, &res);
    assert_true(res.new_case);
    assert_true(sl_uuid_valid(res.case_uuid));
    assert_string_equal(str(ev, "case"), res.case_uuid);
    assert_string_equal(str(cJSON_GetObjectItem(ev, "status"), "name"), "Open");
    assert_string_equal(res.new_case_rule, "c1");
    /* the case uuid is a function of (event, rule): a redelivery makes the same one */
    struct sl_rules_result again;
    cJSON *ev2 = apply(rs, &again);
    assert_string_equal(again.case_uuid, res.case_uuid);
    assert_true(res.mute_until_ms >= before + 600000);
    assert_string_equal(res.mute_rule, "m1");
    /* only the default organization's rules may move an event */
    assert_string_equal(str(ev, "organization"), ORG);
    cJSON_Delete(ev);
    cJSON_Delete(ev2);
    sl_ruleset_free(rs);

    rs = build("[{\"uuid\":\"o2\",\"organization\":\"" DEF "\",\"name\":\"move\","
               "\"global_rule\":true,\"query\":\"title exists\",\"set_organization\":true,"
               "\"target_organization\":\"" OTHER "\"},"
               "{\"uuid\":\"k1\",\"organization\":\"" ORG "\",\"name\":\"merge\","
               "\"priority\":7,\"query\":\"title exists\",\"merge_into_case\":true,"
               "\"target_case_uuid\":\"44444444-4444-4444-8444-444444444444\"}]",
               NULL, NULL);
    ev = apply(rs, &res);
    assert_string_equal(str(ev, "organization"), OTHER);
    assert_string_equal(res.case_uuid, "44444444-4444-4444-8444-444444444444");
    assert_false(res.new_case);
    cJSON_Delete(ev);
    sl_ruleset_free(rs);
}

static int muted_hook(void *ud, const char *org, const char *sig, int64_t now,
                      char rule[SL_UUID_LEN + 1])
{
    (void)ud;
    (void)now;
    if (strcmp(org, ORG) || strcmp(sig, "sig1"))
        return 0;
    strcpy(rule, "55555555-5555-4555-8555-555555555555");
    return 1;
}

static void muted_events(void **state)
{
    (void)state;
    struct sl_rules_result res;
    struct sl_ruleset *rs = build("[{\"uuid\":\"t1\",\"organization\":\"" ORG "\",\"name\":\"t\","
                                  "\"query\":\"title exists\",\"add_tags\":true,"
                                  "\"tags_to_add\":[\"x\"]}]",
                                  NULL, NULL);
    struct sl_rules_hooks hooks = {NULL, NULL, NULL, muted_hook};
    cJSON *ev = cJSON_Parse(event_json);
    assert_int_equal(sl_ruleset_apply(rs, ev, sl_now_ms(), &hooks, NULL, &res), 0);
    assert_true(res.muted);
    assert_int_equal(res.nrules, 0); /* no rule runs on a muted event */
    assert_string_equal(str(cJSON_GetObjectItem(ev, "status"), "name"), "Dismissed");
    assert_string_equal(str(ev, "dismiss_reason"), "Muted");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(ev, "muted")));
    cJSON_Delete(ev);
    sl_ruleset_free(rs);
}

static void expiry(void **state)
{
    (void)state;
    struct sl_rules_result res;
    char past[25], soon[25], rules[1024];
    int64_t now = sl_now_ms();
    sl_time_format(now - 1000, past);
    sl_time_format(now + 60000, soon);
    snprintf(rules, sizeof(rules),
             "[{\"uuid\":\"e1\",\"organization\":\"" ORG "\",\"name\":\"expired\",\"expire\":true,"
             "\"expire_at\":\"%s\",\"query\":\"title exists\"},"
             "{\"uuid\":\"e2\",\"organization\":\"" ORG "\",\"name\":\"soon\",\"expire\":true,"
             "\"expire_at\":\"%s\",\"query\":\"title exists\"}]",
             past, soon);
    struct sl_ruleset *rs = build(rules, NULL, NULL);
    assert_int_equal(sl_ruleset_rule_count(rs), 1);
    assert_true(sl_ruleset_next_expiry(rs) <= now + 60000);
    cJSON *ev = cJSON_Parse(event_json);
    assert_int_equal(sl_ruleset_apply(rs, ev, now, NULL, NULL, &res), 0);
    assert_int_equal(res.nrules, 1);
    /* at its expiry the rule stops firing, without a reload */
    assert_int_equal(sl_ruleset_apply(rs, ev, now + 60000, NULL, NULL, &res), 0);
    assert_int_equal(res.nrules, 0);
    cJSON_Delete(ev);
    sl_ruleset_free(rs);
}

static void bad_rule_is_an_error(void **state)
{
    (void)state;
    char err[512];
    struct sl_ruleset *rs = NULL;
    cJSON *r = cJSON_Parse("[{\"uuid\":\"b1\",\"organization\":\"" ORG "\",\"name\":\"broken\","
                           "\"query\":\"title = \"}]");
    assert_int_equal(sl_ruleset_build(r, NULL, NULL, DEF, sl_now_ms(), &rs, err, sizeof(err)),
                     SL_EINVAL);
    assert_null(rs);
    assert_non_null(strstr(err, "broken"));
    assert_non_null(strstr(err, "line 1"));
    cJSON_Delete(r);
}

static void env_for_test_rql(void **state)
{
    (void)state;
    struct sl_ruleset *rs =
        build("[]",
              "[{\"uuid\":\"l1\",\"organization\":\"" ORG "\",\"name\":\"Bad\",\"list_type\":"
              "\"values\",\"data_type\":\"domain\",\"values\":[\"evil.example\"]}]",
              NULL);
    struct sl_rql_env env;
    struct sl_rql *q = NULL;
    struct sl_rql_error qe;
    const char *text = "intel(observables.value, 'Bad')";
    assert_int_equal(sl_rql_compile(text, strlen(text), &q, &qe), 0);
    cJSON *ev = cJSON_Parse(event_json);
    struct sl_rql_input in = {ev, NULL, 0};
    sl_ruleset_env(rs, ORG, &env);
    assert_int_equal(sl_rql_match(q, &in, &env, NULL, NULL), 1);
    sl_rql_input_fini(&in);
    struct sl_rql_input in2 = {ev, NULL, 0};
    sl_ruleset_env(rs, OTHER, &env);
    assert_int_equal(sl_rql_match(q, &in2, &env, NULL, NULL), 0);
    sl_rql_input_fini(&in2);
    cJSON_Delete(ev);
    sl_rql_free(q);
    sl_ruleset_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(intel_marks),
        cmocka_unit_test(rules_in_priority_order),
        cmocka_unit_test(cases_orgs_and_mutes),
        cmocka_unit_test(muted_events),
        cmocka_unit_test(expiry),
        cmocka_unit_test(bad_rule_is_an_error),
        cmocka_unit_test(env_for_test_rql),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
