/* The case endpoints: create a case from events (with a template, and a rule that merges the
 * same pattern into it), list, read, change, close, reopen and delete cases, add events to one,
 * read its events, observables and comments. Every endpoint is scoped to the caller's
 * organization: another organization's case answers 404 exactly like a missing one. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "actions/actions.h"
#include "api/api_internal.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "rules/rql.h"

#define WHAT            "case"
#define OWNER_MAX       255
#define TAGS_MAX        100
#define EVENTS_MAX      10000 /* explicit event uuids in one request */
#define PAGE_SIZE       100
#define PAGE_MAX        1000
#define OBSERVABLES_DEF 1000
#define OBSERVABLES_MAX 10000
#define SHOW_MAX        48
#define RULE_PREFIX     "Merge into case "
#define RULE_NAME_TRIES 50 /* names tried when "Merge into case <title>" is taken */
#define RULE_QUERY_MAX  SL_RQL_MAX_QUERY

static const struct sl_api_field create_fields[] = {
    {"title", SL_FT_STR, 1, SL_CASE_TITLE_MAX, SL_FF_REQUIRED | SL_FF_LINE, NULL},
    {"description", SL_FT_STR, 0, SL_CASE_TEXT_MAX, 0, "\"\""},
    {"severity", SL_FT_INT, 0, 4, 0, "1"},
    {"tlp", SL_FT_INT, 0, 4, 0, "2"},
    {"tags", SL_FT_TAGS, 0, TAGS_MAX, 0, "[]"},
    {"owner", SL_FT_STR, 0, OWNER_MAX, SL_FF_LINE, "\"\""},
    {"events", SL_FT_ANY, 0, 0, 0, "[]"},
    {"include_related_events", SL_FT_BOOL, 0, 0, 0, "false"},
    {"case_template_uuid", SL_FT_UUID, 0, 0, SL_FF_NULL, NULL},
    {"generate_event_rule", SL_FT_BOOL, 0, 0, 0, "false"},
};

static const struct sl_api_field update_fields[] = {
    {"title", SL_FT_STR, 1, SL_CASE_TITLE_MAX, SL_FF_LINE, NULL},
    {"description", SL_FT_STR, 0, SL_CASE_TEXT_MAX, 0, NULL},
    {"severity", SL_FT_INT, 0, 4, 0, NULL},
    {"tlp", SL_FT_INT, 0, 4, 0, NULL},
    {"status", SL_FT_STR, 1, 32, 0, NULL},
    {"owner", SL_FT_STR, 0, OWNER_MAX, SL_FF_LINE, NULL},
    {"tags", SL_FT_TAGS, 0, TAGS_MAX, 0, NULL},
};

/* The UI's default: adding events to a case brings their related New events along. */
static const struct sl_api_field add_fields[] = {
    {"events", SL_FT_ANY, 0, 0, SL_FF_REQUIRED, NULL},
    {"include_related_events", SL_FT_BOOL, 0, 0, 0, "true"},
};

static const struct sl_api_field close_fields[] = {
    {"close_reason_uuid", SL_FT_UUID, 0, 0, SL_FF_REQUIRED, NULL},
    {"comment", SL_FT_STR, 0, SL_CASE_TEXT_MAX, SL_FF_NULL, NULL},
};

static const struct sl_api_field comment_fields[] = {
    {"text", SL_FT_STR, 1, SL_CASE_TEXT_MAX, SL_FF_REQUIRED, NULL},
};

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

/* Statuses a case may be given by PUT; Closed comes only through /close. */
static const char *const open_statuses[] = {"New", "In Progress", "Hold", NULL};

static int flag(const cJSON *doc, const char *name)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, name));
}

static const char *str(const cJSON *doc, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int num(const cJSON *doc, const char *name, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, name);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : def;
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* Answers a body the field table refused (400) or a failure to build the answer (503). */
static void reply_apply(struct sl_http_req *req, int rc, const char *err)
{
    if (rc == SL_EINVAL)
        sl_api_meta_reply_invalid(req, err);
    else
        sl_api_meta_reply(req, 503, NULL);
}

/* Answers a failed store call about what (sl_api_meta_reply_store); SL_EINVAL, a value the
 * store refused that the field tables let through, is the client's: 400. */
static void reply_store(struct sl_http_req *req, int rc, const char *what)
{
    char detail[160];
    if (rc == SL_EINVAL) {
        snprintf(detail, sizeof(detail), "the store refused a value of the %s", what);
        sl_http_reply_error(req, 400, "invalid body", detail);
        return;
    }
    if (rc == SL_ETIMEDOUT) { /* the observables of a case of millions of events */
        sl_http_reply_error(req, 503, "query too expensive",
                            "the query ran longer than 10 s and was stopped; page the case's "
                            "events instead");
        return;
    }
    sl_api_meta_reply_store(req, rc, what, NULL);
}

/* Applies body to a new object by the table; answers and returns NULL on failure. */
static cJSON *apply(struct sl_api_meta_ctx *c, const struct sl_api_field *fields, size_t n,
                    int create)
{
    char err[512];
    cJSON *doc = cJSON_CreateObject();
    int rc = doc ? sl_api_meta_apply(fields, n, c->body, doc, create, err, sizeof(err)) : SL_ENOMEM;
    if (rc) {
        reply_apply(c->req, rc, err);
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}

/* ---- the case in the path ---- */

/* The uuid route parameter i, lowercased, or -1 when it is not a uuid (answered: 404 naming
 * what). */
static int path_uuid(struct sl_http_req *req, size_t i, const char *what, char out[SL_UUID_LEN + 1])
{
    struct sl_api_req *ar = req->app;
    char detail[64];
    if (ar->match.nparams > i && ar->match.params[i].len == SL_UUID_LEN) {
        memcpy(out, ar->match.params[i].ptr, SL_UUID_LEN);
        out[SL_UUID_LEN] = '\0';
        lower(out);
        if (sl_uuid_valid(out))
            return 0;
    }
    snprintf(detail, sizeof(detail), "no such %s", what);
    sl_http_reply_error(req, 404, "not found", detail);
    return -1;
}

/* Loads the case of the path into *out (caller owns) and makes its organization c->org. A key
 * sees its own organization's cases; a key of the default organization every organization's
 * (only the one it named with "organization", if it named one). Answers and returns non-zero:
 * 404 when the case is absent, malformed or not visible, 503 on a store error. */
static int load_case(struct sl_api_meta_ctx *c, char uuid[SL_UUID_LEN + 1], cJSON **out)
{
    char *doc = NULL;
    *out = NULL;
    if (path_uuid(c->req, 0, WHAT, uuid) != 0)
        return SL_ENOTFOUND;
    const char *scope = c->key_default && !c->org_given ? NULL : c->org;
    int rc = sl_store_case_get(c->st, scope, uuid, &doc);
    if (rc) {
        reply_store(c->req, rc, WHAT);
        return rc;
    }
    cJSON *o = cJSON_Parse(doc);
    free(doc);
    const char *org = str(o, "organization");
    if (!org || strlen(org) != SL_UUID_LEN) {
        cJSON_Delete(o);
        sl_api_meta_reply(c->req, 503, NULL);
        return SL_ENOMEM;
    }
    memcpy(c->org, org, sizeof(c->org));
    *out = o;
    return 0;
}

/* The case as stored now, parsed (NULL: answered 404 or 503). */
static cJSON *reload_case(struct sl_api_meta_ctx *c, const char *uuid)
{
    char *doc = NULL;
    int rc = sl_store_case_get(c->st, c->org, uuid, &doc);
    if (rc) {
        reply_store(c->req, rc, WHAT);
        return NULL;
    }
    cJSON *o = cJSON_Parse(doc);
    free(doc);
    if (!o)
        sl_api_meta_reply(c->req, 503, NULL);
    return o;
}

/* ---- events named in a body ---- */

struct uuid_set {
    char (*ids)[SL_UUID_LEN + 1];
    const char **ptrs;
    size_t n;
};

static void uuid_set_fini(struct uuid_set *s)
{
    free(s->ids);
    free(s->ptrs);
    memset(s, 0, sizeof(*s));
}

static int uuid_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The "events" member of doc: an array of at most EVENTS_MAX event uuids (repeats dropped,
 * stored lowercase). Returns 0, SL_EINVAL with "events...: ..." in err, or SL_ENOMEM. */
static int parse_events(const cJSON *doc, struct uuid_set *s, char *err, size_t errlen)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(doc, "events"), *v;
    int i = 0, n = cJSON_GetArraySize(a);
    memset(s, 0, sizeof(*s));
    if (!cJSON_IsArray(a)) {
        sl_set_err(err, errlen, "events: expected an array of event uuids");
        return SL_EINVAL;
    }
    if (n > EVENTS_MAX) {
        sl_set_err(err, errlen, "events: expected at most %d event uuids, got %d", EVENTS_MAX, n);
        return SL_EINVAL;
    }
    if (n == 0)
        return 0;
    s->ids = calloc((size_t)n, sizeof(*s->ids));
    s->ptrs = calloc((size_t)n, sizeof(*s->ptrs));
    if (!s->ids || !s->ptrs) {
        uuid_set_fini(s);
        return SL_ENOMEM;
    }
    cJSON_ArrayForEach(v, a)
    {
        if (!cJSON_IsString(v) || !sl_uuid_valid(v->valuestring)) {
            sl_set_err(err, errlen, "events[%d]: expected an event uuid, got %s%.*s%s", i,
                       cJSON_IsString(v) ? "\"" : "", SHOW_MAX,
                       cJSON_IsString(v) ? v->valuestring : "another JSON value",
                       cJSON_IsString(v) ? "\"" : "");
            uuid_set_fini(s);
            return SL_EINVAL;
        }
        memcpy(s->ids[i], v->valuestring, SL_UUID_LEN + 1);
        lower(s->ids[i++]);
    }
    qsort(s->ids, (size_t)n, sizeof(*s->ids), uuid_cmp);
    for (int k = 0; k < n; k++)
        if (s->n == 0 || strcmp(s->ids[k], s->ptrs[s->n - 1]) != 0)
            s->ptrs[s->n++] = s->ids[k];
    return 0;
}

/* Every event of s must be one of the organization's: answers 404 naming the first that is
 * not (another organization's event looks exactly like a missing one), or 503. */
static int check_events(struct sl_api_meta_ctx *c, const struct sl_event_selection *sel)
{
    char missing[SL_UUID_LEN + 1] = "", detail[160];
    if (sel->nuuids == 0)
        return 0;
    int rc = sl_store_event_select_check(c->st, sel, missing);
    if (rc == SL_ENOTFOUND) {
        snprintf(detail, sizeof(detail), "events: no event %s in the organization",
                 missing[0] ? missing : "(unknown)");
        sl_http_reply_error(c->req, 404, "not found", detail);
    } else if (rc) {
        sl_api_meta_reply_store(c->req, rc, "event", NULL);
    }
    return rc;
}

/* Starts adding sel's events to the case (an action task: see actions/actions.h). Answers
 * and returns non-zero on failure. */
static int start_add(struct sl_api_meta_ctx *c, const struct sl_event_selection *sel,
                     const char *case_uuid, struct sl_task *t, int *complete)
{
    struct sl_event_action_args a = {.action = SL_ACT_ADD_TO_CASE,
                                     .by = c->who->key_id,
                                     .case_uuid = case_uuid,
                                     .now_ms = sl_now_ms()};
    char err[256] = "";
    memset(t, 0, sizeof(*t));
    int rc = sl_action_start(c->st, sel, &a, t, complete, err, sizeof(err));
    if (rc == SL_EINVAL)
        sl_api_meta_reply_invalid(c->req, err[0] ? err : "events: not a valid selection");
    else if (rc)
        reply_store(c->req, rc, WHAT);
    return rc;
}

/* ---- the generated event rule ---- */

/* Adds the signature of event uuid (if it has one and it is new) to sigs; *len counts the
 * bytes the query will take. An event deleted meanwhile has no pattern to follow: skipped. */
static int add_signature(struct sl_api_meta_ctx *c, const char *uuid, cJSON *sigs, size_t *len)
{
    char *doc = NULL;
    const cJSON *k;
    int rc = sl_store_event_get(c->st, c->org, uuid, &doc);
    if (rc)
        return rc == SL_ENOTFOUND ? 0 : rc;
    cJSON *ev = cJSON_Parse(doc);
    free(doc);
    if (!ev)
        return SL_ENOMEM;
    const char *sig = str(ev, "signature");
    cJSON_ArrayForEach(k, sigs)
    {
        if (sig && strcmp(k->valuestring, sig) == 0)
            sig = NULL;
    }
    if (sig && !cJSON_AddItemToArray(sigs, cJSON_CreateString(sig)))
        rc = SL_ENOMEM;
    *len += sig ? strlen(sig) + 4 : 0; /* "sig", */
    cJSON_Delete(ev);
    return rc;
}

/* The query that matches the distinct signatures of the events of s:
 * signature in ["<md5>", ...]. Returns 0 and *out (malloc'd), SL_EINVAL with err (no
 * signature, or too many for one query), or a store error. */
static int signature_query(struct sl_api_meta_ctx *c, const struct uuid_set *s, char **out,
                           char *err, size_t errlen)
{
    static const char head[] = "signature in ";
    cJSON *sigs = cJSON_CreateArray();
    size_t len = 0;
    int rc = sigs ? 0 : SL_ENOMEM;
    *out = NULL;
    for (size_t i = 0; rc == 0 && i < s->n; i++)
        rc = add_signature(c, s->ptrs[i], sigs, &len);
    if (rc == 0 && cJSON_GetArraySize(sigs) == 0) {
        sl_set_err(err, errlen, "generate_event_rule: the events carry no signature");
        rc = SL_EINVAL;
    } else if (rc == 0 && len + sizeof(head) + 2 > RULE_QUERY_MAX) {
        sl_set_err(err, errlen,
                   "generate_event_rule: the events have %d distinct signatures, more than one "
                   "rule's query holds",
                   cJSON_GetArraySize(sigs));
        rc = SL_EINVAL;
    }
    char *list = rc == 0 ? cJSON_PrintUnformatted(sigs) : NULL;
    if (rc == 0 && list) {
        size_t n = sizeof(head) + strlen(list);
        if ((*out = malloc(n)) != NULL)
            snprintf(*out, n, "%s%s", head, list);
    }
    if (rc == 0 && !*out)
        rc = SL_ENOMEM;
    free(list);
    cJSON_Delete(sigs);
    return rc;
}

/* The length of the longest prefix of s of at most max bytes that ends on a UTF-8 boundary. */
static size_t utf8_cut(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
        max--;
    return max;
}

/* Rule name number k (0: "Merge into case <title>", then "... (k+1)"), within the name limit. */
static void rule_name(const char *title, int k, char out[SL_META_NAME_MAX + 1])
{
    char suffix[16] = "";
    if (k > 0)
        snprintf(suffix, sizeof(suffix), " (%d)", k + 1);
    size_t room = SL_META_NAME_MAX - strlen(RULE_PREFIX) - strlen(suffix);
    snprintf(out, SL_META_NAME_MAX + 1, "%s%.*s%s", RULE_PREFIX, (int)utf8_cut(title, room), title,
             suffix);
}

/* Builds the merge rule of a new case: named after the case (made unique in the organization
 * when stored), matching the signatures of its events. *out (caller owns) on success;
 * otherwise answers 400 or 503 and returns non-zero. */
static int rule_build(struct sl_api_meta_ctx *c, const struct uuid_set *s, const char *case_uuid,
                      const char *title, const char *rule_uuid, cJSON **out)
{
    char err[512] = "", name[SL_META_NAME_MAX + 1], desc[128], *query = NULL;
    *out = NULL;
    int rc = signature_query(c, s, &query, err, sizeof(err));
    if (rc == SL_EINVAL) {
        sl_api_meta_reply_invalid(c->req, err);
        return rc;
    } else if (rc) {
        sl_api_meta_reply_store(c->req, rc, "event", NULL);
        return rc;
    }
    struct sl_rql *prog = NULL;
    struct sl_rql_error rerr;
    memset(&rerr, 0, sizeof(rerr));
    rc = sl_rql_compile(query, strlen(query), &prog, &rerr);
    sl_rql_free(prog);
    rule_name(title, 0, name);
    snprintf(desc, sizeof(desc), "Generated with case %s: merges its events' pattern into it.",
             case_uuid);
    cJSON *body = cJSON_CreateObject();
    if (rc == 0 && body && cJSON_AddStringToObject(body, "name", name) &&
        cJSON_AddStringToObject(body, "description", desc) &&
        cJSON_AddStringToObject(body, "query", query) &&
        cJSON_AddBoolToObject(body, "merge_into_case", 1) &&
        cJSON_AddStringToObject(body, "target_case_uuid", case_uuid) &&
        cJSON_AddBoolToObject(body, "active", 1) && cJSON_AddBoolToObject(body, "expire", 0))
        rc = sl_api_rule_doc_new(body, rule_uuid, c->org, c->who->key_id, out, err, sizeof(err));
    else if (rc == 0)
        rc = SL_ENOMEM;
    if (rc)
        SL_WARN("case %s: cannot build its event rule: %s", case_uuid,
                err[0]        ? err
                : rerr.msg[0] ? rerr.msg
                              : sl_strerror(rc));
    if (rc)
        sl_api_meta_reply(c->req, 503, NULL);
    cJSON_Delete(body);
    free(query);
    return rc;
}

/* Stores the rule under the first of its candidate names that is free in the organization. */
static int rule_store(struct sl_api_meta_ctx *c, cJSON *doc, const char *title, const char *uuid)
{
    struct sl_meta m;
    int rc = SL_EEXIST;
    memset(&m, 0, sizeof(m));
    memcpy(m.uuid, uuid, sizeof(m.uuid));
    memcpy(m.org, c->org, sizeof(m.org));
    for (int k = 0; k < RULE_NAME_TRIES && rc == SL_EEXIST; k++) {
        rule_name(title, k, m.name);
        cJSON *name = cJSON_CreateString(m.name);
        if (!name)
            return SL_ENOMEM;
        cJSON_ReplaceItemInObjectCaseSensitive(doc, "name", name);
        m.doc = cJSON_PrintUnformatted(doc);
        rc = m.doc ? sl_store_meta_put(c->st, SL_META_RULE, &m, 1) : SL_ENOMEM;
        free(m.doc);
        m.doc = NULL;
    }
    return rc;
}

/* ---- answers ---- */

/* The add-events task of a new case, as sl_api_action_reply renders a task: its id, whether
 * it is complete, its state, the events looked at and changed, and where to follow it when
 * worker 0 finishes it. */
static cJSON *task_json(const struct sl_task *t, int complete)
{
    char loc[64];
    snprintf(loc, sizeof(loc), "/api/v2.0/task/%s", t->id);
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddStringToObject(o, "task_id", t->id) &&
        cJSON_AddBoolToObject(o, "complete", complete) &&
        cJSON_AddStringToObject(o, "action", sl_action_name(SL_ACT_ADD_TO_CASE)) &&
        cJSON_AddStringToObject(o, "state", t->state) &&
        cJSON_AddNumberToObject(o, "seen", (double)t->done) &&
        cJSON_AddNumberToObject(o, "changed", (double)t->matched) &&
        (complete || cJSON_AddStringToObject(o, "task", loc)))
        return o;
    cJSON_Delete(o);
    return NULL;
}

/* Answers status with o plus member name = n (o borrowed). */
static void reply_with_count(struct sl_http_req *req, int status, cJSON *o, const char *name,
                             int64_t n)
{
    if (o && name && !cJSON_AddNumberToObject(o, name, (double)n)) {
        sl_api_meta_reply(req, 503, NULL);
        return;
    }
    sl_api_meta_reply(req, status, o);
}

/* A page of items (a parsed JSON array, taken over) as {"<plural>": [...], "pagination"}. */
static void reply_page(struct sl_http_req *req, const char *plural, cJSON *items, int64_t total,
                       int64_t page, int64_t size)
{
    cJSON *o = cJSON_CreateObject(), *p = NULL;
    if (o && cJSON_AddItemToObject(o, plural, items)) {
        items = NULL;
        p = cJSON_AddObjectToObject(o, "pagination");
    }
    if (p) {
        cJSON_AddNumberToObject(p, "total_results", (double)total);
        cJSON_AddNumberToObject(p, "pages", (double)((total + size - 1) / size));
        cJSON_AddNumberToObject(p, "page", (double)page);
        cJSON_AddNumberToObject(p, "page_size", (double)size);
    }
    sl_api_meta_reply(req, 200, p ? o : NULL);
    cJSON_Delete(items);
    cJSON_Delete(o);
}

/* An integer query parameter (absent or empty: *out unchanged). Answers 400 when bad. */
static int query_int(struct sl_http_req *req, const char *name, int64_t min, int64_t max,
                     int64_t *out)
{
    const char *v = sl_http_query_get(&req->query, name);
    char detail[200];
    if (!v || !v[0] || sl_parse_int64(v, min, max, out) == 0)
        return 0;
    snprintf(detail, sizeof(detail), "%s=%.*s: expected an integer %lld..%lld", name, SHOW_MAX, v,
             (long long)min, (long long)max);
    sl_http_reply_error(req, 400, "invalid parameter", detail);
    return SL_EINVAL;
}

/* A string query parameter, or NULL when absent or empty. */
static const char *query_str(struct sl_http_req *req, const char *name)
{
    const char *v = sl_http_query_get(&req->query, name);
    return v && v[0] ? v : NULL;
}

/* ---- POST /api/v2.0/case ---- */

/* A template the case may take: of its organization or of the default one. Answers 400. */
static int check_template(struct sl_api_meta_ctx *c, const char *uuid)
{
    struct sl_meta m;
    char err[200];
    memset(&m, 0, sizeof(m));
    int rc = sl_store_meta_get(c->st, SL_META_CASE_TEMPLATE, uuid, &m);
    free(m.doc);
    if (rc == SL_ENOTFOUND ||
        (rc == 0 && strcmp(m.org, c->org) != 0 && strcmp(m.org, c->default_org) != 0)) {
        snprintf(err, sizeof(err),
                 "case_template_uuid: no case template %s in the organization or the default "
                 "organization",
                 uuid);
        sl_api_meta_reply_invalid(c->req, err);
        return SL_EINVAL;
    }
    if (rc)
        sl_api_meta_reply_store(c->req, rc, "case template", NULL);
    return rc;
}

/* The new case's fields from the checked body (severity and tlp only when given: else the
 * template's or the defaults); its event_rule is the rule generated for it (or NULL). Pointers
 * borrow from doc and rule_uuid; *tags (caller frees) holds the tags' JSON. */
static int create_fields_of(const cJSON *body, const cJSON *doc, const char *rule_uuid,
                            struct sl_case_fields *f, char **tags)
{
    memset(f, 0, sizeof(*f));
    *tags = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(doc, "tags"));
    f->title = str(doc, "title");
    f->description = str(doc, "description");
    f->severity = cJSON_GetObjectItemCaseSensitive(body, "severity") ? num(doc, "severity", 1) : -1;
    f->tlp = cJSON_GetObjectItemCaseSensitive(body, "tlp") ? num(doc, "tlp", 2) : -1;
    f->owner = str(doc, "owner");
    f->tags_json = *tags;
    f->template_uuid = str(doc, "case_template_uuid");
    f->rule_uuid = rule_uuid;
    return *tags ? 0 : SL_ENOMEM;
}

/* Creates the case, its rule and starts adding its events; undoes the case and the rule when a
 * later step fails. Answers failures; *t and *complete describe the add-events task. */
static int create_all(struct sl_api_meta_ctx *c, const cJSON *doc, const char *uuid, cJSON *rule,
                      const char *rule_uuid, const struct sl_event_selection *sel,
                      struct sl_task *t, int *complete)
{
    struct sl_case_fields f;
    char *tags = NULL;
    int rc = create_fields_of(c->body, doc, rule ? rule_uuid : NULL, &f, &tags);
    if (rc == 0)
        rc = sl_store_case_create(c->st, c->org, uuid, &f);
    free(tags);
    if (rc == SL_ENOTFOUND && f.template_uuid) {
        char err[160];
        snprintf(err, sizeof(err), "case_template_uuid: no case template %s", f.template_uuid);
        sl_api_meta_reply_invalid(c->req, err);
        return rc;
    }
    if (rc) {
        reply_store(c->req, rc, WHAT);
        return rc;
    }
    if (rule && (rc = rule_store(c, rule, f.title, rule_uuid)) != 0) {
        sl_api_meta_reply_store(c->req, rc, "event rule", NULL);
        sl_store_case_delete(c->st, c->org, uuid, NULL);
        return rc;
    }
    if (sel->nuuids && (rc = start_add(c, sel, uuid, t, complete)) != 0) {
        if (rule)
            sl_store_meta_delete(c->st, SL_META_RULE, rule_uuid);
        sl_store_case_delete(c->st, c->org, uuid, NULL);
    }
    return rc;
}

void sl_api_case_create(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct uuid_set ev = {0};
    struct sl_task t;
    cJSON *doc = NULL, *rule = NULL, *out = NULL;
    char uuid[SL_UUID_LEN + 1], rule_uuid[SL_UUID_LEN + 1], err[256];
    int complete = 0, rc;
    if (sl_api_meta_open(api, req, 1, &c) != 0 ||
        !(doc = apply(&c, create_fields, NFIELDS(create_fields), 1)))
        goto out;
    if ((rc = parse_events(doc, &ev, err, sizeof(err))) != 0) {
        reply_apply(req, rc, err);
        goto out;
    }
    int gen = flag(doc, "generate_event_rule");
    if (gen && ev.n == 0) {
        sl_api_meta_reply_invalid(req, "generate_event_rule: needs events (the rule matches "
                                       "their signatures)");
        goto out;
    }
    struct sl_event_selection sel = {.org = c.org,
                                     .uuids = ev.ptrs,
                                     .nuuids = ev.n,
                                     .include_related = flag(doc, "include_related_events")};
    const char *tmpl = str(doc, "case_template_uuid");
    if ((tmpl && check_template(&c, tmpl)) || check_events(&c, &sel))
        goto out;
    sl_uuid4(uuid);
    sl_uuid4(rule_uuid);
    if (gen && rule_build(&c, &ev, uuid, str(doc, "title"), rule_uuid, &rule) != 0)
        goto out;
    if (create_all(&c, doc, uuid, rule, rule_uuid, &sel, &t, &complete) != 0)
        goto out;
    /* The case exists now: a failed re-read must not make the client create it again. */
    char *stored = NULL;
    if (sl_store_case_get(c.st, c.org, uuid, &stored) == 0)
        out = cJSON_Parse(stored);
    free(stored);
    if (!out && (out = cJSON_CreateObject()) != NULL &&
        !cJSON_AddStringToObject(out, "uuid", uuid)) {
        cJSON_Delete(out);
        out = NULL;
    }
    if (!out) {
        sl_http_reply_error(req, 503, "store unavailable", "the case was created; list cases");
        goto out;
    }
    cJSON *task = ev.n ? task_json(&t, complete) : cJSON_CreateNull();
    if (!task || !cJSON_AddItemToObject(out, "task", task)) {
        cJSON_Delete(task);
        sl_api_meta_reply(req, 503, NULL);
        goto out;
    }
    if (!complete && ev.n) {
        char loc[64];
        snprintf(loc, sizeof(loc), "/api/v2.0/task/%s", t.id);
        sl_http_req_add_header(req, "Location", loc);
    }
    sl_api_meta_reply(req, 201, out);
    SL_INFO("case %s created by %s with %zu events%s", uuid, c.who->key_id, ev.n,
            gen ? " and an event rule" : "");
out:
    cJSON_Delete(out);
    cJSON_Delete(rule);
    cJSON_Delete(doc);
    uuid_set_fini(&ev);
    sl_api_meta_close(&c);
}

/* ---- GET /api/v2.0/case, GET /api/v2.0/case/<uuid> ---- */

enum sl_http_next sl_api_case_list(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_case_filter f = {.severity = -1, .page = 1, .page_size = PAGE_SIZE};
    int64_t sev = -1, total = 0;
    char *json = NULL;
    if (sl_api_meta_open(api, req, 0, &c) != 0 || query_int(req, "page", 1, INT_MAX, &f.page) ||
        query_int(req, "page_size", 1, PAGE_MAX, &f.page_size) ||
        query_int(req, "severity", 0, 4, &sev))
        goto out;
    f.org = c.key_default && !c.org_given ? NULL : c.org;
    f.severity = (int)sev;
    f.status = query_str(req, "status");
    f.title = query_str(req, "title");
    f.tag = query_str(req, "tag");
    f.owner = query_str(req, "owner");
    int rc = sl_store_case_list(c.st, &f, &json, &total);
    if (rc == SL_EINVAL) {
        char detail[120];
        snprintf(detail, sizeof(detail), "page=%lld: too far for page_size=%lld", (long long)f.page,
                 (long long)f.page_size);
        sl_http_reply_error(req, 400, "invalid parameter", detail);
        goto out;
    }
    if (rc) {
        reply_store(req, rc, WHAT);
        goto out;
    }
    cJSON *items = cJSON_Parse(json);
    if (!items)
        sl_api_meta_reply(req, 503, NULL);
    else
        reply_page(req, "cases", items, total, f.page, f.page_size);
out:
    free(json);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

enum sl_http_next sl_api_case_get(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    char uuid[SL_UUID_LEN + 1];
    cJSON *doc = NULL;
    if (sl_api_meta_open(api, req, 0, &c) == 0 && load_case(&c, uuid, &doc) == 0)
        sl_api_meta_reply(req, 200, doc);
    cJSON_Delete(doc);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* ---- PUT /api/v2.0/case/<uuid> ---- */

/* The status a PUT may set: one of open_statuses (any case), not on a closed case. Answers
 * 400 or 409. Stores the canonical spelling in *out. */
static int check_status(struct sl_http_req *req, const cJSON *current, const char *want,
                        const char **out)
{
    char err[300];
    if (strcasecmp(want, "Closed") == 0) {
        sl_api_meta_reply_invalid(req, "status: close a case with PUT "
                                       "/api/v2.0/case/<uuid>/close (it needs a close reason)");
        return SL_EINVAL;
    }
    for (const char *const *s = open_statuses; *s; s++)
        if (strcasecmp(*s, want) == 0)
            *out = *s;
    if (!*out) {
        snprintf(err, sizeof(err),
                 "status: expected \"New\", \"In Progress\" or \"Hold\", got \"%.*s\"", SHOW_MAX,
                 want);
        sl_api_meta_reply_invalid(req, err);
        return SL_EINVAL;
    }
    if (flag(current, "closed")) {
        sl_http_reply_error(req, 409, "conflict",
                            "the case is closed: reopen it with PUT /api/v2.0/case/<uuid>/reopen "
                            "before changing its status");
        return SL_EEXIST;
    }
    return 0;
}

void sl_api_case_update(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_case_fields f;
    char uuid[SL_UUID_LEN + 1], *tags = NULL;
    cJSON *cur = NULL, *doc = NULL, *out = NULL;
    memset(&f, 0, sizeof(f));
    if (sl_api_meta_open(api, req, 1, &c) != 0 || load_case(&c, uuid, &cur) != 0 ||
        !(doc = apply(&c, update_fields, NFIELDS(update_fields), 0)))
        goto out;
    const char *status = str(doc, "status");
    if (status && check_status(req, cur, status, &f.status) != 0)
        goto out;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "tags");
    if (t && !(tags = cJSON_PrintUnformatted(t))) {
        sl_api_meta_reply(req, 503, NULL);
        goto out;
    }
    f.title = str(doc, "title");
    f.description = str(doc, "description");
    f.severity = num(doc, "severity", -1);
    f.tlp = num(doc, "tlp", -1);
    f.owner = str(doc, "owner");
    f.tags_json = tags;
    int rc = sl_store_case_update(c.st, c.org, uuid, &f);
    if (rc) {
        reply_store(req, rc, WHAT);
        goto out;
    }
    if ((out = reload_case(&c, uuid)) != NULL)
        sl_api_meta_reply(req, 200, out);
out:
    free(tags);
    cJSON_Delete(out);
    cJSON_Delete(doc);
    cJSON_Delete(cur);
    sl_api_meta_close(&c);
}

/* ---- DELETE /api/v2.0/case/<uuid> ---- */

enum sl_http_next sl_api_case_delete(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    char uuid[SL_UUID_LEN + 1];
    cJSON *cur = NULL;
    int64_t n = 0;
    if (sl_api_meta_open(api, req, 0, &c) != 0 || load_case(&c, uuid, &cur) != 0)
        goto out;
    int rc = sl_store_case_delete(c.st, c.org, uuid, &n);
    if (rc) {
        reply_store(req, rc, WHAT);
        goto out;
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "uuid", uuid);
        cJSON_AddBoolToObject(o, "deleted", 1);
    }
    reply_with_count(req, 200, o, "events_released", n);
    cJSON_Delete(o);
    SL_INFO("case %s deleted by %s: %lld events back to New", uuid, c.who->key_id, (long long)n);
out:
    cJSON_Delete(cur);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* ---- PUT /api/v2.0/case/<uuid>/add_events ---- */

void sl_api_case_add_events(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct uuid_set ev = {0};
    struct sl_task t;
    char uuid[SL_UUID_LEN + 1], err[256];
    cJSON *cur = NULL, *doc = NULL, *out = NULL;
    int complete = 0, rc;
    if (sl_api_meta_open(api, req, 1, &c) != 0 || load_case(&c, uuid, &cur) != 0 ||
        !(doc = apply(&c, add_fields, NFIELDS(add_fields), 1)))
        goto out;
    if ((rc = parse_events(doc, &ev, err, sizeof(err))) != 0 || ev.n == 0) {
        reply_apply(req, rc ? rc : SL_EINVAL,
                    rc ? err : "events: expected at least one event uuid");
        goto out;
    }
    struct sl_event_selection sel = {.org = c.org,
                                     .uuids = ev.ptrs,
                                     .nuuids = ev.n,
                                     .include_related = flag(doc, "include_related_events")};
    if (check_events(&c, &sel) != 0 || start_add(&c, &sel, uuid, &t, &complete) != 0 ||
        !(out = reload_case(&c, uuid)))
        goto out;
    cJSON *extra = cJSON_CreateObject();
    if (!extra || !cJSON_AddItemToObject(extra, "case", out)) {
        cJSON_Delete(extra);
        sl_api_meta_reply(req, 503, NULL);
        goto out;
    }
    out = NULL;
    sl_api_action_reply(req, &t, complete, extra);
out:
    cJSON_Delete(out);
    cJSON_Delete(doc);
    cJSON_Delete(cur);
    uuid_set_fini(&ev);
    sl_api_meta_close(&c);
}

/* ---- PUT /api/v2.0/case/<uuid>/close, /reopen ---- */

/* The close reason must be one of the case's organization. Answers 400 or 503. */
static int check_reason(struct sl_api_meta_ctx *c, const char *uuid)
{
    struct sl_meta m;
    char err[160];
    memset(&m, 0, sizeof(m));
    int rc = sl_store_meta_get(c->st, SL_META_CLOSE_REASON, uuid, &m);
    free(m.doc);
    /* The organization's close reasons and the default organization's, as for dismissing. */
    if (rc == SL_ENOTFOUND ||
        (rc == 0 && strcmp(m.org, c->org) != 0 && strcmp(m.org, c->default_org) != 0)) {
        snprintf(err, sizeof(err), "close_reason_uuid: no close reason %s in the organization",
                 uuid);
        sl_api_meta_reply_invalid(c->req, err);
        return SL_EINVAL;
    }
    if (rc)
        sl_api_meta_reply_store(c->req, rc, "close reason", NULL);
    return rc;
}

/* Answers the case after a close or a reopen, with the events that changed. */
static void reply_transition(struct sl_api_meta_ctx *c, const char *uuid, int rc,
                             const char *conflict, const char *count_name, int64_t n)
{
    if (rc == SL_EEXIST) {
        sl_http_reply_error(c->req, 409, "conflict", conflict);
        return;
    }
    if (rc) {
        reply_store(c->req, rc, WHAT);
        return;
    }
    cJSON *out = reload_case(c, uuid);
    if (out)
        reply_with_count(c->req, 200, out, count_name, n);
    cJSON_Delete(out);
}

void sl_api_case_close(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    char uuid[SL_UUID_LEN + 1];
    cJSON *cur = NULL, *doc = NULL;
    int64_t n = 0;
    if (sl_api_meta_open(api, req, 1, &c) != 0 || load_case(&c, uuid, &cur) != 0 ||
        !(doc = apply(&c, close_fields, NFIELDS(close_fields), 1)))
        goto out;
    const char *reason = str(doc, "close_reason_uuid");
    if (check_reason(&c, reason) != 0)
        goto out;
    int rc = sl_store_case_close(c.st, c.org, uuid, reason, str(doc, "comment"), c.who->key_id, &n);
    reply_transition(&c, uuid, rc, "the case is already closed", "events_closed", n);
    if (rc == 0)
        SL_INFO("case %s closed by %s: %lld events closed", uuid, c.who->key_id, (long long)n);
out:
    cJSON_Delete(doc);
    cJSON_Delete(cur);
    sl_api_meta_close(&c);
}

/* Whether the request has a body that is more than white space. */
static int has_body(const struct sl_http_req *req)
{
    for (size_t i = 0; req->body.data && i < req->body.len; i++)
        if (!isspace((unsigned char)req->body.data[i]))
            return 1;
    return 0;
}

void sl_api_case_reopen(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    char uuid[SL_UUID_LEN + 1];
    cJSON *cur = NULL, *doc = NULL;
    int64_t n = 0;
    /* No field to give: an empty body, {} or {"organization": ...}. */
    if (sl_api_meta_open(api, req, has_body(req), &c) != 0 || load_case(&c, uuid, &cur) != 0 ||
        (c.body && !(doc = apply(&c, NULL, 0, 0))))
        goto out;
    int rc = sl_store_case_reopen(c.st, c.org, uuid, c.who->key_id, &n);
    reply_transition(&c, uuid, rc, "the case is not closed", "events_reopened", n);
    if (rc == 0)
        SL_INFO("case %s reopened by %s: %lld events reopened", uuid, c.who->key_id, (long long)n);
out:
    cJSON_Delete(doc);
    cJSON_Delete(cur);
    sl_api_meta_close(&c);
}

/* ---- GET /api/v2.0/case/<uuid>/events, /observables ---- */

enum sl_http_next sl_api_case_events(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    char uuid[SL_UUID_LEN + 1], *json = NULL;
    cJSON *cur = NULL;
    int64_t page = 1, size = PAGE_SIZE, total = 0;
    int rc;
    if (sl_api_meta_open(api, req, 0, &c) != 0 || query_int(req, "page", 1, INT_MAX, &page) ||
        query_int(req, "page_size", 1, PAGE_MAX, &size) || load_case(&c, uuid, &cur) != 0)
        goto out;
    /* The store reads only the page (a rule may have merged millions of events). */
    rc =
        sl_store_case_event_docs(c.st, c.org, uuid, (page - 1) * size, (size_t)size, &json, &total);
    cJSON *docs = rc ? NULL : cJSON_Parse(json);
    if (!rc && !docs)
        rc = SL_ENOMEM;
    if (rc)
        reply_store(req, rc, WHAT);
    else
        reply_page(req, "events", docs, total, page, size);
out:
    free(json);
    cJSON_Delete(cur);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

enum sl_http_next sl_api_case_observables(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    char uuid[SL_UUID_LEN + 1], *json = NULL;
    cJSON *cur = NULL;
    int64_t limit = OBSERVABLES_DEF;
    if (sl_api_meta_open(api, req, 0, &c) != 0 ||
        query_int(req, "limit", 1, OBSERVABLES_MAX, &limit) || load_case(&c, uuid, &cur) != 0)
        goto out;
    int rc = sl_store_case_observables(c.st, c.org, uuid, (size_t)limit, &json);
    cJSON *items = rc ? NULL : cJSON_Parse(json), *o = NULL;
    if (rc) {
        reply_store(req, rc, WHAT);
        goto out;
    }
    if (items && (o = cJSON_CreateObject()) != NULL) {
        cJSON_AddStringToObject(o, "case", uuid);
        cJSON_AddNumberToObject(o, "count", cJSON_GetArraySize(items));
        cJSON_AddItemToObject(o, "observables", items);
        items = NULL;
    }
    sl_api_meta_reply(req, 200, o);
    cJSON_Delete(items);
    cJSON_Delete(o);
out:
    free(json);
    cJSON_Delete(cur);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* ---- comments ---- */

enum sl_http_next sl_api_case_comment_list(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    char uuid[SL_UUID_LEN + 1], *json = NULL;
    cJSON *cur = NULL, *o = NULL;
    if (sl_api_meta_open(api, req, 0, &c) != 0 || load_case(&c, uuid, &cur) != 0)
        goto out;
    int rc = sl_store_case_comment_list(c.st, c.org, uuid, &json);
    if (rc) {
        reply_store(req, rc, WHAT);
        goto out;
    }
    cJSON *items = cJSON_Parse(json);
    if (items && (o = cJSON_CreateObject()) != NULL)
        cJSON_AddItemToObject(o, "comments", items);
    else
        cJSON_Delete(items);
    sl_api_meta_reply(req, 200, o);
out:
    cJSON_Delete(o);
    free(json);
    cJSON_Delete(cur);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

void sl_api_case_comment_add(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    char uuid[SL_UUID_LEN + 1], *json = NULL;
    cJSON *cur = NULL, *doc = NULL;
    if (sl_api_meta_open(api, req, 1, &c) != 0 || load_case(&c, uuid, &cur) != 0 ||
        !(doc = apply(&c, comment_fields, NFIELDS(comment_fields), 1)))
        goto out;
    int rc = sl_store_case_comment_add(c.st, c.org, uuid, c.who->key_id, str(doc, "text"), &json);
    if (rc) {
        reply_store(req, rc, WHAT);
    } else {
        sl_http_reply(req, 201, "application/json", json, strlen(json)); /* takes json */
        json = NULL;
    }
out:
    free(json);
    cJSON_Delete(doc);
    cJSON_Delete(cur);
    sl_api_meta_close(&c);
}

enum sl_http_next sl_api_case_comment_delete(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    char uuid[SL_UUID_LEN + 1], id[SL_UUID_LEN + 1];
    cJSON *cur = NULL;
    if (sl_api_meta_open(api, req, 0, &c) != 0 || load_case(&c, uuid, &cur) != 0 ||
        path_uuid(req, 1, "comment", id) != 0)
        goto out;
    int rc = sl_store_case_comment_delete(c.st, c.org, uuid, id);
    if (rc) {
        sl_api_meta_reply_store(req, rc, "comment", NULL);
        goto out;
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "uuid", id);
        cJSON_AddBoolToObject(o, "deleted", 1);
    }
    sl_api_meta_reply(req, 200, o);
    cJSON_Delete(o);
out:
    cJSON_Delete(cur);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}
