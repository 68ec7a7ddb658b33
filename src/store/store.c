/* Opening the store (choosing its backend) and dispatch of the sl_store_* calls to it. */
#include "store/store.h"
#include "core/error.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
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
    return st->ops->put_events(st, evs, n, out_outcomes);
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
