/* The Event Rule endpoints: create, read, update and delete rules (validated: the query
 * compiles, the lists it names exist, every action has its parameter), and test_rql, which runs
 * a query against an organization's recent events. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "processor/retro.h"
#include "core/arena.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "rules/rql.h"
#include "rules/ruleset.h"

#define WHAT            "event rule"
#define TEXT_MAX        65536
#define DAY_MS          INT64_C(86400000)
#define TEST_PAGE       1000  /* events per store page in test_rql */
#define TEST_DEADLINE   10000 /* ms test_rql may spend reading and evaluating */
#define TEST_SAMPLES    10
#define TEST_WARN_RATIO 0.3

static const struct sl_api_field rule_fields[] = {
    {"uuid", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"organization", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"name", SL_FT_STR, 1, SL_META_NAME_MAX, SL_FF_REQUIRED | SL_FF_LINE, NULL},
    {"description", SL_FT_STR, 0, TEXT_MAX, 0, "\"\""},
    {"query", SL_FT_STR, 1, SL_RQL_MAX_QUERY, SL_FF_REQUIRED, NULL},
    {"priority", SL_FT_INT, 1, 65535, 0, "1"},
    {"active", SL_FT_BOOL, 0, 0, 0, "true"},
    {"global_rule", SL_FT_BOOL, 0, 0, 0, "false"},
    {"expire", SL_FT_BOOL, 0, 0, 0, "false"},
    {"expire_days", SL_FT_INT, 1, 3650, 0, "1"},
    {"expire_at", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"run_retroactively", SL_FT_BOOL, 0, 0, 0, "false"},
    {"skip_previous_match", SL_FT_BOOL, 0, 0, 0, "false"},
    {"add_tags", SL_FT_BOOL, 0, 0, 0, "false"},
    {"tags_to_add", SL_FT_TAGS, 0, 100, 0, "[]"},
    {"remove_tags", SL_FT_BOOL, 0, 0, 0, "false"},
    {"tags_to_remove", SL_FT_TAGS, 0, 100, 0, "[]"},
    {"dismiss", SL_FT_BOOL, 0, 0, 0, "false"},
    {"dismiss_reason", SL_FT_UUID, 0, 0, SL_FF_NULL, NULL},
    {"dismiss_comment", SL_FT_STR, 0, TEXT_MAX, 0, "\"\""},
    {"merge_into_case", SL_FT_BOOL, 0, 0, 0, "false"},
    {"target_case_uuid", SL_FT_UUID, 0, 0, SL_FF_NULL, NULL},
    {"create_new_case", SL_FT_BOOL, 0, 0, 0, "false"},
    {"case_template", SL_FT_UUID, 0, 0, SL_FF_NULL, NULL},
    {"update_severity", SL_FT_BOOL, 0, 0, 0, "false"},
    {"target_severity", SL_FT_INT, 0, 4, SL_FF_NULL, NULL},
    {"set_organization", SL_FT_BOOL, 0, 0, 0, "false"},
    {"target_organization", SL_FT_UUID, 0, 0, SL_FF_NULL, NULL},
    {"mute_event", SL_FT_BOOL, 0, 0, 0, "false"},
    {"mute_period", SL_FT_INT, 1, 525600, SL_FF_NULL, NULL},
    {"notes", SL_FT_STR, 0, TEXT_MAX, 0, "\"\""},
    {"created_by", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"retro_task", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
};
#define NRULE_FIELDS (sizeof(rule_fields) / sizeof(rule_fields[0]))

static const struct sl_api_field test_fields[] = {
    {"query", SL_FT_STR, 1, SL_RQL_MAX_QUERY, SL_FF_REQUIRED, NULL},
    {"event_count", SL_FT_INT, 1, 10000, 0, "1000"},
    {"return_results", SL_FT_BOOL, 0, 0, 0, "true"},
    {"start", SL_FT_STR, 1, 64, SL_FF_NULL, NULL},
    {"end", SL_FT_STR, 1, 64, SL_FF_NULL, NULL},
};

static int flag(const cJSON *doc, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, name));
}

/* The string member name of doc, or NULL (absent or null). */
static const char *str(const cJSON *doc, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int given(const cJSON *body, const char *name)
{
    return body && cJSON_GetObjectItemCaseSensitive(body, name) != NULL;
}

/* ---- validation ---- */

/* Compiles the query text; on failure answers 400 with the line and column. */
static int compile(struct sl_http_req *req, const char *text, struct sl_rql **out)
{
    struct sl_rql_error rerr;
    char err[400];
    memset(&rerr, 0, sizeof(rerr));
    int rc = sl_rql_compile(text, strlen(text), out, &rerr);
    if (rc == SL_EINVAL) {
        snprintf(err, sizeof(err), "query: line %d, column %d: %s", rerr.line, rerr.col, rerr.msg);
        cJSON *x = cJSON_CreateObject();
        if (x) {
            cJSON_AddNumberToObject(x, "line", rerr.line);
            cJSON_AddNumberToObject(x, "column", rerr.col);
        }
        sl_api_meta_reply_invalid_json(req, err, x);
    } else if (rc) {
        sl_api_meta_reply(req, 503, NULL);
    }
    return rc;
}

/* Every intel list prog names must be a list of org or a global one. Answers 400 (or 503). */
/* Every list a query names must be one the rule will see: its organization's or a global one;
 * a global rule runs on every organization's events, so it may only name global lists (another
 * organization's list of that name would answer for it). */
static int check_list_refs(struct sl_api_meta_ctx *c, const struct sl_rql *prog, int global)
{
    const char *const *names;
    size_t nrefs = sl_rql_list_refs(prog, &names);
    struct sl_meta *ms = NULL;
    size_t n = 0;
    char err[400];
    if (nrefs == 0)
        return 0;
    int rc = sl_store_meta_list(c->st, SL_META_LIST, c->org, 1, &ms, &n);
    if (rc) {
        sl_api_meta_reply_store(c->req, rc, "intel list", NULL);
        return rc;
    }
    for (size_t i = 0; i < nrefs && rc == 0; i++) {
        int found = 0;
        for (size_t k = 0; k < n && !found; k++)
            found = strcmp(ms[k].name, names[i]) == 0 && (!global || ms[k].global);
        if (!found) {
            snprintf(err, sizeof(err),
                     global ? "query: no global intel list named '%.256s' (a global rule may "
                              "only use global lists)"
                            : "query: no intel list named '%.256s'",
                     names[i]);
            sl_api_meta_reply_invalid(c->req, err);
            rc = SL_EINVAL;
        }
    }
    sl_store_meta_free(ms, n);
    return rc;
}

/* The flag's parameter must be set when the flag is; err names the parameter. */
static int need(const cJSON *doc, const char *flag_name, const char *param, int nonempty_array,
                char *err, size_t errlen)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(doc, param);
    if (!flag(doc, flag_name))
        return 0;
    if (!p || cJSON_IsNull(p) || (nonempty_array && cJSON_GetArraySize(p) == 0)) {
        sl_set_err(err, errlen, "%s: required when %s is true", param, flag_name);
        return SL_EINVAL;
    }
    return 0;
}

/* The objects the rule's actions name exist where the rule may use them. Checked when the rule
 * is created or the action or its parameter is in the body, so an unrelated edit of a rule
 * whose case went away still works. */
static int check_refs(struct sl_api_meta_ctx *c, const cJSON *doc, int create, char *err,
                      size_t errlen)
{
    const cJSON *b = create ? NULL : c->body;
    const char *u;
    int rc = 0;
    if (flag(doc, "dismiss") && (create || given(b, "dismiss") || given(b, "dismiss_reason"))) {
        struct sl_meta m = {0};
        u = str(doc, "dismiss_reason");
        rc = sl_store_meta_get(c->st, SL_META_CLOSE_REASON, u, &m);
        free(m.doc);
        if (rc == SL_ENOTFOUND ||
            (rc == 0 && strcmp(m.org, c->org) != 0 && strcmp(m.org, c->default_org) != 0)) {
            sl_set_err(err, errlen,
                       "dismiss_reason: no close reason %s in the rule's "
                       "organization or the default organization",
                       u);
            return SL_EINVAL;
        }
        if (rc)
            return rc;
    }
    if (flag(doc, "merge_into_case") &&
        (create || given(b, "merge_into_case") || given(b, "target_case_uuid"))) {
        char *cdoc = NULL;
        u = str(doc, "target_case_uuid");
        rc = sl_store_case_get(c->st, c->org, u, &cdoc);
        free(cdoc);
        if (rc == SL_ENOTFOUND) {
            sl_set_err(err, errlen, "target_case_uuid: no case %s in the rule's organization", u);
            return SL_EINVAL;
        }
        if (rc)
            return rc;
    }
    u = str(doc, "case_template");
    if (u && (create || given(b, "case_template") || given(b, "create_new_case"))) {
        struct sl_meta m = {0};
        rc = sl_store_meta_get(c->st, SL_META_CASE_TEMPLATE, u, &m);
        free(m.doc);
        if (rc == SL_ENOTFOUND ||
            (rc == 0 && strcmp(m.org, c->org) != 0 && strcmp(m.org, c->default_org) != 0)) {
            sl_set_err(err, errlen,
                       "case_template: no case template %s in the rule's organization or the "
                       "default organization",
                       u);
            return SL_EINVAL;
        }
        if (rc)
            return rc;
    }
    if (flag(doc, "set_organization") &&
        (create || given(b, "set_organization") || given(b, "target_organization"))) {
        struct sl_org org;
        u = str(doc, "target_organization");
        rc = sl_store_org_get(c->st, u, NULL, &org);
        if (rc == SL_ENOTFOUND) {
            sl_set_err(err, errlen, "target_organization: no organization %s", u);
            return SL_EINVAL;
        }
    }
    return rc;
}

static int refuse(char *err, size_t errlen, const char *msg)
{
    sl_set_err(err, errlen, "%s", msg);
    return SL_EINVAL;
}

/* Checks a whole rule document (after the field table): the query compiles and names existing
 * lists, each action has its parameter, the organization may use what the rule asks for.
 * Answers and returns non-zero on failure. */
static int check_rule(struct sl_api_meta_ctx *c, const cJSON *doc, int create)
{
    struct sl_rql *prog = NULL;
    char err[512];
    int is_default = strcmp(c->org, c->default_org) == 0;
    int rc = compile(c->req, str(doc, "query"), &prog);
    if (rc)
        return rc;
    if (create || given(c->body, "query") || given(c->body, "global_rule"))
        rc = check_list_refs(c, prog, flag(doc, "global_rule"));
    sl_rql_free(prog);
    if (rc)
        return rc;
    rc = need(doc, "add_tags", "tags_to_add", 1, err, sizeof(err));
    if (!rc)
        rc = need(doc, "remove_tags", "tags_to_remove", 1, err, sizeof(err));
    if (!rc)
        rc = need(doc, "dismiss", "dismiss_reason", 0, err, sizeof(err));
    if (!rc)
        rc = need(doc, "merge_into_case", "target_case_uuid", 0, err, sizeof(err));
    if (!rc)
        rc = need(doc, "update_severity", "target_severity", 0, err, sizeof(err));
    if (!rc)
        rc = need(doc, "set_organization", "target_organization", 0, err, sizeof(err));
    if (!rc)
        rc = need(doc, "mute_event", "mute_period", 0, err, sizeof(err));
    if (!rc && flag(doc, "create_new_case") && flag(doc, "merge_into_case"))
        rc = refuse(err, sizeof(err),
                    "create_new_case: cannot be combined with merge_into_case "
                    "(an event joins one case)");
    if (!rc && flag(doc, "global_rule") && !is_default)
        rc = refuse(err, sizeof(err),
                    "global_rule: only rules of the default organization may "
                    "be global");
    if (!rc && flag(doc, "set_organization") && !is_default)
        rc = refuse(err, sizeof(err),
                    "set_organization: only rules of the default organization "
                    "may move events to another organization");
    if (!rc)
        rc = check_refs(c, doc, create, err, sizeof(err));
    if (rc == SL_EINVAL)
        sl_api_meta_reply_invalid(c->req, err);
    else if (rc)
        sl_api_meta_reply_store(c->req, rc, WHAT, NULL);
    return rc;
}

/* expire_at = now + expire_days when expire is set, else null. */
static int set_expiry(cJSON *doc)
{
    const cJSON *days = cJSON_GetObjectItemCaseSensitive(doc, "expire_days");
    cJSON *v;
    if (flag(doc, "expire") && cJSON_IsNumber(days)) {
        char iso[25];
        sl_time_format(sl_now_ms() + (int64_t)days->valuedouble * DAY_MS, iso);
        v = cJSON_CreateString(iso);
    } else {
        v = cJSON_CreateNull();
    }
    if (!v)
        return SL_ENOMEM;
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "expire_at", v);
    return 0;
}

static int replace_str(cJSON *doc, const char *name, const char *value)
{
    cJSON *v = cJSON_CreateString(value);
    if (!v)
        return SL_ENOMEM;
    cJSON_ReplaceItemInObjectCaseSensitive(doc, name, v);
    return 0;
}

/* ---- CRUD ---- */

int sl_api_rule_doc_new(const cJSON *body, const char *uuid, const char *org, const char *by,
                        cJSON **out, char *err, size_t errlen)
{
    cJSON *doc = cJSON_CreateObject();
    int rc =
        doc ? sl_api_meta_apply(rule_fields, NRULE_FIELDS, body, doc, 1, err, errlen) : SL_ENOMEM;
    if (!rc)
        rc = replace_str(doc, "uuid", uuid);
    if (!rc)
        rc = replace_str(doc, "organization", org);
    if (!rc)
        rc = replace_str(doc, "created_by", by);
    if (!rc)
        rc = set_expiry(doc);
    if (rc) {
        cJSON_Delete(doc);
        doc = NULL;
    }
    *out = doc;
    return rc;
}

enum sl_http_next sl_api_rule_list(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta *ms = NULL;
    size_t n = 0;
    if (sl_api_meta_open(api, req, 0, &c) == 0) {
        int rc = sl_store_meta_list(c.st, SL_META_RULE, c.org, 1, &ms, &n);
        if (rc)
            sl_api_meta_reply_store(req, rc, WHAT, NULL);
        else
            sl_api_meta_reply_list(&c, SL_META_RULE, "event_rules", ms, n, NULL);
        sl_store_meta_free(ms, n);
    }
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

enum sl_http_next sl_api_rule_get(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    if (sl_api_meta_open(api, req, 0, &c) == 0 &&
        sl_api_meta_load(&c, SL_META_RULE, WHAT, 0, &m) == 0) {
        cJSON *o = sl_api_meta_render(SL_META_RULE, &m);
        sl_api_meta_reply(req, 200, o);
        cJSON_Delete(o);
    }
    free(m.doc);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* run_retroactively: a task that applies the rule to the stored New events (run by worker 0,
 * processor/retro.c); its id goes into the rule as retro_task, for GET /api/v2.0/task/<id>. */
static int start_retro(struct sl_api_meta_ctx *c, const char *rule_uuid, cJSON *doc)
{
    struct sl_task t;
    memset(&t, 0, sizeof(t));
    sl_uuid4(t.id);
    snprintf(t.org, sizeof(t.org), "%s", c->org);
    snprintf(t.kind, sizeof(t.kind), "%s", SL_TASK_RETRO);
    snprintf(t.state, sizeof(t.state), "pending");
    snprintf(t.ref, sizeof(t.ref), "%s", rule_uuid);
    t.created_ms = sl_now_ms();
    int rc = sl_store_task_put(c->st, &t);
    return rc ? rc : replace_str(doc, "retro_task", t.id);
}

static void reply_apply_error(struct sl_http_req *req, int rc, const char *err)
{
    if (rc == SL_EINVAL)
        sl_api_meta_reply_invalid(req, err);
    else
        sl_api_meta_reply(req, 503, NULL);
}

void sl_api_rule_create(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    cJSON *doc = NULL;
    char err[512];
    int rc;
    if (sl_api_meta_open(api, req, 1, &c) != 0)
        goto out;
    sl_uuid4(m.uuid);
    memcpy(m.org, c.org, sizeof(m.org));
    rc = sl_api_rule_doc_new(c.body, m.uuid, m.org, c.who->key_id, &doc, err, sizeof(err));
    if (rc) {
        reply_apply_error(req, rc, err);
        goto out;
    }
    if (check_rule(&c, doc, 1) != 0)
        goto out;
    m.global = flag(doc, "global_rule");
    if (flag(doc, "run_retroactively"))
        rc = start_retro(&c, m.uuid, doc);
    if (rc) {
        sl_api_meta_reply(req, 503, NULL);
        goto out;
    }
    sl_api_meta_save(&c, SL_META_RULE, WHAT, doc, "name", &m, 1, NULL);
    if (req->status == 201)
        SL_INFO("event rule %s '%s' created by %s", m.uuid, m.name, c.who->key_id);
out:
    cJSON_Delete(doc);
    free(m.doc);
    sl_api_meta_close(&c);
}

void sl_api_rule_update(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    cJSON *doc = NULL;
    char err[512];
    int rc;
    if (sl_api_meta_open(api, req, 1, &c) != 0 || sl_api_meta_load(&c, SL_META_RULE, WHAT, 1, &m))
        goto out;
    doc = cJSON_Parse(m.doc);
    rc = cJSON_IsObject(doc)
             ? sl_api_meta_apply(rule_fields, NRULE_FIELDS, c.body, doc, 0, err, sizeof(err))
             : SL_ENOMEM;
    if (rc) {
        reply_apply_error(req, rc, err);
        goto out;
    }
    if (check_rule(&c, doc, 0) != 0)
        goto out;
    m.global = flag(doc, "global_rule");
    if ((given(c.body, "expire") || given(c.body, "expire_days")) && set_expiry(doc) != 0) {
        sl_api_meta_reply(req, 503, NULL);
        goto out;
    }
    /* Asking again (run_retroactively: true in the body) runs the rule again. */
    if (flag(c.body, "run_retroactively") && start_retro(&c, m.uuid, doc) != 0) {
        sl_api_meta_reply(req, 503, NULL);
        goto out;
    }
    sl_api_meta_save(&c, SL_META_RULE, WHAT, doc, "name", &m, 0, NULL);
out:
    cJSON_Delete(doc);
    free(m.doc);
    sl_api_meta_close(&c);
}

enum sl_http_next sl_api_rule_delete(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    if (sl_api_meta_open(api, req, 0, &c) == 0 &&
        sl_api_meta_load(&c, SL_META_RULE, WHAT, 1, &m) == 0) {
        int rc = sl_store_meta_delete(c.st, SL_META_RULE, m.uuid);
        if (rc) {
            sl_api_meta_reply_store(req, rc, WHAT, NULL);
        } else {
            cJSON *o = cJSON_CreateObject();
            if (o) {
                cJSON_AddStringToObject(o, "uuid", m.uuid);
                cJSON_AddBoolToObject(o, "deleted", 1);
            }
            sl_api_meta_reply(req, 200, o);
            cJSON_Delete(o);
            SL_INFO("event rule %s '%s' deleted by %s", m.uuid, m.name, c.who->key_id);
        }
    }
    free(m.doc);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* ---- test_rql ---- */

/* The ruleset test_rql evaluates intel(...) against: loaded once per meta version and shared
 * by concurrent requests (counted references; the cache holds one). */
struct cached_rules {
    struct sl_ruleset *rs;
    int64_t version;
    int refs;
};
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cached_rules *cache;

static void cached_put(struct cached_rules *cr)
{
    if (!cr)
        return;
    pthread_mutex_lock(&cache_lock);
    int last = --cr->refs == 0;
    pthread_mutex_unlock(&cache_lock);
    if (last) {
        sl_ruleset_free(cr->rs);
        free(cr);
    }
}

static int cached_get(struct sl_store *st, struct cached_rules **out, char *err, size_t errlen)
{
    int64_t version = 0;
    int rc = sl_store_meta_version(st, &version);
    if (rc)
        return rc;
    pthread_mutex_lock(&cache_lock);
    if (cache && cache->version == version) {
        cache->refs++;
        *out = cache;
        pthread_mutex_unlock(&cache_lock);
        return 0;
    }
    pthread_mutex_unlock(&cache_lock);
    /* Loading compiles every list: done outside the lock; a concurrent load may win. */
    struct cached_rules *cr = calloc(1, sizeof(*cr)), *old = NULL;
    if (!cr)
        return SL_ENOMEM;
    rc = sl_ruleset_load(st, sl_now_ms(), &cr->rs, err, errlen);
    if (rc) {
        free(cr);
        return rc;
    }
    cr->version = version;
    cr->refs = 2; /* the cache's and the caller's */
    pthread_mutex_lock(&cache_lock);
    if (!cache || cache->version < version) {
        old = cache;
        cache = cr;
    } else {
        cr->refs = 1; /* the cache is as new: keep it, use ours once */
    }
    pthread_mutex_unlock(&cache_lock);
    cached_put(old);
    *out = cr;
    return 0;
}

void sl_api_rule_cache_fini(void)
{
    pthread_mutex_lock(&cache_lock);
    struct cached_rules *cr = cache;
    cache = NULL;
    pthread_mutex_unlock(&cache_lock);
    cached_put(cr);
}

struct test_run {
    const struct sl_rql *prog;
    struct sl_rql_env env;
    struct sl_arena *scratch;
    int64_t count;
    int samples_wanted;
    int64_t tested, hits, errors;
    int stopped; /* the deadline passed before count events were tested */
    cJSON *samples;
};

/* Evaluates the query against one page of events (a JSON array). Returns the events seen. */
static int64_t test_page(struct test_run *t, const cJSON *page)
{
    const cJSON *ev;
    int64_t seen = 0;
    cJSON_ArrayForEach(ev, page)
    {
        if (t->tested >= t->count)
            break;
        struct sl_rql_input in = {.event = ev};
        int oom = 0;
        int hit = sl_rql_match(t->prog, &in, &t->env, t->scratch, &oom);
        sl_rql_input_fini(&in);
        sl_arena_reset(t->scratch);
        seen++;
        t->tested++;
        t->errors += oom != 0;
        if (!hit)
            continue;
        t->hits++;
        if (t->samples_wanted && cJSON_GetArraySize(t->samples) < TEST_SAMPLES)
            cJSON_AddItemToArray(t->samples, cJSON_Duplicate(ev, 1));
    }
    return seen;
}

/* Reads the organization's newest events page by page (smaller pages when one is over the
 * store's page size limit) and tests each. Returns 0 or the store's error. */
static int test_events(struct sl_store *st, struct sl_event_filter *f, struct test_run *t)
{
    int64_t deadline = sl_mono_ms() + TEST_DEADLINE;
    f->page_size = t->count < TEST_PAGE ? t->count : TEST_PAGE;
    while (t->tested < t->count) {
        char *json = NULL;
        int64_t total = 0;
        f->page = t->tested / f->page_size + 1;
        int rc = sl_store_event_list(st, f, &json, &total);
        if (rc == SL_EFULL && f->page_size > 1) {
            f->page_size = f->page_size / 10 ? f->page_size / 10 : 1;
            continue;
        }
        if (rc)
            return rc;
        cJSON *page = cJSON_Parse(json);
        free(json);
        if (!page)
            return SL_ENOMEM;
        int64_t seen = test_page(t, page);
        cJSON_Delete(page);
        if (seen < f->page_size)
            break; /* no more events (or count reached) */
        if (t->tested < t->count && sl_mono_ms() > deadline) {
            t->stopped = 1;
            break;
        }
    }
    return 0;
}

static int test_times(struct sl_http_req *req, const cJSON *doc, struct sl_event_filter *f)
{
    static const char *const names[] = {"start", "end"};
    int64_t *outs[] = {&f->start_ms, &f->end_ms};
    char err[200];
    for (int i = 0; i < 2; i++) {
        const char *v = str(doc, names[i]);
        if (v && sl_time_parse(v, strlen(v), outs[i]) != 0) {
            snprintf(err, sizeof(err),
                     "%s: expected an ISO 8601 date or date-time "
                     "(2024-05-01 or 2024-05-01T12:00:00Z), got \"%.48s\"",
                     names[i], v);
            sl_api_meta_reply_invalid(req, err);
            return SL_EINVAL;
        }
    }
    if (f->start_ms && f->end_ms && f->start_ms > f->end_ms) {
        sl_api_meta_reply_invalid(req, "start: expected a time before end");
        return SL_EINVAL;
    }
    return 0;
}

static void reply_test(struct sl_http_req *req, const struct test_run *t)
{
    double ratio = t->tested ? (double)t->hits / (double)t->tested : 0.0;
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "tested", (double)t->tested);
        cJSON_AddNumberToObject(o, "hits", (double)t->hits);
        cJSON_AddNumberToObject(o, "hit_ratio", ratio);
        if (ratio > TEST_WARN_RATIO)
            cJSON_AddStringToObject(o, "warning",
                                    "the query matches more than 30 % of recent "
                                    "events");
        if (t->errors)
            cJSON_AddNumberToObject(o, "evaluation_errors", (double)t->errors);
        if (t->stopped)
            cJSON_AddBoolToObject(o, "stopped_early", 1);
        if (t->samples_wanted)
            cJSON_AddItemReferenceToObject(o, "samples", t->samples);
        cJSON_AddNumberToObject(o, "took_ms", (double)sl_http_req_elapsed_us(req) / 1000.0);
    }
    sl_api_meta_reply(req, 200, o);
    cJSON_Delete(o);
}

void sl_api_rule_test(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_rql *prog = NULL;
    struct cached_rules *cr = NULL;
    struct test_run t = {0};
    cJSON *doc = NULL;
    char err[512];
    int rc;
    if (sl_api_meta_open(api, req, 1, &c) != 0)
        goto out;
    doc = cJSON_CreateObject();
    rc = doc ? sl_api_meta_apply(test_fields, sizeof(test_fields) / sizeof(test_fields[0]), c.body,
                                 doc, 1, err, sizeof(err))
             : SL_ENOMEM;
    if (rc) {
        reply_apply_error(req, rc, err);
        goto out;
    }
    struct sl_event_filter f = {.org = c.org};
    if (test_times(req, doc, &f) || compile(req, str(doc, "query"), &prog) ||
        check_list_refs(&c, prog, 0))
        goto out;
    rc = cached_get(c.st, &cr, err, sizeof(err));
    if (rc) {
        SL_WARN("test_rql: cannot load the rules and lists: %s", err);
        sl_api_meta_reply_store(req, rc, "intel list", NULL);
        goto out;
    }
    t.prog = prog;
    sl_ruleset_env(cr->rs, c.org, &t.env);
    t.count = (int64_t)cJSON_GetObjectItemCaseSensitive(doc, "event_count")->valuedouble;
    t.samples_wanted = flag(doc, "return_results");
    t.samples = cJSON_CreateArray();
    t.scratch = sl_arena_create(64 * 1024, 1024 * 1024);
    rc = t.samples && t.scratch ? test_events(c.st, &f, &t) : SL_ENOMEM;
    if (rc == SL_ETIMEDOUT)
        sl_http_reply_error(req, 503, "query too expensive",
                            "reading the events took longer than 10 s; narrow start/end or lower "
                            "event_count");
    else if (rc)
        sl_api_meta_reply_store(req, rc, "event", NULL);
    else
        reply_test(req, &t);
out:
    cJSON_Delete(t.samples);
    if (t.scratch)
        sl_arena_destroy(t.scratch);
    cached_put(cr);
    sl_rql_free(prog);
    cJSON_Delete(doc);
    sl_api_meta_close(&c);
}
