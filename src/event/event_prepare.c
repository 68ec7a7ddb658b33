/* Worker side of the event model: turns a stream record into a stored event (observables
 * cleaned and typed, signature, uuid, status, dates) and computes event signatures. */
#include "event/event.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "core/error.h"

#define LEVEL_MAX     4
#define SORT_ON_STACK 64 /* observable values sorted without an allocation */

/* ---- signature -------------------------------------------------------------------------- */

static void digest_str(EVP_MD_CTX *md, const char *s)
{
    EVP_DigestUpdate(md, s, strlen(s));
}

/* Finishes md into 32 lowercase hex digits; out is "" if the digest failed. */
static void digest_hex(EVP_MD_CTX *md, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char buf[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = 0;
    if (EVP_DigestFinal_ex(md, buf, &n) != 1 || n != 16)
        return;
    for (unsigned int i = 0; i < n; i++) {
        out[2 * i] = hex[buf[i] >> 4];
        out[2 * i + 1] = hex[buf[i] & 15];
    }
    out[32] = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Feeds values to md in strcmp order, joined by 0x1f. */
static void digest_sorted(EVP_MD_CTX *md, const char *const *values, size_t n)
{
    const char *stack[SORT_ON_STACK];
    const char **v = n <= SORT_ON_STACK ? stack : malloc(n * sizeof(*v));
    const char *prev = NULL;
    size_t emitted = 0;
    if (n == 0)
        return;
    if (v) {
        memcpy(v, values, n * sizeof(*v));
        qsort(v, n, sizeof(*v), cmp_str);
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                EVP_DigestUpdate(md, "\x1f", 1);
            digest_str(md, v[i]);
        }
        if (v != stack)
            free(v);
        return;
    }
    /* No memory for a sorted copy: visit the distinct values in order instead (quadratic,
     * but the same bytes), so the signature never depends on the allocator. */
    for (;;) {
        const char *min = NULL;
        size_t count = 0;
        for (size_t i = 0; i < n; i++) {
            if (prev && strcmp(values[i], prev) <= 0)
                continue;
            int c = min ? strcmp(values[i], min) : -1;
            if (c < 0) {
                min = values[i];
                count = 1;
            } else if (c == 0) {
                count++;
            }
        }
        if (!min)
            break;
        while (count-- > 0) {
            if (emitted++ > 0)
                EVP_DigestUpdate(md, "\x1f", 1);
            digest_str(md, min);
        }
        prev = min;
    }
}

void sl_event_signature(const char *org_uuid, const char *client_signature, const char *title,
                        const char *const *values, size_t nvalues, char out[33])
{
    char fallback[33];
    const char *sig = client_signature;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    out[0] = 0;
    if (!md)
        return;
    if (!sig || !sig[0]) {
        if (EVP_DigestInit_ex(md, EVP_md5(), NULL) != 1)
            goto out;
        digest_str(md, title ? title : "");
        EVP_DigestUpdate(md, "\x1f", 1);
        digest_sorted(md, values, nvalues);
        digest_hex(md, fallback);
        if (!fallback[0])
            goto out;
        sig = fallback;
    }
    if (EVP_DigestInit_ex(md, EVP_md5(), NULL) != 1)
        goto out;
    digest_str(md, sig);
    digest_str(md, org_uuid ? org_uuid : "");
    digest_hex(md, out);
out:
    EVP_MD_CTX_free(md);
}

/* ---- the record ------------------------------------------------------------------------- */

/* A required non-empty string member of the record. */
static const char *required_string(const cJSON *tree, const char *key, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(tree, key);
    if (!cJSON_IsString(v) || !v->valuestring || !v->valuestring[0]) {
        sl_set_err(err, errlen, "%s: required (a non-empty string)", key);
        return NULL;
    }
    return v->valuestring;
}

/* Sets member key to item (owned; NULL means out of memory), in the place of the first member
 * of that name if there is one; later ones of that name are removed. */
static int set_member(cJSON *obj, const char *key, cJSON *item)
{
    cJSON *old = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item)
        return SL_ENOMEM;
    if (old ? !cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item)
            : !cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return SL_ENOMEM;
    }
    for (cJSON *c = item->next, *next; c; c = next) {
        next = c->next;
        if (c->string && strcmp(c->string, key) == 0)
            cJSON_Delete(cJSON_DetachItemViaPointer(obj, c));
    }
    return 0;
}

/* Drops observables without a usable value and types the "auto" ones. */
static int clean_observables(cJSON *list, char *err, size_t errlen)
{
    cJSON *o = list->child;
    int idx = 0;
    while (o) {
        cJSON *next = o->next;
        if (!cJSON_IsObject(o)) {
            sl_set_err(err, errlen, "observables[%d]: expected an object", idx);
            return SL_EINVAL;
        }
        cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "value");
        cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "data_type");
        if (v && !cJSON_IsNull(v) && !cJSON_IsString(v)) {
            sl_set_err(err, errlen, "observables[%d].value: expected a string", idx);
            return SL_EINVAL;
        }
        if (t && !cJSON_IsNull(t) && !cJSON_IsString(t)) {
            sl_set_err(err, errlen, "observables[%d].data_type: expected a string", idx);
            return SL_EINVAL;
        }
        idx++;
        if (!cJSON_IsString(v) || !v->valuestring[0] || strcmp(v->valuestring, "-") == 0) {
            cJSON_Delete(cJSON_DetachItemViaPointer(list, o));
            o = next;
            continue;
        }
        if (!cJSON_IsString(t) || strcasecmp(t->valuestring, "auto") == 0) {
            const char *type = sl_event_detect_type(v->valuestring, strlen(v->valuestring));
            if (set_member(o, "data_type", cJSON_CreateStringReference(type)) != 0)
                goto nomem;
        }
        o = next;
    }
    return 0;
nomem:
    sl_set_err(err, errlen, "out of memory");
    return SL_ENOMEM;
}

/* The signature over the cleaned observables; the client's own goes to signature_client. */
static int sign(cJSON *tree, const char *org, const char *title, struct sl_event_prepared *out,
                char *err, size_t errlen)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(tree, "observables");
    const cJSON *o;
    const char *stack[SORT_ON_STACK], **values = stack;
    size_t n = 0, cap = SORT_ON_STACK;
    int rc = 0;
    cJSON *client = cJSON_DetachItemFromObjectCaseSensitive(tree, "signature");
    if (client && !cJSON_IsNull(client) && !cJSON_IsString(client)) {
        sl_set_err(err, errlen, "signature: expected a string");
        rc = SL_EINVAL;
        goto out;
    }
    cJSON_ArrayForEach(o, list)
    {
        if (n == cap) {
            const char **grown = malloc(2 * cap * sizeof(*grown));
            if (!grown) {
                rc = SL_ENOMEM;
                goto out;
            }
            memcpy(grown, values, n * sizeof(*grown));
            if (values != stack)
                free(values);
            values = grown;
            cap *= 2;
        }
        values[n++] = cJSON_GetObjectItemCaseSensitive(o, "value")->valuestring;
    }
    const char *client_sig = cJSON_IsString(client) ? client->valuestring : NULL;
    sl_event_signature(org, client_sig, title, values, n, out->signature);
    if (!out->signature[0]) {
        rc = SL_ENOMEM;
        goto out;
    }
    if ((rc = set_member(tree, "signature", cJSON_CreateString(out->signature))) != 0)
        goto out;
    if (client_sig && client_sig[0]) {
        rc = set_member(tree, "signature_client", client);
        client = NULL; /* owned by the tree now, or freed by set_member */
    }
out:
    if (rc == SL_ENOMEM)
        sl_set_err(err, errlen, "out of memory");
    cJSON_Delete(client);
    if (values != stack)
        free(values);
    return rc;
}

/* original_date: the record's own, else the receive time, else now; created_at: now. */
static int set_dates(cJSON *tree, int64_t now_ms, struct sl_event_prepared *out, char *err,
                     size_t errlen)
{
    const cJSON *od = cJSON_GetObjectItemCaseSensitive(tree, "original_date");
    const cJSON *rx = cJSON_GetObjectItemCaseSensitive(tree, "received_at");
    int have_date = od && !cJSON_IsNull(od);
    char iso[25];
    int64_t ms = now_ms, parsed;
    if (have_date) {
        if (!cJSON_IsString(od) ||
            sl_time_parse(od->valuestring, strlen(od->valuestring), &parsed) != 0) {
            sl_set_err(err, errlen, "original_date: expected an ISO 8601 date-time");
            return SL_EINVAL;
        }
        ms = parsed;
    } else if (cJSON_IsString(rx) &&
               sl_time_parse(rx->valuestring, strlen(rx->valuestring), &parsed) == 0) {
        ms = parsed;
    }
    out->row.original_date_ms = ms;
    out->row.created_ms = now_ms;
    if (!have_date) {
        sl_time_format(ms, iso);
        if (set_member(tree, "original_date", cJSON_CreateString(iso)) != 0)
            goto nomem;
    }
    sl_time_format(now_ms, iso);
    if (set_member(tree, "created_at", cJSON_CreateString(iso)) != 0)
        goto nomem;
    return 0;
nomem:
    sl_set_err(err, errlen, "out of memory");
    return SL_ENOMEM;
}

static int set_status_new(cJSON *tree, struct sl_event_prepared *out, char *err, size_t errlen)
{
    cJSON *status = cJSON_CreateObject();
    cJSON *name = status ? cJSON_AddStringToObject(status, "name", "New") : NULL;
    if (!name || !cJSON_AddFalseToObject(status, "closed")) {
        cJSON_Delete(status);
        status = NULL;
    }
    if (set_member(tree, "status", status) != 0) {
        sl_set_err(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    out->row.status = name->valuestring;
    return 0;
}

/* severity: 0..4, 1 when the record has none. */
static int get_severity(const cJSON *tree, int *out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(tree, "severity");
    *out = 1;
    if (!v || cJSON_IsNull(v))
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!(d >= 0 && d <= LEVEL_MAX) || (double)(int)d != d) {
        sl_set_err(err, errlen, "severity: expected an integer 0..4");
        return SL_EINVAL;
    }
    *out = (int)d;
    return 0;
}

static int parse_record(const void *record, size_t len, struct sl_event_prepared *out, char *err,
                        size_t errlen)
{
    const char *end = NULL;
    const char *s = record;
    if (!record && len > 0)
        len = 0;
    out->tree = cJSON_ParseWithLengthOpts(s, len, &end, 0);
    if (!out->tree) {
        sl_set_err(err, errlen, "record: malformed JSON");
        return SL_EINVAL;
    }
    size_t at = end && end >= s && (size_t)(end - s) <= len ? (size_t)(end - s) : len;
    while (at < len && (s[at] == ' ' || s[at] == '\t' || s[at] == '\n' || s[at] == '\r'))
        at++;
    if (at < len) {
        sl_set_err(err, errlen, "record: unexpected data after the JSON value");
        return SL_EINVAL;
    }
    if (!cJSON_IsObject(out->tree)) {
        sl_set_err(err, errlen, "record: expected an object");
        return SL_EINVAL;
    }
    return 0;
}

/* Renders the doc into one buffer sized from the record: the doc is the record plus a few
 * hundred bytes of server fields, so this avoids cJSON_PrintUnformatted's repeated realloc
 * growth (10 % of a worker's time in a profile). Falls back to it if the guess is short. */
static char *render(const cJSON *tree, size_t record_len)
{
    size_t cap = record_len + record_len / 8 + 1024;
    char *doc = cJSON_malloc(cap);
    if (doc && cJSON_PrintPreallocated((cJSON *)tree, doc, (int)cap, 0))
        return doc;
    cJSON_free(doc);
    return cJSON_PrintUnformatted(tree);
}

static int prepare(const void *record, size_t len, uint64_t origin, int64_t now_ms,
                   struct sl_event_prepared *out, char *err, size_t errlen)
{
    struct sl_store_event *row = &out->row;
    int rc;
    memset(out, 0, sizeof(*out));
    out->record_len = len;
    if ((rc = parse_record(record, len, out, err, errlen)) != 0)
        return rc;
    cJSON *tree = out->tree;
    const char *org = required_string(tree, "organization", err, errlen);
    const char *ref = org ? required_string(tree, "reference", err, errlen) : NULL;
    const char *title = ref ? required_string(tree, "title", err, errlen) : NULL;
    if (!title)
        return SL_EINVAL;
    if (!sl_uuid_valid(org)) {
        /* The store keys events by organization uuid: refuse here, deterministically, rather
         * than fail the whole batch's store write on every retry. */
        sl_set_err(err, errlen, "record: organization is not a uuid");
        return SL_EINVAL;
    }
    if ((rc = get_severity(tree, &row->severity, err, errlen)) != 0)
        return rc;
    cJSON *list = cJSON_GetObjectItemCaseSensitive(tree, "observables");
    if (list && !cJSON_IsNull(list) && !cJSON_IsArray(list)) {
        sl_set_err(err, errlen, "observables: expected an array");
        return SL_EINVAL;
    }
    if (cJSON_IsArray(list) && (rc = clean_observables(list, err, errlen)) != 0)
        return rc;
    if ((rc = sign(tree, org, title, out, err, errlen)) != 0)
        return rc;
    /* The uuid (the store's dedup key) comes from the ingest organization: a rule may move the
     * event to another one later, and a redelivery must still find it. */
    const char *parts[2] = {org, ref};
    const size_t lens[2] = {strlen(org), strlen(ref)};
    if (sl_uuid_from_parts(parts, lens, 2, out->uuid) != 0) {
        rc = SL_ENOMEM;
        goto out;
    }
    if ((rc = set_member(tree, "uuid", cJSON_CreateString(out->uuid))) != 0 ||
        (rc = set_status_new(tree, out, err, errlen)) != 0 ||
        (rc = set_dates(tree, now_ms, out, err, errlen)) != 0)
        goto out;
    row->uuid = out->uuid;
    row->reference = ref;
    row->title = title;
    row->signature = out->signature;
    row->origin = origin;
out:
    if (rc == SL_ENOMEM)
        sl_set_err(err, errlen, "out of memory");
    return rc;
}

/* Re-reads what a rule stage may have changed (organization, status, severity) and renders. */
static int finish(struct sl_event_prepared *out, char *err, size_t errlen)
{
    struct sl_store_event *row = &out->row;
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(out->tree, "status");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(status, "name");
    int rc;
    row->org = required_string(out->tree, "organization", err, errlen);
    if (!row->org || !sl_uuid_valid(row->org)) {
        sl_set_err(err, errlen, "record: organization is not a uuid");
        return SL_EINVAL;
    }
    if (!cJSON_IsString(name) || !name->valuestring) {
        sl_set_err(err, errlen, "status: expected an object with a name");
        return SL_EINVAL;
    }
    row->status = name->valuestring;
    if ((rc = get_severity(out->tree, &row->severity, err, errlen)) != 0)
        return rc;
    if (!(out->doc = render(out->tree, out->record_len))) {
        sl_set_err(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    row->doc = out->doc;
    row->doc_len = strlen(out->doc);
    return 0;
}

/* A record that failed because memory ran out is not invalid: the caller must retry it, never
 * skip it (it was acknowledged). */
static int oom_or(int rc, unsigned failed_before, char *err, size_t errlen)
{
    if (rc != 0 && sl_event_alloc_failures() != failed_before) {
        sl_set_err(err, errlen, "out of memory");
        rc = SL_ENOMEM;
    }
    return rc;
}

int sl_event_prepare_tree(const void *record, size_t len, uint64_t origin, int64_t now_ms,
                          struct sl_event_prepared *out, char *err, size_t errlen)
{
    unsigned failed = sl_event_alloc_failures();
    return oom_or(prepare(record, len, origin, now_ms, out, err, errlen), failed, err, errlen);
}

int sl_event_prepare_finish(struct sl_event_prepared *out, char *err, size_t errlen)
{
    unsigned failed = sl_event_alloc_failures();
    return oom_or(finish(out, err, errlen), failed, err, errlen);
}

int sl_event_prepare(const void *record, size_t len, uint64_t origin, int64_t now_ms,
                     struct sl_event_prepared *out, char *err, size_t errlen)
{
    int rc = sl_event_prepare_tree(record, len, origin, now_ms, out, err, errlen);
    return rc ? rc : sl_event_prepare_finish(out, err, errlen);
}

void sl_event_prepared_fini(struct sl_event_prepared *p)
{
    if (!p)
        return;
    cJSON_Delete(p->tree);
    cJSON_free(p->doc);
    memset(p, 0, sizeof(*p));
}
