/* What the metadata endpoints share (request context, organization scoping, field tables,
 * answers), and the close reason, event status, data type and case template endpoints. */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api_internal.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "event/event.h"
#include "rules/intel.h"

#define TREE_SLACK         (1024 * 1024) /* parse tree memory allowed on top of 16x the body */
#define TEXT_MAX           65536         /* description, notes, comments */
#define PAGE_SIZE          100           /* objects per list page by default */
#define PAGE_MAX           1000
#define SHOW_MAX           48 /* bytes of a bad value quoted in an error */
#define TYPE_MAX           64 /* bytes of a data type name (as an observable's data_type) */
#define REGEX_MAX          SL_INTEL_VALUE_MAX
#define ORG_PARAM          "organization"
#define TEMPLATE_TAGS_MAX  100 /* tags of a case template */
#define TEMPLATE_TASKS_MAX 100 /* tasks of a case template */

/* ---- the default organization (it never changes: the first one created) ---- */

static pthread_mutex_t default_lock = PTHREAD_MUTEX_INITIALIZER;
static char default_uuid[SL_UUID_LEN + 1];

static int default_org(struct sl_store *st, char out[SL_UUID_LEN + 1])
{
    int rc = 0;
    pthread_mutex_lock(&default_lock);
    if (!default_uuid[0]) {
        struct sl_org *orgs = NULL;
        size_t n = 0;
        rc = sl_store_org_list(st, &orgs, &n);
        for (size_t i = 0; rc == 0 && i < n && !default_uuid[0]; i++)
            if (orgs[i].is_default)
                memcpy(default_uuid, orgs[i].uuid, sizeof(default_uuid));
        if (rc == 0 && !default_uuid[0])
            rc = SL_ENOTFOUND;
        free(orgs);
    }
    if (rc == 0)
        memcpy(out, default_uuid, sizeof(default_uuid));
    pthread_mutex_unlock(&default_lock);
    return rc;
}

/* ---- answers ---- */

void sl_api_meta_reply(struct sl_http_req *req, int status, const cJSON *json)
{
    if (!json || sl_http_reply_json(req, status, json) != 0) {
        if (!req->status) {
            sl_http_req_add_header(req, "Retry-After", "1");
            sl_http_reply_error(req, 503, "out of memory", NULL);
        }
    }
}

void sl_api_meta_reply_invalid_json(struct sl_http_req *req, const char *err, cJSON *extra)
{
    char field[64];
    size_t n = strcspn(err, ":[ ,");
    snprintf(field, sizeof(field), "%.*s", (int)(n < sizeof(field) ? n : sizeof(field) - 1), err);
    cJSON *o = cJSON_CreateObject();
    if (o && cJSON_AddStringToObject(o, "error", err) &&
        cJSON_AddStringToObject(o, "field", field)) {
        cJSON *it = extra ? extra->child : NULL;
        while (it) {
            cJSON *next = it->next;
            cJSON_AddItemToObject(o, it->string, cJSON_DetachItemViaPointer(extra, it));
            it = next;
        }
        sl_api_meta_reply(req, 400, o);
    } else {
        sl_api_meta_reply(req, 400, NULL);
    }
    cJSON_Delete(o);
    cJSON_Delete(extra);
}

void sl_api_meta_reply_invalid(struct sl_http_req *req, const char *err)
{
    sl_api_meta_reply_invalid_json(req, err, NULL);
}

void sl_api_meta_reply_store(struct sl_http_req *req, int rc, const char *what, const char *name)
{
    char detail[400];
    if (rc == SL_ENOTFOUND) {
        snprintf(detail, sizeof(detail), "no such %s", what);
        sl_http_reply_error(req, 404, "not found", detail);
    } else if (rc == SL_EEXIST) {
        if (name)
            snprintf(detail, sizeof(detail),
                     "a %s named '%.256s' already exists in the "
                     "organization",
                     what, name);
        else
            snprintf(detail, sizeof(detail), "this %s already exists", what);
        sl_http_reply_error(req, 409, "conflict", detail);
    } else if (rc == SL_ENOMEM) {
        sl_http_req_add_header(req, "Retry-After", "1");
        sl_http_reply_error(req, 503, "out of memory", NULL);
    } else {
        sl_api_reply_store_error(req, rc);
    }
}

/* ---- the request body ---- */

/* The offset of the first byte that is not part of valid UTF-8, or len. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3, cp = c & 0x07;
        } else {
            return i;
        }
        if (len - i <= n)
            return i;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n + 1;
    }
    return len;
}

static void reply_malformed(struct sl_http_req *req, size_t offset, const char *msg)
{
    cJSON *d = cJSON_CreateObject();
    if (d) {
        cJSON_AddNumberToObject(d, "offset", (double)offset);
        cJSON_AddStringToObject(d, "message", msg);
    }
    sl_http_reply_error_json(req, 400, "malformed JSON", d);
}

/* Parses the body into c->body, bounded like a bulk body (16x its size plus 1 MiB of tree). */
static int parse_body(struct sl_api_meta_ctx *c)
{
    struct sl_http_req *req = c->req;
    const char *data = req->body.data ? req->body.data : "";
    size_t len = req->body.data ? req->body.len : 0, at = 0, bad;
    const char *end = NULL;
    while (at < len && isspace((unsigned char)data[at]))
        at++;
    if (at == len) {
        sl_http_reply_error(req, 400, "invalid body", "expected a JSON object, got an empty body");
        return SL_EINVAL;
    }
    if ((bad = utf8_invalid_at((const unsigned char *)data, len)) < len) {
        reply_malformed(req, bad, "invalid UTF-8");
        return SL_EINVAL;
    }
    unsigned failed = sl_event_alloc_failures();
    sl_event_alloc_budget(len > (SIZE_MAX - TREE_SLACK) / SL_EVENT_TREE_FACTOR
                              ? SIZE_MAX
                              : len * SL_EVENT_TREE_FACTOR + TREE_SLACK);
    cJSON *root = cJSON_ParseWithLengthOpts(data, len, &end, 0);
    int over = sl_event_alloc_over_budget();
    sl_event_alloc_budget(SIZE_MAX);
    if (!root && over) {
        sl_http_reply_error(req, 413, "body too large",
                            "the body's JSON would take more than 16 times its size in memory");
        return SL_EFULL;
    }
    if (!root && sl_event_alloc_failures() != failed) {
        sl_http_req_add_header(req, "Retry-After", "1");
        sl_http_reply_error(req, 503, "out of memory", "nothing was changed; try again");
        return SL_ENOMEM;
    }
    at = end && end >= data && (size_t)(end - data) <= len ? (size_t)(end - data) : len;
    if (!root) {
        reply_malformed(req, at, "not valid JSON");
        return SL_EINVAL;
    }
    while (at < len && isspace((unsigned char)data[at]))
        at++;
    if (at < len) {
        cJSON_Delete(root);
        reply_malformed(req, at, "unexpected data after the JSON value");
        return SL_EINVAL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        sl_http_reply_error(req, 400, "invalid body", "expected a JSON object");
        return SL_EINVAL;
    }
    c->body = root;
    return 0;
}

enum sl_http_next sl_api_meta_expect_body(struct sl_api *api, struct sl_http_req *req)
{
    (void)api;
    return sl_http_req_expect_body(req) == 0 ? SL_HTTP_BODY : SL_HTTP_DONE;
}

/* ---- context and scoping ---- */

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

/* The organization a default key named, from the query or the body; both must agree. */
static int scope(struct sl_api_meta_ctx *c)
{
    const char *q = sl_http_query_get(&c->req->query, ORG_PARAM);
    const cJSON *b = c->body ? cJSON_GetObjectItemCaseSensitive(c->body, ORG_PARAM) : NULL;
    char want[SL_UUID_LEN + 1], err[200];
    if (q && !q[0])
        q = NULL;
    if (b && !cJSON_IsNull(b) && !cJSON_IsString(b)) {
        sl_api_meta_reply_invalid(c->req, "organization: expected an organization uuid");
        return SL_EINVAL;
    }
    const char *v = b && cJSON_IsString(b) ? b->valuestring : q;
    if (!v)
        return 0;
    if (q && strcasecmp(q, v) != 0) {
        sl_api_meta_reply_invalid(c->req, "organization: the query and the body name different "
                                          "organizations");
        return SL_EINVAL;
    }
    if (!sl_uuid_valid(v)) {
        snprintf(err, sizeof(err), "organization: expected an organization uuid, got \"%.*s\"",
                 SHOW_MAX, v);
        sl_api_meta_reply_invalid(c->req, err);
        return SL_EINVAL;
    }
    memcpy(want, v, sizeof(want));
    lower(want);
    if (strcmp(want, c->who->org_uuid) == 0) {
        c->org_given = c->key_default;
        return 0;
    }
    if (!c->key_default) {
        sl_api_meta_reply_invalid(c->req, "organization: only keys of the default organization "
                                          "may act on another organization");
        return SL_EINVAL;
    }
    struct sl_org org;
    int rc = sl_store_org_get(c->st, want, NULL, &org);
    if (rc == SL_ENOTFOUND) {
        snprintf(err, sizeof(err), "organization: no organization %s", want);
        sl_api_meta_reply_invalid(c->req, err);
        return SL_EINVAL;
    } else if (rc) {
        sl_api_reply_store_error(c->req, rc);
        return rc;
    }
    memcpy(c->org, want, sizeof(c->org));
    c->org_given = 1;
    return 0;
}

int sl_api_meta_open(struct sl_api *api, struct sl_http_req *req, int with_body,
                     struct sl_api_meta_ctx *c)
{
    struct sl_api_req *ar = req->app;
    memset(c, 0, sizeof(*c));
    c->api = api;
    c->req = req;
    c->who = &ar->who;
    memcpy(c->org, ar->who.org_uuid, sizeof(c->org));
    if (with_body) {
        int rc = parse_body(c);
        if (rc)
            return rc;
    }
    c->st = sl_api_store_get(api, req);
    if (!c->st) {
        sl_api_reply_store_error(req, 0);
        return SL_EIO;
    }
    int rc = default_org(c->st, c->default_org);
    if (rc) {
        sl_api_reply_store_error(req, rc);
        return rc;
    }
    c->key_default = strcmp(c->default_org, ar->who.org_uuid) == 0;
    return scope(c);
}

void sl_api_meta_close(struct sl_api_meta_ctx *c)
{
    if (c->st)
        sl_api_store_put(c->api, c->req);
    c->st = NULL;
    cJSON_Delete(c->body);
    c->body = NULL;
}

int sl_api_meta_load(struct sl_api_meta_ctx *c, enum sl_meta_kind kind, const char *what, int write,
                     struct sl_meta *m)
{
    struct sl_api_req *ar = c->req->app;
    const struct sl_route_param *id = &ar->match.params[0];
    char uuid[SL_UUID_LEN + 1], detail[160];
    memset(m, 0, sizeof(*m));
    snprintf(detail, sizeof(detail), "no such %s", what);
    if (ar->match.nparams < 1 || id->len != SL_UUID_LEN) {
        sl_http_reply_error(c->req, 404, "not found", detail);
        return SL_ENOTFOUND;
    }
    memcpy(uuid, id->ptr, SL_UUID_LEN);
    uuid[SL_UUID_LEN] = '\0';
    lower(uuid);
    if (!sl_uuid_valid(uuid)) {
        sl_http_reply_error(c->req, 404, "not found", detail);
        return SL_ENOTFOUND;
    }
    int rc = sl_store_meta_get(c->st, kind, uuid, m);
    if (rc) {
        sl_api_meta_reply_store(c->req, rc, what, NULL);
        return rc;
    }
    int own = strcmp(m->org, c->who->org_uuid) == 0, visible;
    if (c->key_default)
        visible = !c->org_given || strcmp(m->org, c->org) == 0 || (m->global && !write);
    else
        visible = own || m->global;
    if (!visible) {
        free(m->doc);
        m->doc = NULL;
        sl_http_reply_error(c->req, 404, "not found", detail);
        return SL_ENOTFOUND;
    }
    if (write && !c->key_default && !own) {
        free(m->doc);
        m->doc = NULL;
        sl_http_reply_error(c->req, 403, "forbidden",
                            kind == SL_META_RULE ? "global rules belong to the default organization"
                                                 : "global lists belong to the default "
                                                   "organization");
        return SL_EINVAL;
    }
    memcpy(c->org, m->org, sizeof(c->org));
    return 0;
}

/* ---- field tables ---- */

/* A short description of a JSON value for "got ..." in errors. */
static void describe(const cJSON *v, char *out, size_t outlen)
{
    if (cJSON_IsNull(v))
        snprintf(out, outlen, "null");
    else if (cJSON_IsBool(v))
        snprintf(out, outlen, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNumber(v))
        snprintf(out, outlen, "%.17g", v->valuedouble);
    else if (cJSON_IsString(v))
        snprintf(out, outlen, "\"%.*s\"%s", SHOW_MAX, v->valuestring,
                 strlen(v->valuestring) > SHOW_MAX ? "..." : "");
    else if (cJSON_IsArray(v))
        snprintf(out, outlen, "an array");
    else
        snprintf(out, outlen, "an object");
}

static int bad(char *err, size_t errlen, const struct sl_api_field *f, const cJSON *v,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int bad(char *err, size_t errlen, const struct sl_api_field *f, const cJSON *v,
               const char *fmt, ...)
{
    char what[200], got[SHOW_MAX + 16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    describe(v, got, sizeof(got));
    sl_set_err(err, errlen, "%s: expected %s, got %s", f->name, what, got);
    return SL_EINVAL;
}

static int has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    return 0;
}

static int check_url(const char *s)
{
    size_t skip;
    if (strncasecmp(s, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return 0;
    if (!s[skip] || s[skip] == '/' || s[skip] == '?' || s[skip] == '#')
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static int check_tags(const struct sl_api_field *f, const cJSON *v, cJSON **out, char *err,
                      size_t errlen)
{
    const cJSON *t;
    int i = 0;
    if (!cJSON_IsArray(v))
        return bad(err, errlen, f, v, "an array of strings");
    cJSON *a = cJSON_CreateArray();
    if (!a)
        return SL_ENOMEM;
    cJSON_ArrayForEach(t, v)
    {
        size_t len = cJSON_IsString(t) ? strlen(t->valuestring) : 0;
        if (len < 1 || len > SL_EVENT_TAG_MAX) {
            char got[SHOW_MAX + 16];
            describe(t, got, sizeof(got));
            sl_set_err(err, errlen,
                       "%s[%d]: expected a non-empty string of at most %d bytes, "
                       "got %s",
                       f->name, i, SL_EVENT_TAG_MAX, got);
            cJSON_Delete(a);
            return SL_EINVAL;
        }
        int dup = 0;
        const cJSON *k;
        cJSON_ArrayForEach(k, a) dup |= strcmp(k->valuestring, t->valuestring) == 0;
        if (!dup && cJSON_GetArraySize(a) >= f->max) {
            sl_set_err(err, errlen, "%s: at most %lld tags", f->name, (long long)f->max);
            cJSON_Delete(a);
            return SL_EINVAL;
        }
        if (!dup && !cJSON_AddItemToArray(a, cJSON_CreateString(t->valuestring))) {
            cJSON_Delete(a);
            return SL_ENOMEM;
        }
        i++;
    }
    *out = a;
    return 0;
}

/* Checks v against f and makes the value to store in *out. */
static int check_value(const struct sl_api_field *f, const cJSON *v, cJSON **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    if (cJSON_IsNull(v) && (f->flags & SL_FF_NULL)) {
        *out = cJSON_CreateNull();
        return *out ? 0 : SL_ENOMEM;
    }
    switch (f->type) {
    case SL_FT_STR: {
        size_t len = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
        if (!cJSON_IsString(v) || (int64_t)len < f->min || (int64_t)len > f->max)
            return f->min > 0 ? bad(err, errlen, f, v, "a string of %lld..%lld bytes",
                                    (long long)f->min, (long long)f->max)
                              : bad(err, errlen, f, v, "a string of at most %lld bytes",
                                    (long long)f->max);
        if ((f->flags & SL_FF_LINE) && has_control(v->valuestring))
            return bad(err, errlen, f, v, "a string without control characters");
        *out = cJSON_CreateString(v->valuestring);
        break;
    }
    case SL_FT_BOOL:
        if (!cJSON_IsBool(v))
            return bad(err, errlen, f, v, "true or false");
        *out = cJSON_CreateBool(cJSON_IsTrue(v));
        break;
    case SL_FT_INT:
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
            v->valuedouble < (double)f->min || v->valuedouble > (double)f->max)
            return bad(err, errlen, f, v, "an integer %lld..%lld", (long long)f->min,
                       (long long)f->max);
        *out = cJSON_CreateNumber(v->valuedouble);
        break;
    case SL_FT_TAGS:
        return check_tags(f, v, out, err, errlen);
    case SL_FT_UUID: {
        char u[SL_UUID_LEN + 1];
        if (!cJSON_IsString(v) || !sl_uuid_valid(v->valuestring))
            return bad(err, errlen, f, v, "a uuid%s", f->flags & SL_FF_NULL ? " or null" : "");
        memcpy(u, v->valuestring, sizeof(u));
        lower(u);
        *out = cJSON_CreateString(u);
        break;
    }
    case SL_FT_URL:
        if (!cJSON_IsString(v) || (int64_t)strlen(v->valuestring) > f->max ||
            !check_url(v->valuestring))
            return bad(err, errlen, f, v, "an http:// or https:// URL of at most %lld bytes%s",
                       (long long)f->max, f->flags & SL_FF_NULL ? ", or null" : "");
        *out = cJSON_CreateString(v->valuestring);
        break;
    case SL_FT_ANY:
        *out = cJSON_Duplicate(v, 1);
        break;
    }
    return *out ? 0 : SL_ENOMEM;
}

static const struct sl_api_field *find_field(const struct sl_api_field *fields, size_t n,
                                             const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    return NULL;
}

/* Names the answers add to a document: never accepted in a body. */
static int output_only(const char *name)
{
    static const char *const names[] = {"created_at", "updated_at", "hits", "last_hit",
                                        "value_count"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i], name) == 0)
            return 1;
    return 0;
}

/* Names every unknown member of body in err. Returns SL_EINVAL if there is one. */
static int unknown_fields(const struct sl_api_field *fields, size_t n, const cJSON *body, char *err,
                          size_t errlen)
{
    const cJSON *it;
    size_t used = 0;
    int count = 0;
    cJSON_ArrayForEach(it, body)
    {
        const struct sl_api_field *f = find_field(fields, n, it->string);
        if (f || strcmp(it->string, ORG_PARAM) == 0)
            continue;
        if (output_only(it->string)) {
            sl_set_err(err, errlen, "%s: set by the server", it->string);
            return SL_EINVAL;
        }
        if (used < errlen) {
            int w = snprintf(err + used, errlen - used, "%s%.64s", count ? ", " : "", it->string);
            used += w > 0 ? (size_t)w : 0;
        }
        count++;
    }
    if (count && used < errlen)
        snprintf(err + used, errlen - used, ": unknown field%s", count > 1 ? "s" : "");
    return count ? SL_EINVAL : 0;
}

int sl_api_meta_apply(const struct sl_api_field *fields, size_t n, const cJSON *body, cJSON *doc,
                      int create, char *err, size_t errlen)
{
    const cJSON *it;
    int rc = unknown_fields(fields, n, body, err, errlen);
    if (rc)
        return rc;
    for (size_t i = 0; create && i < n; i++) {
        cJSON *v = fields[i].def ? cJSON_Parse(fields[i].def) : cJSON_CreateNull();
        if (!v || !cJSON_AddItemToObject(doc, fields[i].name, v)) {
            cJSON_Delete(v);
            return SL_ENOMEM;
        }
    }
    cJSON_ArrayForEach(it, body)
    {
        const struct sl_api_field *f = find_field(fields, n, it->string);
        cJSON *v;
        if (!f || strcmp(it->string, ORG_PARAM) == 0)
            continue; /* "organization" is the scope (sl_api_meta_open), not a change */
        if (f->flags & SL_FF_SERVER) {
            sl_set_err(err, errlen, "%s: set by the server", f->name);
            return SL_EINVAL;
        }
        if ((rc = check_value(f, it, &v, err, errlen)) != 0)
            return rc;
        if (cJSON_GetObjectItemCaseSensitive(doc, f->name))
            cJSON_ReplaceItemInObjectCaseSensitive(doc, f->name, v);
        else if (!cJSON_AddItemToObject(doc, f->name, v))
            rc = SL_ENOMEM;
        if (rc) {
            cJSON_Delete(v);
            return rc;
        }
    }
    for (size_t i = 0; create && i < n; i++)
        if ((fields[i].flags & SL_FF_REQUIRED) &&
            !cJSON_GetObjectItemCaseSensitive(body, fields[i].name)) {
            sl_set_err(err, errlen, "%s: required", fields[i].name);
            return SL_EINVAL;
        }
    return 0;
}

/* ---- rendering and listing ---- */

static int add_time(cJSON *o, const char *name, int64_t ms)
{
    char iso[25];
    if (ms <= 0)
        return cJSON_AddNullToObject(o, name) ? 0 : SL_ENOMEM;
    sl_time_format(ms, iso);
    return cJSON_AddStringToObject(o, name, iso) ? 0 : SL_ENOMEM;
}

cJSON *sl_api_meta_render(enum sl_meta_kind kind, const struct sl_meta *m)
{
    cJSON *o = m->doc ? cJSON_Parse(m->doc) : NULL;
    if (!cJSON_IsObject(o)) {
        if (m->doc && !o)
            SL_WARN("stored document of %s is not JSON", m->uuid);
        cJSON_Delete(o);
        return NULL;
    }
    int rc = add_time(o, "created_at", m->created_ms);
    if (!rc)
        rc = add_time(o, "updated_at", m->updated_ms);
    if (!rc && kind == SL_META_RULE) {
        rc = cJSON_AddNumberToObject(o, "hits", (double)m->hits) ? 0 : SL_ENOMEM;
        if (!rc)
            rc = add_time(o, "last_hit", m->last_hit_ms);
    }
    if (rc) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int query_int(struct sl_http_req *req, const char *name, int64_t min, int64_t max,
                     int64_t *out)
{
    const char *v = sl_http_query_get(&req->query, name);
    char detail[200];
    if (!v || !v[0])
        return 0;
    if (sl_parse_int64(v, min, max, out) == 0)
        return 0;
    snprintf(detail, sizeof(detail), "%s=%.*s: expected an integer %lld..%lld", name, SHOW_MAX, v,
             (long long)min, (long long)max);
    sl_http_reply_error(req, 400, "invalid parameter", detail);
    return SL_EINVAL;
}

/* Whether m passes the query's name__like and active filters. */
static int list_keeps(const struct sl_meta *m, const char *like, int active)
{
    if (like && !strcasestr(m->name, like))
        return 0;
    if (active < 0)
        return 1;
    cJSON *doc = m->doc ? cJSON_Parse(m->doc) : NULL;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(doc, "active");
    int keep = cJSON_IsBool(a) ? cJSON_IsTrue(a) == active : active == 1;
    cJSON_Delete(doc);
    return keep;
}

void sl_api_meta_reply_list(struct sl_api_meta_ctx *c, enum sl_meta_kind kind, const char *plural,
                            struct sl_meta *ms, size_t n,
                            int (*extra)(struct sl_api_meta_ctx *c, const struct sl_meta *m,
                                         cJSON *out))
{
    struct sl_http_req *req = c->req;
    int64_t page = 1, size = PAGE_SIZE, total = 0;
    int active = -1;
    const char *like = sl_http_query_get(&req->query, "name__like");
    const char *act = sl_http_query_get(&req->query, "active");
    if (query_int(req, "page", 1, INT_MAX, &page) ||
        query_int(req, "page_size", 1, PAGE_MAX, &size))
        return;
    if (like && !like[0])
        like = NULL;
    if (act && act[0] && sl_parse_bool(act, &active) != 0) {
        char detail[160];
        snprintf(detail, sizeof(detail), "active=%.*s: expected true or false", SHOW_MAX, act);
        sl_http_reply_error(req, 400, "invalid parameter", detail);
        return;
    }
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, plural), *p;
    int rc = arr ? 0 : SL_ENOMEM;
    int64_t first = (page - 1) * size;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!list_keeps(&ms[i], like, active))
            continue;
        if (total >= first && total < first + size) {
            cJSON *r = sl_api_meta_render(kind, &ms[i]);
            if (r && extra)
                rc = extra(c, &ms[i], r);
            if (!r || !cJSON_AddItemToArray(arr, r)) {
                cJSON_Delete(r);
                rc = rc ? rc : SL_ENOMEM;
            }
        }
        total++;
    }
    if (rc == 0 && (p = cJSON_AddObjectToObject(o, "pagination")) != NULL) {
        cJSON_AddNumberToObject(p, "total_results", (double)total);
        cJSON_AddNumberToObject(p, "pages", (double)((total + size - 1) / size));
        cJSON_AddNumberToObject(p, "page", (double)page);
        cJSON_AddNumberToObject(p, "page_size", (double)size);
    } else if (rc == 0) {
        rc = SL_ENOMEM;
    }
    if (rc && rc != SL_ENOMEM)
        sl_api_meta_reply_store(req, rc, plural, NULL);
    else
        sl_api_meta_reply(req, 200, rc ? NULL : o);
    cJSON_Delete(o);
}

void sl_api_meta_save(struct sl_api_meta_ctx *c, enum sl_meta_kind kind, const char *what,
                      const cJSON *doc, const char *name_field, struct sl_meta *m, int create,
                      int (*extra)(struct sl_api_meta_ctx *c, const struct sl_meta *m, cJSON *out))
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, name_field);
    snprintf(m->name, sizeof(m->name), "%s", cJSON_IsString(name) ? name->valuestring : "");
    free(m->doc);
    m->doc = cJSON_PrintUnformatted(doc);
    int rc = m->doc ? sl_store_meta_put(c->st, kind, m, create) : SL_ENOMEM;
    if (rc == 0) {
        free(m->doc);
        m->doc = NULL;
        rc = sl_store_meta_get(c->st, kind, m->uuid, m);
    }
    if (rc) {
        sl_api_meta_reply_store(c->req, rc, what, m->name);
        return;
    }
    cJSON *o = sl_api_meta_render(kind, m);
    if (o && extra && (rc = extra(c, m, o)) != 0) {
        cJSON_Delete(o);
        sl_api_meta_reply_store(c->req, rc, what, NULL);
        return;
    }
    sl_api_meta_reply(c->req, create ? 201 : 200, o);
    cJSON_Delete(o);
}

/* Looks a data type named name (case-insensitive) up among org's. 1, 0 or a store error. */
static int data_type_in(struct sl_store *st, const char *org, const char *name)
{
    struct sl_meta *ms = NULL;
    size_t n = 0;
    int rc = sl_store_meta_list(st, SL_META_DATA_TYPE, org, 0, &ms, &n);
    int found = 0;
    for (size_t i = 0; rc == 0 && i < n && !found; i++)
        found = strcasecmp(ms[i].name, name) == 0;
    sl_store_meta_free(ms, n);
    return rc ? rc : found;
}

int sl_api_meta_data_type_exists(struct sl_api_meta_ctx *c, const char *org, const char *name)
{
    int rc = data_type_in(c->st, org, name);
    if (rc == 0 && strcmp(org, c->default_org) != 0)
        rc = data_type_in(c->st, c->default_org, name);
    return rc;
}

/* ---- close reasons, event statuses, data types, case templates ---- */

/* One of the per-organization kinds that are plain documents. */
struct sl_api_simple_kind {
    enum sl_meta_kind kind;
    const char *what;       /* "close reason" */
    const char *plural;     /* the list answer's member */
    const char *name_field; /* the member that is the object's unique name */
    const struct sl_api_field *fields;
    size_t nfields;
    const char *const *builtins; /* names that cannot be deleted or renamed (NULL-terminated) */
    /* Normalizes and checks doc beyond the field table (may be NULL). */
    int (*check)(cJSON *doc, char *err, size_t errlen);
    /* Whether m is still referenced (1, why in why), not (0), or a store error. */
    int (*in_use)(struct sl_api_meta_ctx *c, const struct sl_meta *m, char *why, size_t len);
    int by_name; /* references use the name (a rename breaks them), not the uuid */
};

static const struct sl_api_field close_reason_fields[] = {
    {"uuid", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"organization", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"title", SL_FT_STR, 1, SL_META_NAME_MAX, SL_FF_REQUIRED | SL_FF_LINE, NULL},
    {"description", SL_FT_STR, 0, TEXT_MAX, 0, "\"\""},
};

static const struct sl_api_field status_fields[] = {
    {"uuid", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"organization", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"name", SL_FT_STR, 1, SL_META_NAME_MAX, SL_FF_REQUIRED | SL_FF_LINE, NULL},
    {"description", SL_FT_STR, 0, TEXT_MAX, 0, "\"\""},
    {"closed", SL_FT_BOOL, 0, 0, 0, "false"},
};

static const struct sl_api_field data_type_fields[] = {
    {"uuid", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"organization", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"name", SL_FT_STR, 1, TYPE_MAX, SL_FF_REQUIRED | SL_FF_LINE, NULL},
    {"description", SL_FT_STR, 0, TEXT_MAX, 0, "\"\""},
    {"regex", SL_FT_STR, 1, REGEX_MAX, SL_FF_NULL, NULL},
};

static const struct sl_api_field case_template_fields[] = {
    {"uuid", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"organization", SL_FT_STR, 0, 0, SL_FF_SERVER, NULL},
    {"title", SL_FT_STR, 1, SL_META_NAME_MAX, SL_FF_REQUIRED | SL_FF_LINE, NULL},
    {"description", SL_FT_STR, 0, TEXT_MAX, 0, "\"\""},
    {"tags", SL_FT_TAGS, 0, TEMPLATE_TAGS_MAX, 0, "[]"},
    {"severity", SL_FT_INT, 0, 4, 0, "1"},
    {"tlp", SL_FT_INT, 0, 4, 0, "2"},
    {"tasks", SL_FT_ANY, 0, 0, 0, "[]"},
};

static const char *const builtin_statuses[] = {"New",    "Open",         "Dismissed",
                                               "Closed", "Acknowledged", NULL};
static const char *const builtin_data_types[] = {
    "ip",      "domain",       "fqdn",     "host",     "email",      "email_subject",
    "url",     "user",         "md5hash",  "sha1hash", "sha256hash", "imphash",
    "process", "command",      "filepath", "pid",      "port",       "sid",
    "mac",     "detection_id", "generic",  NULL};

/* A data type's name is what observables carry: lowercased, letters, digits, '_', '-', '.';
 * "auto" asks ingest to detect the type, so it cannot name one. */
static int check_data_type(cJSON *doc, char *err, size_t errlen)
{
    cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "name");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(doc, "regex");
    char perr[256];
    lower(name->valuestring);
    for (const char *p = name->valuestring; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.') {
            sl_set_err(err, errlen, "name: expected letters, digits, '_', '-' or '.', got \"%.*s\"",
                       SHOW_MAX, name->valuestring);
            return SL_EINVAL;
        }
    if (strcmp(name->valuestring, "auto") == 0) {
        sl_set_err(err, errlen, "name: \"auto\" is reserved (it asks ingest to detect the type)");
        return SL_EINVAL;
    }
    if (cJSON_IsString(re) &&
        sl_intel_pattern_check(re->valuestring, strlen(re->valuestring), 1, perr, sizeof(perr))) {
        sl_set_err(err, errlen, "regex: %s", perr);
        return SL_EINVAL;
    }
    return 0;
}

/* One task of a case template: an object {"title": 1..255 bytes without control characters,
 * "description": text or null}, nothing else. */
static int check_task(const cJSON *t, int i, char *err, size_t errlen)
{
    const cJSON *title = cJSON_GetObjectItemCaseSensitive(t, "title");
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(t, "description"), *m;
    size_t len = cJSON_IsString(title) ? strlen(title->valuestring) : 0;
    if (!cJSON_IsObject(t)) {
        sl_set_err(err, errlen, "tasks[%d]: expected an object {\"title\", \"description\"}", i);
        return SL_EINVAL;
    }
    cJSON_ArrayForEach(m, t)
    {
        if (strcmp(m->string, "title") != 0 && strcmp(m->string, "description") != 0) {
            sl_set_err(err, errlen,
                       "tasks[%d]: unknown field %.64s (a task has title and description)", i,
                       m->string);
            return SL_EINVAL;
        }
    }
    if (len < 1 || len > SL_META_NAME_MAX || has_control(title->valuestring)) {
        sl_set_err(err, errlen,
                   "tasks[%d]: title: expected a string of 1..%d bytes without control characters",
                   i, SL_META_NAME_MAX);
        return SL_EINVAL;
    }
    if (desc && !cJSON_IsNull(desc) &&
        (!cJSON_IsString(desc) || strlen(desc->valuestring) > TEXT_MAX)) {
        sl_set_err(err, errlen, "tasks[%d]: description: expected a string of at most %d bytes", i,
                   TEXT_MAX);
        return SL_EINVAL;
    }
    return 0;
}

/* A case template's tasks: an array of at most TEMPLATE_TASKS_MAX tasks (check_task), rebuilt
 * with exactly title and description (a missing one is "") so a case copies nothing else. */
static int check_case_template(cJSON *doc, char *err, size_t errlen)
{
    const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(doc, "tasks"), *t;
    int i = 0, rc = 0;
    if (!cJSON_IsArray(tasks)) {
        sl_set_err(err, errlen, "tasks: expected an array of {\"title\", \"description\"}");
        return SL_EINVAL;
    }
    if (cJSON_GetArraySize(tasks) > TEMPLATE_TASKS_MAX) {
        sl_set_err(err, errlen, "tasks: expected at most %d tasks, got %d", TEMPLATE_TASKS_MAX,
                   cJSON_GetArraySize(tasks));
        return SL_EINVAL;
    }
    cJSON *out = cJSON_CreateArray();
    if (!out)
        return SL_ENOMEM;
    cJSON_ArrayForEach(t, tasks)
    {
        if ((rc = check_task(t, i++, err, errlen)) != 0)
            break;
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(t, "description");
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(out, o)) {
            cJSON_Delete(o);
            rc = SL_ENOMEM;
            break;
        }
        if (!cJSON_AddStringToObject(o, "title",
                                     cJSON_GetObjectItemCaseSensitive(t, "title")->valuestring) ||
            !cJSON_AddStringToObject(o, "description",
                                     cJSON_IsString(desc) ? desc->valuestring : "")) {
            rc = SL_ENOMEM;
            break;
        }
    }
    if (rc) {
        cJSON_Delete(out);
        return rc;
    }
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "tasks", out);
    return 0;
}

/* Whether doc (a rule or list document) names needle in one of its string members (or, for
 * member "csv_header_map", one of that object's values). */
static int doc_names(const char *doc, const char *member, const char *needle)
{
    int hit = 0;
    if (!doc || !strstr(doc, needle)) /* cheap: most documents cannot match */
        return 0;
    cJSON *o = cJSON_Parse(doc);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, member), *it;
    if (cJSON_IsString(v))
        hit = strcasecmp(v->valuestring, needle) == 0;
    else if (cJSON_IsObject(v))
        cJSON_ArrayForEach(it, v) hit |=
            cJSON_IsString(it) && strcasecmp(it->valuestring, needle) == 0;
    cJSON_Delete(o);
    return hit;
}

/* The objects of kind that name needle in member: of org, or of every organization when org is
 * the default one (its objects serve them all). */
static int used_by(struct sl_api_meta_ctx *c, enum sl_meta_kind kind, const char *org,
                   const char *const *members, const char *needle, char *why, size_t len,
                   const char *what)
{
    struct sl_meta *ms = NULL;
    size_t n = 0;
    int rc =
        sl_store_meta_list(c->st, kind, strcmp(org, c->default_org) == 0 ? NULL : org, 0, &ms, &n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        for (const char *const *mb = members; *mb; mb++)
            if (doc_names(ms[i].doc, *mb, needle)) {
                snprintf(why, len, "it is used by %s '%.200s' (%s)", what, ms[i].name, *mb);
                rc = 1;
                break;
            }
    sl_store_meta_free(ms, n);
    return rc;
}

static int close_reason_in_use(struct sl_api_meta_ctx *c, const struct sl_meta *m, char *why,
                               size_t len)
{
    static const char *const members[] = {"dismiss_reason", NULL};
    return used_by(c, SL_META_RULE, m->org, members, m->uuid, why, len, "event rule");
}

static int data_type_in_use(struct sl_api_meta_ctx *c, const struct sl_meta *m, char *why,
                            size_t len)
{
    static const char *const members[] = {"data_type", "csv_header_map", NULL};
    return used_by(c, SL_META_LIST, m->org, members, m->name, why, len, "intel list");
}

/* Rules that create cases with the template (of any organization when it is the default
 * organization's: every organization's rules may use those). */
static int case_template_in_use(struct sl_api_meta_ctx *c, const struct sl_meta *m, char *why,
                                size_t len)
{
    static const char *const members[] = {"case_template", NULL};
    return used_by(c, SL_META_RULE, m->org, members, m->uuid, why, len, "event rule");
}

const struct sl_api_simple_kind sl_api_kind_close_reason = {SL_META_CLOSE_REASON,
                                                            "close reason",
                                                            "close_reasons",
                                                            "title",
                                                            close_reason_fields,
                                                            sizeof(close_reason_fields) /
                                                                sizeof(close_reason_fields[0]),
                                                            NULL,
                                                            NULL,
                                                            close_reason_in_use,
                                                            0};
const struct sl_api_simple_kind sl_api_kind_status = {SL_META_STATUS,
                                                      "event status",
                                                      "event_statuses",
                                                      "name",
                                                      status_fields,
                                                      sizeof(status_fields) /
                                                          sizeof(status_fields[0]),
                                                      builtin_statuses,
                                                      NULL,
                                                      NULL,
                                                      1};
const struct sl_api_simple_kind sl_api_kind_data_type = {
    SL_META_DATA_TYPE,  "data type",
    "data_types",       "name",
    data_type_fields,   sizeof(data_type_fields) / sizeof(data_type_fields[0]),
    builtin_data_types, check_data_type,
    data_type_in_use,   1};

const struct sl_api_simple_kind sl_api_kind_case_template = {SL_META_CASE_TEMPLATE,
                                                             "case template",
                                                             "case_templates",
                                                             "title",
                                                             case_template_fields,
                                                             sizeof(case_template_fields) /
                                                                 sizeof(case_template_fields[0]),
                                                             NULL,
                                                             check_case_template,
                                                             case_template_in_use,
                                                             0};

static int builtin(const struct sl_api_simple_kind *k, const char *name)
{
    for (const char *const *b = k->builtins; b && *b; b++)
        if (strcmp(*b, name) == 0)
            return 1;
    return 0;
}

static enum sl_http_next simple_list(const struct sl_api_simple_kind *k, struct sl_api *api,
                                     struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta *ms = NULL;
    size_t n = 0;
    if (sl_api_meta_open(api, req, 0, &c) == 0) {
        int rc = sl_store_meta_list(c.st, k->kind, c.org, 0, &ms, &n);
        if (rc)
            sl_api_meta_reply_store(req, rc, k->what, NULL);
        else
            sl_api_meta_reply_list(&c, k->kind, k->plural, ms, n, NULL);
        sl_store_meta_free(ms, n);
    }
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

static enum sl_http_next simple_get(const struct sl_api_simple_kind *k, struct sl_api *api,
                                    struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    if (sl_api_meta_open(api, req, 0, &c) == 0 &&
        sl_api_meta_load(&c, k->kind, k->what, 0, &m) == 0) {
        cJSON *o = sl_api_meta_render(k->kind, &m);
        sl_api_meta_reply(req, 200, o);
        cJSON_Delete(o);
    }
    free(m.doc);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

static void simple_create(const struct sl_api_simple_kind *k, struct sl_api *api,
                          struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    cJSON *doc = NULL;
    char err[512];
    if (sl_api_meta_open(api, req, 1, &c) != 0)
        goto out;
    doc = cJSON_CreateObject();
    int rc = doc ? sl_api_meta_apply(k->fields, k->nfields, c.body, doc, 1, err, sizeof(err))
                 : SL_ENOMEM;
    if (rc == 0 && k->check)
        rc = k->check(doc, err, sizeof(err));
    if (rc) {
        if (rc == SL_EINVAL)
            sl_api_meta_reply_invalid(req, err);
        else
            sl_api_meta_reply(req, 503, NULL);
        goto out;
    }
    sl_uuid4(m.uuid);
    memcpy(m.org, c.org, sizeof(m.org));
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "uuid", cJSON_CreateString(m.uuid));
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "organization", cJSON_CreateString(m.org));
    sl_api_meta_save(&c, k->kind, k->what, doc, k->name_field, &m, 1, NULL);
out:
    cJSON_Delete(doc);
    free(m.doc);
    sl_api_meta_close(&c);
}

static void simple_update(const struct sl_api_simple_kind *k, struct sl_api *api,
                          struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    cJSON *doc = NULL;
    char err[512], old[sizeof(m.name)];
    if (sl_api_meta_open(api, req, 1, &c) != 0 || sl_api_meta_load(&c, k->kind, k->what, 1, &m))
        goto out;
    memcpy(old, m.name, sizeof(old));
    doc = cJSON_Parse(m.doc);
    int rc = cJSON_IsObject(doc)
                 ? sl_api_meta_apply(k->fields, k->nfields, c.body, doc, 0, err, sizeof(err))
                 : SL_ENOMEM;
    if (rc == 0 && k->check)
        rc = k->check(doc, err, sizeof(err));
    if (rc) {
        if (rc == SL_EINVAL)
            sl_api_meta_reply_invalid(req, err);
        else
            sl_api_meta_reply(req, 503, NULL);
        goto out;
    }
    const char *name = cJSON_GetObjectItemCaseSensitive(doc, k->name_field)->valuestring;
    if (strcmp(name, old) != 0) {
        char detail[1024];
        if (builtin(k, old)) {
            snprintf(detail, sizeof(detail), "the built-in %s '%s' cannot be renamed", k->what,
                     old);
            sl_http_reply_error(req, 409, "conflict", detail);
            goto out;
        }
        if (k->by_name && k->in_use && (rc = k->in_use(&c, &m, err, sizeof(err))) != 0) {
            snprintf(detail, sizeof(detail), "the %s '%.200s' cannot be renamed: %s", k->what, old,
                     err);
            if (rc == 1)
                sl_http_reply_error(req, 409, "conflict", detail);
            else
                sl_api_meta_reply_store(req, rc, k->what, NULL);
            goto out;
        }
    }
    sl_api_meta_save(&c, k->kind, k->what, doc, k->name_field, &m, 0, NULL);
out:
    cJSON_Delete(doc);
    free(m.doc);
    sl_api_meta_close(&c);
}

static enum sl_http_next simple_delete(const struct sl_api_simple_kind *k, struct sl_api *api,
                                       struct sl_http_req *req)
{
    struct sl_api_meta_ctx c;
    struct sl_meta m = {0};
    char why[300], detail[600];
    int rc;
    if (sl_api_meta_open(api, req, 0, &c) != 0 || sl_api_meta_load(&c, k->kind, k->what, 1, &m))
        goto out;
    if (builtin(k, m.name)) {
        snprintf(detail, sizeof(detail), "the built-in %s '%s' cannot be deleted", k->what, m.name);
        sl_http_reply_error(req, 409, "conflict", detail);
        goto out;
    }
    if (k->in_use && (rc = k->in_use(&c, &m, why, sizeof(why))) != 0) {
        snprintf(detail, sizeof(detail), "the %s '%.200s' cannot be deleted: %s", k->what, m.name,
                 why);
        if (rc == 1)
            sl_http_reply_error(req, 409, "conflict", detail);
        else
            sl_api_meta_reply_store(req, rc, k->what, NULL);
        goto out;
    }
    rc = sl_store_meta_delete(c.st, k->kind, m.uuid);
    if (rc) {
        sl_api_meta_reply_store(req, rc, k->what, NULL);
        goto out;
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "uuid", m.uuid);
        cJSON_AddBoolToObject(o, "deleted", 1);
    }
    sl_api_meta_reply(req, 200, o);
    cJSON_Delete(o);
out:
    free(m.doc);
    sl_api_meta_close(&c);
    return SL_HTTP_DONE;
}

/* The kind of the route being answered. */
static const struct sl_api_simple_kind *route_kind(struct sl_http_req *req)
{
    return ((const struct sl_api_req *)req->app)->route->data;
}

enum sl_http_next sl_api_simple_list(struct sl_api *api, struct sl_http_req *req)
{
    return simple_list(route_kind(req), api, req);
}

enum sl_http_next sl_api_simple_get(struct sl_api *api, struct sl_http_req *req)
{
    return simple_get(route_kind(req), api, req);
}

void sl_api_simple_create(struct sl_api *api, struct sl_http_req *req)
{
    simple_create(route_kind(req), api, req);
}

void sl_api_simple_update(struct sl_api *api, struct sl_http_req *req)
{
    simple_update(route_kind(req), api, req);
}

enum sl_http_next sl_api_simple_delete(struct sl_api *api, struct sl_http_req *req)
{
    return simple_delete(route_kind(req), api, req);
}
