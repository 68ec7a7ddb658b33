/* The event model: parsing of bulk-ingest bodies, validation and normalization of client events
 * (api side), and preparation of a stream record for the store (worker side). */
#ifndef SL_EVENT_EVENT_H
#define SL_EVENT_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/util.h"
#include "store/store.h"

/* Limits on one client event (documented in docs/api.md). */
#define SL_EVENT_TITLE_MAX            1024
#define SL_EVENT_REFERENCE_MAX        256
#define SL_EVENT_TEXT_MAX             (64 * 1024) /* description */
#define SL_EVENT_RAW_LOG_MAX          (1024 * 1024)
#define SL_EVENT_TAGS_MAX             100
#define SL_EVENT_TAG_MAX              256
#define SL_EVENT_OBSERVABLES_MAX      1000
#define SL_EVENT_OBSERVABLE_VALUE_MAX 8192
#define SL_EVENT_TREE_FACTOR          16 /* parse tree memory allowed per body byte (plus 1 MiB) */

/* What the api knows about the request an event came in. All strings borrowed. */
struct sl_ingest_ctx {
    const char *org_uuid;   /* from the API key, never from the body */
    const char *agent_id;   /* the key's public id */
    const char *agent_type; /* the key's role */
    const char *task_id;    /* the bulk request's task id */
    int64_t received_ms;
    int64_t ingest_index; /* the event's position in the request's "events" (from 0) */
};

/* Parses a bulk body {"events": [...]}. On success returns 0, *out_root owns the tree (free
 * with cJSON_Delete) and *out_events is its "events" array. On failure returns SL_EINVAL, writes
 * what is wrong to err ("malformed JSON at byte 17: ..." or "body must be an object with an
 * \"events\" array") and, for malformed JSON, the byte offset to *out_error_offset (may be NULL;
 * set to -1 when the error has no offset). With the checked allocator installed it also returns
 * SL_ENOMEM when memory ran out (try again later), and SL_EFULL when the tree would take more
 * than SL_EVENT_TREE_FACTOR times the body's size (a body of tiny values made to exhaust
 * memory: the API answers 413). */
int sl_event_bulk_parse(const char *body, size_t len, cJSON **out_root, cJSON **out_events,
                        long *out_error_offset, char *err, size_t errlen);

/* Validates one client event and builds the stream record: compact JSON, malloc'd, returned in
 * *out (length *out_len), carrying the client's fields plus organization, reference (a uuid4
 * when the client sent none), agent_uuid, agent_type, ingest_task, ingest_index and
 * received_at. Refuses internal fields a client may not set (organization, uuid, status, _meta,
 * ingest_index, ...), so a record never starts with a member whose name starts with "_". On failure
 * returns SL_EINVAL and a message naming the field in err; nothing is allocated. */
int sl_event_normalize(const cJSON *event, const struct sl_ingest_ctx *ctx, char **out,
                       size_t *out_len, char *err, size_t errlen);

/* A stream record turned into a stored event. */
struct sl_event_prepared {
    struct sl_store_event row; /* its pointers point into this struct's own memory */
    cJSON *tree;               /* the event (owned) */
    char *doc;                 /* row.doc (owned) */
    char uuid[SL_UUID_LEN + 1];
    char signature[33];
    size_t record_len; /* of the stream record (sizes the render buffer) */
};

/* Prepares one stream record (as made by sl_event_normalize) for the store: drops observables
 * whose value is empty or "-", types "auto" observables (sl_event_detect_type), computes the
 * organization-scoped signature (sl_event_signature), derives the uuid from (organization,
 * reference), sets status New and created_at = now_ms, defaults original_date to the receive
 * time, and renders the document. origin is recorded in row.origin. Returns 0, SL_EINVAL with
 * a message for a record that is not a valid event (the caller counts and skips it), or
 * SL_ENOMEM when memory (or OpenSSL) failed: the record is fine, so the caller must retry it,
 * never skip it. Release with sl_event_prepared_fini even on failure. */
int sl_event_prepare(const void *record, size_t len, uint64_t origin, int64_t now_ms,
                     struct sl_event_prepared *out, char *err, size_t errlen);
void sl_event_prepared_fini(struct sl_event_prepared *p);

/* sl_event_prepare in two steps, so that a rule stage can edit the event in between:
 * sl_event_prepare_tree does everything but the rendering (out->tree is the event; out->row has
 * uuid, reference, title, signature, origin and dates), and sl_event_prepare_finish reads the
 * organization, status name and severity back from the tree (a rule may have changed them),
 * renders the doc and completes out->row. Same return values as sl_event_prepare. */
int sl_event_prepare_tree(const void *record, size_t len, uint64_t origin, int64_t now_ms,
                          struct sl_event_prepared *out, char *err, size_t errlen);
int sl_event_prepare_finish(struct sl_event_prepared *out, char *err, size_t errlen);

/* The stored signature: md5_hex(client_signature + org_uuid) when the client sent a non-empty
 * signature; otherwise md5_hex(fallback + org_uuid) where fallback = md5_hex of the title, a
 * 0x1f separator, and the observable values sorted and joined by 0x1f. So the same alert on
 * the same entities rolls up whenever it arrives (Reflex's title+second fallback splits them).
 * title and values borrowed; out holds 33 bytes. */
void sl_event_signature(const char *org_uuid, const char *client_signature, const char *title,
                        const char *const *values, size_t nvalues, char out[33]);

struct sl_arena;

/* Routes every cJSON allocation of the process through tagged blocks, so that a thread may
 * take them from an arena (sl_event_alloc_arena). Call once per process before any cJSON tree
 * exists (a tree made before would be freed with the wrong free); idempotent. Afterwards,
 * memory cJSON hands out (cJSON_Print*, cJSON_malloc) must be released with cJSON_free, never
 * free(): only the worker installs it, whose code keeps to that. */
void sl_event_alloc_install(void);
/* From now on this thread's cJSON allocations (sl_event_prepare's tree and doc) come from arena
 * (NULL: from malloc again). Everything prepared while an arena was set is released by
 * sl_arena_reset of that arena: sl_event_prepared_fini is then not needed (and harmless).
 * Requires sl_event_alloc_install. */
void sl_event_alloc_arena(struct sl_arena *arena);
/* Installs plain malloc/free for cJSON that only counts failed allocations, so a parse that
 * failed for want of memory is told apart from malformed input (SL_ENOMEM, not SL_EINVAL).
 * For processes whose code frees cJSON memory with free(), such as the api. Call once per
 * process before any cJSON tree exists; the first install of the process wins. */
void sl_event_alloc_install_checked(void);
/* Allocations made through cJSON that failed on the calling thread, since it started (either
 * install; always 0 without one). */
unsigned sl_event_alloc_failures(void);
/* With the checked install: the calling thread's cJSON allocations may take at most `bytes`
 * more (SIZE_MAX: no limit); an allocation past it fails and sl_event_alloc_over_budget()
 * becomes true until the next call. sl_event_bulk_parse uses it to bound the tree a hostile
 * body can make. */
void sl_event_alloc_budget(size_t bytes);
int sl_event_alloc_over_budget(void);

/* The data type of an observable value sent as "auto": one of "ip", "email", "url", "md5hash",
 * "sha1hash", "sha256hash", "mac", "sid", "port", "domain", "process", or "generic". */
const char *sl_event_detect_type(const char *value, size_t len);

#endif
