/* Unit tests of the store's cases on SQLite: creating (with templates), reading, changing,
 * closing, reopening, deleting (in chunks, and finishing a deletion a crash interrupted) and
 * listing cases, their observables and comments, the link of events to cases through event
 * rules' effects and event_update, and the migration of version 2's cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <sqlite3.h>

#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "store/store.h"

/* ---- fixtures ---- */

#include "store_fixture.h"

static int setup(void **state)
{
    return fx_setup(state, 3);
}

/* One integer from the store's file (a fresh connection per call). */
static int64_t file_int(const char *dir, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int64_t file_int(const char *dir, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;
    va_start(ap, fmt);
    assert_true((size_t)vsnprintf(sql, sizeof(sql), fmt, ap) < sizeof(sql));
    va_end(ap);
    sqlite3 *db = raw_open(dir);
    int64_t v = raw_int(db, sql);
    sqlite3_close(db);
    return v;
}

/* ---- events ---- */

struct tev {
    char uuid[SL_UUID_LEN + 1];
    char org[SL_UUID_LEN + 1];
    char ref[64];
    char sig[64];
    char status[32];
    char doc[2048];
    struct sl_store_event row;
    struct sl_store_effects fx;
};

/* An event of org with a status; "case" and the effect that links it when case_uuid is given;
 * observables (a JSON array) when given. */
static void tev_make(struct tev *t, const char *org, const char *ref, const char *status,
                     const char *case_uuid, const char *observables)
{
    memset(t, 0, sizeof(*t));
    snprintf(t->org, sizeof(t->org), "%s", org);
    snprintf(t->ref, sizeof(t->ref), "%s", ref);
    snprintf(t->sig, sizeof(t->sig), "sig-%s", ref);
    snprintf(t->status, sizeof(t->status), "%s", status);
    const char *parts[] = {org, ref};
    size_t lens[] = {strlen(org), strlen(ref)};
    assert_int_equal(sl_uuid_from_parts(parts, lens, 2, t->uuid), 0);
    char case_member[80] = "";
    if (case_uuid)
        snprintf(case_member, sizeof(case_member), ",\"case\":\"%s\"", case_uuid);
    int n = snprintf(t->doc, sizeof(t->doc),
                     "{\"uuid\":\"%s\",\"organization\":\"%s\",\"reference\":\"%s\","
                     "\"status\":{\"name\":\"%s\",\"closed\":%s}%s,\"observables\":%s}",
                     t->uuid, org, ref, status,
                     strcmp(status, "Closed") && strcmp(status, "Dismissed") ? "false" : "true",
                     case_member, observables ? observables : "[]");
    assert_true(n > 0 && (size_t)n < sizeof(t->doc));
    t->fx.case_uuid = case_uuid;
    t->row = (struct sl_store_event){
        .uuid = t->uuid,
        .org = t->org,
        .reference = t->ref,
        .title = "title",
        .signature = t->sig,
        .status = t->status,
        .severity = 2,
        .original_date_ms = 1000,
        .created_ms = 1000,
        .origin = sl_hash64(ref, strlen(ref), 7),
        .doc = t->doc,
        .doc_len = (size_t)n,
        .effects = case_uuid ? &t->fx : NULL,
    };
}

static void put_all(struct sl_store *st, struct tev *t, size_t n)
{
    struct sl_store_event *rows = calloc(n, sizeof(*rows));
    enum sl_put_outcome *out = calloc(n, sizeof(*out));
    assert_non_null(rows);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++)
        rows[i] = t[i].row;
    assert_int_equal(sl_store_put_events(st, rows, n, out), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(out[i], SL_PUT_STORED);
    free(rows);
    free(out);
}

static cJSON *event_json(struct sl_store *st, const char *org, const char *uuid)
{
    char *doc = NULL;
    assert_int_equal(sl_store_event_get(st, org, uuid, &doc), 0);
    cJSON *o = cJSON_Parse(doc);
    assert_non_null(o);
    free(doc);
    return o;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t jint(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return (int64_t)v->valuedouble;
}

/* The event's status in its document and in the store's column agree and are want; its "case"
 * is want_case (NULL: none). */
static void expect_event(struct sl_store *st, const char *dir, const char *org, const char *uuid,
                         const char *want, const char *want_case)
{
    cJSON *o = event_json(st, org, uuid);
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(o, "status");
    assert_string_equal(jstr(status, "name"), want);
    assert_true(cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(status, "closed")));
    assert_int_equal(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(status, "closed")),
                     !strcmp(want, "Closed") || !strcmp(want, "Dismissed"));
    if (want_case)
        assert_string_equal(jstr(o, "case"), want_case);
    else
        assert_null(cJSON_GetObjectItemCaseSensitive(o, "case"));
    cJSON_Delete(o);
    assert_int_equal(file_int(dir,
                              "SELECT count(*) FROM events WHERE uuid = '%s' AND status = '%s'"
                              " AND (case_id IS NULL) = %d",
                              uuid, want, want_case == NULL),
                     1);
}

/* ---- cases ---- */

static cJSON *case_json(struct sl_store *st, const char *org, const char *uuid)
{
    char *doc = NULL;
    assert_int_equal(sl_store_case_get(st, org, uuid, &doc), 0);
    cJSON *o = cJSON_Parse(doc);
    assert_non_null(o);
    free(doc);
    return o;
}

static struct sl_case_fields fields(const char *title)
{
    return (struct sl_case_fields){.title = title, .severity = -1, .tlp = -1};
}

static void new_case(struct sl_store *st, const char *org, const char *title,
                     char uuid[SL_UUID_LEN + 1])
{
    struct sl_case_fields f = fields(title);
    sl_uuid4(uuid);
    assert_int_equal(sl_store_case_create(st, org, uuid, &f), 0);
}

static void new_meta(struct sl_store *st, enum sl_meta_kind kind, const char *org, const char *name,
                     const char *doc, char uuid[SL_UUID_LEN + 1])
{
    struct sl_meta m = {.doc = (char *)doc};
    sl_uuid4(uuid);
    snprintf(m.uuid, sizeof(m.uuid), "%s", uuid);
    snprintf(m.org, sizeof(m.org), "%s", org);
    snprintf(m.name, sizeof(m.name), "%s", name);
    assert_int_equal(sl_store_meta_put(st, kind, &m, 1), 0);
}

/* The array's members as one string: strings joined by ",", objects by their "title". */
static void joined(const cJSON *a, char *out, size_t cap)
{
    const cJSON *v;
    size_t o = 0;
    out[0] = 0;
    cJSON_ArrayForEach(v, a)
    {
        const char *s = cJSON_IsString(v) ? v->valuestring : jstr(v, "title");
        int w = snprintf(out + o, cap - o, "%s%s", o ? "," : "", s ? s : "?");
        assert_true(w > 0 && (size_t)w < cap - o);
        o += (size_t)w;
    }
}

static void expect_joined(const cJSON *o, const char *key, const char *want)
{
    char got[1024];
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsArray(a));
    joined(a, got, sizeof(got));
    assert_string_equal(got, want);
}

static void test_create_get(void **state)
{
    struct fx *f = *state;
    char uuid[SL_UUID_LEN + 1], upper[SL_UUID_LEN + 1], *doc = NULL;
    int64_t before = sl_now_ms();

    /* Defaults. */
    new_case(f->st, f->org.uuid, "Phishing wave", uuid);
    cJSON *o = case_json(f->st, f->org.uuid, uuid);
    static const char *const members[] = {"uuid",
                                          "organization",
                                          "title",
                                          "description",
                                          "severity",
                                          "tlp",
                                          "status",
                                          "closed",
                                          "owner",
                                          "tags",
                                          "tasks",
                                          "event_count",
                                          "observable_count",
                                          "created_at",
                                          "updated_at",
                                          "closed_at",
                                          "close_reason",
                                          "closure_comment",
                                          "event_rule",
                                          "case_template"};
    assert_int_equal(cJSON_GetArraySize(o), 20);
    int i = 0;
    for (const cJSON *m = o->child; m; m = m->next)
        assert_string_equal(m->string, members[i++]);
    assert_string_equal(jstr(o, "uuid"), uuid);
    assert_string_equal(jstr(o, "organization"), f->org.uuid);
    assert_string_equal(jstr(o, "title"), "Phishing wave");
    assert_string_equal(jstr(o, "description"), "");
    assert_int_equal(jint(o, "severity"), 1);
    assert_int_equal(jint(o, "tlp"), 2);
    assert_string_equal(jstr(o, "status"), "New");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(o, "closed")));
    assert_string_equal(jstr(o, "owner"), "");
    expect_joined(o, "tags", "");
    expect_joined(o, "tasks", "");
    assert_int_equal(jint(o, "event_count"), 0);
    assert_int_equal(jint(o, "observable_count"), 0);
    const char *at = jstr(o, "created_at");
    int64_t created = 0;
    assert_int_equal(strlen(at), 24);
    assert_int_equal(sl_time_parse(at, strlen(at), &created), 0);
    assert_true(created >= before && created <= sl_now_ms());
    assert_string_equal(jstr(o, "updated_at"), at);
    for (const char *const *k =
             (const char *const[]){"closed_at", "close_reason", "closure_comment", "event_rule",
                                   "case_template", NULL};
         *k; k++)
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, *k)));
    cJSON_Delete(o);

    /* Every field given; uuids in any case. */
    char rule[SL_UUID_LEN + 1], u2[SL_UUID_LEN + 1];
    sl_uuid4(rule);
    sl_uuid4(u2);
    memcpy(upper, u2, sizeof(upper));
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 32);
    struct sl_case_fields full = {.title = "T \"quoted\" é",
                                  .description = "line\nbreak",
                                  .severity = 0,
                                  .tlp = 4,
                                  .status = "Hold",
                                  .owner = "alice",
                                  .tags_json = "[\"b\",\"a\",\"b\"]",
                                  .tasks_json = "[{\"title\":\"triage\"},{\"title\":\"contain\","
                                                "\"description\":\"d\",\"status\":\"Done\"}]",
                                  .rule_uuid = rule};
    assert_int_equal(sl_store_case_create(f->st, f->org2.uuid, upper, &full), 0);
    o = case_json(f->st, NULL, upper);
    assert_string_equal(jstr(o, "uuid"), u2);
    assert_string_equal(jstr(o, "organization"), f->org2.uuid);
    assert_string_equal(jstr(o, "title"), "T \"quoted\" é");
    assert_string_equal(jstr(o, "description"), "line\nbreak");
    assert_int_equal(jint(o, "severity"), 0);
    assert_int_equal(jint(o, "tlp"), 4);
    assert_string_equal(jstr(o, "status"), "Hold");
    assert_string_equal(jstr(o, "owner"), "alice");
    expect_joined(o, "tags", "b,a");
    expect_joined(o, "tasks", "triage,contain");
    const cJSON *task = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "tasks"), 0);
    assert_int_equal(cJSON_GetArraySize(task), 3);
    assert_string_equal(jstr(task, "description"), "");
    assert_string_equal(jstr(task, "status"), "Open");
    task = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "tasks"), 1);
    assert_string_equal(jstr(task, "description"), "d");
    assert_string_equal(jstr(task, "status"), "Done");
    assert_string_equal(jstr(o, "event_rule"), rule);
    cJSON_Delete(o);

    /* Another organization's case is absent for this one; NULL sees every organization. */
    assert_int_equal(sl_store_case_get(f->st, f->org.uuid, u2, &doc), SL_ENOTFOUND);
    assert_null(doc);
    assert_int_equal(sl_store_case_get(f->st, "nope", u2, &doc), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_get(f->st, NULL, "nope", &doc), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_get(f->st, NULL, NULL, &doc), SL_EINVAL);

    /* A uuid is taken once (in whichever organization); an organization must exist. */
    struct sl_case_fields plain = fields("again");
    assert_int_equal(sl_store_case_create(f->st, f->org.uuid, u2, &plain), SL_EEXIST);
    char u3[SL_UUID_LEN + 1];
    sl_uuid4(u3);
    assert_int_equal(sl_store_case_create(f->st, u3, u3, &plain), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_create(f->st, NULL, u3, &plain), SL_ENOTFOUND);

    /* Fields out of range. */
    char long_title[SL_CASE_TITLE_MAX + 2];
    memset(long_title, 'x', sizeof(long_title) - 1);
    long_title[sizeof(long_title) - 1] = 0;
    char long_owner[300];
    memset(long_owner, 'o', sizeof(long_owner) - 1);
    long_owner[sizeof(long_owner) - 1] = 0;
    struct sl_case_fields bad[] = {
        {.severity = -1, .tlp = -1},
        {.title = "", .severity = -1, .tlp = -1},
        {.title = long_title, .severity = -1, .tlp = -1},
        {.title = "\xff", .severity = -1, .tlp = -1},
        {.title = "t", .severity = 5, .tlp = -1},
        {.title = "t", .severity = -1, .tlp = 5},
        {.title = "t", .severity = -1, .tlp = -1, .status = "Closed"},
        {.title = "t", .severity = -1, .tlp = -1, .status = "Open"},
        {.title = "t", .severity = -1, .tlp = -1, .owner = long_owner},
        {.title = "t", .severity = -1, .tlp = -1, .description = "\xc3"},
        {.title = "t", .severity = -1, .tlp = -1, .tags_json = "{"},
        {.title = "t", .severity = -1, .tlp = -1, .tags_json = "{\"a\":1}"},
        {.title = "t", .severity = -1, .tlp = -1, .tags_json = "[\"a\",1]"},
        {.title = "t", .severity = -1, .tlp = -1, .tasks_json = "[\"a\"]"},
        {.title = "t", .severity = -1, .tlp = -1, .tasks_json = "[{\"description\":\"d\"}]"},
        {.title = "t", .severity = -1, .tlp = -1, .tasks_json = "[{\"title\":\"\"}]"},
        {.title = "t", .severity = -1, .tlp = -1, .tasks_json = "[{\"title\":\"a\",\"status\":1}]"},
        {.title = "t", .severity = -1, .tlp = -1, .tasks_json = "[{"},
        {.title = "t", .severity = -1, .tlp = -1, .template_uuid = "nope"},
        {.title = "t", .severity = -1, .tlp = -1, .rule_uuid = "nope"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
        if (sl_store_case_create(f->st, f->org.uuid, u3, &bad[k]) != SL_EINVAL)
            fail_msg("bad fields %zu accepted", k);
    assert_int_equal(sl_store_case_create(f->st, f->org.uuid, "nope", &plain), SL_EINVAL);
    assert_int_equal(sl_store_case_create(f->st, f->org.uuid, u3, NULL), SL_EINVAL);
    assert_int_equal(sl_store_case_get(f->st, NULL, u3, &doc), SL_ENOTFOUND);
    /* The refused calls created nothing. */
    assert_int_equal(file_int(f->dir, "SELECT count(*) FROM cases"), 2);
}

/* ---- templates ---- */

static const char template_doc[] =
    "{\"title\":\"ignored\",\"description\":\"ignored\",\"tags\":[\"t1\",\"x\",7],"
    "\"tasks\":[{\"title\":\"collect\",\"description\":\"logs\",\"status\":\"Done\"},"
    "{\"title\":\"notify\"},\"junk\",{\"description\":\"no title\"}],"
    "\"severity\":4,\"tlp\":3}";

static void test_template(void **state)
{
    struct fx *f = *state;
    char tmpl[SL_UUID_LEN + 1], other[SL_UUID_LEN + 1], c1[SL_UUID_LEN + 1], c2[SL_UUID_LEN + 1],
        c3[SL_UUID_LEN + 1], *doc = NULL;
    /* A template of the default organization serves every organization; initech's only it. */
    new_meta(f->st, SL_META_CASE_TEMPLATE, f->org.uuid, "phishing", template_doc, tmpl);
    new_meta(f->st, SL_META_CASE_TEMPLATE, f->org3.uuid, "mine", "{\"severity\":0}", other);

    struct sl_case_fields fl = fields("from template");
    fl.tags_json = "[\"x\",\"y\"]";
    fl.tasks_json = "[{\"title\":\"first\"}]";
    fl.template_uuid = tmpl;
    sl_uuid4(c1);
    assert_int_equal(sl_store_case_create(f->st, f->org2.uuid, c1, &fl), 0);
    cJSON *o = case_json(f->st, f->org2.uuid, c1);
    assert_string_equal(jstr(o, "title"), "from template");
    assert_string_equal(jstr(o, "description"), "");
    expect_joined(o, "tags", "x,y,t1");
    expect_joined(o, "tasks", "first,collect,notify");
    const cJSON *collect = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "tasks"), 1);
    assert_string_equal(jstr(collect, "description"), "logs");
    assert_string_equal(jstr(collect, "status"), "Open"); /* a template's task starts Open */
    assert_int_equal(jint(o, "severity"), 4);
    assert_int_equal(jint(o, "tlp"), 3);
    assert_string_equal(jstr(o, "case_template"), tmpl);
    cJSON_Delete(o);

    /* Given levels win over the template's. */
    fl.severity = 2;
    fl.tlp = 0;
    sl_uuid4(c2);
    assert_int_equal(sl_store_case_create(f->st, f->org2.uuid, c2, &fl), 0);
    o = case_json(f->st, NULL, c2);
    assert_int_equal(jint(o, "severity"), 2);
    assert_int_equal(jint(o, "tlp"), 0);
    cJSON_Delete(o);

    /* Another organization's template, or none: SL_ENOTFOUND and no case. */
    fl.template_uuid = other;
    sl_uuid4(c3);
    assert_int_equal(sl_store_case_create(f->st, f->org2.uuid, c3, &fl), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_get(f->st, NULL, c3, &doc), SL_ENOTFOUND);
    char missing[SL_UUID_LEN + 1];
    sl_uuid4(missing);
    fl.template_uuid = missing;
    assert_int_equal(sl_store_case_create(f->st, f->org2.uuid, c3, &fl), SL_ENOTFOUND);
    fl.template_uuid = other;
    assert_int_equal(sl_store_case_create(f->st, f->org3.uuid, c3, &fl), 0);
    o = case_json(f->st, NULL, c3);
    assert_int_equal(jint(o, "severity"), 2);
    cJSON_Delete(o);

    /* A rule's case: the template's levels win over the event's; a missing template is skipped. */
    char rc1[SL_UUID_LEN + 1], rc2[SL_UUID_LEN + 1], rule[SL_UUID_LEN + 1];
    sl_uuid4(rc1);
    sl_uuid4(rc2);
    sl_uuid4(rule);
    struct sl_store_case made[2] = {
        {.uuid = rc1,
         .org = f->org2.uuid,
         .title = "rule case",
         .description = "desc",
         .severity = 1,
         .tlp = 2,
         .tags_json = "[\"r\",\"t1\"]",
         .rule_uuid = rule,
         .template_uuid = tmpl},
        {.uuid = rc2,
         .org = f->org2.uuid,
         .title = "rule case 2",
         .severity = 9,
         .tlp = 1,
         .tags_json = "not json",
         .rule_uuid = rule,
         .template_uuid = missing},
    };
    struct tev t[2];
    tev_make(&t[0], f->org2.uuid, "r1", "Open", rc1, NULL);
    tev_make(&t[1], f->org2.uuid, "r2", "Open", rc2, NULL);
    t[0].fx.new_case = &made[0];
    t[1].fx.new_case = &made[1];
    put_all(f->st, t, 2);
    o = case_json(f->st, f->org2.uuid, rc1);
    assert_string_equal(jstr(o, "status"), "New");
    assert_string_equal(jstr(o, "description"), "desc");
    assert_int_equal(jint(o, "severity"), 4);
    assert_int_equal(jint(o, "tlp"), 3);
    expect_joined(o, "tags", "r,t1,x");
    expect_joined(o, "tasks", "collect,notify");
    assert_string_equal(jstr(o, "event_rule"), rule);
    assert_string_equal(jstr(o, "case_template"), tmpl);
    assert_int_equal(jint(o, "event_count"), 1);
    cJSON_Delete(o);
    o = case_json(f->st, f->org2.uuid, rc2);
    assert_int_equal(jint(o, "severity"), 1); /* out of range: the default */
    assert_int_equal(jint(o, "tlp"), 1);
    expect_joined(o, "tags", "");
    expect_joined(o, "tasks", "");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "case_template")));
    assert_int_equal(jint(o, "event_count"), 1);
    cJSON_Delete(o);
}

/* ---- the link of events ---- */

static void test_link_effects(void **state)
{
    struct fx *f = *state;
    char open_case[SL_UUID_LEN + 1], closed_case[SL_UUID_LEN + 1], other[SL_UUID_LEN + 1],
        gone[SL_UUID_LEN + 1], upper[SL_UUID_LEN + 1], *json = NULL;
    new_case(f->st, f->org.uuid, "open", open_case);
    new_case(f->st, f->org.uuid, "closed", closed_case);
    assert_int_equal(sl_store_case_close(f->st, f->org.uuid, closed_case, NULL, NULL, "k", NULL),
                     0);
    new_case(f->st, f->org2.uuid, "globex's", other);
    sl_uuid4(gone);
    memcpy(upper, open_case, sizeof(upper));
    for (char *p = upper; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 32);

    struct tev t[7];
    tev_make(&t[0], f->org.uuid, "in-open", "Open", open_case, NULL);
    tev_make(&t[1], f->org.uuid, "in-closed", "Open", closed_case, NULL);
    tev_make(&t[2], f->org.uuid, "in-other", "Open", other, NULL);
    tev_make(&t[3], f->org.uuid, "in-gone", "Open", gone, NULL);
    tev_make(&t[4], f->org.uuid, "dismissed-gone", "Dismissed", gone, NULL);
    tev_make(&t[5], f->org.uuid, "plain", "New", NULL, NULL);
    tev_make(&t[6], f->org.uuid, "upper", "Open", upper, NULL);
    char plain_doc[2048];
    snprintf(plain_doc, sizeof(plain_doc), "%s", t[5].doc);
    put_all(f->st, t, 7);

    expect_event(f->st, f->dir, f->org.uuid, t[0].uuid, "Open", open_case);
    expect_event(f->st, f->dir, f->org.uuid, t[1].uuid, "Closed", closed_case);
    expect_event(f->st, f->dir, f->org.uuid, t[2].uuid, "New", NULL);
    expect_event(f->st, f->dir, f->org.uuid, t[3].uuid, "New", NULL);
    expect_event(f->st, f->dir, f->org.uuid, t[4].uuid, "Dismissed", NULL);
    expect_event(f->st, f->dir, f->org.uuid, t[6].uuid, "Open", open_case); /* canonical */
    /* An event in no case is stored as it came. */
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, t[5].uuid, &json), 0);
    assert_string_equal(json, plain_doc);
    free(json);
    /* A document naming its case already is kept byte for byte. */
    assert_int_equal(sl_store_event_get(f->st, f->org.uuid, t[0].uuid, &json), 0);
    assert_string_equal(json, t[0].doc);
    free(json);

    char want[256];
    assert_int_equal(sl_store_case_events(f->st, open_case, &json), 0);
    snprintf(want, sizeof(want), "[\"%s\",\"%s\"]", t[0].uuid, t[6].uuid);
    assert_string_equal(json, want);
    free(json);
    assert_int_equal(sl_store_case_events(f->st, other, &json), 0);
    assert_string_equal(json, "[]");
    free(json);
    assert_int_equal(sl_store_case_events(f->st, gone, &json), SL_ENOTFOUND);
    assert_null(json);
    cJSON *o = case_json(f->st, NULL, closed_case);
    assert_int_equal(jint(o, "event_count"), 1);
    cJSON_Delete(o);

    /* A redelivery changes nothing; the case's count is what its events say. */
    enum sl_put_outcome out;
    assert_int_equal(sl_store_put_events(f->st, &t[0].row, 1, &out), 0);
    assert_int_equal(out, SL_PUT_REDELIVERED);
    o = case_json(f->st, NULL, open_case);
    assert_int_equal(jint(o, "event_count"), 2);
    cJSON_Delete(o);
}

/* event_update: an effect links, relinks or unlinks; without one a link stays only while its
 * case holds the event. */
static void test_link_update(void **state)
{
    struct fx *f = *state;
    char a[SL_UUID_LEN + 1], b[SL_UUID_LEN + 1];
    new_case(f->st, f->org.uuid, "a", a);
    new_case(f->st, f->org.uuid, "b", b);
    struct tev t[3];
    tev_make(&t[0], f->org.uuid, "e0", "Open", a, NULL);
    tev_make(&t[1], f->org.uuid, "e1", "New", NULL, NULL);
    tev_make(&t[2], f->org.uuid, "e2", "Open", a, NULL);
    put_all(f->st, t, 3);
    size_t updated = 0;

    /* e1 joins b by a retro rule; e0 moves from a to b. */
    struct tev u[2];
    tev_make(&u[0], f->org.uuid, "e1", "Open", b, NULL);
    tev_make(&u[1], f->org.uuid, "e0", "Open", b, NULL);
    struct sl_store_event rows[2] = {u[0].row, u[1].row};
    assert_int_equal(sl_store_event_update(f->st, rows, 2, &updated), 0);
    assert_int_equal(updated, 2);
    expect_event(f->st, f->dir, f->org.uuid, t[1].uuid, "Open", b);
    expect_event(f->st, f->dir, f->org.uuid, t[0].uuid, "Open", b);
    cJSON *o = case_json(f->st, NULL, a);
    assert_int_equal(jint(o, "event_count"), 1);
    cJSON_Delete(o);
    o = case_json(f->st, NULL, b);
    assert_int_equal(jint(o, "event_count"), 2);
    cJSON_Delete(o);

    /* Rewritten without an effect (an unrelated rule), e2 stays in a. */
    struct tev keep;
    tev_make(&keep, f->org.uuid, "e2", "Open", a, NULL);
    keep.row.effects = NULL;
    assert_int_equal(sl_store_event_update(f->st, &keep.row, 1, &updated), 0);
    expect_event(f->st, f->dir, f->org.uuid, t[2].uuid, "Open", a);

    /* Moved to globex without an effect: a (acme's) no longer holds it. */
    struct tev moved;
    tev_make(&moved, f->org.uuid, "e2", "Open", a, NULL);
    snprintf(moved.org, sizeof(moved.org), "%s", f->org2.uuid);
    moved.row.effects = NULL;
    assert_int_equal(sl_store_event_update(f->st, &moved.row, 1, &updated), 0);
    assert_int_equal(updated, 1);
    expect_event(f->st, f->dir, f->org2.uuid, t[2].uuid, "New", NULL);
    o = case_json(f->st, NULL, a);
    assert_int_equal(jint(o, "event_count"), 0);
    cJSON_Delete(o);
}

/* ---- changing, closing, reopening ---- */

/* A case's events page by page, read through the case: only the page, the count of all. */
static void test_event_docs(void **state)
{
    struct fx *f = *state;
    char a[SL_UUID_LEN + 1], b[SL_UUID_LEN + 1];
    new_case(f->st, f->org.uuid, "a", a);
    new_case(f->st, f->org.uuid, "b", b);
    struct tev t[5];
    const char *refs[] = {"p0", "p1", "p2", "p3", "p4"};
    for (int i = 0; i < 5; i++)
        tev_make(&t[i], f->org.uuid, refs[i], "Open", i == 3 ? b : a, NULL);
    put_all(f->st, t, 5);
    char *json = NULL;
    int64_t total = -1;
    assert_int_equal(sl_store_case_event_docs(f->st, f->org.uuid, a, 0, 3, &json, &total), 0);
    assert_int_equal(total, 4);
    cJSON *arr = cJSON_Parse(json);
    assert_int_equal(cJSON_GetArraySize(arr), 3);
    assert_string_equal(jstr(cJSON_GetArrayItem(arr, 0), "uuid"), t[0].uuid);
    assert_string_equal(jstr(cJSON_GetArrayItem(arr, 2), "uuid"), t[2].uuid);
    cJSON_Delete(arr);
    free(json);
    assert_int_equal(sl_store_case_event_docs(f->st, NULL, a, 3, 3, &json, &total), 0);
    arr = cJSON_Parse(json);
    assert_int_equal(cJSON_GetArraySize(arr), 1);
    assert_string_equal(jstr(cJSON_GetArrayItem(arr, 0), "uuid"), t[4].uuid);
    cJSON_Delete(arr);
    free(json);
    /* Another organization's case, a malformed uuid, bad bounds. */
    assert_int_equal(sl_store_case_event_docs(f->st, f->org2.uuid, a, 0, 3, &json, &total),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_case_event_docs(f->st, NULL, "nope", 0, 3, &json, &total),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_case_event_docs(f->st, NULL, a, -1, 3, &json, &total), SL_EINVAL);
    assert_int_equal(sl_store_case_event_docs(f->st, NULL, a, 0, 0, &json, &total), SL_EINVAL);
    assert_null(json);
}

static void test_update(void **state)
{
    struct fx *f = *state;
    char uuid[SL_UUID_LEN + 1];
    new_case(f->st, f->org.uuid, "before", uuid);
    cJSON *o = case_json(f->st, NULL, uuid);
    char created[32];
    snprintf(created, sizeof(created), "%s", jstr(o, "created_at"));
    cJSON_Delete(o);

    struct sl_case_fields u = {.title = "after",
                               .description = "why",
                               .severity = 3,
                               .tlp = -1,
                               .status = "In Progress",
                               .owner = "bob",
                               .tags_json = "[\"p\",\"q\",\"p\"]",
                               .tasks_json = "[{\"title\":\"one\"}]"};
    assert_int_equal(sl_store_case_update(f->st, f->org.uuid, uuid, &u), 0);
    o = case_json(f->st, NULL, uuid);
    assert_string_equal(jstr(o, "title"), "after");
    assert_string_equal(jstr(o, "description"), "why");
    assert_int_equal(jint(o, "severity"), 3);
    assert_int_equal(jint(o, "tlp"), 2);
    assert_string_equal(jstr(o, "status"), "In Progress");
    assert_string_equal(jstr(o, "owner"), "bob");
    expect_joined(o, "tags", "p,q");
    expect_joined(o, "tasks", "one");
    assert_string_equal(jstr(o, "created_at"), created);
    assert_true(strcmp(jstr(o, "updated_at"), created) >= 0);
    cJSON_Delete(o);

    /* Nothing given changes nothing but updated_at; an empty owner and tags clear them. */
    struct sl_case_fields none = {.severity = -1, .tlp = 4, .owner = "", .tags_json = "[]"};
    assert_int_equal(sl_store_case_update(f->st, NULL, uuid, &none), 0);
    o = case_json(f->st, NULL, uuid);
    assert_string_equal(jstr(o, "title"), "after");
    assert_int_equal(jint(o, "severity"), 3);
    assert_int_equal(jint(o, "tlp"), 4);
    assert_string_equal(jstr(o, "owner"), "");
    expect_joined(o, "tags", "");
    expect_joined(o, "tasks", "one");
    cJSON_Delete(o);

    /* Absent, another organization's; invalid fields; no closing or template by update. */
    char other[SL_UUID_LEN + 1];
    sl_uuid4(other);
    assert_int_equal(sl_store_case_update(f->st, NULL, other, &none), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_update(f->st, f->org2.uuid, uuid, &none), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_update(f->st, NULL, "x", &none), SL_ENOTFOUND);
    struct sl_case_fields bad[] = {
        {.title = "", .severity = -1, .tlp = -1},
        {.severity = 7, .tlp = -1},
        {.severity = -1, .tlp = -1, .status = "Closed"},
        {.severity = -1, .tlp = -1, .tags_json = "[1]"},
        {.severity = -1, .tlp = -1, .template_uuid = other},
        {.severity = -1, .tlp = -1, .rule_uuid = other},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
        if (sl_store_case_update(f->st, NULL, uuid, &bad[k]) != SL_EINVAL)
            fail_msg("bad update %zu accepted", k);
    assert_int_equal(sl_store_case_update(f->st, NULL, uuid, NULL), SL_EINVAL);

    /* A closed case changes its status only by reopening; its other fields still change. */
    assert_int_equal(sl_store_case_close(f->st, NULL, uuid, NULL, NULL, NULL, NULL), 0);
    struct sl_case_fields hold = {.severity = -1, .tlp = -1, .status = "Hold"};
    assert_int_equal(sl_store_case_update(f->st, NULL, uuid, &hold), SL_EINVAL);
    struct sl_case_fields title = {.title = "closed but renamed", .severity = -1, .tlp = -1};
    assert_int_equal(sl_store_case_update(f->st, NULL, uuid, &title), 0);
    o = case_json(f->st, NULL, uuid);
    assert_string_equal(jstr(o, "status"), "Closed");
    assert_string_equal(jstr(o, "title"), "closed but renamed");
    cJSON_Delete(o);
}

static void test_close_reopen(void **state)
{
    struct fx *f = *state;
    char uuid[SL_UUID_LEN + 1], reason[SL_UUID_LEN + 1], other[SL_UUID_LEN + 1];
    new_case(f->st, f->org.uuid, "incident", uuid);
    new_case(f->st, f->org.uuid, "bystander", other);
    sl_uuid4(reason);
    struct tev t[4];
    tev_make(&t[0], f->org.uuid, "a", "Open", uuid, NULL);
    tev_make(&t[1], f->org.uuid, "b", "Open", uuid, NULL);
    tev_make(&t[2], f->org.uuid, "c", "Dismissed", uuid, NULL);
    tev_make(&t[3], f->org.uuid, "d", "Open", other, NULL);
    put_all(f->st, t, 4);

    int64_t n = -1, before = sl_now_ms();
    assert_int_equal(
        sl_store_case_close(f->st, f->org.uuid, uuid, reason, "done \"here\"", "key1", &n), 0);
    assert_int_equal(n, 2); /* the dismissed one stays dismissed */
    cJSON *o = case_json(f->st, NULL, uuid);
    assert_string_equal(jstr(o, "status"), "Closed");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "closed")));
    int64_t closed_ms = 0;
    char at[32];
    assert_non_null(jstr(o, "closed_at"));
    snprintf(at, sizeof(at), "%s", jstr(o, "closed_at"));
    assert_int_equal(sl_time_parse(at, strlen(at), &closed_ms), 0);
    assert_true(closed_ms >= before);
    assert_string_equal(jstr(o, "updated_at"), at);
    assert_string_equal(jstr(o, "close_reason"), reason);
    assert_string_equal(jstr(o, "closure_comment"), "done \"here\"");
    cJSON_Delete(o);
    for (int i = 0; i < 2; i++)
        expect_event(f->st, f->dir, f->org.uuid, t[i].uuid, "Closed", uuid);
    expect_event(f->st, f->dir, f->org.uuid, t[2].uuid, "Dismissed", uuid);
    expect_event(f->st, f->dir, f->org.uuid, t[3].uuid, "Open", other);
    /* The events changed when the case closed. */
    cJSON *ev = event_json(f->st, f->org.uuid, t[0].uuid);
    assert_string_equal(jstr(ev, "updated_at"), at);
    cJSON_Delete(ev);
    ev = event_json(f->st, f->org.uuid, t[3].uuid);
    assert_null(cJSON_GetObjectItem(ev, "updated_at"));
    cJSON_Delete(ev);

    /* Closed twice: SL_EEXIST; another organization's: SL_ENOTFOUND. */
    assert_int_equal(sl_store_case_close(f->st, NULL, uuid, NULL, NULL, NULL, &n), SL_EEXIST);
    assert_int_equal(n, 0);
    assert_int_equal(sl_store_case_close(f->st, f->org2.uuid, other, NULL, NULL, NULL, &n),
                     SL_ENOTFOUND);
    assert_int_equal(sl_store_case_close(f->st, NULL, other, "nope", NULL, NULL, &n), SL_EINVAL);
    assert_int_equal(sl_store_case_reopen(f->st, NULL, other, NULL, &n), SL_EEXIST);

    /* An event a rule adds to the closed case is Closed at once. */
    struct tev late;
    tev_make(&late, f->org.uuid, "late", "Open", uuid, NULL);
    put_all(f->st, &late, 1);
    expect_event(f->st, f->dir, f->org.uuid, late.uuid, "Closed", uuid);

    assert_int_equal(sl_store_case_reopen(f->st, f->org.uuid, uuid, "key2", &n), 0);
    assert_int_equal(n, 3);
    o = case_json(f->st, NULL, uuid);
    assert_string_equal(jstr(o, "status"), "In Progress");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(o, "closed")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "closed_at")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "close_reason")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "closure_comment")));
    assert_int_equal(jint(o, "event_count"), 4);
    cJSON_Delete(o);
    for (int i = 0; i < 2; i++)
        expect_event(f->st, f->dir, f->org.uuid, t[i].uuid, "Open", uuid);
    expect_event(f->st, f->dir, f->org.uuid, t[2].uuid, "Dismissed", uuid);
    assert_int_equal(sl_store_case_reopen(f->st, NULL, uuid, NULL, &n), SL_EEXIST);
    assert_int_equal(sl_store_case_reopen(f->st, f->org2.uuid, uuid, NULL, &n), SL_ENOTFOUND);
    /* Listing by status sees the column the store keeps with the document. */
    struct sl_event_filter ef = {.org = f->org.uuid, .status = "Open", .page = 1, .page_size = 10};
    char *json = NULL;
    int64_t total = 0;
    assert_int_equal(sl_store_event_list(f->st, &ef, &json, &total), 0);
    assert_int_equal(total, 4);
    free(json);
}

/* ---- deleting ---- */

#define BIG_CASE 10000 /* two whole release chunks, then an empty one */

static void test_delete(void **state)
{
    struct fx *f = *state;
    char uuid[SL_UUID_LEN + 1], keep[SL_UUID_LEN + 1], *doc = NULL;
    new_case(f->st, f->org.uuid, "big", uuid);
    new_case(f->st, f->org.uuid, "kept", keep);
    struct tev *t = calloc(BIG_CASE + 1, sizeof(*t));
    assert_non_null(t);
    for (int i = 0; i <= BIG_CASE; i++) {
        char ref[32];
        snprintf(ref, sizeof(ref), "ev-%d", i);
        tev_make(&t[i], f->org.uuid, ref, i % 7 == 3 ? "Closed" : "Open",
                 i == BIG_CASE ? keep : uuid, NULL);
    }
    for (int i = 0; i <= BIG_CASE; i += 1000)
        put_all(f->st, t + i, i + 1000 <= BIG_CASE ? 1000 : (size_t)(BIG_CASE + 1 - i));
    char *c = NULL;
    assert_int_equal(sl_store_case_comment_add(f->st, NULL, uuid, "k1", "first", &c), 0);
    free(c);
    cJSON *o = case_json(f->st, NULL, uuid);
    assert_int_equal(jint(o, "event_count"), BIG_CASE);
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(o, "observable_count")));
    cJSON_Delete(o);
    /* One more: past 10,000 events a read of the case no longer counts observables. */
    struct tev extra;
    tev_make(&extra, f->org.uuid, "ev-extra", "Open", uuid, NULL);
    put_all(f->st, &extra, 1);
    o = case_json(f->st, NULL, uuid);
    assert_int_equal(jint(o, "event_count"), BIG_CASE + 1);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(o, "observable_count")));
    cJSON_Delete(o);

    assert_int_equal(sl_store_case_delete(f->st, f->org2.uuid, uuid, NULL), SL_ENOTFOUND);
    int64_t n = -1, t0 = sl_mono_ms();
    assert_int_equal(sl_store_case_delete(f->st, f->org.uuid, uuid, &n), 0);
    print_message("      released %d events in %lld ms\n", BIG_CASE + 1,
                  (long long)(sl_mono_ms() - t0));
    assert_int_equal(n, BIG_CASE + 1);
    assert_int_equal(sl_store_case_get(f->st, NULL, uuid, &doc), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_events(f->st, uuid, &doc), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_comment_list(f->st, NULL, uuid, &doc), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_delete(f->st, NULL, uuid, &n), SL_ENOTFOUND);
    assert_int_equal(n, 0);
    expect_event(f->st, f->dir, f->org.uuid, t[0].uuid, "New", NULL);
    expect_event(f->st, f->dir, f->org.uuid, t[3].uuid, "New", NULL);
    expect_event(f->st, f->dir, f->org.uuid, t[BIG_CASE - 1].uuid, "New", NULL);
    expect_event(f->st, f->dir, f->org.uuid, t[BIG_CASE].uuid, "Open", keep);
    cJSON *ev = event_json(f->st, f->org.uuid, t[0].uuid);
    assert_non_null(jstr(ev, "updated_at"));
    cJSON_Delete(ev);
    assert_int_equal(file_int(f->dir, "SELECT count(*) FROM events WHERE case_id IS NOT NULL"), 1);
    assert_int_equal(file_int(f->dir, "SELECT count(*) FROM events WHERE status = 'New'"
                                      " AND json_extract(doc, '$.status.name') = 'New'"
                                      " AND json_extract(doc, '$.case') IS NULL"),
                     BIG_CASE + 1);
    assert_int_equal(file_int(f->dir, "SELECT count(*) FROM case_comments"), 0);
    assert_int_equal(file_int(f->dir, "SELECT count(*) FROM case_releases"), 0);
    o = case_json(f->st, NULL, keep);
    assert_int_equal(jint(o, "event_count"), 1);
    cJSON_Delete(o);
    free(t);
}

/* A deletion interrupted between its transactions: the case's events point at an id no case
 * has. They are in no case for every read, a new case does not inherit them, and they are
 * released when the store is next opened. */
static void test_delete_interrupted(void **state)
{
    struct fx *f = *state;
    char dead[SL_UUID_LEN + 1], fresh[SL_UUID_LEN + 1], *doc = NULL;
    new_case(f->st, f->org.uuid, "dead", dead);
    struct tev t[3];
    tev_make(&t[0], f->org.uuid, "x0", "Open", dead, "[{\"value\":\"v\",\"data_type\":\"ip\"}]");
    tev_make(&t[1], f->org.uuid, "x1", "Open", dead, NULL);
    tev_make(&t[2], f->org.uuid, "x2", "Open", dead, NULL);
    put_all(f->st, t, 3);
    int64_t dead_id = file_int(f->dir, "SELECT id FROM cases WHERE uuid = '%s'", dead);
    /* What the first transaction of case_delete leaves when the process dies after it (with
     * the first chunk not yet released, as for a case larger than one chunk). */
    sqlite3 *db = raw_open(f->dir);
    char sql[256];
    snprintf(sql, sizeof(sql),
             "DELETE FROM cases WHERE id = %lld;"
             " INSERT INTO case_releases (case_id, created_ms) VALUES (%lld, 1)",
             (long long)dead_id, (long long)dead_id);
    raw_exec(db, sql);
    sqlite3_close(db);

    assert_int_equal(sl_store_case_get(f->st, NULL, dead, &doc), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_events(f->st, dead, &doc), SL_ENOTFOUND);
    new_case(f->st, f->org.uuid, "fresh", fresh);
    assert_true(file_int(f->dir, "SELECT id FROM cases WHERE uuid = '%s'", fresh) > dead_id);
    cJSON *o = case_json(f->st, NULL, fresh);
    assert_int_equal(jint(o, "event_count"), 0);
    assert_int_equal(jint(o, "observable_count"), 0);
    cJSON_Delete(o);
    int64_t total = 0;
    struct sl_case_filter cf = {.severity = -1, .page = 1, .page_size = 10};
    assert_int_equal(sl_store_case_list(f->st, &cf, &doc, &total), 0);
    assert_int_equal(total, 1);
    free(doc);
    /* An event rewritten meanwhile loses the dangling link. */
    struct tev again;
    tev_make(&again, f->org.uuid, "x1", "Open", dead, NULL);
    again.row.effects = NULL;
    size_t updated = 0;
    assert_int_equal(sl_store_event_update(f->st, &again.row, 1, &updated), 0);
    expect_event(f->st, f->dir, f->org.uuid, t[1].uuid, "New", NULL);

    /* The next open finishes the release. */
    sl_store_close(f->st);
    f->st = open_store(f->dir);
    assert_int_equal(file_int(f->dir, "SELECT count(*) FROM case_releases"), 0);
    for (int i = 0; i < 3; i++)
        expect_event(f->st, f->dir, f->org.uuid, t[i].uuid, "New", NULL);

    /* And so does the next case_delete (of any case). */
    char other[SL_UUID_LEN + 1];
    new_case(f->st, f->org.uuid, "other", other);
    struct tev u;
    tev_make(&u, f->org.uuid, "y", "Open", fresh, NULL);
    put_all(f->st, &u, 1);
    int64_t fresh_id = file_int(f->dir, "SELECT id FROM cases WHERE uuid = '%s'", fresh);
    db = raw_open(f->dir);
    snprintf(sql, sizeof(sql),
             "DELETE FROM cases WHERE id = %lld;"
             " INSERT INTO case_releases (case_id, created_ms) VALUES (%lld, 1)",
             (long long)fresh_id, (long long)fresh_id);
    raw_exec(db, sql);
    sqlite3_close(db);
    int64_t n = -1;
    assert_int_equal(sl_store_case_delete(f->st, NULL, other, &n), 0);
    assert_int_equal(n, 0);
    expect_event(f->st, f->dir, f->org.uuid, u.uuid, "New", NULL);
    assert_int_equal(file_int(f->dir, "SELECT count(*) FROM case_releases"), 0);
}

/* ---- lists ---- */

static void test_list(void **state)
{
    struct fx *f = *state;
    char c[5][SL_UUID_LEN + 1], *json = NULL;
    const char *titles[] = {"Alpha wave", "beta WAVE", "gamma", "delta", "epsilon"};
    const char *orgs[] = {f->org.uuid, f->org.uuid, f->org.uuid, f->org2.uuid, f->org2.uuid};
    for (int i = 0; i < 5; i++) {
        struct sl_case_fields fl = fields(titles[i]);
        fl.severity = i % 3;
        fl.owner = i % 2 ? "bob" : "alice";
        fl.tags_json = i < 2 ? "[\"wave\",\"x\"]" : "[\"x\"]";
        sl_uuid4(c[i]);
        assert_int_equal(sl_store_case_create(f->st, orgs[i], c[i], &fl), 0);
        /* Distinct creation times, so the order is certain. */
        sqlite3 *db = raw_open(f->dir);
        char sql[256];
        snprintf(sql, sizeof(sql), "UPDATE cases SET created_ms = %d WHERE uuid = '%s'", 1000 + i,
                 c[i]);
        raw_exec(db, sql);
        sqlite3_close(db);
    }
    struct tev t;
    tev_make(&t, f->org.uuid, "e", "Open", c[2], NULL);
    put_all(f->st, &t, 1);
    assert_int_equal(sl_store_case_close(f->st, NULL, c[1], NULL, NULL, NULL, NULL), 0);

    struct {
        struct sl_case_filter f;
        int64_t total;
        const char *titles;
    } cases[] = {
        {{.org = f->org.uuid, .severity = -1, .page = 1, .page_size = 10},
         3,
         "gamma,beta WAVE,Alpha wave"},
        {{.severity = -1, .page = 1, .page_size = 10},
         5,
         "epsilon,delta,gamma,beta WAVE,Alpha wave"},
        {{.severity = -1, .page = 2, .page_size = 2}, 5, "gamma,beta WAVE"},
        {{.severity = -1, .page = 9, .page_size = 2}, 5, ""},
        {{.org = f->org.uuid, .title = "WaVe", .severity = -1, .page = 1, .page_size = 10},
         2,
         "beta WAVE,Alpha wave"},
        {{.tag = "wave", .severity = -1, .page = 1, .page_size = 10}, 2, "beta WAVE,Alpha wave"},
        {{.tag = "wav", .severity = -1, .page = 1, .page_size = 10}, 0, ""},
        {{.owner = "bob", .severity = -1, .page = 1, .page_size = 10}, 2, "delta,beta WAVE"},
        {{.severity = 0, .page = 1, .page_size = 10}, 2, "delta,Alpha wave"},
        {{.status = "Closed", .severity = -1, .page = 1, .page_size = 10}, 1, "beta WAVE"},
        {{.status = "New", .org = f->org2.uuid, .severity = -1, .page = 1, .page_size = 10},
         2,
         "epsilon,delta"},
        {{.status = "",
          .title = "",
          .tag = "",
          .owner = "",
          .org = f->org3.uuid,
          .severity = -1,
          .page = 1,
          .page_size = 10},
         0,
         ""},
        {{.org = "00000000-0000-4000-8000-000000000000",
          .severity = -1,
          .page = 1,
          .page_size = 10},
         0,
         ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t total = -1;
        char got[512];
        assert_int_equal(sl_store_case_list(f->st, &cases[i].f, &json, &total), 0);
        cJSON *a = cJSON_Parse(json);
        assert_non_null(a);
        joined(a, got, sizeof(got));
        if (total != cases[i].total || strcmp(got, cases[i].titles) != 0)
            fail_msg("list %zu: %lld \"%s\", expected %lld \"%s\"", i, (long long)total, got,
                     (long long)cases[i].total, cases[i].titles);
        cJSON_Delete(a);
        free(json);
    }
    /* A listed case is the case document without observable_count. */
    struct sl_case_filter one = {.title = "gamma", .severity = -1, .page = 1, .page_size = 1};
    int64_t total = 0;
    assert_int_equal(sl_store_case_list(f->st, &one, &json, &total), 0);
    cJSON *a = cJSON_Parse(json);
    cJSON *item = cJSON_GetArrayItem(a, 0);
    assert_int_equal(cJSON_GetArraySize(item), 19);
    assert_null(cJSON_GetObjectItem(item, "observable_count"));
    assert_int_equal(jint(item, "event_count"), 1);
    cJSON *full = case_json(f->st, NULL, c[2]);
    cJSON_DeleteItemFromObject(full, "observable_count");
    assert_true(cJSON_Compare(item, full, 1));
    cJSON_Delete(full);
    cJSON_Delete(a);
    free(json);

    struct sl_case_filter bad[] = {
        {.severity = -1, .page = 0, .page_size = 10},
        {.severity = -1, .page = 1, .page_size = 0},
        {.severity = -1, .page = 1, .page_size = 1001},
        {.severity = -1, .page = INT64_MAX, .page_size = 1000},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(sl_store_case_list(f->st, &bad[i], &json, &total), SL_EINVAL);
        assert_null(json);
    }
    assert_int_equal(sl_store_case_list(f->st, NULL, &json, &total), SL_EINVAL);
}

/* ---- observables ---- */

static void test_observables(void **state)
{
    struct fx *f = *state;
    char uuid[SL_UUID_LEN + 1], empty[SL_UUID_LEN + 1], *json = NULL;
    new_case(f->st, f->org.uuid, "obs", uuid);
    new_case(f->st, f->org.uuid, "none", empty);
    struct tev t[4];
    tev_make(&t[0], f->org.uuid, "o0", "Open", uuid,
             "[{\"value\":\"1.2.3.4\",\"data_type\":\"ip\"},"
             "{\"value\":\"evil.com\",\"data_type\":\"domain\",\"ioc\":true}]");
    tev_make(&t[1], f->org.uuid, "o1", "Open", uuid,
             "[{\"value\":\"1.2.3.4\",\"data_type\":\"ip\"},"
             "{\"value\":\"1.2.3.4\",\"data_type\":\"ip\"},"
             "{\"value\":\"evil.com\",\"data_type\":\"fqdn\"},\"junk\",{\"data_type\":\"ip\"}]");
    tev_make(&t[2], f->org.uuid, "o2", "Open", uuid,
             "[{\"value\":\"1.2.3.4\",\"data_type\":\"ip\"},{\"value\":\"a\\\"b\","
             "\"data_type\":\"user\"}]");
    tev_make(&t[3], f->org.uuid, "o3", "New", NULL, "[{\"value\":\"zzz\",\"data_type\":\"ip\"}]");
    put_all(f->st, t, 4);

    assert_int_equal(sl_store_case_observables(f->st, f->org.uuid, uuid, 100, &json), 0);
    cJSON *a = cJSON_Parse(json);
    assert_non_null(a);
    free(json);
    assert_int_equal(cJSON_GetArraySize(a), 4);
    const char *want[][2] = {
        {"1.2.3.4", "ip"}, {"a\"b", "user"}, {"evil.com", "domain"}, {"evil.com", "fqdn"}};
    const int64_t events[] = {3, 1, 1, 1};
    for (int i = 0; i < 4; i++) {
        const cJSON *o = cJSON_GetArrayItem(a, i);
        assert_int_equal(cJSON_GetArraySize(o), 3);
        assert_string_equal(jstr(o, "value"), want[i][0]);
        assert_string_equal(jstr(o, "data_type"), want[i][1]);
        assert_int_equal(jint(o, "events"), events[i]);
    }
    cJSON_Delete(a);
    cJSON *o = case_json(f->st, NULL, uuid);
    assert_int_equal(jint(o, "observable_count"), 4);
    assert_int_equal(jint(o, "event_count"), 3);
    cJSON_Delete(o);

    assert_int_equal(sl_store_case_observables(f->st, NULL, uuid, 1, &json), 0);
    assert_string_equal(json, "[{\"value\":\"1.2.3.4\",\"data_type\":\"ip\",\"events\":3}]");
    free(json);
    assert_int_equal(sl_store_case_observables(f->st, NULL, empty, 10, &json), 0);
    assert_string_equal(json, "[]");
    free(json);
    assert_int_equal(sl_store_case_observables(f->st, f->org2.uuid, uuid, 10, &json), SL_ENOTFOUND);
    assert_null(json);
    assert_int_equal(sl_store_case_observables(f->st, NULL, uuid, 0, &json), SL_EINVAL);
    assert_int_equal(sl_store_case_observables(f->st, NULL, uuid, 10001, &json), SL_EINVAL);
}

/* ---- comments ---- */

static void test_comments(void **state)
{
    struct fx *f = *state;
    char uuid[SL_UUID_LEN + 1], other[SL_UUID_LEN + 1], *json = NULL;
    new_case(f->st, f->org.uuid, "talk", uuid);
    new_case(f->st, f->org.uuid, "other", other);
    int64_t before = sl_now_ms();
    assert_int_equal(
        sl_store_case_comment_add(f->st, f->org.uuid, uuid, "k1", "first \"one\"", &json), 0);
    cJSON *c1 = cJSON_Parse(json);
    free(json);
    assert_int_equal(cJSON_GetArraySize(c1), 5);
    assert_true(sl_uuid_valid(jstr(c1, "uuid")));
    assert_string_equal(jstr(c1, "case"), uuid);
    assert_string_equal(jstr(c1, "author"), "k1");
    assert_string_equal(jstr(c1, "text"), "first \"one\"");
    int64_t at = 0;
    assert_int_equal(sl_time_parse(jstr(c1, "created_at"), 24, &at), 0);
    assert_true(at >= before);
    assert_int_equal(sl_store_case_comment_add(f->st, NULL, uuid, "k2", "second", NULL), 0);
    assert_int_equal(sl_store_case_comment_add(f->st, NULL, other, "k2", "elsewhere", NULL), 0);

    assert_int_equal(sl_store_case_comment_list(f->st, f->org.uuid, uuid, &json), 0);
    cJSON *a = cJSON_Parse(json);
    free(json);
    assert_int_equal(cJSON_GetArraySize(a), 2);
    assert_true(cJSON_Compare(cJSON_GetArrayItem(a, 0), c1, 1));
    assert_string_equal(jstr(cJSON_GetArrayItem(a, 1), "text"), "second");
    char second[SL_UUID_LEN + 1];
    snprintf(second, sizeof(second), "%s", jstr(cJSON_GetArrayItem(a, 1), "uuid"));
    cJSON_Delete(a);

    /* Deleting: only the case's own comment, once. */
    assert_int_equal(sl_store_case_comment_delete(f->st, NULL, other, second), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_comment_delete(f->st, f->org2.uuid, uuid, second), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_comment_delete(f->st, NULL, uuid, "nope"), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_comment_delete(f->st, f->org.uuid, uuid, second), 0);
    assert_int_equal(sl_store_case_comment_delete(f->st, f->org.uuid, uuid, second), SL_ENOTFOUND);
    assert_int_equal(sl_store_case_comment_list(f->st, NULL, uuid, &json), 0);
    a = cJSON_Parse(json);
    free(json);
    assert_int_equal(cJSON_GetArraySize(a), 1);
    cJSON_Delete(a);
    cJSON_Delete(c1);

    /* Bad input; unknown case or another organization's. */
    char big[SL_CASE_TEXT_MAX + 2];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_int_equal(sl_store_case_comment_add(f->st, NULL, uuid, "k1", "", &json), SL_EINVAL);
    assert_int_equal(sl_store_case_comment_add(f->st, NULL, uuid, "k1", big, &json), SL_EINVAL);
    big[SL_CASE_TEXT_MAX] = 0;
    assert_int_equal(sl_store_case_comment_add(f->st, NULL, uuid, "k1", big, NULL), 0);
    assert_int_equal(sl_store_case_comment_add(f->st, NULL, uuid, "", "t", &json), SL_EINVAL);
    assert_int_equal(sl_store_case_comment_add(f->st, NULL, uuid, NULL, "t", &json), SL_EINVAL);
    assert_int_equal(sl_store_case_comment_add(f->st, f->org2.uuid, uuid, "k1", "t", &json),
                     SL_ENOTFOUND);
    assert_null(json);
    assert_int_equal(sl_store_case_comment_list(f->st, f->org2.uuid, uuid, &json), SL_ENOTFOUND);
    char unknown[SL_UUID_LEN + 1];
    sl_uuid4(unknown);
    assert_int_equal(sl_store_case_comment_add(f->st, NULL, unknown, "k1", "t", &json),
                     SL_ENOTFOUND);
}

/* ---- migration from schema version 2 ---- */

/* Version 2 as it was written: version 1's tables, then version 2's. */
static const char v2_schema[] =
    "CREATE TABLE orgs (id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE,"
    " name TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL,"
    " is_default INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX orgs_default ON orgs(is_default) WHERE is_default = 1;"
    "CREATE TABLE api_keys (hash TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE,"
    " org_id INTEGER NOT NULL REFERENCES orgs(id),"
    " role TEXT NOT NULL CHECK (role IN ('admin', 'analyst', 'agent')),"
    " created_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, org_id INTEGER NOT NULL, uuid TEXT NOT NULL,"
    " reference TEXT NOT NULL, title TEXT, signature TEXT, status TEXT,"
    " severity INTEGER NOT NULL, original_date_ms INTEGER NOT NULL,"
    " created_ms INTEGER NOT NULL, origin INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE INDEX events_org_date ON events(org_id, original_date_ms);"
    "CREATE TABLE event_keys (k INTEGER PRIMARY KEY, seq INTEGER NOT NULL);"
    "CREATE TABLE event_keys_recent (k INTEGER PRIMARY KEY, seq INTEGER NOT NULL);"
    "CREATE TABLE store_state (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " recent_keys INTEGER NOT NULL, meta_version INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO store_state (id, recent_keys) VALUES (1, 0);"
    "CREATE TABLE event_counts (org_id INTEGER PRIMARY KEY REFERENCES orgs(id),"
    " n INTEGER NOT NULL);"
    "CREATE TABLE meta (id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, uuid TEXT NOT NULL UNIQUE,"
    " org_id INTEGER NOT NULL REFERENCES orgs(id), name TEXT NOT NULL,"
    " global INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 0,"
    " last_hit_ms INTEGER NOT NULL DEFAULT 0, UNIQUE (kind, org_id, name));"
    "CREATE INDEX meta_global ON meta(kind, name) WHERE global = 1;"
    "CREATE TABLE list_values (id INTEGER PRIMARY KEY, list_id INTEGER NOT NULL,"
    " value TEXT NOT NULL, expire_at_ms INTEGER NOT NULL DEFAULT 0, UNIQUE (list_id, value));"
    "CREATE INDEX list_values_list ON list_values(list_id);"
    "CREATE INDEX list_values_expiry ON list_values(expire_at_ms) WHERE expire_at_ms > 0;"
    "CREATE TABLE mutes (org_id INTEGER NOT NULL REFERENCES orgs(id), signature TEXT NOT NULL,"
    " until_ms INTEGER NOT NULL, rule_uuid TEXT, PRIMARY KEY (org_id, signature)) WITHOUT ROWID;"
    "CREATE TABLE cases (id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE,"
    " org_id INTEGER NOT NULL REFERENCES orgs(id), title TEXT NOT NULL,"
    " description TEXT NOT NULL DEFAULT '', severity INTEGER NOT NULL, tlp INTEGER NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'Open', tags TEXT NOT NULL DEFAULT '[]', event_rule TEXT,"
    " case_template TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
    "CREATE TABLE case_events (case_id INTEGER NOT NULL REFERENCES cases(id),"
    " event_uuid TEXT NOT NULL, PRIMARY KEY (case_id, event_uuid)) WITHOUT ROWID;"
    "PRAGMA application_id = 1397506885;"
    "PRAGMA user_version = 2;";

/* Version 2's tasks, which files written at version 2 before it existed lack. */
static const char v2_tasks[] =
    "CREATE TABLE tasks (id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE,"
    " org_id INTEGER NOT NULL REFERENCES orgs(id), kind TEXT NOT NULL,"
    " state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed')),"
    " ref TEXT NOT NULL DEFAULT '', total INTEGER NOT NULL DEFAULT 0,"
    " done INTEGER NOT NULL DEFAULT 0, matched INTEGER NOT NULL DEFAULT 0,"
    " created_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL DEFAULT 0,"
    " finished_ms INTEGER NOT NULL DEFAULT 0, updated_ms INTEGER NOT NULL,"
    " error TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX tasks_state ON tasks(state, created_ms);";

#define V2_ORG1  "11111111-1111-4111-8111-111111111111"
#define V2_ORG2  "22222222-2222-4222-8222-222222222222"
#define V2_CASE1 "c1c1c1c1-0000-4000-8000-000000000001"
#define V2_CASE2 "c2c2c2c2-0000-4000-8000-000000000002"

/* A version 2 file: two organizations, two rule cases of the first, four events (two in case
 * 1, one moved to the second organization but linked to case 2 of the first, one in none). No
 * event keys: the test reads events through cases and the file. */
static void write_v2(const char *dir, struct tev evs[4], int with_tasks)
{
    char sql[4096];
    sqlite3 *db = raw_open(dir);
    raw_exec(db, "PRAGMA journal_mode = WAL");
    raw_exec(db, v2_schema);
    if (with_tasks)
        raw_exec(db, v2_tasks);
    raw_exec(db, "INSERT INTO orgs VALUES (1, '" V2_ORG1 "', 'default', 1000, 1),"
                 " (2, '" V2_ORG2 "', 'other', 2000, 0);"
                 "INSERT INTO cases (id, uuid, org_id, title, severity, tlp, status, created_ms,"
                 " updated_ms) VALUES (1, '" V2_CASE1 "', 1, 'one', 2, 2, 'Open', 5, 5),"
                 " (2, '" V2_CASE2 "', 1, 'two', 3, 2, 'Open', 6, 6);");
    tev_make(&evs[0], V2_ORG1, "a", "Open", V2_CASE1, "[{\"value\":\"v\",\"data_type\":\"ip\"}]");
    tev_make(&evs[1], V2_ORG1, "b", "Open", V2_CASE1, NULL);
    tev_make(&evs[2], V2_ORG2, "c", "Open", V2_CASE2, NULL);
    tev_make(&evs[3], V2_ORG1, "d", "New", NULL, NULL);
    for (int i = 0; i < 4; i++) {
        snprintf(sql, sizeof(sql),
                 "INSERT INTO events VALUES (%d, %d, '%s', '%s', 'title', '%s', '%s', 2, 1000,"
                 " 1000, %d, '%s');",
                 i + 1, i == 2 ? 2 : 1, evs[i].uuid, evs[i].ref, evs[i].sig, evs[i].status, i + 1,
                 evs[i].doc);
        raw_exec(db, sql);
        if (evs[i].fx.case_uuid) {
            snprintf(sql, sizeof(sql), "INSERT INTO case_events VALUES (%d, '%s')", i < 2 ? 1 : 2,
                     evs[i].uuid);
            raw_exec(db, sql);
        }
    }
    raw_exec(db, "INSERT INTO event_counts VALUES (1, 3), (2, 1);");
    sqlite3_close(db);
}

static void test_migrate_v2(void **state)
{
    (void)state;
    char dir[64], *json = NULL;
    struct tev evs[4];
    make_tmpdir(dir);
    write_v2(dir, evs, 1);
    struct sl_store *st = open_store(dir);
    sqlite3 *db = raw_open(dir);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), 3);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'case_events'"),
                     0);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM events WHERE case_id = 1"), 2);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM events WHERE case_id IS NOT NULL"), 2);
    /* The link across organizations is dropped: the event is New, without "case". */
    assert_int_equal(raw_int(db, "SELECT count(*) FROM events WHERE seq = 3 AND status = 'New'"
                                 " AND json_extract(doc, '$.status.name') = 'New'"
                                 " AND json_extract(doc, '$.case') IS NULL"),
                     1);
    /* The planner reaches a case's events through the partial index. */
    sqlite3_stmt *q = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "EXPLAIN QUERY PLAN SELECT count(*) FROM events"
                                        " WHERE case_id = 1",
                                        -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_non_null(strstr((const char *)sqlite3_column_text(q, 3), "events_case"));
    sqlite3_finalize(q);
    sqlite3_close(db);

    cJSON *o = case_json(st, V2_ORG1, V2_CASE1);
    assert_string_equal(jstr(o, "status"), "New");
    assert_int_equal(jint(o, "event_count"), 2);
    assert_int_equal(jint(o, "observable_count"), 1);
    expect_joined(o, "tasks", "");
    assert_string_equal(jstr(o, "owner"), "");
    cJSON_Delete(o);
    o = case_json(st, V2_ORG1, V2_CASE2);
    assert_int_equal(jint(o, "event_count"), 0);
    cJSON_Delete(o);
    assert_int_equal(sl_store_case_events(st, V2_CASE1, &json), 0);
    char want[128];
    snprintf(want, sizeof(want), "[\"%s\",\"%s\"]", evs[0].uuid, evs[1].uuid);
    assert_string_equal(json, want);
    free(json);
    /* The migrated store takes new cases and comments. */
    char c[SL_UUID_LEN + 1];
    new_case(st, V2_ORG2, "new", c);
    assert_int_equal(sl_store_case_comment_add(st, NULL, c, "k", "hello", NULL), 0);
    sl_store_close(st);
    remove_tree(dir);
}

/* A version 2 file written before tasks existed gets them, as version 3 has them. */
static void test_migrate_v2_without_tasks(void **state)
{
    (void)state;
    char dir[64];
    struct tev evs[4];
    make_tmpdir(dir);
    write_v2(dir, evs, 0);
    struct sl_store *st = open_store(dir);
    struct sl_task t, got;
    memset(&t, 0, sizeof(t));
    sl_uuid4(t.id);
    snprintf(t.org, sizeof(t.org), "%s", V2_ORG1);
    snprintf(t.kind, sizeof(t.kind), "retro_apply_event_rule");
    snprintf(t.state, sizeof(t.state), "pending");
    assert_int_equal(sl_store_task_put(st, &t), 0);
    assert_int_equal(sl_store_task_get(st, t.id, &got), 0);
    assert_string_equal(got.state, "pending");
    sqlite3 *db = raw_open(dir);
    assert_int_equal(raw_int(db, "PRAGMA user_version"), 3);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_master WHERE name = 'tasks_state'"),
                     1);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM pragma_table_info('tasks')"
                                 " WHERE name IN ('params', 'cursor')"),
                     2);
    assert_int_equal(raw_int(db, "SELECT count(*) FROM events WHERE case_id = 1"), 2);
    sqlite3_close(db);
    sl_store_close(st);
    remove_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_template, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_effects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_docs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_interrupted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_observables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_comments, setup, teardown),
        cmocka_unit_test(test_migrate_v2),
        cmocka_unit_test(test_migrate_v2_without_tasks),
    };
    sl_log_level_current = SL_LOG_WARN;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
