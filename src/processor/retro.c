/* Retroactive application of an Event Rule: a task (kind "retro_apply_event_rule", made by the
 * API when a rule is created or updated with run_retroactively) that runs the rule over the
 * stored New events of its organization (of every organization for a global rule) and applies
 * its actions to those it matches, in pages, recording progress in the task as it goes.
 *
 * Events that already carry the rule in event_rules are skipped when the rule asks for
 * skip_previous_match, and always when a task resumes after a restart (its first run got to
 * them); a skipped event's hit is never counted twice. A stored event is rewritten with its
 * changes and the rule's side effects in one store transaction per page. */
#include "processor/retro.h"
#include "core/arena.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"
#include "rules/ruleset.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE        500
#define PROGRESS_MS 1000  /* progress is written at most this often */
#define TASKS_MAX   16    /* tasks taken per call */
#define SAVE_GRACE  10000 /* ms a task may wait for the API to save its rule */
#define WRITE_TRIES 10

struct page_ev {
    cJSON *tree;
    char *doc;
    struct sl_rules_result res;
    struct sl_store_effects fx;
    struct sl_store_case c;
    const char *rule_uuids[1];
};

struct run {
    struct sl_store *st;
    const struct sl_ruleset *rs;
    const char *rule;
    int skip_previous;
    struct sl_arena *scratch;
    struct page_ev evs[PAGE];
    size_t n;
    int64_t scanned, matched;
    int rc;
};

static int has_rule(const cJSON *ev, const char *uuid)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(ev, "event_rules"))
    {
        if (cJSON_IsString(e) && !strcmp(e->valuestring, uuid))
            return 1;
    }
    return 0;
}

static void page_clear(struct run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        cJSON_Delete(r->evs[i].tree);
        cJSON_free(r->evs[i].doc); /* printed by cJSON: the worker's allocator */
    }
    r->n = 0;
}

/* One stored event: evaluate, and keep it for the page's write when the rule matched. */
static int on_event(void *ud, int64_t seq, const char *doc, size_t len)
{
    struct run *r = ud;
    struct page_ev *pe = &r->evs[r->n];
    (void)seq;
    r->scanned++;
    memset(pe, 0, sizeof(*pe));
    pe->tree = cJSON_ParseWithLength(doc, len);
    if (!cJSON_IsObject(pe->tree) || (r->skip_previous && has_rule(pe->tree, r->rule))) {
        cJSON_Delete(pe->tree);
        return 0;
    }
    int already = has_rule(pe->tree, r->rule);
    int rc =
        sl_ruleset_apply_rule(r->rs, r->rule, pe->tree, sl_now_ms(), NULL, r->scratch, &pe->res);
    if (rc != 1) {
        cJSON_Delete(pe->tree);
        /* SL_ENOTFOUND: an event of another organization (a global scan sees them all). */
        return rc == SL_ENOMEM ? rc : 0;
    }
    if (!(pe->doc = cJSON_PrintUnformatted(pe->tree))) {
        cJSON_Delete(pe->tree);
        return SL_ENOMEM;
    }
    /* A hit already counted (the rule hit this event before) is not counted again. */
    pe->rule_uuids[0] = r->rule;
    pe->fx.rule_uuids = already ? NULL : pe->rule_uuids;
    pe->fx.nrules = already ? 0 : 1;
    r->n++;
    r->matched++;
    return 0;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Writes the page's matched events with their changes and side effects. */
static int write_page(struct run *r)
{
    struct sl_store_event rows[PAGE];
    size_t updated = 0;
    for (size_t i = 0; i < r->n; i++) {
        struct page_ev *pe = &r->evs[i];
        const cJSON *sev = cJSON_GetObjectItemCaseSensitive(pe->tree, "severity");
        memset(&rows[i], 0, sizeof(rows[i]));
        rows[i].uuid = str(pe->tree, "uuid");
        rows[i].org = str(pe->tree, "organization");
        rows[i].reference = str(pe->tree, "reference");
        rows[i].title = str(pe->tree, "title");
        rows[i].signature = str(pe->tree, "signature");
        rows[i].status = str(cJSON_GetObjectItemCaseSensitive(pe->tree, "status"), "name");
        rows[i].severity = cJSON_IsNumber(sev) ? sev->valueint : 1;
        rows[i].doc = pe->doc;
        rows[i].doc_len = strlen(pe->doc);
        rows[i].created_ms = sl_now_ms(); /* the hit's time, for the rule's last_hit */
        rows[i].expect_status = "New";    /* as scanned: an analyst's change since then stays */
        if (pe->res.case_uuid[0])
            pe->fx.case_uuid = pe->res.case_uuid;
        if (pe->res.new_case) {
            const char *d = str(pe->tree, "description");
            pe->c = (struct sl_store_case){
                pe->res.case_uuid,        rows[i].org, rows[i].title, d ? d : "",
                rows[i].severity,         2,           NULL,          pe->res.new_case_rule,
                pe->res.new_case_template};
            pe->fx.new_case = &pe->c;
        }
        if (pe->res.mute_until_ms > 0) {
            pe->fx.mute_until_ms = pe->res.mute_until_ms;
            pe->fx.mute_rule = pe->res.mute_rule;
        }
        rows[i].effects = &pe->fx;
        if (!rows[i].uuid || !rows[i].org || !rows[i].status)
            return SL_EINVAL;
    }
    return r->n ? sl_store_event_update(r->st, rows, r->n, &updated) : 0;
}

static void finish(struct sl_store *st, struct sl_task *t, const char *state, const char *error)
{
    snprintf(t->state, sizeof(t->state), "%s", state);
    snprintf(t->error, sizeof(t->error), "%s", error ? error : "");
    t->finished_ms = sl_now_ms();
    if (sl_store_task_put(st, t) != 0)
        SL_WARN("retro task %s: cannot record its end", t->id);
}

/* The number of New events in scope (every organization's for a global rule). */
static int64_t count_new(struct sl_store *st, const char *org)
{
    struct sl_event_filter f = {0};
    char *json = NULL;
    int64_t total = 0, sum = 0;
    struct sl_org *orgs = NULL;
    size_t norgs = 0;
    f.status = "New";
    f.page = 1;
    f.page_size = 1;
    if (org) {
        f.org = org;
        if (sl_store_event_list(st, &f, &json, &total) == 0)
            sum = total;
        free(json);
        return sum;
    }
    if (sl_store_org_list(st, &orgs, &norgs) != 0)
        return 0;
    for (size_t i = 0; i < norgs; i++) {
        f.org = orgs[i].uuid;
        json = NULL;
        if (sl_store_event_list(st, &f, &json, &total) == 0)
            sum += total;
        free(json);
    }
    free(orgs);
    return sum;
}

static void run_task(struct sl_store *st, struct sl_task *t, volatile sig_atomic_t *stop,
                     _Atomic int *quit)
{
    struct sl_meta m = {0};
    struct sl_ruleset *rs = NULL;
    struct run *r = NULL;
    char err[512];
    int resumed = !strcmp(t->state, "running");
    int rc = sl_store_meta_get(st, SL_META_RULE, t->ref, &m);
    if (rc == SL_ENOTFOUND) {
        if (sl_now_ms() - t->created_ms >= SAVE_GRACE)
            finish(st, t, "failed", "the rule does not exist (deleted, or never saved)");
        return;
    }
    if (rc)
        return; /* the store is busy: next round */
    cJSON *doc = cJSON_Parse(m.doc);
    free(m.doc);
    /* The API stores the task, then the rule naming it: a task the rule does not name is one
     * whose save has not happened yet (wait a little), failed, or was replaced by a newer run. */
    const cJSON *named = cJSON_GetObjectItemCaseSensitive(doc, "retro_task");
    if (!cJSON_IsString(named) || strcmp(named->valuestring, t->id)) {
        cJSON_Delete(doc);
        if (sl_now_ms() - t->created_ms >= SAVE_GRACE)
            finish(st, t, "failed",
                   "the rule was not saved with this task, or a newer run "
                   "replaced it");
        return;
    }
    int global = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "global_rule"));
    int skip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "skip_previous_match"));
    if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(doc, "active"))) {
        cJSON_Delete(doc);
        finish(st, t, "failed", "the rule is not active");
        return;
    }
    cJSON_Delete(doc);
    if (sl_ruleset_load(st, sl_now_ms(), &rs, err, sizeof(err)) != 0) {
        SL_WARN("retro task %s: %s; will retry", t->id, err);
        return; /* stays pending/running: tried again on the next round */
    }
    r = calloc(1, sizeof(*r));
    if (!r || !(r->scratch = sl_arena_create(64 * 1024, 4 << 20))) {
        free(r);
        sl_ruleset_free(rs);
        return;
    }
    r->st = st;
    r->rs = rs;
    r->rule = t->ref;
    r->skip_previous = skip || resumed;
    snprintf(t->state, sizeof(t->state), "running");
    if (!t->started_ms)
        t->started_ms = sl_now_ms();
    t->total = count_new(st, global ? NULL : t->org);
    t->done = t->matched = 0;
    sl_store_task_put(st, t);
    SL_INFO("retro task %s: applying rule %s to %lld New events%s", t->id, t->ref,
            (long long)t->total, resumed ? " (resumed)" : "");
    int64_t cursor = 0, last_progress = sl_mono_ms();
    for (;;) {
        int64_t last = cursor;
        rc = sl_store_event_scan(st, global ? NULL : t->org, "New", cursor, PAGE, on_event, r,
                                 &last);
        /* A busy store (workers writing) is waited out, a few times, before the task fails. */
        for (int tries = 1; rc == 0 && (rc = write_page(r)) != 0 && tries < WRITE_TRIES &&
                            (rc == SL_EBUSY || rc == SL_EIO) && !*stop;
             tries++) {
            struct timespec ts = {0, 200 * 1000000L};
            nanosleep(&ts, NULL);
            rc = 0;
        }
        page_clear(r);
        if (rc)
            break;
        t->done = r->scanned;
        t->matched = r->matched;
        if (last == cursor || *stop || atomic_load(quit))
            break;
        cursor = last;
        if (sl_mono_ms() - last_progress >= PROGRESS_MS) {
            last_progress = sl_mono_ms();
            sl_store_task_put(st, t);
        }
    }
    if (rc) {
        snprintf(err, sizeof(err), "%s", sl_strerror(rc));
        SL_WARN("retro task %s: stopped: %s", t->id, err);
        finish(st, t, "failed", err);
    } else if (*stop || atomic_load(quit)) {
        sl_store_task_put(st, t); /* stays running: resumed on the next start */
    } else {
        SL_INFO("retro task %s: done, %lld of %lld events matched", t->id, (long long)t->matched,
                (long long)t->done);
        finish(st, t, "done", NULL);
    }
    sl_arena_destroy(r->scratch);
    free(r);
    sl_ruleset_free(rs);
}

void sl_retro_run(struct sl_store *st, volatile sig_atomic_t *stop, _Atomic int *quit)
{
    static const char *const states[] = {"running", "pending"};
    for (size_t s = 0; s < 2 && !*stop && !atomic_load(quit); s++) {
        struct sl_task *tasks = NULL;
        size_t n = 0;
        if (sl_store_task_list(st, states[s], TASKS_MAX, &tasks, &n) != 0)
            return;
        for (size_t i = 0; i < n && !*stop && !atomic_load(quit); i++)
            if (!strcmp(tasks[i].kind, SL_TASK_RETRO))
                run_task(st, &tasks[i], stop, quit);
        free(tasks);
    }
}
