/* What the api's source files share: the process-wide api state, the per-request state and the
 * route handlers. Not for use outside src/api/. */
#ifndef SL_API_API_INTERNAL_H
#define SL_API_API_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/config.h"
#include "http/auth.h"
#include "http/router.h"
#include "http/server.h"
#include "processor/stats.h"
#include "store/store.h"
#include "stream/stream.h"

/* The api process: one per process, shared by every server thread. */
struct sl_api {
    const struct sl_config *cfg;
    struct sl_stats *stats;
    struct sl_stream *stream; /* sl_stream_append is thread-safe; other calls take stream_lock */
    pthread_mutex_t stream_lock;
    struct sl_http_server *srv;
    struct sl_auth *auth;
    /* One store handle per server thread (a handle is single-threaded), opened lazily. */
    int nstores;
    struct sl_store **stores;
    pthread_mutex_t shared_lock; /* guards shared_store, for a thread without a slot */
    struct sl_store *shared_store;
    _Atomic uint32_t partitions; /* of SL_TOPIC_EVENTS, refreshed by the main loop */
    _Atomic uint64_t next_partition;
    _Atomic int64_t backlog;         /* events not yet committed by the workers, ~100 ms old */
    _Atomic int64_t drain_milli_eps; /* workers' drain rate, events/s x 1000 (EWMA) */
    _Atomic int64_t store_fail_log_ms;
    int64_t started_ms;
};

struct sl_api_route;

/* req->app: what the api keeps per request. */
struct sl_api_req {
    const struct sl_api_route *route;
    struct sl_route_match match;
    struct sl_principal who; /* when the route needs a key */
    struct sl_store *store;  /* while a handler holds one (sl_api_store_get) */
    int store_shared;
};

/* A route's handling: roles that may call it (0: no key needed), a handler run when the
 * headers are in, and, for routes with a body, one run when the body is in. */
struct sl_api_route {
    unsigned roles;
    const char *action; /* for the 403 message: "send events" */
    enum sl_http_next (*on_headers)(struct sl_api *api, struct sl_http_req *req);
    void (*on_request)(struct sl_api *api, struct sl_http_req *req);
    const void *data; /* the handler's, for handlers shared by several routes (may be NULL) */
};

/* The store handle of the calling server thread, opened on first use. Returns NULL (and logs,
 * at most once a minute) if the store cannot be opened. Pair with sl_api_store_put in the same
 * handler call. */
struct sl_store *sl_api_store_get(struct sl_api *api, struct sl_http_req *req);
void sl_api_store_put(struct sl_api *api, struct sl_http_req *req);

/* Answers 503 {"error": "store unavailable"} with Retry-After. */
void sl_api_reply_store_error(struct sl_http_req *req, int rc);

/* The cached backlog of SL_TOPIC_EVENTS for SL_GROUP_WORKERS. */
int64_t sl_api_backlog(const struct sl_api *api);
/* Seconds a throttled client should wait, from the backlog over the limit and the drain rate
 * (1..60). */
int sl_api_retry_after(const struct sl_api *api, int64_t backlog);

/* Re-reads the partition count of SL_TOPIC_EVENTS (after an append found none). */
void sl_api_partitions_refresh(struct sl_api *api);

/* Bulk ingest (api_event.c). */
enum sl_http_next sl_api_ingest_headers(struct sl_api *api, struct sl_http_req *req);
void sl_api_ingest(struct sl_api *api, struct sl_http_req *req);
/* Event list and get (api_event.c). */
enum sl_http_next sl_api_event_list(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_event_get(struct sl_api *api, struct sl_http_req *req);

/* Fills f (f->org excepted) from the query of GET /api/v2.0/event. Pointers in f borrow from q.
 * Returns 0, or SL_EINVAL with "<parameter>=<value>: expected ..." in err. Pure. */
int sl_api_event_filter_parse(const struct sl_http_query *q, struct sl_event_filter *f, char *err,
                              size_t errlen);

/* queue_stats, /health, /metrics (api_status.c). */
enum sl_http_next sl_api_queue_stats(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_health(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_metrics(struct sl_api *api, struct sl_http_req *req);

/* Whether the worker in slot w runs: a pid, not marked dead, and the process exists. */
int sl_api_worker_alive(const struct sl_worker_slot *w);

/* ---- Metadata endpoints: event rules (api_rules.c), intel lists (api_lists.c), close reasons,
 * event statuses and data types (api_meta.c) ---- */

/* What a metadata handler works with. Filled by sl_api_meta_open, released by
 * sl_api_meta_close, both on the handler's thread. */
struct sl_api_meta_ctx {
    struct sl_api *api;
    struct sl_http_req *req;
    struct sl_store *st;            /* the thread's store handle while open */
    const struct sl_principal *who; /* borrowed from the request */
    int key_default;                /* the key belongs to the default organization */
    char default_org[SL_UUID_LEN + 1];
    char org[SL_UUID_LEN + 1]; /* the organization acted on: the key's, or the one a default
                                * key named (?organization= or "organization"); after
                                * sl_api_meta_load, the object's */
    int org_given;             /* a default key named org */
    cJSON *body;               /* the request's JSON object (owned), or NULL */
};

/* Opens the context of a metadata request: the store handle, whether the key's organization
 * is the default one, the body (with_body: a JSON object is required; its parse is bounded like
 * a bulk body's) and the organization acted on. On failure it has answered (400, 413, 503) and
 * returns non-zero; call sl_api_meta_close either way. */
int sl_api_meta_open(struct sl_api *api, struct sl_http_req *req, int with_body,
                     struct sl_api_meta_ctx *c);
void sl_api_meta_close(struct sl_api_meta_ctx *c);

/* Loads the object of kind whose uuid is the route's first parameter into *m (m->doc malloc'd:
 * free it) and makes its organization c->org. A key sees its own organization's objects and
 * the global ones (rules and lists of the default organization); a default key sees every
 * organization's (only org's, when it named one). Answers and returns non-zero: 404 (what
 * names the object: "event rule") when the object is absent or not visible, 403 when write is
 * set and the object is a global one the key may only read, 503 on a store error. */
int sl_api_meta_load(struct sl_api_meta_ctx *c, enum sl_meta_kind kind, const char *what, int write,
                     struct sl_meta *m);

/* A field of a metadata document, for sl_api_meta_apply. */
enum sl_api_ftype {
    SL_FT_STR,  /* string of min..max bytes */
    SL_FT_BOOL, /* true or false */
    SL_FT_INT,  /* integer min..max */
    SL_FT_TAGS, /* array of at most max strings of 1..256 bytes (duplicates dropped) */
    SL_FT_UUID, /* a uuid (stored lowercase) */
    SL_FT_URL,  /* an http:// or https:// URL of at most max bytes */
    SL_FT_ANY,  /* any JSON value, checked by the caller */
};
#define SL_FF_REQUIRED 1u /* must be given at creation */
#define SL_FF_NULL     2u /* null is accepted */
#define SL_FF_SERVER   4u /* set by the server: refused in a body */
#define SL_FF_LINE     8u /* a string without control characters */

struct sl_api_field {
    const char *name;
    enum sl_api_ftype type;
    int64_t min, max;
    unsigned flags;
    const char *def; /* the default as JSON text; NULL: null (or absent if required) */
};

/* Applies body to doc by the field table. create: doc (an empty object) first gets every field
 * in table order with its default, and required fields must be in body; otherwise only the
 * body's fields change. "organization" in body is the scope (sl_api_meta_open), not applied.
 * Returns 0, or SL_EINVAL with "<field>: <what is wrong>" in err (an unknown field, a field set
 * by the server, a bad type or range), or SL_ENOMEM. */
int sl_api_meta_apply(const struct sl_api_field *fields, size_t n, const cJSON *body, cJSON *doc,
                      int create, char *err, size_t errlen);

/* Answers 400 {"error": err, "field": <the name err starts with>}. */
void sl_api_meta_reply_invalid(struct sl_http_req *req, const char *err);
/* Answers 400 like sl_api_meta_reply_invalid with the members of extra (taken over) added. */
void sl_api_meta_reply_invalid_json(struct sl_http_req *req, const char *err, cJSON *extra);
/* Answers a failed store call: SL_ENOTFOUND 404 "no such <what>", SL_EEXIST 409 "<what> named
 * '<name>' already exists" (name may be NULL), anything else 503. */
void sl_api_meta_reply_store(struct sl_http_req *req, int rc, const char *what, const char *name);
/* Answers status with json (borrowed), or 503 when json is NULL (memory ran out). */
void sl_api_meta_reply(struct sl_http_req *req, int status, const cJSON *json);

/* The answer form of an object: its document plus created_at and updated_at (and, for rules,
 * hits and last_hit). Returns a new object (caller owns) or NULL when memory ran out or the
 * stored document is not a JSON object. */
cJSON *sl_api_meta_render(enum sl_meta_kind kind, const struct sl_meta *m);

/* Stores doc as an object of kind: create = 1 inserts m->uuid in m->org, else replaces the
 * object m->uuid; m->name is taken from doc's name_field, m->global is the caller's. Then
 * answers the stored object rendered, with extra's members (extra may be NULL): 201 when
 * created, else 200; 409 when the name is taken; 503 on a store error. m->doc is replaced (the
 * caller frees it). */
void sl_api_meta_save(struct sl_api_meta_ctx *c, enum sl_meta_kind kind, const char *what,
                      const cJSON *doc, const char *name_field, struct sl_meta *m, int create,
                      int (*extra)(struct sl_api_meta_ctx *c, const struct sl_meta *m, cJSON *out));

/* A page of rendered objects: {"<plural>": [...], "pagination": {...}} from the query's page
 * and page_size (1..1000, default 100) and name__like (case-insensitive substring of the name)
 * and active (true/false). extra (may be NULL) adds members to each object (lists: value
 * count). Answers itself (200, 400, 503). */
void sl_api_meta_reply_list(struct sl_api_meta_ctx *c, enum sl_meta_kind kind, const char *plural,
                            struct sl_meta *ms, size_t n,
                            int (*extra)(struct sl_api_meta_ctx *c, const struct sl_meta *m,
                                         cJSON *out));

/* Whether a data type named name (case-insensitive) exists for org or the default
 * organization (1), not (0), or a store error (< 0). */
int sl_api_meta_data_type_exists(struct sl_api_meta_ctx *c, const char *org, const char *name);

/* The route handlers. Reads are GET (on_headers only); writes take a body (on_headers is
 * sl_api_meta_expect_body) except DELETE of an object. */
enum sl_http_next sl_api_meta_expect_body(struct sl_api *api, struct sl_http_req *req);

enum sl_http_next sl_api_rule_list(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_rule_get(struct sl_api *api, struct sl_http_req *req);
void sl_api_rule_create(struct sl_api *api, struct sl_http_req *req);
void sl_api_rule_update(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_rule_delete(struct sl_api *api, struct sl_http_req *req);
void sl_api_rule_test(struct sl_api *api, struct sl_http_req *req);
/* GET /api/v2.0/task/<id> (api_task.c). */
enum sl_http_next sl_api_task_get(struct sl_api *api, struct sl_http_req *req);

/* Builds the document of a new rule from body (the fields POST /event_rule takes) as a create
 * stores it: every field with its default, then uuid, organization, created_by (by) and
 * expire_at. Checks the field table only: the caller checks the query and the objects the
 * actions name. *out (caller owns) is NULL on failure. Returns 0, SL_EINVAL with "<field>: ..."
 * in err, or SL_ENOMEM. Any thread. (api_rules.c; api_case.c generates merge rules with it.) */
int sl_api_rule_doc_new(const cJSON *body, const char *uuid, const char *org, const char *by,
                        cJSON **out, char *err, size_t errlen);

/* Drops the ruleset test_rql keeps (call when the api stops). */
void sl_api_rule_cache_fini(void);

enum sl_http_next sl_api_list_list(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_list_get(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_list_poll(struct sl_api *api, struct sl_http_req *req);
void sl_api_list_create(struct sl_api *api, struct sl_http_req *req);
void sl_api_list_update(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_list_delete(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_list_values_get(struct sl_api *api, struct sl_http_req *req);
void sl_api_list_values_add(struct sl_api *api, struct sl_http_req *req);
void sl_api_list_values_delete(struct sl_api *api, struct sl_http_req *req);

/* Close reasons, event statuses and data types share these handlers; the route's data is the
 * kind (sl_api_kind_*). */
struct sl_api_simple_kind;
extern const struct sl_api_simple_kind sl_api_kind_close_reason, sl_api_kind_status,
    sl_api_kind_data_type, sl_api_kind_case_template;
enum sl_http_next sl_api_simple_list(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_simple_get(struct sl_api *api, struct sl_http_req *req);
void sl_api_simple_create(struct sl_api *api, struct sl_http_req *req);
void sl_api_simple_update(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_simple_delete(struct sl_api *api, struct sl_http_req *req);

/* ---- Events: grouping, stats, selections, actions, export (api_event_query.c) ---- */

/* GET /api/v2.0/event?grouped=true (sl_api_event_list hands it over), /event/stats,
 * /event/bulk_select_all, /event/export (streamed NDJSON or CSV). */
enum sl_http_next sl_api_event_grouped(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_event_stats(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_event_select_all(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_event_export(struct sl_api *api, struct sl_http_req *req);
/* Dismiss, acknowledge, unacknowledge, reopen, delete: the route's data names the action. */
void sl_api_event_action(struct sl_api *api, struct sl_http_req *req);

struct sl_task;
/* Answers an action started with sl_action_start: 200 with the task and its counts when it is
 * complete, 202 with the task id and progress when worker 0 finishes it. extra (taken over,
 * may be NULL) adds members (a case, say). */
void sl_api_action_reply(struct sl_http_req *req, const struct sl_task *t, int complete,
                         cJSON *extra);

/* ---- Cases and their comments (api_case.c) ---- */

enum sl_http_next sl_api_case_list(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_case_get(struct sl_api *api, struct sl_http_req *req);
void sl_api_case_create(struct sl_api *api, struct sl_http_req *req);
void sl_api_case_update(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_case_delete(struct sl_api *api, struct sl_http_req *req);
void sl_api_case_add_events(struct sl_api *api, struct sl_http_req *req);
void sl_api_case_close(struct sl_api *api, struct sl_http_req *req);
void sl_api_case_reopen(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_case_events(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_case_observables(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_case_comment_list(struct sl_api *api, struct sl_http_req *req);
void sl_api_case_comment_add(struct sl_api *api, struct sl_http_req *req);
enum sl_http_next sl_api_case_comment_delete(struct sl_api *api, struct sl_http_req *req);

#endif
