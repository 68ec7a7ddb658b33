/* The ruleset: every organization's compiled Event Rules and Intel Lists, and the rule stage
 * that applies them to an event (see ruleset.h for the order of steps). */
#include "rules/ruleset.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/log.h"
#include "rules/intel.h"
#include "rules/rql.h"
#include "store/store.h"

#define TAG_MAX 256

struct rs_list {
    char *uuid, *org, *name;
    char *tag; /* "list: <name lowercased, spaces as '-'>" */
    int global, tag_on_match, flag_ioc, flag_safe, flag_spotted;
    const char *data_type; /* from the compiled list's def */
    enum sl_intel_type type;
    struct sl_intel_list *compiled;
};

struct rs_rule {
    char *uuid, *org, *name;
    int priority, global;
    int64_t expire_at_ms; /* 0: never */
    struct sl_rql *prog;
    char *query; /* the text prog was compiled from (the index reads its regexps) */
    /* actions */
    char **tags_add, **tags_remove;
    size_t ntags_add, ntags_remove;
    int create_new_case;
    char *case_template;
    char *target_org; /* set_organization, only honoured for rules of the default org */
    char *target_case;
    int dismiss;
    char *dismiss_reason; /* the close reason's title */
    char *dismiss_comment;
    int update_severity, target_severity;
    int64_t mute_period_ms;
};

/* The lists an observable of one data type is checked against, in the organization's order:
 * csv lists, lists of data type "generic" and the lists of that data type. */
struct rs_dtlists {
    const char *data_type; /* NULL: a data type no list names, or none */
    const struct rs_list **lists;
    size_t n;
};

struct rs_org {
    char uuid[SL_UUID_LEN + 1];
    struct rs_rule **rules; /* own and global, by priority */
    size_t nrules;
    struct rs_list **lists; /* own and global */
    size_t nlists;
    struct rs_dtlists *dts; /* by the data types lists name; dts[ndts]: any other type */
    size_t ndts;
    /* The rule index (rql_index.c): an event is evaluated only against the rules it can match
     * (rule i of the index is rules[i]). */
    struct sl_rql_index *index;
    size_t nwords; /* of a bitmap over rules */
};

struct sl_ruleset {
    char default_org[SL_UUID_LEN + 1];
    struct rs_rule *rules;
    size_t nrules;
    struct rs_list *lists;
    size_t nlists;
    struct rs_org *orgs; /* sorted by uuid */
    size_t norgs;
    struct rs_org global; /* for an organization created after the load: global ones only */
    int64_t next_expiry;
};

/* ---- document helpers ------------------------------------------------------------------- */

static const char *jstr(const cJSON *doc, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static int jbool(const cJSON *doc, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, key));
}

static int64_t jint(const cJSON *doc, const char *key, int64_t def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : def;
}

/* A JSON array of strings copied into a malloc'd vector. Returns 0 or SL_ENOMEM. */
static int jstrings(const cJSON *doc, const char *key, char ***out, size_t *n)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(doc, key);
    size_t cap = cJSON_IsArray(a) ? (size_t)cJSON_GetArraySize(a) : 0;
    *out = NULL;
    *n = 0;
    if (cap == 0)
        return 0;
    if (!(*out = calloc(cap, sizeof(char *))))
        return SL_ENOMEM;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (cJSON_IsString(e) && e->valuestring && e->valuestring[0]) {
            if (!((*out)[*n] = strdup(e->valuestring)))
                return SL_ENOMEM;
            (*n)++;
        }
    }
    return 0;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* ---- building --------------------------------------------------------------------------- */

static void rule_fini(struct rs_rule *r)
{
    free(r->uuid);
    free(r->org);
    free(r->name);
    sl_rql_free(r->prog);
    free(r->query);
    free_strings(r->tags_add, r->ntags_add);
    free_strings(r->tags_remove, r->ntags_remove);
    free(r->case_template);
    free(r->target_org);
    free(r->target_case);
    free(r->dismiss_reason);
    free(r->dismiss_comment);
}

static void list_fini(struct rs_list *l)
{
    free(l->uuid);
    free(l->org);
    free(l->name);
    free(l->tag);
    sl_intel_list_free(l->compiled);
}

static void org_fini(struct rs_org *o)
{
    for (size_t i = 0; o->dts && i <= o->ndts; i++)
        free(o->dts[i].lists);
    free(o->dts);
    sl_rql_index_free(o->index);
    free(o->rules);
    free(o->lists);
}

void sl_ruleset_free(struct sl_ruleset *rs)
{
    if (!rs)
        return;
    for (size_t i = 0; i < rs->nrules; i++)
        rule_fini(&rs->rules[i]);
    for (size_t i = 0; i < rs->nlists; i++)
        list_fini(&rs->lists[i]);
    for (size_t i = 0; i < rs->norgs; i++)
        org_fini(&rs->orgs[i]);
    org_fini(&rs->global);
    free(rs->rules);
    free(rs->lists);
    free(rs->orgs);
    free(rs);
}

/* The title of the close reason uuid among close_reasons (a JSON array), or "Other". */
static const char *close_reason_title(const cJSON *close_reasons, const char *uuid)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, close_reasons)
    {
        const char *u = jstr(c, "uuid"), *t = jstr(c, "title");
        if (u && t && uuid && strcmp(u, uuid) == 0)
            return t;
    }
    return "Other";
}

/* Fills r from a rule document. A query that does not compile is SL_EINVAL with the position
 * in err; the caller decides whether that is fatal. */
static int rule_from_doc(struct rs_rule *r, const cJSON *doc, const cJSON *close_reasons, char *err,
                         size_t errlen)
{
    const char *uuid = jstr(doc, "uuid"), *org = jstr(doc, "organization");
    const char *name = jstr(doc, "name"), *query = jstr(doc, "query");
    struct sl_rql_error qe;
    int rc;
    memset(r, 0, sizeof(*r));
    if (!uuid || !org || !query) {
        sl_set_err(err, errlen, "rule %s: uuid, organization and query are required",
                   uuid ? uuid : "?");
        return SL_EINVAL;
    }
    if (!(r->uuid = strdup(uuid)) || !(r->org = strdup(org)) ||
        !(r->name = strdup(name ? name : uuid)) || !(r->query = strdup(query)))
        return SL_ENOMEM;
    rc = sl_rql_compile(query, strlen(query), &r->prog, &qe);
    if (rc == SL_EINVAL) {
        sl_set_err(err, errlen, "rule \"%s\" (%s): query: line %d, column %d: %s", r->name, uuid,
                   qe.line, qe.col, qe.msg);
        return rc;
    }
    if (rc)
        return rc;
    r->priority = (int)jint(doc, "priority", 1);
    r->global = jbool(doc, "global_rule");
    if (jbool(doc, "expire")) {
        const char *at = jstr(doc, "expire_at");
        int64_t ms = 0;
        if (at && sl_time_parse(at, strlen(at), &ms) == 0)
            r->expire_at_ms = ms > 0 ? ms : 1;
    }
    if (jbool(doc, "add_tags") && (rc = jstrings(doc, "tags_to_add", &r->tags_add, &r->ntags_add)))
        return rc;
    if (jbool(doc, "remove_tags") &&
        (rc = jstrings(doc, "tags_to_remove", &r->tags_remove, &r->ntags_remove)))
        return rc;
    r->create_new_case = jbool(doc, "create_new_case");
    if (r->create_new_case && jstr(doc, "case_template") &&
        !(r->case_template = strdup(jstr(doc, "case_template"))))
        return SL_ENOMEM;
    if (jbool(doc, "set_organization") && jstr(doc, "target_organization") &&
        !(r->target_org = strdup(jstr(doc, "target_organization"))))
        return SL_ENOMEM;
    if (jbool(doc, "merge_into_case") && jstr(doc, "target_case_uuid") &&
        !(r->target_case = strdup(jstr(doc, "target_case_uuid"))))
        return SL_ENOMEM;
    r->dismiss = jbool(doc, "dismiss");
    if (r->dismiss) {
        const char *comment = jstr(doc, "dismiss_comment");
        r->dismiss_reason = strdup(close_reason_title(close_reasons, jstr(doc, "dismiss_reason")));
        r->dismiss_comment = strdup(comment ? comment : "");
        if (!r->dismiss_reason || !r->dismiss_comment)
            return SL_ENOMEM;
    }
    r->update_severity = jbool(doc, "update_severity");
    r->target_severity = (int)jint(doc, "target_severity", 1);
    if (r->target_severity < 0 || r->target_severity > 4)
        r->update_severity = 0;
    if (jbool(doc, "mute_event")) {
        int64_t minutes = jint(doc, "mute_period", 0);
        if (minutes > 0 && minutes <= 525600)
            r->mute_period_ms = minutes * 60000;
    }
    return 0;
}

/* "list: <name>" lowercased with spaces as '-', as the reference tags. */
static char *list_tag(const char *name)
{
    size_t n = strlen(name);
    char *t = malloc(n + 7);
    if (!t)
        return NULL;
    memcpy(t, "list: ", 6);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        t[6 + i] = c == ' ' ? '-' : (c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c);
    }
    t[6 + n] = 0;
    if (n + 6 > TAG_MAX)
        t[TAG_MAX] = 0;
    return t;
}

/* Values arrive as strings (values, patterns) or, for csv lists, JSON arrays of cells (from
 * the store: their text). */
struct value_sink {
    struct sl_intel_builder *b;
    int csv;
    const char *list;
    size_t refused;
};

static int add_cells(struct value_sink *s, const cJSON *row)
{
    const char *cells[SL_INTEL_MAX_COLUMNS];
    size_t lens[SL_INTEL_MAX_COLUMNS], n = 0;
    char err[256];
    const cJSON *c;
    cJSON_ArrayForEach(c, row)
    {
        if (n == SL_INTEL_MAX_COLUMNS)
            break;
        cells[n] = cJSON_IsString(c) && c->valuestring ? c->valuestring : "";
        lens[n] = strlen(cells[n]);
        n++;
    }
    int rc = sl_intel_builder_add_row(s->b, cells, lens, n, err, sizeof(err));
    if (rc == SL_EINVAL && s->refused++ == 0)
        SL_WARN("intel list %s: value refused: %s", s->list, err);
    return rc == SL_ENOMEM ? rc : 0;
}

static int sink_value(void *ud, const char *value, size_t len)
{
    struct value_sink *s = ud;
    char err[256];
    if (s->csv) {
        cJSON *row = cJSON_ParseWithLength(value, len);
        int rc = cJSON_IsArray(row) ? add_cells(s, row) : 0;
        cJSON_Delete(row);
        return rc;
    }
    int rc = sl_intel_builder_add(s->b, value, len, err, sizeof(err));
    if (rc == SL_EINVAL && s->refused++ == 0)
        SL_WARN("intel list %s: value refused: %s", s->list, err);
    return rc == SL_ENOMEM ? rc : 0;
}

/* Where a list's values come from: the store, or a document's "values" array. */
struct values_src {
    struct sl_store *st;
    const cJSON *values;
};

static int list_from_doc(struct rs_list *l, const cJSON *doc, const struct values_src *src,
                         char *err, size_t errlen)
{
    const char *uuid = jstr(doc, "uuid"), *org = jstr(doc, "organization");
    const char *name = jstr(doc, "name"), *type = jstr(doc, "list_type");
    const char *columns[SL_INTEL_MAX_COLUMNS];
    struct sl_intel_def def = {0};
    int rc;
    memset(l, 0, sizeof(*l));
    if (!uuid || !org || !name || !type) {
        sl_set_err(err, errlen, "list %s: uuid, organization, name and list_type are required",
                   uuid ? uuid : "?");
        return SL_EINVAL;
    }
    def.type = !strcmp(type, "patterns") ? SL_INTEL_PATTERNS
               : !strcmp(type, "csv")    ? SL_INTEL_CSV
                                         : SL_INTEL_VALUES;
    def.uuid = uuid;
    def.name = name;
    def.data_type = jstr(doc, "data_type");
    if (!def.data_type)
        def.data_type = "generic";
    def.case_sensitive = jbool(doc, "case_sensitive");
    if (def.type == SL_INTEL_CSV) {
        const cJSON *headers = cJSON_GetObjectItemCaseSensitive(doc, "csv_headers");
        const cJSON *map = cJSON_GetObjectItemCaseSensitive(doc, "csv_header_map");
        const cJSON *h;
        cJSON_ArrayForEach(h, headers)
        {
            if (def.ncsv_columns == SL_INTEL_MAX_COLUMNS)
                break;
            const char *t = cJSON_IsString(h) ? jstr(map, h->valuestring) : NULL;
            columns[def.ncsv_columns++] = t ? t : "none";
        }
        def.csv_columns = columns;
    }
    if (!(l->uuid = strdup(uuid)) || !(l->org = strdup(org)) || !(l->name = strdup(name)) ||
        !(l->tag = list_tag(name)))
        return SL_ENOMEM;
    l->global = jbool(doc, "global_list");
    l->tag_on_match = jbool(doc, "tag_on_match");
    l->flag_ioc = jbool(doc, "flag_ioc");
    l->flag_safe = jbool(doc, "flag_safe");
    l->flag_spotted = jbool(doc, "flag_spotted");
    l->type = def.type;
    struct value_sink sink = {sl_intel_builder_new(&def), def.type == SL_INTEL_CSV, name, 0};
    if (!sink.b) {
        sl_set_err(err, errlen, "list \"%s\": cannot build (csv lists need csv_headers)", name);
        return SL_EINVAL;
    }
    rc = 0;
    if (src->st) {
        rc = sl_store_list_values_iter(src->st, uuid, sink_value, &sink);
    } else {
        const cJSON *v, *values = cJSON_GetObjectItemCaseSensitive(src->values, "values");
        cJSON_ArrayForEach(v, values)
        {
            if (rc)
                break;
            if (cJSON_IsArray(v))
                rc = sink.csv ? add_cells(&sink, v) : 0;
            else if (cJSON_IsString(v) && v->valuestring)
                rc = sink_value(&sink, v->valuestring, strlen(v->valuestring));
        }
    }
    if (rc) {
        sl_intel_builder_free(sink.b);
        sl_set_err(err, errlen, "list \"%s\": values: %s", name, sl_strerror(rc));
        return rc;
    }
    if (sink.refused > 1)
        SL_WARN("intel list %s: %zu values refused", name, sink.refused);
    rc = sl_intel_builder_finish(sink.b, &l->compiled, err, errlen);
    if (rc == 0)
        l->data_type = sl_intel_list_def(l->compiled)->data_type;
    return rc;
}

static int cmp_rule(const void *a, const void *b)
{
    const struct rs_rule *x = *(struct rs_rule *const *)a, *y = *(struct rs_rule *const *)b;
    if (x->priority != y->priority)
        return x->priority < y->priority ? -1 : 1;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->uuid, y->uuid);
}

static int cmp_org(const void *a, const void *b)
{
    return strcmp(((const struct rs_org *)a)->uuid, ((const struct rs_org *)b)->uuid);
}

/* Builds the rule index of o. */
static int org_index(struct rs_org *o)
{
    const struct sl_rql **progs = calloc(o->nrules + 1, sizeof(*progs));
    const char **queries = calloc(o->nrules + 1, sizeof(*queries));
    int rc = 0;
    if (progs && queries) {
        for (size_t i = 0; i < o->nrules; i++) {
            progs[i] = o->rules[i]->prog;
            queries[i] = o->rules[i]->query;
        }
        o->index = sl_rql_index_build(progs, queries, o->nrules);
    }
    if (!o->index)
        rc = SL_ENOMEM;
    else
        o->nwords = sl_rql_index_words(o->index);
    free(progs);
    free(queries);
    return rc;
}

/* A values or patterns list of one data type (not "generic"): only observables of that type
 * meet it. */
static int typed_list(const struct rs_list *l)
{
    return l->type != SL_INTEL_CSV && strcmp(l->data_type, "generic") != 0;
}

/* Groups o's lists by the data types of observables they can match (struct rs_dtlists). */
static int org_data_types(struct rs_org *o)
{
    if (!(o->dts = calloc(o->nlists + 1, sizeof(*o->dts))))
        return SL_ENOMEM;
    for (size_t i = 0; i < o->nlists; i++) {
        const struct rs_list *l = o->lists[i];
        size_t k = 0;
        while (k < o->ndts && strcmp(o->dts[k].data_type, l->data_type) != 0)
            k++;
        if (typed_list(l) && k == o->ndts)
            o->dts[o->ndts++].data_type = l->data_type;
    }
    for (size_t k = 0; k <= o->ndts; k++) {
        struct rs_dtlists *d = &o->dts[k];
        if (!(d->lists = calloc(o->nlists + 1, sizeof(*d->lists))))
            return SL_ENOMEM;
        for (size_t i = 0; i < o->nlists; i++) {
            const struct rs_list *l = o->lists[i];
            if (!typed_list(l) || (d->data_type && !strcmp(l->data_type, d->data_type)))
                d->lists[d->n++] = l;
        }
    }
    return 0;
}

/* Fills o with the rules and lists that apply to organization uuid (its own and the global
 * ones; uuid NULL: the global ones only). */
static int org_fill(struct sl_ruleset *rs, struct rs_org *o, const char *uuid)
{
    o->rules = calloc(rs->nrules + 1, sizeof(*o->rules));
    o->lists = calloc(rs->nlists + 1, sizeof(*o->lists));
    if (!o->rules || !o->lists)
        return SL_ENOMEM;
    for (size_t i = 0; i < rs->nrules; i++) {
        struct rs_rule *r = &rs->rules[i];
        if ((uuid && !strcmp(r->org, uuid)) || (r->global && !strcmp(r->org, rs->default_org)))
            o->rules[o->nrules++] = r;
    }
    for (size_t i = 0; i < rs->nlists; i++) {
        struct rs_list *l = &rs->lists[i];
        if ((uuid && !strcmp(l->org, uuid)) || (l->global && !strcmp(l->org, rs->default_org)))
            o->lists[o->nlists++] = l;
    }
    qsort(o->rules, o->nrules, sizeof(*o->rules), cmp_rule);
    int rc = org_data_types(o);
    return rc ? rc : org_index(o);
}

static int add_org(struct sl_ruleset *rs, size_t *cap, const char *uuid)
{
    for (size_t i = 0; i < rs->norgs; i++)
        if (!strcmp(rs->orgs[i].uuid, uuid))
            return 0;
    if (strlen(uuid) > SL_UUID_LEN)
        return 0;
    if (rs->norgs == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct rs_org *n = realloc(rs->orgs, ncap * sizeof(*n));
        if (!n)
            return SL_ENOMEM;
        rs->orgs = n;
        *cap = ncap;
    }
    memset(&rs->orgs[rs->norgs], 0, sizeof(rs->orgs[0]));
    snprintf(rs->orgs[rs->norgs].uuid, sizeof(rs->orgs[0].uuid), "%s", uuid);
    rs->norgs++;
    return 0;
}

/* The documents of one load, wherever they came from. */
struct docs {
    const cJSON *const *rules;
    size_t nrules;
    const cJSON *const *lists;
    size_t nlists;
    const cJSON *close_reasons; /* array */
    const char *const *orgs;    /* known organizations (may be empty) */
    size_t norgs;
    struct sl_store *st; /* values from the store, or from each list doc */
    int strict;          /* a rule that does not compile fails the build */
};

static int build(const struct docs *d, const char *default_org, int64_t now_ms,
                 struct sl_ruleset **out, char *err, size_t errlen)
{
    struct sl_ruleset *rs = calloc(1, sizeof(*rs));
    size_t orgcap = 0;
    int rc = 0;
    *out = NULL;
    if (!rs)
        return SL_ENOMEM;
    snprintf(rs->default_org, sizeof(rs->default_org), "%s", default_org ? default_org : "");
    rs->next_expiry = INT64_MAX;
    rs->rules = calloc(d->nrules + 1, sizeof(*rs->rules));
    rs->lists = calloc(d->nlists + 1, sizeof(*rs->lists));
    if (!rs->rules || !rs->lists) {
        rc = SL_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < d->nlists; i++) {
        const cJSON *doc = d->lists[i];
        struct values_src src = {d->st, doc};
        char lerr[512];
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(doc, "active")))
            continue;
        rc = list_from_doc(&rs->lists[rs->nlists], doc, &src, lerr, sizeof(lerr));
        if (rc == 0) {
            rs->nlists++;
            continue;
        }
        list_fini(&rs->lists[rs->nlists]);
        if (rc == SL_ENOMEM || d->strict) {
            sl_set_err(err, errlen, "%s", lerr);
            goto fail;
        }
        SL_WARN("intel list skipped: %s", lerr);
        rc = 0;
    }
    for (size_t i = 0; i < d->nrules; i++) {
        const cJSON *doc = d->rules[i];
        char rerr[512];
        if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(doc, "active")))
            continue;
        struct rs_rule *r = &rs->rules[rs->nrules];
        rc = rule_from_doc(r, doc, d->close_reasons, rerr, sizeof(rerr));
        if (rc == 0 && r->expire_at_ms && r->expire_at_ms <= now_ms) {
            rule_fini(r); /* expired: never fires again */
            continue;
        }
        if (rc == 0) {
            if (r->expire_at_ms && r->expire_at_ms < rs->next_expiry)
                rs->next_expiry = r->expire_at_ms;
            rs->nrules++;
            continue;
        }
        rule_fini(r);
        if (rc == SL_ENOMEM || d->strict) {
            sl_set_err(err, errlen, "%s", rc == SL_ENOMEM ? "out of memory" : rerr);
            goto fail;
        }
        SL_WARN("event rule skipped: %s", rerr);
        rc = 0;
    }
    for (size_t i = 0; i < d->norgs && rc == 0; i++)
        rc = add_org(rs, &orgcap, d->orgs[i]);
    for (size_t i = 0; i < rs->nrules && rc == 0; i++)
        rc = add_org(rs, &orgcap, rs->rules[i].org);
    for (size_t i = 0; i < rs->nlists && rc == 0; i++)
        rc = add_org(rs, &orgcap, rs->lists[i].org);
    for (size_t i = 0; i < rs->norgs && rc == 0; i++)
        rc = org_fill(rs, &rs->orgs[i], rs->orgs[i].uuid);
    if (rc == 0)
        rc = org_fill(rs, &rs->global, NULL);
    if (rc)
        goto fail;
    if (rs->norgs)
        qsort(rs->orgs, rs->norgs, sizeof(*rs->orgs), cmp_org);
    *out = rs;
    return 0;
fail:
    if (rc == SL_ENOMEM)
        sl_set_err(err, errlen, "out of memory");
    sl_ruleset_free(rs);
    return rc ? rc : SL_ENOMEM;
}

/* Collects the items of a JSON array into a vector of pointers. */
static const cJSON **items(const cJSON *array, size_t *n)
{
    size_t cap = cJSON_IsArray(array) ? (size_t)cJSON_GetArraySize(array) : 0;
    const cJSON **v = calloc(cap + 1, sizeof(*v));
    const cJSON *e;
    *n = 0;
    if (!v)
        return NULL;
    cJSON_ArrayForEach(e, array)
    {
        if (cJSON_IsObject(e) && *n < cap)
            v[(*n)++] = e;
    }
    return v;
}

int sl_ruleset_build(const cJSON *rules, const cJSON *lists, const cJSON *close_reasons,
                     const char *default_org, int64_t now_ms, struct sl_ruleset **out, char *err,
                     size_t errlen)
{
    struct docs d = {0};
    const cJSON **r = items(rules, &d.nrules), **l = items(lists, &d.nlists);
    int rc = SL_ENOMEM;
    d.rules = r;
    d.lists = l;
    d.close_reasons = close_reasons;
    d.strict = 1;
    if (r && l)
        rc = build(&d, default_org, now_ms, out, err, errlen);
    else
        sl_set_err(err, errlen, "out of memory");
    free(r);
    free(l);
    return rc;
}

/* Parses the docs of meta rows into one JSON array (owned by the caller). */
static cJSON *parse_docs(const struct sl_meta *m, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++) {
        cJSON *doc = m[i].doc ? cJSON_Parse(m[i].doc) : NULL;
        if (!doc) {
            SL_WARN("metadata %s: stored document is not JSON; skipped", m[i].uuid);
            continue;
        }
        if (!cJSON_AddItemToArray(a, doc)) {
            cJSON_Delete(doc);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

int sl_ruleset_load(struct sl_store *st, int64_t now_ms, struct sl_ruleset **out, char *err,
                    size_t errlen)
{
    struct sl_meta *rules = NULL, *lists = NULL, *reasons = NULL;
    size_t nrules = 0, nlists = 0, nreasons = 0, norgs = 0;
    struct sl_org *orgs = NULL;
    cJSON *rdocs = NULL, *ldocs = NULL, *cdocs = NULL;
    const char **orgids = NULL;
    const char *def = NULL;
    int rc;
    *out = NULL;
    if ((rc = sl_store_org_list(st, &orgs, &norgs)) ||
        (rc = sl_store_meta_list(st, SL_META_RULE, NULL, 0, &rules, &nrules)) ||
        (rc = sl_store_meta_list(st, SL_META_LIST, NULL, 0, &lists, &nlists)) ||
        (rc = sl_store_meta_list(st, SL_META_CLOSE_REASON, NULL, 0, &reasons, &nreasons))) {
        sl_set_err(err, errlen, "cannot read metadata: %s", sl_strerror(rc));
        goto out;
    }
    rdocs = parse_docs(rules, nrules);
    ldocs = parse_docs(lists, nlists);
    cdocs = parse_docs(reasons, nreasons);
    orgids = calloc(norgs + 1, sizeof(*orgids));
    if (!rdocs || !ldocs || !cdocs || !orgids) {
        rc = SL_ENOMEM;
        sl_set_err(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < norgs; i++) {
        orgids[i] = orgs[i].uuid;
        if (orgs[i].is_default)
            def = orgs[i].uuid;
    }
    struct docs d = {0};
    const cJSON **r = items(rdocs, &d.nrules), **l = items(ldocs, &d.nlists);
    d.rules = r;
    d.lists = l;
    d.close_reasons = cdocs;
    d.orgs = orgids;
    d.norgs = norgs;
    d.st = st;
    if (r && l) {
        rc = build(&d, def, now_ms, out, err, errlen);
    } else {
        rc = SL_ENOMEM;
        sl_set_err(err, errlen, "out of memory");
    }
    free(r);
    free(l);
out:
    cJSON_Delete(rdocs);
    cJSON_Delete(ldocs);
    cJSON_Delete(cdocs);
    free(orgids);
    free(orgs);
    sl_store_meta_free(rules, nrules);
    sl_store_meta_free(lists, nlists);
    sl_store_meta_free(reasons, nreasons);
    return rc;
}

size_t sl_ruleset_rule_count(const struct sl_ruleset *rs)
{
    return rs ? rs->nrules : 0;
}

size_t sl_ruleset_list_count(const struct sl_ruleset *rs)
{
    return rs ? rs->nlists : 0;
}

int64_t sl_ruleset_next_expiry(const struct sl_ruleset *rs)
{
    return rs ? rs->next_expiry : INT64_MAX;
}

/* ---- evaluation environment ------------------------------------------------------------- */

static const struct rs_org *find_org(const struct sl_ruleset *rs, const char *uuid)
{
    size_t lo = 0, hi = rs->norgs;
    while (uuid && lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(uuid, rs->orgs[mid].uuid);
        if (c == 0)
            return &rs->orgs[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return &rs->global;
}

static const struct rs_list *find_list(const struct rs_org *o, const char *name)
{
    for (size_t i = 0; i < o->nlists; i++)
        if (o->lists[i]->name[0] == name[0] && !strcmp(o->lists[i]->name, name))
            return o->lists[i];
    return NULL;
}

static int env_intel_match(void *ud, const char *list, const char *value, size_t len,
                           const char *data_type)
{
    const struct rs_list *l = find_list(ud, list);
    return l ? sl_intel_match(l->compiled, data_type, value, len) : 0;
}

static int env_intel_cidr(void *ud, const char *list, const char *ip, size_t len)
{
    const struct rs_list *l = find_list(ud, list);
    return l ? sl_intel_match_cidr(l->compiled, ip, len) : 0;
}

void sl_ruleset_env(const struct sl_ruleset *rs, const char *org, struct sl_rql_env *env)
{
    memset(env, 0, sizeof(*env));
    env->ud = (void *)find_org(rs, org);
    env->intel_match = env_intel_match;
    env->intel_cidr = env_intel_cidr;
}

/* The worker's environment: the organization's lists plus the hooks' network lookups. */
struct apply_env {
    const struct rs_org *org;
    const struct sl_rules_hooks *hooks;
    struct sl_rules_result *out;
    const char *last_name; /* the list name asked for last (a program's or the index's string) */
    const struct rs_list *last_list;
};

static int apply_intel_match(void *ud, const char *list, const char *value, size_t len,
                             const char *data_type)
{
    struct apply_env *ae = ud;
    /* The same name string comes back for every value of a field: look it up once. */
    if (list != ae->last_name) {
        ae->last_name = list;
        ae->last_list = find_list(ae->org, list);
    }
    return ae->last_list ? sl_intel_match(ae->last_list->compiled, data_type, value, len) : 0;
}

static int apply_intel_cidr(void *ud, const char *list, const char *ip, size_t len)
{
    return env_intel_cidr((void *)((struct apply_env *)ud)->org, list, ip, len);
}

static int apply_geo(void *ud, enum sl_rql_geo kind, const char *ip, char *out, size_t outlen)
{
    const struct sl_rules_hooks *h = ((struct apply_env *)ud)->hooks;
    return h && h->geo ? h->geo(h->ud, kind, ip, out, outlen) : 0;
}

static int apply_dns(void *ud, enum sl_rql_dns kind, const char *name, char out[][256], int max)
{
    struct apply_env *ae = ud;
    const struct sl_rules_hooks *h = ae->hooks;
    int n = h && h->dns ? h->dns(h->ud, kind, name, out, max) : 0;
    if (n < 0)
        ae->out->dns_misses++;
    return n;
}

/* ---- editing the event ------------------------------------------------------------------ */

/* Sets member key of obj to item (owned). SL_ENOMEM if item is NULL or cannot be linked. */
static int set_member(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return SL_ENOMEM;
    if (cJSON_GetObjectItemCaseSensitive(obj, key)
            ? !cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item)
            : !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return SL_ENOMEM;
    }
    return 0;
}

/* The array member key of obj, created if absent (replacing a non-array). NULL: no memory. */
static cJSON *array_member(cJSON *obj, const char *key)
{
    cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (cJSON_IsArray(a))
        return a;
    return set_member(obj, key, cJSON_CreateArray()) ? NULL
                                                     : cJSON_GetObjectItemCaseSensitive(obj, key);
}

static int has_string(const cJSON *a, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (cJSON_IsString(e) && e->valuestring && !strcmp(e->valuestring, s))
            return 1;
    }
    return 0;
}

static int add_unique(cJSON *obj, const char *key, const char *s)
{
    cJSON *a = array_member(obj, key);
    if (!a)
        return SL_ENOMEM;
    if (has_string(a, s))
        return 0;
    cJSON *v = cJSON_CreateString(s);
    if (!v || !cJSON_AddItemToArray(a, v)) {
        cJSON_Delete(v);
        return SL_ENOMEM;
    }
    return 0;
}

static void remove_string(cJSON *obj, const char *key, const char *s)
{
    cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key);
    for (cJSON *e = cJSON_IsArray(a) ? a->child : NULL, *next; e; e = next) {
        next = e->next;
        if (cJSON_IsString(e) && e->valuestring && !strcmp(e->valuestring, s))
            cJSON_Delete(cJSON_DetachItemViaPointer(a, e));
    }
}

static int set_status(cJSON *ev, const char *name, int closed)
{
    cJSON *st = cJSON_CreateObject();
    if (!st || !cJSON_AddStringToObject(st, "name", name) ||
        !cJSON_AddBoolToObject(st, "closed", closed)) {
        cJSON_Delete(st);
        return SL_ENOMEM;
    }
    return set_member(ev, "status", st);
}

static int set_string(cJSON *ev, const char *key, const char *value)
{
    return set_member(ev, key, cJSON_CreateString(value));
}

static int set_dismissed(cJSON *ev, const char *reason, const char *comment, int64_t now_ms)
{
    char iso[25];
    int rc;
    sl_time_format(now_ms, iso);
    if ((rc = set_status(ev, "Dismissed", 1)) || (rc = set_string(ev, "dismissed_at", iso)) ||
        (rc = set_string(ev, "dismiss_reason", reason)) ||
        (rc = set_string(ev, "dismiss_comment", comment)) ||
        (rc = set_member(ev, "time_to_dismiss", cJSON_CreateNumber(0))))
        return rc;
    return 0;
}

/* The lists an observable of data type dt (NULL: none) is checked against. */
static const struct rs_dtlists *lists_for(const struct rs_org *o, const char *dt)
{
    for (size_t k = 0; dt && k < o->ndts; k++)
        if (o->dts[k].data_type[0] == dt[0] && !strcmp(o->dts[k].data_type, dt))
            return &o->dts[k];
    return &o->dts[o->ndts];
}

/* The observable's "value" and "data_type" strings (each the first member of that name, NULL
 * when it is not a string), as jstr finds them, in one pass. */
static void observable_fields(const cJSON *ob, const char **value, const char **dt)
{
    int seen_value = 0, seen_dt = 0;
    *value = *dt = NULL;
    for (const cJSON *c = cJSON_IsObject(ob) ? ob->child : NULL; c; c = c->next) {
        const char *k = c->string, *v = cJSON_IsString(c) ? c->valuestring : NULL;
        if (!k)
            continue;
        if (!seen_value && k[0] == 'v' && !strcmp(k, "value")) {
            seen_value = 1;
            *value = v;
        } else if (!seen_dt && k[0] == 'd' && !strcmp(k, "data_type")) {
            seen_dt = 1;
            *dt = v;
        }
        if (seen_value && seen_dt)
            break;
    }
}

/* Step 1: every observable against the organization's lists. */
static int check_intel(const struct rs_org *o, cJSON *ev, cJSON *obs, struct sl_rules_result *out)
{
    cJSON *ob;
    int rc;
    if (o->nlists == 0 || !cJSON_IsArray(obs))
        return 0;
    struct sl_intel_value val; /* the value's folded text and address, found once */
    cJSON_ArrayForEach(ob, obs)
    {
        const char *value, *dt;
        int hit = 0;
        observable_fields(ob, &value, &dt);
        if (!value)
            continue;
        const struct rs_dtlists *d = lists_for(o, dt);
        sl_intel_value_init(&val, value, strlen(value));
        for (size_t i = 0; i < d->n; i++) {
            const struct rs_list *l = d->lists[i];
            /* A typed list is in d only for its own data type: its name says it (and saves a
             * comparison). */
            const char *want = typed_list(l) ? l->data_type : dt ? dt : "generic";
            if (!sl_intel_match_value(l->compiled, want, &val))
                continue;
            hit = 1;
            /* The list's flags mark the observable; a flag the list does not set is left as it
             * was (the reference overwrites it with false). These edits leave the "value"
             * member, which val reads, in place. */
            if ((l->flag_ioc && (rc = set_member(ob, "ioc", cJSON_CreateTrue()))) ||
                (l->flag_safe && (rc = set_member(ob, "safe", cJSON_CreateTrue()))) ||
                (l->flag_spotted && (rc = set_member(ob, "spotted", cJSON_CreateTrue()))) ||
                (rc = add_unique(ob, "intel_lists", l->name)))
                return rc;
            if (l->tag_on_match &&
                ((rc = add_unique(ob, "tags", l->tag)) || (rc = add_unique(ev, "tags", l->tag))))
                return rc;
        }
        out->intel_hits += (unsigned)hit;
    }
    return 0;
}

/* Every top-level member of the event that act() and a hit write (and nothing else). */
static const char *const act_members[] = {
    "tags",
    "case",
    "status",
    "organization",
    "dismissed_at",
    "dismiss_reason",
    "dismiss_comment",
    "time_to_dismiss",
    "dismissed_by_rule",
    "severity",
    "event_rules",
};

/* A rule's actions, in the reference's order. */
static int act(const struct sl_ruleset *rs, const struct rs_rule *r, cJSON *ev, int64_t now_ms,
               struct sl_rules_result *out)
{
    int rc;
    for (size_t i = 0; i < r->ntags_add; i++)
        if ((rc = add_unique(ev, "tags", r->tags_add[i])))
            return rc;
    for (size_t i = 0; i < r->ntags_remove; i++)
        remove_string(ev, "tags", r->tags_remove[i]);
    if (r->create_new_case) {
        const char *uuid = jstr(ev, "uuid");
        const char *parts[3] = {uuid ? uuid : "", r->uuid, "case"};
        const size_t lens[3] = {strlen(parts[0]), strlen(parts[1]), 4};
        if (sl_uuid_from_parts(parts, lens, 3, out->case_uuid))
            return SL_ENOMEM;
        out->new_case = 1;
        out->new_case_rule = r->uuid;
        out->new_case_template = r->case_template;
        if ((rc = set_string(ev, "case", out->case_uuid)) || (rc = set_status(ev, "Open", 0)))
            return rc;
    }
    /* Only the default organization's rules may move events (the API refuses the others; a
     * stored rule from elsewhere is not trusted either). */
    if (r->target_org && !strcmp(r->org, rs->default_org) && sl_uuid_valid(r->target_org) &&
        (rc = set_string(ev, "organization", r->target_org)))
        return rc;
    if (r->target_case) {
        snprintf(out->case_uuid, sizeof(out->case_uuid), "%s", r->target_case);
        out->new_case = 0;
        if ((rc = set_string(ev, "case", r->target_case)) || (rc = set_status(ev, "Open", 0)))
            return rc;
    }
    if (r->dismiss) {
        if ((rc = set_dismissed(ev, r->dismiss_reason, r->dismiss_comment, now_ms)) ||
            (rc = set_member(ev, "dismissed_by_rule", cJSON_CreateTrue())))
            return rc;
    }
    if (r->update_severity &&
        (rc = set_member(ev, "severity", cJSON_CreateNumber(r->target_severity))))
        return rc;
    if (r->mute_period_ms > 0 && now_ms + r->mute_period_ms > out->mute_until_ms) {
        out->mute_until_ms = now_ms + r->mute_period_ms;
        out->mute_rule = r->uuid;
    }
    return 0;
}

/* A bitmap of nwords for this thread (grown as needed, kept for the next event, freed when the
 * thread exits). */
static _Thread_local uint64_t *tls_bits;
static _Thread_local size_t tls_bits_cap;
static pthread_key_t bits_key;
static pthread_once_t bits_once = PTHREAD_ONCE_INIT;
static int bits_key_ok;

static void bits_free(void *p)
{
    free(p);
    if (tls_bits == p) {
        tls_bits = NULL;
        tls_bits_cap = 0;
    }
}

static void bits_key_init(void)
{
    bits_key_ok = pthread_key_create(&bits_key, bits_free) == 0;
}

static uint64_t *thread_bits(size_t nwords)
{
    if (nwords > tls_bits_cap) {
        pthread_once(&bits_once, bits_key_init);
        uint64_t *b = realloc(tls_bits, nwords * sizeof(*b));
        if (!b)
            return NULL;
        tls_bits = b;
        tls_bits_cap = nwords;
        if (bits_key_ok)
            (void)pthread_setspecific(bits_key, b); /* without it, the bitmap outlives the thread */
    }
    return tls_bits;
}

/* The event's "organization" and "signature" strings (NULL when not strings) and its
 * "observables" member, each the first of its name (as jstr and cJSON find them), in one pass.
 * The intel check edits tags and observables, never these members. */
static void event_fields(cJSON *ev, const char **org, const char **sig, cJSON **obs)
{
    int seen_org = 0, seen_sig = 0, seen_obs = 0;
    *org = *sig = NULL;
    *obs = NULL;
    for (cJSON *c = cJSON_IsObject(ev) ? ev->child : NULL; c; c = c->next) {
        const char *k = c->string, *v = cJSON_IsString(c) ? c->valuestring : NULL;
        if (!k)
            continue;
        if (!seen_org && k[0] == 'o' && !strcmp(k, "organization")) {
            seen_org = 1;
            *org = v;
        } else if (!seen_sig && k[0] == 's' && !strcmp(k, "signature")) {
            seen_sig = 1;
            *sig = v;
        } else if (!seen_obs && k[0] == 'o' && !strcmp(k, "observables")) {
            seen_obs = 1;
            *obs = c;
        }
        if (seen_org && seen_sig && seen_obs)
            break;
    }
}

/* Clears out but for rules[] (8 KB; only rules[0..nrules) is read). */
_Static_assert(offsetof(struct sl_rules_result, rules) == 0, "rules[] is first, nrules follows");
static void result_init(struct sl_rules_result *out)
{
    size_t off = offsetof(struct sl_rules_result, nrules);
    memset((char *)out + off, 0, sizeof(*out) - off);
}

int sl_ruleset_apply(const struct sl_ruleset *rs, cJSON *event, int64_t now_ms,
                     const struct sl_rules_hooks *hooks, struct sl_arena *scratch,
                     struct sl_rules_result *out)
{
    const char *org, *sig;
    cJSON *obs;
    event_fields(event, &org, &sig, &obs);
    const struct rs_org *o = find_org(rs, org);
    struct apply_env ae = {o, hooks, out, NULL, NULL};
    struct sl_rql_env env = {&ae, apply_intel_match, apply_intel_cidr, apply_geo, apply_dns};
    struct sl_rql_input in = {event, NULL, 0};
    int rc;
    result_init(out);
    if ((rc = check_intel(o, event, obs, out)))
        return rc;
    /* A muted signature: stored, but dismissed, and no rule runs on it. */
    char mute_rule[SL_UUID_LEN + 1];
    if (hooks && hooks->muted && org && sig &&
        hooks->muted(hooks->ud, org, sig, now_ms, mute_rule)) {
        out->muted = 1;
        if ((rc = set_dismissed(event, "Muted", "muted by an event rule", now_ms)) ||
            (rc = set_member(event, "muted", cJSON_CreateTrue())) ||
            (rc = set_string(event, "muted_by_rule", mute_rule)))
            return rc;
        return 0;
    }
    uint64_t *bits = o->nrules ? thread_bits(o->nwords) : NULL;
    if (o->nrules && !bits)
        return SL_ENOMEM;
    if (bits)
        sl_rql_index_candidates(o->index, &in, &env, scratch, bits);
    /* Only the candidates (set bits, in rule order) are evaluated. */
    for (size_t w = 0; bits && w * 64 < o->nrules; w++) {
        uint64_t word = bits[w];
        while (word) {
            size_t i = w * 64 + (size_t)__builtin_ctzll(word);
            word &= word - 1;
            if (i >= o->nrules)
                break;
            const struct rs_rule *r = o->rules[i];
            int oom = 0;
            if (r->expire_at_ms && r->expire_at_ms <= now_ms)
                continue;
            if (scratch)
                sl_arena_reset(scratch);
            int hit = sl_rql_match(r->prog, &in, &env, scratch, &oom);
            if (oom)
                out->rule_errors++;
            if (!hit)
                continue;
            if ((rc = add_unique(event, "event_rules", r->uuid)))
                goto done;
            if (out->nrules < SL_RULES_MAX_HITS)
                out->rules[out->nrules++] = r->uuid;
            out->nrules_total++;
            if ((rc = act(rs, r, event, now_ms, out)))
                goto done;
            /* The actions may have changed the fields later rules are keyed on: the candidates
             * of the members they write are added (the others are as they were). */
            if (scratch)
                sl_arena_reset(scratch);
            sl_rql_index_update(o->index, &in, &env, scratch, act_members,
                                sizeof(act_members) / sizeof(act_members[0]), bits);
            word = i % 64 == 63 ? 0 : bits[w] & (~0ULL << (i % 64 + 1));
        }
    }
done:
    sl_rql_input_fini(&in);
    return rc;
}

int sl_ruleset_apply_rule(const struct sl_ruleset *rs, const char *rule_uuid, cJSON *event,
                          int64_t now_ms, const struct sl_rules_hooks *hooks,
                          struct sl_arena *scratch, struct sl_rules_result *out)
{
    const char *org = jstr(event, "organization");
    const struct rs_org *o = find_org(rs, org);
    const struct rs_rule *r = NULL;
    struct apply_env ae = {o, hooks, out, NULL, NULL};
    struct sl_rql_env env = {&ae, apply_intel_match, apply_intel_cidr, apply_geo, apply_dns};
    struct sl_rql_input in = {event, NULL, 0};
    int oom = 0, rc;
    result_init(out);
    for (size_t i = 0; i < o->nrules && !r; i++)
        if (!strcmp(o->rules[i]->uuid, rule_uuid))
            r = o->rules[i];
    if (!r || (r->expire_at_ms && r->expire_at_ms <= now_ms))
        return SL_ENOTFOUND;
    if (scratch)
        sl_arena_reset(scratch);
    int hit = sl_rql_match(r->prog, &in, &env, scratch, &oom);
    sl_rql_input_fini(&in);
    if (oom)
        return SL_ENOMEM;
    if (!hit)
        return 0;
    if ((rc = add_unique(event, "event_rules", r->uuid)))
        return rc;
    out->rules[out->nrules++] = r->uuid;
    out->nrules_total = 1;
    rc = act(rs, r, event, now_ms, out);
    return rc ? rc : 1;
}
