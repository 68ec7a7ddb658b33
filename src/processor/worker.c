/* The Event Worker: take a batch from the ingest stream, prepare each event, write the batch to
 * the store idempotently, and only then commit the stream offsets. A crash anywhere before the
 * commit means redelivery, and the store's (organization, reference) key makes the second write
 * a no-op: at-least-once delivery, exactly-once effect.
 *
 * Two threads form a pipeline over two batch buffers: the consumer thread polls and prepares
 * batch k+1 (CPU: JSON, hashes) while the writer thread stores and commits batch k (I/O: two
 * fsyncs). Batches are written and committed strictly in order. */
#include "processor/processor.h"
#include "core/arena.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "event/event.h"
#include "processor/poller.h"
#include "rules/netlookup.h"
#include "rules/ruleset.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_TIMEOUT_MS  500
#define TRIM_INTERVAL_MS 10000
#define TRIM_SLICE_MS    200
#define RETRY_MAX_MS     5000
#define NBATCHES         2
#define PERMANENT_TRIES  5
#define ARENA_CHUNK      (1024 * 1024)
#define ARENA_KEEP       (32 * 1024 * 1024)
#define META_CHECK_MS    250 /* how often the store's meta version is compared */
#define META_RETRY_MS    5000
#define SCRATCH_CHUNK    (64 * 1024)

enum { LOAD_IDLE = 0, LOAD_RUNNING, LOAD_DONE };
#define SCRATCH_KEEP (4 * 1024 * 1024)

/* A record that carries the end of its bulk request starts with this (see api_event.c). */
#define TASK_END_PREFIX     "{\"_meta\":"
#define TASK_END_PREFIX_LEN (sizeof(TASK_END_PREFIX) - 1)

/* One batch in flight: prepared events and the positions to commit once they are stored. */
struct batch {
    struct sl_arena *arena;             /* every JSON node and doc of the batch */
    struct sl_event_prepared *prepared; /* es_bulk_size of them */
    struct sl_store_event *rows;
    enum sl_put_outcome *outcomes;
    struct sl_store_effects *effects; /* rows[i].effects points here when a rule acted */
    /* What the batch records for bulk requests besides its rows (in the arena): outcomes of
     * events that are not rows (refused here, rejected by the api, muted) and requests' ends. */
    struct sl_store_outcome *outs;
    struct sl_store_ingest_done *ends;
    size_t nouts, outs_cap, nends, ends_cap;
    uint32_t *parts; /* partitions seen in the batch */
    uint64_t *next;  /* offset after the last record of parts[i] */
    size_t nparts, nrecs, nrows;
    int64_t t0;
    int full; /* under the worker lock: prepared, waiting for the writer */
};

struct worker {
    const struct sl_config *cfg;
    int index;
    struct sl_stats *stats;
    struct sl_worker_slot *slot;
    volatile sig_atomic_t *stop;
    struct sl_store *store;      /* the writer thread's */
    struct sl_store *meta_store; /* the consumer thread's: rules, lists, mutes */
    struct sl_ruleset *rules;
    struct sl_arena *scratch; /* RQL evaluation temporaries, reset per rule */
    struct sl_netlookup *net; /* geo and DNS mutators */
    int64_t meta_version;
    int64_t meta_checked_ms; /* monotonic */
    int64_t meta_loaded_ms;  /* monotonic */
    int64_t meta_failed_ms;  /* monotonic, of the last failed load (0: none) */
    /* The loader thread (see loader_main): its state and result are under lock. */
    pthread_t loader;
    int load_state; /* LOAD_* */
    struct sl_store *load_store;
    struct sl_ruleset *loaded;
    int load_rc;
    int64_t load_version;
    char load_err[512];
    int64_t mutes_active;
    struct sl_stream *stream;
    struct sl_stream_consumer *consumer;
    size_t nmine;
    int64_t last_trim_ms;
    struct batch batches[NBATCHES];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int fill;      /* next batch the consumer thread fills */
    int done;      /* consumer thread finished: the writer exits when no batch is full */
    int writer_rc; /* the writer's failure, which ends the worker */
};

static void set_status(struct worker *w, int status)
{
    atomic_store_explicit(&w->slot->status, status, memory_order_relaxed);
    atomic_store_explicit(&w->slot->heartbeat_ms, sl_mono_ms(), memory_order_relaxed);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int batch_init(struct batch *b, size_t bulk, size_t nmine)
{
    b->arena = sl_arena_create(ARENA_CHUNK, ARENA_KEEP);
    b->prepared = calloc(bulk, sizeof(*b->prepared));
    b->rows = calloc(bulk, sizeof(*b->rows));
    b->outcomes = calloc(bulk, sizeof(*b->outcomes));
    b->effects = calloc(bulk, sizeof(*b->effects));
    b->parts = calloc(nmine, sizeof(*b->parts));
    b->next = calloc(nmine, sizeof(*b->next));
    return b->arena && b->prepared && b->rows && b->outcomes && b->effects && b->parts && b->next
               ? 0
               : SL_ENOMEM;
}

static void batch_fini(struct batch *b)
{
    for (size_t i = 0; b->prepared && i < b->nrows; i++)
        sl_event_prepared_fini(&b->prepared[i]);
    sl_arena_destroy(b->arena);
    free(b->prepared);
    free(b->rows);
    free(b->outcomes);
    free(b->effects);
    free(b->parts);
    free(b->next);
}

static int worker_open(struct worker *w, int count)
{
    char err[512];
    uint32_t parts = 0, mine[SL_STREAM_MAX_PARTITIONS];
    w->store = sl_store_open(w->cfg->data_dir, err, sizeof(err));
    if (!w->store) {
        SL_ERROR("cannot open the store: %s", err);
        return SL_EIO;
    }
    w->meta_store = sl_store_open(w->cfg->data_dir, err, sizeof(err));
    w->scratch = sl_arena_create(SCRATCH_CHUNK, SCRATCH_KEEP);
    if (!w->meta_store || !w->scratch) {
        SL_ERROR("cannot open the store: %s", w->meta_store ? "out of memory" : err);
        return SL_EIO;
    }
    w->net = sl_netlookup_open(w->cfg->geoip_db, w->cfg->dns_server, (size_t)w->cfg->dns_cache_size,
                               w->cfg->dns_cache_ttl_s, w->cfg->dns_timeout_s, err, sizeof(err));
    if (!w->net) {
        SL_ERROR("cannot open the geo and DNS lookups: %s", err);
        return SL_EIO;
    }
    w->stream = sl_processor_open_stream(w->cfg, err, sizeof(err));
    if (!w->stream) {
        SL_ERROR("cannot open the stream: %s", err);
        return SL_EIO;
    }
    int rc = sl_stream_topic_ensure(w->stream, SL_TOPIC_EVENTS, (uint32_t)count, &parts);
    if (rc) {
        SL_ERROR("cannot open topic %s: %s", SL_TOPIC_EVENTS, sl_strerror(rc));
        return rc;
    }
    /* Partition p belongs to worker p mod count, as a consumer group would assign them. */
    for (uint32_t p = (uint32_t)w->index; p < parts; p += (uint32_t)count)
        mine[w->nmine++] = p;
    w->consumer =
        sl_stream_consumer_create(w->stream, SL_TOPIC_EVENTS, SL_GROUP_WORKERS, mine, w->nmine);
    if (!w->consumer) {
        SL_ERROR("cannot create the consumer of topic %s", SL_TOPIC_EVENTS);
        return SL_EIO;
    }
    for (int i = 0; i < NBATCHES; i++)
        if (batch_init(&w->batches[i], (size_t)w->cfg->es_bulk_size, w->nmine))
            return SL_ENOMEM;
    SL_INFO("consuming %zu of %u partitions of %s", w->nmine, parts, SL_TOPIC_EVENTS);
    return 0;
}

static void worker_close(struct worker *w)
{
    for (int i = 0; i < NBATCHES; i++)
        batch_fini(&w->batches[i]);
    sl_stream_consumer_destroy(w->consumer);
    sl_stream_destroy(w->stream);
    if (w->load_state != LOAD_IDLE)
        pthread_join(w->loader, NULL);
    sl_ruleset_free(w->loaded);
    sl_store_close(w->load_store);
    sl_ruleset_free(w->rules);
    sl_netlookup_close(w->net);
    sl_arena_destroy(w->scratch);
    sl_store_close(w->meta_store);
    sl_store_close(w->store);
}

/* ---- rules and lists ---------------------------------------------------------------------- */

/* Ruleset loads run on a loader thread with a store handle of its own, so a large list or
 * pattern set (seconds to compile) never stops the consumer thread from heart-beating or from
 * processing with the rules it has; the new ruleset is swapped in between batches. */
static void *loader_main(void *arg)
{
    struct worker *w = arg;
    struct sl_ruleset *rs = NULL;
    char err[512] = "";
    int rc = 0;
    if (!w->load_store)
        w->load_store = sl_store_open(w->cfg->data_dir, err, sizeof(err));
    if (!w->load_store)
        rc = SL_EIO;
    else
        rc = sl_ruleset_load(w->load_store, sl_now_ms(), &rs, err, sizeof(err));
    pthread_mutex_lock(&w->lock);
    w->loaded = rs;
    w->load_rc = rc;
    snprintf(w->load_err, sizeof(w->load_err), "%s", err);
    w->load_state = LOAD_DONE;
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Takes a finished load: swaps the ruleset in (the old one is only read by this thread; rule
 * uuids the writer still needs were copied into the batch). */
static void load_take(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    int done = w->load_state == LOAD_DONE;
    pthread_mutex_unlock(&w->lock);
    if (!done)
        return;
    pthread_join(w->loader, NULL);
    w->load_state = LOAD_IDLE;
    int64_t now = sl_mono_ms();
    if (w->load_rc) {
        w->meta_failed_ms = now ? now : 1;
        SL_WARN("cannot load event rules and intel lists: %s; %s", w->load_err,
                w->rules ? "keeping the loaded ones" : "waiting before processing events");
        return;
    }
    sl_ruleset_free(w->rules);
    w->rules = w->loaded;
    w->loaded = NULL;
    w->meta_version = w->load_version;
    w->meta_loaded_ms = now;
    w->meta_failed_ms = 0;
    atomic_store(&w->slot->last_meta_refresh_ms, sl_now_ms());
    atomic_store(&w->slot->rules_loaded, (int64_t)sl_ruleset_rule_count(w->rules));
    atomic_store(&w->slot->lists_loaded, (int64_t)sl_ruleset_list_count(w->rules));
    SL_INFO("loaded %zu event rules and %zu intel lists (meta version %lld)",
            sl_ruleset_rule_count(w->rules), sl_ruleset_list_count(w->rules),
            (long long)w->meta_version);
}

/* Starts a load when the store's metadata changed (checked every META_CHECK_MS), when
 * META_DATA_REFRESH_INTERVAL passed, or when a loaded rule expires; takes a finished one.
 * Returns 0 once a ruleset is loaded (SL_EAGAIN before the first). */
static int rules_refresh(struct worker *w)
{
    int64_t now = sl_mono_ms(), version = 0;
    load_take(w);
    if (w->load_state != LOAD_IDLE || (w->rules && now - w->meta_checked_ms < META_CHECK_MS))
        return w->rules ? 0 : SL_EAGAIN;
    if (w->meta_failed_ms && now - w->meta_failed_ms < META_RETRY_MS)
        return w->rules ? 0 : SL_EAGAIN;
    w->meta_checked_ms = now;
    int rc = sl_store_meta_version(w->meta_store, &version);
    if (rc) {
        w->meta_failed_ms = now ? now : 1;
        SL_WARN("cannot read the store's meta version: %s", sl_strerror(rc));
        return w->rules ? 0 : rc;
    }
    int due = !w->rules || version != w->meta_version ||
              now - w->meta_loaded_ms >= w->cfg->meta_refresh_s * 1000 ||
              sl_now_ms() >= sl_ruleset_next_expiry(w->rules);
    if (!due)
        return 0;
    w->load_version = version;
    w->load_state = LOAD_RUNNING;
    if (pthread_create(&w->loader, NULL, loader_main, w) != 0) {
        w->load_state = LOAD_IDLE;
        w->meta_failed_ms = now ? now : 1;
        SL_WARN("cannot start the rules loader thread");
    }
    return w->rules ? 0 : SL_EAGAIN;
}

static int hook_muted(void *ud, const char *org, const char *signature, int64_t now_ms,
                      char rule[SL_UUID_LEN + 1])
{
    struct worker *w = ud;
    int64_t until = 0;
    if (w->mutes_active <= 0)
        return 0;
    return sl_store_mute_get(w->meta_store, org, signature, now_ms, &until, rule) == 1;
}

static int hook_geo(void *ud, enum sl_rql_geo kind, const char *ip, char *out, size_t outlen)
{
    return sl_netlookup_geo(((struct worker *)ud)->net, kind, ip, out, outlen);
}

static int hook_dns(void *ud, enum sl_rql_dns kind, const char *name, char out[][256], int max)
{
    return sl_netlookup_dns(((struct worker *)ud)->net, kind, name, out, max);
}

static char *arena_strdup(struct sl_arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = sl_arena_alloc(a, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* What the store must do beside storing the event, in the batch's arena (the ruleset may be
 * replaced before the writer gets to the batch). */
static int effects_of(struct batch *b, struct sl_event_prepared *p, const char *ingest_org,
                      const struct sl_rules_result *res, struct sl_store_effects *fx)
{
    memset(fx, 0, sizeof(*fx));
    if (res->nrules) {
        const char **uuids = sl_arena_alloc(b->arena, res->nrules * sizeof(*uuids));
        if (!uuids)
            return SL_ENOMEM;
        for (size_t i = 0; i < res->nrules; i++)
            if (!(uuids[i] = arena_strdup(b->arena, res->rules[i])))
                return SL_ENOMEM;
        fx->rule_uuids = uuids;
        fx->nrules = res->nrules;
    }
    if (res->case_uuid[0] && !(fx->case_uuid = arena_strdup(b->arena, res->case_uuid)))
        return SL_ENOMEM;
    if (res->new_case) {
        struct sl_store_case *c = sl_arena_alloc(b->arena, sizeof(*c));
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(p->tree, "description");
        const cJSON *org = cJSON_GetObjectItemCaseSensitive(p->tree, "organization");
        if (!c || !cJSON_IsString(org))
            return SL_ENOMEM;
        memset(c, 0, sizeof(*c));
        c->uuid = fx->case_uuid;
        c->org = org->valuestring;
        c->title = p->row.title;
        c->description = cJSON_IsString(d) ? d->valuestring : "";
        c->severity = p->row.severity;
        c->tlp = 2;
        if (!(c->rule_uuid = arena_strdup(b->arena, res->new_case_rule)) ||
            (res->new_case_template &&
             !(c->template_uuid = arena_strdup(b->arena, res->new_case_template))))
            return SL_ENOMEM;
        fx->new_case = c;
    }
    if (res->mute_until_ms > 0) {
        fx->mute_until_ms = res->mute_until_ms;
        if (!(fx->mute_rule = arena_strdup(b->arena, res->mute_rule)) ||
            !(fx->mute_org = arena_strdup(b->arena, ingest_org)))
            return SL_ENOMEM;
    }
    return 0;
}

/* ---- bulk requests: what became of each event ---------------------------------------------- */

/* A top-level member of a record, looked for from the end: the server's fields (ingest_task,
 * ingest_index) are written after the client's, so this is a few steps, not a scan. */
static const cJSON *member_from_end(const cJSON *obj, const char *key)
{
    const cJSON *last = obj && obj->child ? obj->child->prev : NULL;
    for (const cJSON *c = last; c; c = c == obj->child ? NULL : c->prev)
        if (c->string && strcmp(c->string, key) == 0)
            return c;
    return NULL;
}

/* Makes room for one more element in an arena array (*arr of *cap elements, n used). */
static void *arena_push(struct sl_arena *a, void **arr, size_t *cap, size_t n, size_t size)
{
    if (n == *cap) {
        size_t cap2 = *cap ? *cap * 2 : 64;
        void *grown = sl_arena_alloc(a, cap2 * size);
        if (!grown)
            return NULL;
        if (n)
            memcpy(grown, *arr, n * size);
        *arr = grown;
        *cap = cap2;
    }
    return (char *)*arr + n * size;
}

static struct sl_store_outcome *outcome_push(struct batch *b)
{
    struct sl_store_outcome *o =
        arena_push(b->arena, (void **)&b->outs, &b->outs_cap, b->nouts, sizeof(*b->outs));
    if (o) {
        memset(o, 0, sizeof(*o));
        b->nouts++;
    }
    return o;
}

/* The request and position of a prepared event (its record's ingest_task and ingest_index),
 * into row->ingest_task/ingest_index; NULL task for a record without them (written before
 * ingest tasks existed). Strings stay in the batch's arena. */
static int ingest_of(struct batch *b, const cJSON *tree, struct sl_store_event *row)
{
    const cJSON *idx = member_from_end(tree, "ingest_index");
    const cJSON *task = idx ? member_from_end(tree, "ingest_task") : NULL;
    const cJSON *org = cJSON_GetObjectItemCaseSensitive(tree, "organization");
    row->ingest_task = NULL;
    row->ingest_org = NULL;
    row->ingest_index = -1;
    row->outcome = SL_OUT_STORED;
    if (cJSON_IsNumber(idx) && idx->valuedouble >= 0 && cJSON_IsString(task) &&
        sl_uuid_valid(task->valuestring) && cJSON_IsString(org)) {
        /* The sender's organization, copied before a rule may move the event elsewhere: the
         * request and its outcomes stay the sender's. */
        if (!(row->ingest_org = arena_strdup(b->arena, org->valuestring)))
            return SL_ENOMEM;
        row->ingest_task = task->valuestring;
        row->ingest_index = (int64_t)idx->valuedouble;
    }
    return 0;
}

/* Takes the request's end out of a record that carries one (its first member "_meta", which
 * is never stored) into the batch: the end, and the events the api rejected as outcomes.
 * tree: the record's parse (the end is detached from it), or NULL when prepare could not parse
 * it. Returns SL_ENOMEM or 0 (a malformed end is logged and dropped: retrying cannot fix it). */
static int take_task_end(struct batch *b, const struct sl_stream_record *rec, cJSON *tree)
{
    if (!tree) {
        unsigned failed = sl_event_alloc_failures();
        tree = cJSON_ParseWithLength(rec->data, rec->len);
        if (!tree && sl_event_alloc_failures() != failed)
            return SL_ENOMEM;
        if (!tree) {
            SL_WARN("record %u:%llu: not JSON; its request's end is lost", rec->partition,
                    (unsigned long long)rec->offset);
            return 0;
        }
    }
    cJSON *meta = cJSON_DetachItemFromObjectCaseSensitive(tree, "_meta");
    const cJSON *org = cJSON_GetObjectItemCaseSensitive(tree, "organization");
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(meta, "action");
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(meta, "task");
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(meta, "accepted");
    const cJSON *rej = cJSON_GetObjectItemCaseSensitive(meta, "rejected");
    const cJSON *rx = cJSON_GetObjectItemCaseSensitive(meta, "received_ms");
    if (!cJSON_IsString(action) || strcmp(action->valuestring, "task_end") != 0 ||
        !cJSON_IsString(task) || !sl_uuid_valid(task->valuestring) || !cJSON_IsString(org) ||
        !sl_uuid_valid(org->valuestring) || !cJSON_IsNumber(acc) || acc->valuedouble < 0 ||
        !cJSON_IsArray(rej) || !cJSON_IsNumber(rx) || rx->valuedouble < 0) {
        SL_WARN("record %u:%llu: a malformed request end; ignored", rec->partition,
                (unsigned long long)rec->offset);
        return 0; /* the arena keeps what was parsed until the batch is reset */
    }
    const cJSON *r;
    cJSON_ArrayForEach(r, rej)
    {
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(r, "index");
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(r, "error");
        if (!cJSON_IsNumber(idx) || idx->valuedouble < 0)
            continue;
        struct sl_store_outcome *o = outcome_push(b);
        if (!o)
            return SL_ENOMEM;
        o->task = task->valuestring;
        o->org = org->valuestring;
        o->index = (int64_t)idx->valuedouble;
        o->outcome = SL_OUT_REJECTED;
        o->detail = cJSON_IsString(err) ? err->valuestring : NULL;
    }
    struct sl_store_ingest_done *d =
        arena_push(b->arena, (void **)&b->ends, &b->ends_cap, b->nends, sizeof(*b->ends));
    if (!d)
        return SL_ENOMEM;
    b->nends++;
    d->task = task->valuestring;
    d->org = org->valuestring;
    d->accepted = (int64_t)acc->valuedouble;
    d->rejected = cJSON_GetArraySize(rej);
    d->received_ms = (int64_t)rx->valuedouble;
    return 0;
}

/* Records that a record of a request was refused here (err says why). */
static int note_refused(struct batch *b, const struct sl_event_prepared *p, const char *err)
{
    struct sl_store_event row;
    if (!p->tree)
        return 0;
    if (ingest_of(b, p->tree, &row))
        return SL_ENOMEM;
    if (!row.ingest_task)
        return 0;
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(p->tree, "reference");
    struct sl_store_outcome *o = outcome_push(b);
    char *detail = o ? arena_strdup(b->arena, err) : NULL;
    if (!detail)
        return SL_ENOMEM;
    o->task = row.ingest_task;
    o->org = row.ingest_org;
    o->index = row.ingest_index;
    o->outcome = SL_OUT_REJECTED;
    o->reference = cJSON_IsString(ref) ? ref->valuestring : NULL;
    o->detail = detail;
    return 0;
}

/* The outcome of an event the rules acted on: muted (recorded as a batch outcome, with the
 * rule: the store records it only if the event is newly stored), merged into a case, dismissed
 * by a rule, or plain stored. */
static int rules_outcome(struct batch *b, struct sl_event_prepared *p,
                         const struct sl_rules_result *res)
{
    struct sl_store_event *row = &p->row;
    if (!row->ingest_task)
        return 0;
    if (res->muted) {
        const cJSON *rule = cJSON_GetObjectItemCaseSensitive(p->tree, "muted_by_rule");
        struct sl_store_outcome *o = outcome_push(b);
        if (!o)
            return SL_ENOMEM;
        o->task = row->ingest_task;
        o->org = row->ingest_org;
        o->index = row->ingest_index;
        o->outcome = SL_OUT_MUTED;
        o->reference = row->reference;
        o->event_uuid = row->uuid;
        o->detail = cJSON_IsString(rule) ? rule->valuestring : NULL;
    } else if (res->case_uuid[0]) {
        row->outcome = SL_OUT_MERGED;
    } else if (res->nrules &&
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p->tree, "dismissed_by_rule"))) {
        row->outcome = SL_OUT_DISMISSED;
    }
    return 0;
}

/* The rule stage of one prepared event. */
static int apply_rules(struct worker *w, struct batch *b, struct sl_event_prepared *p, int64_t now,
                       struct sl_store_effects *fx)
{
    struct sl_rules_result res;
    struct sl_rules_hooks hooks = {w, hook_geo, hook_dns, hook_muted};
    /* Mutes are kept for the organization events arrive with, even if a rule moves this one. */
    const cJSON *org = cJSON_GetObjectItemCaseSensitive(p->tree, "organization");
    char ingest_org[SL_UUID_LEN + 1];
    snprintf(ingest_org, sizeof(ingest_org), "%s", cJSON_IsString(org) ? org->valuestring : "");
    int rc = sl_ruleset_apply(w->rules, p->tree, now, &hooks, w->scratch, &res);
    if (rc)
        return rc;
    if (res.nrules_total)
        atomic_fetch_add(&w->slot->rule_hits, (int64_t)res.nrules_total);
    if (res.intel_hits)
        atomic_fetch_add(&w->slot->intel_hits, (int64_t)res.intel_hits);
    if (res.dns_misses)
        atomic_fetch_add(&w->slot->dns_misses, (int64_t)res.dns_misses);
    if (res.muted)
        atomic_fetch_add(&w->slot->muted, 1);
    if (res.rule_errors)
        atomic_fetch_add(&w->slot->rule_errors, (int64_t)res.rule_errors);
    if ((res.muted || res.nrules || res.case_uuid[0]) && (rc = rules_outcome(b, p, &res)))
        return rc;
    if (!res.nrules && !res.case_uuid[0] && res.mute_until_ms <= 0)
        return 0;
    if ((rc = effects_of(b, p, ingest_org, &res, fx)))
        return rc;
    p->row.effects = fx;
    return 0;
}

/* ---- writer thread: store, then commit ---------------------------------------------------- */

/* Writes the batch's rows, retrying transient failures with backoff until it succeeds or the
 * worker is asked to stop (then the batch stays uncommitted and is redelivered). */
static int write_rows(struct worker *w, struct batch *b)
{
    int64_t delay = 50;
    for (int attempt = 1;; attempt++) {
        struct sl_store_batch more = {b->outs, b->nouts, b->ends, b->nends};
        int rc = sl_store_put_batch(w->store, b->rows, b->nrows, &more, b->outcomes);
        if (rc == 0)
            return 0;
        atomic_fetch_add(&w->slot->store_errors, 1);
        /* A busy database or a passing I/O error is waited out; anything else (a batch the
         * store refuses) is given a few tries, then the worker exits so the failure shows in
         * respawns, /health and the log instead of stalling its partitions silently. */
        int transient = rc == SL_EBUSY || rc == SL_EIO || rc == SL_ENOMEM;
        if (!transient && attempt >= PERMANENT_TRIES) {
            SL_ERROR("store refuses a batch of %zu events (%s) after %d tries; exiting so the "
                     "supervisor restarts this worker",
                     b->nrows, sl_strerror(rc), attempt);
            return rc;
        }
        SL_WARN("store write of %zu events failed (%s); retrying in %lld ms", b->nrows,
                sl_strerror(rc), (long long)delay);
        if (*w->stop)
            return rc;
        set_status(w, SL_WORKER_PUSHING);
        sleep_ms(delay);
        delay = delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : delay * 2;
    }
}

static void count_outcomes(struct worker *w, const struct batch *b)
{
    int64_t stored = 0, dup = 0, redo = 0;
    for (size_t i = 0; i < b->nrows; i++) {
        if (b->outcomes[i] == SL_PUT_STORED)
            stored++;
        else if (b->outcomes[i] == SL_PUT_DUPLICATE)
            dup++;
        else
            redo++;
    }
    atomic_fetch_add(&w->slot->stored, stored);
    atomic_fetch_add(&w->slot->duplicates, dup);
    atomic_fetch_add(&w->slot->redelivered, redo);
}

static int write_batch(struct worker *w, struct batch *b)
{
    int64_t t1 = sl_mono_ms();
    set_status(w, SL_WORKER_PUSHING);
    int rc = b->nrows || b->nouts || b->nends ? write_rows(w, b) : 0;
    int64_t t2 = sl_mono_ms();
    /* Outcomes are counted as soon as the store has them, so `stored` is exactly the rows
     * written: a crash before the commit redelivers the batch, and the store reports those
     * events as redelivered, not stored again. */
    if (rc == 0)
        count_outcomes(w, b);
    if (rc == 0)
        rc = sl_stream_commit_offsets(w->consumer, b->parts, b->next, b->nparts);
    if (rc) {
        /* Whatever was stored stays stored; the redelivery will find it there. */
        SL_ERROR("batch of %zu events not committed: %s", b->nrecs, sl_strerror(rc));
        return rc;
    }
    SL_DEBUG("batch of %zu: store %lld ms, commit %lld ms, total %lld ms", b->nrecs,
             (long long)(t2 - t1), (long long)(sl_mono_ms() - t2),
             (long long)(sl_mono_ms() - b->t0));
    atomic_fetch_add(&w->slot->processed_events, (int64_t)b->nrecs);
    atomic_fetch_add(&w->slot->batches, 1);
    atomic_store(&w->slot->events_in_processing, 0);
    atomic_store(&w->slot->last_event_ms, sl_now_ms());
    sl_histogram_observe(&w->stats->batch_latency, (sl_mono_ms() - b->t0) * 1000);
    return 0;
}

static void *writer_main(void *arg)
{
    struct worker *w = arg;
    int next = 0, rc = 0;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->batches[next].full && !w->done)
            pthread_cond_wait(&w->cond, &w->lock);
        int have = w->batches[next].full;
        pthread_mutex_unlock(&w->lock);
        if (!have)
            break; /* done and nothing left */
        rc = write_batch(w, &w->batches[next]);
        pthread_mutex_lock(&w->lock);
        w->batches[next].full = 0;
        if (rc)
            w->writer_rc = rc;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        if (rc)
            break;
        next = (next + 1) % NBATCHES;
    }
    return NULL;
}

/* ---- consumer thread: poll, prepare, hand over -------------------------------------------- */

/* Remembers that the batch covers partition `part` up to `offset`. */
static void batch_note(struct batch *b, uint32_t part, uint64_t offset)
{
    for (size_t i = 0; i < b->nparts; i++) {
        if (b->parts[i] == part) {
            if (offset + 1 > b->next[i])
                b->next[i] = offset + 1;
            return;
        }
    }
    b->parts[b->nparts] = part;
    b->next[b->nparts++] = offset + 1;
}

/* Prepares every record; records that are not valid events are counted, logged and skipped
 * (they can never become valid, so retrying them would block the partition). Returns SL_ENOMEM
 * when memory ran out: then nothing of the batch may be skipped or committed. */
static int prepare_batch(struct worker *w, struct batch *b, const struct sl_stream_record *recs,
                         size_t n)
{
    char err[256];
    int64_t now = sl_now_ms();
    /* The previous batch goes in one reset, on the thread that allocated it: node-by-node
     * frees were a fifth of the worker's time, and frees on the writer thread made the two
     * threads contend for malloc's locks. */
    sl_arena_reset(b->arena);
    memset(b->prepared, 0, b->nrows * sizeof(*b->prepared));
    /* Mutes set by the batches before this one apply to it: one cheap count per batch, and a
     * lookup per event only while some mute is in force. */
    if (w->rules && sl_store_mute_active(w->meta_store, now, &w->mutes_active) != 0)
        w->mutes_active = 1; /* unknown: look each event up */
    sl_event_alloc_arena(b->arena);
    b->nrecs = n;
    b->nrows = 0;
    b->nparts = 0;
    b->outs = NULL;
    b->ends = NULL;
    b->nouts = b->outs_cap = b->nends = b->ends_cap = 0;
    for (size_t i = 0; i < n; i++) {
        struct sl_event_prepared *p = &b->prepared[b->nrows];
        uint64_t origin = ((uint64_t)recs[i].partition << 48) | recs[i].offset;
        int ends = recs[i].len > TASK_END_PREFIX_LEN &&
                   memcmp(recs[i].data, TASK_END_PREFIX, TASK_END_PREFIX_LEN) == 0;
        batch_note(b, recs[i].partition, recs[i].offset);
        /* A batch of slow events is progress, not a hang. */
        atomic_store_explicit(&w->slot->heartbeat_ms, sl_mono_ms(), memory_order_relaxed);
        int rc = sl_event_prepare_tree(recs[i].data, recs[i].len, origin, now, p, err, sizeof(err));
        int end_only = 0;
        /* The end comes out before the rules run (they may move the event to another
         * organization; the request stays its sender's) and before the doc is rendered. */
        if (ends && rc != SL_ENOMEM) {
            int erc = take_task_end(b, &recs[i], p->tree);
            /* A record that is only an end (not an event) has nothing else to store. */
            end_only = erc == 0 && rc != 0 && !member_from_end(p->tree, "ingest_index");
            rc = erc ? erc : rc;
        }
        if (rc == 0)
            rc = ingest_of(b, p->tree, &p->row);
        if (rc == 0 && w->rules && (rc = apply_rules(w, b, p, now, &b->effects[b->nrows])))
            sl_set_err(err, sizeof(err), "rule stage: %s", sl_strerror(rc));
        if (rc == 0)
            rc = sl_event_prepare_finish(p, err, sizeof(err));
        if (rc && rc != SL_ENOMEM && !end_only && note_refused(b, p, err) != 0)
            rc = SL_ENOMEM;
        if (end_only) {
            sl_event_prepared_fini(p);
            memset(p, 0, sizeof(*p));
            continue;
        }
        if (rc == SL_ENOMEM) {
            sl_event_alloc_arena(NULL);
            SL_ERROR("out of memory preparing record %u:%llu; the batch will be redelivered",
                     recs[i].partition, (unsigned long long)recs[i].offset);
            return rc;
        }
        if (rc) {
            SL_WARN("skipping record %u:%llu: %s", recs[i].partition,
                    (unsigned long long)recs[i].offset, err);
            atomic_fetch_add(&w->slot->invalid, 1);
            sl_event_prepared_fini(p);
            memset(p, 0, sizeof(*p));
            continue;
        }
        b->rows[b->nrows++] = p->row;
    }
    sl_event_alloc_arena(NULL);
    return 0;
}

/* Waits until the next batch buffer is free; NULL if the worker is stopping or failed. */
static struct batch *take_free(struct worker *w)
{
    struct batch *b = &w->batches[w->fill];
    pthread_mutex_lock(&w->lock);
    while (b->full && !w->writer_rc) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
        atomic_store(&w->slot->heartbeat_ms, sl_mono_ms());
    }
    int failed = w->writer_rc != 0;
    pthread_mutex_unlock(&w->lock);
    return failed ? NULL : b;
}

static void hand_over(struct worker *w, struct batch *b)
{
    pthread_mutex_lock(&w->lock);
    b->full = 1;
    w->fill = (w->fill + 1) % NBATCHES;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Worker 0 trims what every group has committed and retention no longer keeps. One trim call
 * is bounded (sl_stream_trim's budget); a big backlog of trimmable records is worked off over
 * calls of at most TRIM_SLICE_MS each, heart-beating in between, so trimming never starves
 * the worker's own partitions or looks like a hang. */
static void maybe_trim(struct worker *w)
{
    uint64_t trimmed = 0, total = 0;
    int64_t start = sl_mono_ms();
    int rc;
    if (w->index != 0 || start - w->last_trim_ms < TRIM_INTERVAL_MS)
        return;
    do {
        rc = sl_stream_trim(w->stream, SL_TOPIC_EVENTS, &trimmed);
        total += trimmed;
        atomic_store(&w->slot->heartbeat_ms, sl_mono_ms());
    } while (rc == SL_EAGAIN && !*w->stop && sl_mono_ms() - start < TRIM_SLICE_MS);
    /* More left: come back after the next poll rather than in TRIM_INTERVAL_MS. */
    w->last_trim_ms = rc == SL_EAGAIN ? start - TRIM_INTERVAL_MS : start;
    if (rc && rc != SL_EAGAIN)
        SL_WARN("stream trim failed: %s", sl_strerror(rc));
    else if (total)
        SL_DEBUG("trimmed %llu records", (unsigned long long)total);
}

static int consume(struct worker *w)
{
    int rc = 0;
    while (!*w->stop) {
        const struct sl_stream_record *recs = NULL;
        size_t n = 0;
        struct batch *b = take_free(w);
        if (!b)
            break; /* the writer failed: exit, the supervisor restarts us */
        if (rules_refresh(w) != 0) {
            /* No ruleset yet: events must not be stored unchecked; wait for the store. */
            set_status(w, SL_WORKER_IDLE);
            sleep_ms(200);
            continue;
        }
        set_status(w, SL_WORKER_POLLING);
        rc = sl_stream_poll(w->consumer, (size_t)w->cfg->es_bulk_size, POLL_TIMEOUT_MS, &recs, &n);
        if (rc) {
            SL_ERROR("stream poll failed: %s", sl_strerror(rc));
            break;
        }
        if (n == 0) {
            set_status(w, SL_WORKER_IDLE);
            maybe_trim(w);
            continue;
        }
        set_status(w, SL_WORKER_PROCESSING);
        atomic_store(&w->slot->events_in_processing, (int64_t)n);
        b->t0 = sl_mono_ms();
        rc = prepare_batch(w, b, recs, n);
        if (rc)
            break; /* exit without committing: the supervisor restarts us, the batch returns */
        hand_over(w, b);
        maybe_trim(w);
    }
    return rc;
}

int sl_worker_run(const struct sl_config *cfg, int index, int count, struct sl_stats *stats,
                  volatile sig_atomic_t *stop)
{
    struct worker w = {
        .cfg = cfg, .index = index, .stats = stats, .stop = stop, .slot = &stats->workers[index]};
    pthread_t writer;
    int started = 0;
    snprintf(w.slot->name, sizeof(w.slot->name), "worker-%d", index);
    snprintf(w.slot->organization, sizeof(w.slot->organization), "all");
    atomic_store(&w.slot->started_ms, sl_now_ms());
    set_status(&w, SL_WORKER_STARTING);
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    sl_event_alloc_install(); /* before any JSON exists in this process */
    int rc = worker_open(&w, count);
    /* Worker 0 also polls the Intel Lists fed from a url (a thread of its own). */
    struct sl_poller *poller = rc == 0 && index == 0 ? sl_poller_start(cfg, stop) : NULL;
    if (rc == 0) {
        rc = -pthread_create(&writer, NULL, writer_main, &w);
        started = rc == 0;
    }
    if (rc == 0)
        rc = consume(&w);
    if (started) {
        /* SIGTERM: the writer still stores and commits what was handed over. */
        pthread_mutex_lock(&w.lock);
        w.done = 1;
        pthread_cond_broadcast(&w.cond);
        pthread_mutex_unlock(&w.lock);
        pthread_join(writer, NULL);
        if (rc == 0 && w.writer_rc && !*stop)
            rc = w.writer_rc;
    }
    set_status(&w, SL_WORKER_STOPPED);
    sl_poller_stop(poller);
    worker_close(&w);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    SL_INFO("worker stopped");
    return rc;
}
