/* The store interface: organizations, API keys and events, behind a table of backend
 * operations. SQLite (store_sqlite.c) is the default backend; callers never name a backend
 * except sl_store_open, which chooses it. */
#ifndef SL_STORE_STORE_H
#define SL_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define SL_ORG_NAME_MAX 128
#define SL_APIKEY_MAX   80 /* buffer size for a plaintext key, NUL included */

struct sl_store;

struct sl_org {
    char uuid[SL_UUID_LEN + 1];
    char name[SL_ORG_NAME_MAX + 1];
    int64_t created_ms;
};

/* Who a request is: resolved from an API key. */
struct sl_principal {
    char org_uuid[SL_UUID_LEN + 1];
    char org_name[SL_ORG_NAME_MAX + 1];
    char role[16];   /* "admin" | "analyst" | "agent" */
    char key_id[24]; /* public, non-secret id of the key (for logs and agent_uuid) */
};

/* One event to store. Every pointer is borrowed for the duration of the call. doc is the whole
 * event as compact JSON, already carrying every field below. */
struct sl_store_event {
    const char *uuid;      /* derived from (org, reference): sl_uuid_from_parts */
    const char *org;       /* organization uuid */
    const char *reference; /* the client's id; unique within the organization */
    const char *title;
    const char *signature; /* organization-scoped signature (md5 hex) */
    const char *status;    /* status name, e.g. "New" */
    int severity;
    int64_t original_date_ms;
    int64_t created_ms;
    uint64_t origin; /* where it came from: (stream partition << 48) | offset */
    const char *doc;
    size_t doc_len;
};

enum sl_put_outcome {
    SL_PUT_STORED = 0,      /* new: written */
    SL_PUT_DUPLICATE = 1,   /* another event with this (org, reference) is already stored */
    SL_PUT_REDELIVERED = 2, /* this very record (same origin) was stored by an earlier attempt */
};

/* Filter and page for listing events. Zero/NULL fields do not filter. */
struct sl_event_filter {
    const char *org;    /* required: only this organization's events */
    const char *status; /* status name, case-insensitive */
    int severities[8];  /* any of these severities */
    int nseverities;
    const char *title;      /* case-insensitive substring of the title */
    const char *signature;  /* exact */
    const char *tag;        /* exact tag */
    const char *observable; /* exact observable value */
    int64_t start_ms;       /* original_date >= start (0: open) */
    int64_t end_ms;         /* original_date <= end (0: open) */
    int64_t page;           /* 1-based */
    int64_t page_size;      /* 1..1000 */
    int sort_asc;           /* by original_date; default newest first */
};

struct sl_store_ops {
    const char *name;
    void (*close)(struct sl_store *st);
    int (*org_create)(struct sl_store *st, const char *name, struct sl_org *out);
    int (*org_get)(struct sl_store *st, const char *uuid, const char *name, struct sl_org *out);
    int (*org_count)(struct sl_store *st, int64_t *out_count);
    int (*apikey_create)(struct sl_store *st, const char *org_uuid, const char *role,
                         char out_key[SL_APIKEY_MAX]);
    int (*apikey_lookup)(struct sl_store *st, const char *key, struct sl_principal *out);
    int (*put_events)(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                      enum sl_put_outcome *out_outcomes);
    int (*event_get)(struct sl_store *st, const char *org, const char *uuid, char **out_doc);
    int (*event_list)(struct sl_store *st, const struct sl_event_filter *f, char **out_json,
                      int64_t *out_total);
    int (*event_count)(struct sl_store *st, const char *org, int64_t *out_count);
};

/* Every backend's store object starts with this. */
struct sl_store {
    const struct sl_store_ops *ops;
};

/* Opens the store: SQLite at <data_dir>/sluice.db (created with its schema if absent). Several
 * processes may open it at once; each opens its own handle (never share one across fork()).
 * A handle may be used by one thread at a time. Returns NULL and a message in err. */
struct sl_store *sl_store_open(const char *data_dir, char *err, size_t errlen);
void sl_store_close(struct sl_store *st);

/* Creates an organization. name: 1..128 printable characters, unique (case-sensitive).
 * Errors: SL_EINVAL (bad name), SL_EEXIST. out (may be NULL) receives the new row. */
int sl_store_org_create(struct sl_store *st, const char *name, struct sl_org *out);
/* Looks an organization up by uuid (if non-NULL) or else by name. SL_ENOTFOUND if absent. */
int sl_store_org_get(struct sl_store *st, const char *uuid, const char *name, struct sl_org *out);
int sl_store_org_count(struct sl_store *st, int64_t *out_count);

/* Creates an API key for the organization with role "admin", "analyst" or "agent". The
 * plaintext key is written to out_key once and never stored (only its SHA-256 is).
 * Errors: SL_EINVAL (bad role), SL_ENOTFOUND (no such organization). */
int sl_store_apikey_create(struct sl_store *st, const char *org_uuid, const char *role,
                           char out_key[SL_APIKEY_MAX]);
/* Resolves a plaintext key. SL_ENOTFOUND if it is not a valid key. */
int sl_store_apikey_lookup(struct sl_store *st, const char *key, struct sl_principal *out);

/* Writes n events in one transaction, idempotently: an event whose (org, reference) is already
 * stored is not written again. out_outcomes[i] says what happened to evs[i]. All or nothing: on
 * error (SL_EBUSY, SL_EIO) nothing is written and the caller may retry the whole batch. */
int sl_store_put_events(struct sl_store *st, const struct sl_store_event *evs, size_t n,
                        enum sl_put_outcome *out_outcomes);
/* The stored document of one event of org, as a malloc'd JSON string the caller frees.
 * SL_ENOTFOUND if absent or in another organization. */
int sl_store_event_get(struct sl_store *st, const char *org, const char *uuid, char **out_doc);
/* One page of events matching f, as a malloc'd JSON array string the caller frees, and the
 * total number of matches. Errors: SL_EINVAL for a bad page or page_size (or an offset that
 * overflows); SL_EFULL when the page's documents exceed the size limit of one page (32 MiB on
 * SQLite; a smaller page_size may fit); SL_ETIMEDOUT when the count or the page took longer than
 * the read deadline (10 s on SQLite; narrower filters or a shorter time range may fit);
 * SL_EBUSY, SL_EIO, SL_ENOMEM. On error *out_json is NULL. */
int sl_store_event_list(struct sl_store *st, const struct sl_event_filter *f, char **out_json,
                        int64_t *out_total);
/* Stored events of org (NULL: all organizations). */
int sl_store_event_count(struct sl_store *st, const char *org, int64_t *out_count);

/* The SQLite backend's constructor (used by sl_store_open). */
struct sl_store *sl_store_sqlite_open(const char *path, char *err, size_t errlen);
/* For unit tests only: sets the SQLite handle's page size limit and read deadline of
 * event_list. 0 restores the built-in value; a negative deadline has passed before the query
 * starts. Does nothing on another backend. */
void sl_store_sqlite_test_limits(struct sl_store *st, size_t list_max_bytes,
                                 int64_t list_deadline_ms);

#endif
