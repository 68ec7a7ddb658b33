/* Opening the store (choosing its backend) and dispatch of the sl_store_* calls to it. */
#include "store/store.h"
#include "core/error.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Creates dir and any missing parents with mode 0700; an existing directory is left as is. */
static int mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    struct stat sb;
    size_t len = strlen(dir);
    if (len >= sizeof(path))
        return -ENAMETOOLONG;
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != 0)
            continue;
        char saved = path[i];
        path[i] = 0;
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -errno;
        path[i] = saved;
    }
    if (stat(dir, &sb) != 0)
        return -errno;
    return S_ISDIR(sb.st_mode) ? 0 : -ENOTDIR;
}

struct sl_store *sl_store_open(const char *data_dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (!data_dir || !*data_dir) {
        snprintf(err, errlen, "data directory: empty path; expected a directory name");
        return NULL;
    }
    int rc = mkdir_p(data_dir);
    if (rc) {
        snprintf(err, errlen, "data directory %s: cannot create: %s", data_dir, strerror(-rc));
        return NULL;
    }
    if ((size_t)snprintf(path, sizeof(path), "%s/sluice.db", data_dir) >= sizeof(path)) {
        snprintf(err, errlen, "data directory %s: path too long", data_dir);
        return NULL;
    }
    return sl_store_sqlite_open(path, err, errlen);
}

void sl_store_close(struct sl_store *st)
{
    if (st)
        st->ops->close(st);
}

int sl_store_org_create(struct sl_store *st, const char *name, struct sl_org *out)
{
    return st->ops->org_create(st, name, out);
}

int sl_store_org_get(struct sl_store *st, const char *uuid, const char *name, struct sl_org *out)
{
    return st->ops->org_get(st, uuid, name, out);
}

int sl_store_org_count(struct sl_store *st, int64_t *out_count)
{
    return st->ops->org_count(st, out_count);
}

int sl_store_apikey_create(struct sl_store *st, const char *org_uuid, const char *role,
                           char out_key[SL_APIKEY_MAX])
{
    return st->ops->apikey_create(st, org_uuid, role, out_key);
}

int sl_store_apikey_lookup(struct sl_store *st, const char *key, struct sl_principal *out)
{
    return st->ops->apikey_lookup(st, key, out);
}

int sl_store_put_events(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                        enum sl_put_outcome *out_outcomes)
{
    return st->ops->put_events(st, evs, n, NULL, out_outcomes);
}

int sl_store_event_get(struct sl_store *st, const char *org, const char *uuid, char **out_doc)
{
    return st->ops->event_get(st, org, uuid, out_doc);
}

int sl_store_event_list(struct sl_store *st, const struct sl_event_filter *f, char **out_json,
                        int64_t *out_total)
{
    return st->ops->event_list(st, f, out_json, out_total);
}

int sl_store_event_count(struct sl_store *st, const char *org, int64_t *out_count)
{
    return st->ops->event_count(st, org, out_count);
}

int sl_store_org_list(struct sl_store *st, struct sl_org **out, size_t *out_n)
{
    return st->ops->org_list(st, out, out_n);
}

int sl_store_meta_put(struct sl_store *st, enum sl_meta_kind kind, const struct sl_meta *m,
                      int create)
{
    return st->ops->meta_put(st, kind, m, create);
}

int sl_store_meta_get(struct sl_store *st, enum sl_meta_kind kind, const char *uuid,
                      struct sl_meta *out)
{
    return st->ops->meta_get(st, kind, uuid, out);
}

int sl_store_meta_list(struct sl_store *st, enum sl_meta_kind kind, const char *org,
                       int with_global, struct sl_meta **out, size_t *out_n)
{
    return st->ops->meta_list(st, kind, org, with_global, out, out_n);
}

void sl_store_meta_free(struct sl_meta *m, size_t n)
{
    if (!m)
        return;
    for (size_t i = 0; i < n; i++)
        free(m[i].doc);
    free(m);
}

int sl_store_meta_delete(struct sl_store *st, enum sl_meta_kind kind, const char *uuid)
{
    return st->ops->meta_delete(st, kind, uuid);
}

int sl_store_meta_version(struct sl_store *st, int64_t *out)
{
    return st->ops->meta_version(st, out);
}

int sl_store_list_values_add(struct sl_store *st, const char *list_uuid,
                             const struct sl_list_value *v, size_t n, int64_t expire_at_ms,
                             size_t *out_added)
{
    return st->ops->list_values_add(st, list_uuid, v, n, expire_at_ms, out_added);
}

int sl_store_list_values_delete(struct sl_store *st, const char *list_uuid,
                                const struct sl_list_value *v, size_t n, size_t *out_deleted)
{
    return st->ops->list_values_delete(st, list_uuid, v, n, out_deleted);
}

int sl_store_list_values_expire(struct sl_store *st, const char *list_uuid, int64_t now_ms,
                                size_t *out_deleted)
{
    return st->ops->list_values_expire(st, list_uuid, now_ms, out_deleted);
}

int sl_store_list_values_page(struct sl_store *st, const char *list_uuid, int64_t after_id,
                              size_t limit, char **out_json, int64_t *out_next)
{
    return st->ops->list_values_page(st, list_uuid, after_id, limit, out_json, out_next);
}

int sl_store_list_values_iter(struct sl_store *st, const char *list_uuid,
                              int (*cb)(void *ud, const char *value, size_t len), void *ud)
{
    return st->ops->list_values_iter(st, list_uuid, cb, ud);
}

int sl_store_list_values_count(struct sl_store *st, const char *list_uuid, int64_t *out)
{
    return st->ops->list_values_count(st, list_uuid, out);
}

int sl_store_mute_active(struct sl_store *st, int64_t now_ms, int64_t *out_count)
{
    return st->ops->mute_active(st, now_ms, out_count);
}

int sl_store_mute_get(struct sl_store *st, const char *org, const char *signature, int64_t now_ms,
                      int64_t *out_until_ms, char out_rule[SL_UUID_LEN + 1])
{
    return st->ops->mute_get(st, org, signature, now_ms, out_until_ms, out_rule);
}

int sl_store_case_get(struct sl_store *st, const char *org, const char *uuid, char **out_doc)
{
    return st->ops->case_get(st, org, uuid, out_doc);
}

int sl_store_case_events(struct sl_store *st, const char *case_uuid, char **out_json)
{
    return st->ops->case_events(st, case_uuid, out_json);
}

int sl_store_event_scan(struct sl_store *st, const char *org, const char *status, int64_t after_seq,
                        size_t limit, int (*cb)(void *ud, int64_t seq, const char *doc, size_t len),
                        void *ud, int64_t *out_last)
{
    return st->ops->event_scan(st, org, status, after_seq, limit, cb, ud, out_last);
}

int sl_store_event_update(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                          size_t *out_updated)
{
    return st->ops->event_update(st, evs, n, out_updated);
}

int sl_store_task_put(struct sl_store *st, const struct sl_task *t)
{
    return st->ops->task_put(st, t);
}

int sl_store_task_get(struct sl_store *st, const char *id, struct sl_task *out)
{
    return st->ops->task_get(st, id, out);
}

int sl_store_task_list(struct sl_store *st, const char *state, size_t limit, struct sl_task **out,
                       size_t *out_n)
{
    return st->ops->task_list(st, state, limit, out, out_n);
}

int sl_store_put_batch(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                       const struct sl_store_batch *batch, enum sl_put_outcome *out_outcomes)
{
    return st->ops->put_events(st, evs, n, batch, out_outcomes);
}

int sl_store_case_create(struct sl_store *st, const char *org, const char *uuid,
                         const struct sl_case_fields *f)
{
    return st->ops->case_create(st, org, uuid, f);
}

int sl_store_case_update(struct sl_store *st, const char *org, const char *uuid,
                         const struct sl_case_fields *f)
{
    return st->ops->case_update(st, org, uuid, f);
}

int sl_store_case_close(struct sl_store *st, const char *org, const char *uuid,
                        const char *close_reason, const char *comment, const char *by,
                        int64_t *out_events)
{
    return st->ops->case_close(st, org, uuid, close_reason, comment, by, out_events);
}

int sl_store_case_reopen(struct sl_store *st, const char *org, const char *uuid, const char *by,
                         int64_t *out_events)
{
    return st->ops->case_reopen(st, org, uuid, by, out_events);
}

int sl_store_case_delete(struct sl_store *st, const char *org, const char *uuid,
                         int64_t *out_events)
{
    return st->ops->case_delete(st, org, uuid, out_events);
}

int sl_store_case_list(struct sl_store *st, const struct sl_case_filter *f, char **out_json,
                       int64_t *out_total)
{
    return st->ops->case_list(st, f, out_json, out_total);
}

int sl_store_case_observables(struct sl_store *st, const char *org, const char *uuid, size_t limit,
                              char **out_json)
{
    return st->ops->case_observables(st, org, uuid, limit, out_json);
}

int sl_store_case_comment_add(struct sl_store *st, const char *org, const char *case_uuid,
                              const char *author, const char *text, char **out_doc)
{
    return st->ops->case_comment_add(st, org, case_uuid, author, text, out_doc);
}

int sl_store_case_comment_list(struct sl_store *st, const char *org, const char *case_uuid,
                               char **out_json)
{
    return st->ops->case_comment_list(st, org, case_uuid, out_json);
}

int sl_store_case_comment_delete(struct sl_store *st, const char *org, const char *case_uuid,
                                 const char *comment_uuid)
{
    return st->ops->case_comment_delete(st, org, case_uuid, comment_uuid);
}

int sl_store_event_grouped(struct sl_store *st, const struct sl_event_filter *f, char **out_json,
                           int64_t *out_total)
{
    return st->ops->event_grouped(st, f, out_json, out_total);
}

int sl_store_event_stats(struct sl_store *st, const struct sl_event_filter *f, size_t top,
                         char **out_json)
{
    return st->ops->event_stats(st, f, top, out_json);
}

int sl_store_event_select_check(struct sl_store *st, const struct sl_event_selection *sel,
                                char missing[SL_UUID_LEN + 1])
{
    return st->ops->event_select_check(st, sel, missing);
}

int sl_store_event_act(struct sl_store *st, const struct sl_event_selection *sel,
                       const struct sl_event_action_args *a, int64_t *cursor, size_t limit,
                       int64_t *out_seen, int64_t *out_changed, int *out_more)
{
    return st->ops->event_act(st, sel, a, cursor, limit, out_seen, out_changed, out_more);
}

int sl_store_event_select_ids(struct sl_store *st, const struct sl_event_selection *sel, size_t max,
                              char **out_json, int64_t *out_total)
{
    return st->ops->event_select_ids(st, sel, max, out_json, out_total);
}

int sl_store_event_export(struct sl_store *st, const struct sl_event_selection *sel,
                          int64_t *cursor, size_t limit,
                          int (*cb)(void *ud, const char *doc, size_t len), void *ud, int *out_more)
{
    return st->ops->event_export(st, sel, cursor, limit, cb, ud, out_more);
}

int sl_store_ingest_task_get(struct sl_store *st, const char *org, const char *task, int *out_done,
                             int64_t *out_accepted, int64_t *out_rejected, int64_t *out_received_ms,
                             int64_t *out_done_ms, char out_org[SL_UUID_LEN + 1],
                             char **out_outcomes)
{
    return st->ops->ingest_task_get(st, org, task, out_done, out_accepted, out_rejected,
                                    out_received_ms, out_done_ms, out_org, out_outcomes);
}

int sl_store_ingest_task_expire(struct sl_store *st, int64_t before_ms, size_t *out_deleted)
{
    return st->ops->ingest_task_expire(st, before_ms, out_deleted);
}

int sl_store_task_params(struct sl_store *st, const char *id, char **out_json)
{
    return st->ops->task_params(st, id, out_json);
}

int sl_store_case_event_docs(struct sl_store *st, const char *org, const char *case_uuid,
                             int64_t offset, size_t limit, char **out_json, int64_t *out_total)
{
    return st->ops->case_event_docs(st, org, case_uuid, offset, limit, out_json, out_total);
}
