/* Bulk actions on stored events as resumable tasks: the selection and the action are written
 * as the task's params, the api applies the first SL_ACTION_INLINE_MAX events before it answers
 * and worker 0's task thread applies the rest, SL_ACTION_CHUNK events per store transaction,
 * recording the cursor and the counts as it goes.
 *
 * Who runs a task: the api writes it "running" while it works inline (after every chunk), then
 * "done" or "pending". Worker 0 takes "pending" ones, and "running" ones only once nobody has
 * written them for STALE_MS (their runner died: an api killed mid-request, a worker killed),
 * far longer than one chunk can take (its read deadline times its tries), so it never runs a
 * task the api is still running. Worker 0 gives a task at most RUN_SLICE_MS per turn and then
 * hands it back "pending", so list polls, retro tasks and other actions get their turns during
 * a long one; a worker stopped mid-task hands it back the same way, so a restart resumes it at
 * once. A finished task drops its params (up to 100,000 uuids). */
#include "actions/actions.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The api answers after about INLINE_MS at most, however few events it got to (a selection of
 * a few events in a large table is read in windows of rows). */
#define INLINE_MS    3000
#define PROGRESS_MS  1000   /* the worker writes progress at most this often */
#define STALE_MS     120000 /* a "running" task not written for this long has lost its runner */
#define RUN_SLICE_MS 5000   /* worker 0's turn on one task */
#define TASKS_MAX    64     /* tasks listed per state and call */
#define API_TRIES    3      /* tries of a busy store call in the api (it answers 503 after) */
#define WORKER_TRIES 10     /* ... in the worker, 200 ms apart, before the task fails */

static const char *const names[] = {
    [SL_ACT_DISMISS] = "dismiss",         [SL_ACT_ACK] = "acknowledge",
    [SL_ACT_UNACK] = "unacknowledge",     [SL_ACT_REOPEN] = "reopen",
    [SL_ACT_ADD_TO_CASE] = "add_to_case", [SL_ACT_DELETE] = "delete",
};
#define NNAMES (sizeof(names) / sizeof(names[0]))

const char *sl_action_name(enum sl_event_action a)
{
    return (size_t)a < NNAMES ? names[a] : NULL;
}

enum sl_event_action sl_action_from_name(const char *name)
{
    for (size_t i = 1; name && i < NNAMES; i++)
        if (names[i] && !strcmp(names[i], name))
            return (enum sl_event_action)i;
    return (enum sl_event_action)0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- params: the selection and the action as JSON ---- */

static int add_str(cJSON *o, const char *name, const char *v)
{
    return !v || cJSON_AddStringToObject(o, name, v) ? 0 : SL_ENOMEM;
}

static int add_time(cJSON *o, const char *name, int64_t ms)
{
    char iso[25];
    if (ms == 0)
        return 0;
    sl_time_format(ms, iso);
    return cJSON_AddStringToObject(o, name, iso) ? 0 : SL_ENOMEM;
}

/* The filter with the names of the GET /event parameters (severity as an array, start and end
 * as ISO 8601). Page and order do not matter to an action. */
static cJSON *filter_json(const struct sl_event_filter *f)
{
    cJSON *o = cJSON_CreateObject();
    int rc = o ? 0 : SL_ENOMEM;
    if (!rc)
        rc = add_str(o, "status", f->status);
    if (!rc && f->nseverities > 0) {
        cJSON *a = cJSON_AddArrayToObject(o, "severity");
        for (int i = 0; a && i < f->nseverities; i++)
            if (!cJSON_AddItemToArray(a, cJSON_CreateNumber(f->severities[i])))
                a = NULL;
        rc = a ? 0 : SL_ENOMEM;
    }
    if (!rc)
        rc = add_str(o, "title", f->title);
    if (!rc)
        rc = add_str(o, "signature", f->signature);
    if (!rc)
        rc = add_str(o, "tag", f->tag);
    if (!rc)
        rc = add_str(o, "observable", f->observable);
    if (!rc)
        rc = add_time(o, "start", f->start_ms);
    if (!rc)
        rc = add_time(o, "end", f->end_ms);
    if (rc) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The params document (cJSON-printed: release with cJSON_free), or NULL when memory ran out. */
static char *params_print(const struct sl_event_selection *sel,
                          const struct sl_event_action_args *a)
{
    char *out = NULL;
    cJSON *o = cJSON_CreateObject();
    int rc = o ? 0 : SL_ENOMEM;
    if (!rc)
        rc = add_str(o, "action", sl_action_name(a->action));
    if (!rc)
        rc = add_str(o, "organization", sel->org);
    if (!rc && sel->uuids) {
        cJSON *arr = cJSON_AddArrayToObject(o, "events");
        for (size_t i = 0; arr && i < sel->nuuids; i++)
            if (!cJSON_AddItemToArray(arr, cJSON_CreateString(sel->uuids[i])))
                arr = NULL;
        rc = arr ? 0 : SL_ENOMEM;
    }
    if (!rc && sel->filter) {
        cJSON *f = filter_json(sel->filter);
        rc = f && cJSON_AddItemToObject(o, "filter", f) ? 0 : SL_ENOMEM;
        if (rc)
            cJSON_Delete(f);
    }
    if (!rc)
        rc = cJSON_AddBoolToObject(o, "include_related", sel->include_related) ? 0 : SL_ENOMEM;
    if (!rc)
        rc = add_str(o, "by", a->by);
    if (!rc)
        rc = add_str(o, "reason", a->reason);
    if (!rc)
        rc = add_str(o, "reason_uuid", a->reason_uuid);
    if (!rc)
        rc = add_str(o, "comment", a->comment);
    if (!rc)
        rc = add_str(o, "case", a->case_uuid);
    if (!rc)
        out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

/* A selection and an action read back from params. Every pointer points into tree. */
struct parsed {
    cJSON *tree;
    struct sl_event_selection sel;
    struct sl_event_filter f;
    struct sl_event_action_args a;
    const char **uuids;
};

static const char *get_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int parse_time(const cJSON *o, const char *name, int64_t *out)
{
    const char *v = get_str(o, name);
    return v ? sl_time_parse(v, strlen(v), out) : 0;
}

static int parse_filter(const cJSON *o, struct sl_event_filter *f, const char *org)
{
    memset(f, 0, sizeof(*f));
    f->org = org;
    f->page = 1;
    f->page_size = 1000;
    f->status = get_str(o, "status");
    f->title = get_str(o, "title");
    f->signature = get_str(o, "signature");
    f->tag = get_str(o, "tag");
    f->observable = get_str(o, "observable");
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(o, "severity"))
    {
        if (!cJSON_IsNumber(s) || s->valueint < 0 || s->valueint > 4 ||
            f->nseverities == (int)(sizeof(f->severities) / sizeof(f->severities[0])))
            return SL_EINVAL;
        f->severities[f->nseverities++] = s->valueint;
    }
    if (parse_time(o, "start", &f->start_ms) || parse_time(o, "end", &f->end_ms))
        return SL_EINVAL;
    return 0;
}

/* SL_EINVAL when params are not what params_print writes; SL_ENOMEM. */
static int params_parse(const char *json, const char *task_org, struct parsed *p)
{
    memset(p, 0, sizeof(*p));
    if (!(p->tree = cJSON_Parse(json)))
        return cJSON_GetErrorPtr() ? SL_EINVAL : SL_ENOMEM;
    const cJSON *o = p->tree;
    const char *org = get_str(o, "organization");
    if (!org || strcmp(org, task_org))
        return SL_EINVAL;
    p->sel.org = org;
    p->a.action = sl_action_from_name(get_str(o, "action"));
    if (!p->a.action)
        return SL_EINVAL;
    const cJSON *evs = cJSON_GetObjectItemCaseSensitive(o, "events");
    if (cJSON_IsArray(evs)) {
        size_t n = (size_t)cJSON_GetArraySize(evs), i = 0;
        if (!(p->uuids = calloc(n ? n : 1, sizeof(*p->uuids))))
            return SL_ENOMEM;
        const cJSON *e;
        cJSON_ArrayForEach(e, evs)
        {
            if (!cJSON_IsString(e))
                return SL_EINVAL;
            p->uuids[i++] = e->valuestring;
        }
        p->sel.uuids = p->uuids;
        p->sel.nuuids = n;
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, "filter");
    if (cJSON_IsObject(f)) {
        if (parse_filter(f, &p->f, org))
            return SL_EINVAL;
        p->sel.filter = &p->f;
    }
    if (!p->sel.uuids && !p->sel.filter)
        return SL_EINVAL;
    p->sel.include_related = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "include_related"));
    p->a.by = get_str(o, "by");
    p->a.reason = get_str(o, "reason");
    p->a.reason_uuid = get_str(o, "reason_uuid");
    p->a.comment = get_str(o, "comment");
    p->a.case_uuid = get_str(o, "case");
    if ((p->a.action == SL_ACT_ADD_TO_CASE && !p->a.case_uuid) ||
        (p->a.action == SL_ACT_DISMISS && !p->a.reason))
        return SL_EINVAL;
    return 0;
}

static void parsed_fini(struct parsed *p)
{
    free(p->uuids);
    cJSON_Delete(p->tree);
}

/* ---- running ---- */

static int transient(int rc)
{
    return rc == SL_EBUSY || rc == SL_EIO || rc == SL_EAGAIN || rc == SL_ETIMEDOUT;
}

/* One chunk: sl_store_event_act, a busy store retried up to tries times, pause_ms apart. */
static int act_chunk(struct sl_store *st, const struct sl_event_selection *sel,
                     const struct sl_event_action_args *a, int64_t *cursor, int64_t *seen,
                     int64_t *changed, int *more, int tries, int64_t pause_ms)
{
    struct sl_event_action_args now = *a;
    int rc;
    for (int i = 1;; i++) {
        int64_t at = *cursor, s = 0, c = 0;
        now.now_ms = sl_now_ms(); /* each event dismissed at the time it is */
        rc = sl_store_event_act(st, sel, &now, &at, SL_ACTION_CHUNK, &s, &c, more);
        if (rc == 0) {
            *cursor = at;
            *seen += s;
            *changed += c;
            return 0;
        }
        if (!transient(rc) || i >= tries)
            return rc;
        sleep_ms(pause_ms);
    }
}

/* Ends a task (state done or failed) and writes it; the counts and cursor are the caller's. */
static int finish(struct sl_store *st, struct sl_task *t, const char *state, const char *error)
{
    snprintf(t->state, sizeof(t->state), "%s", state);
    snprintf(t->error, sizeof(t->error), "%s", error ? error : "");
    t->finished_ms = sl_now_ms();
    if (!strcmp(state, "done"))
        t->total = t->done; /* now known: every event looked at */
    t->params = "{}";       /* not needed any more */
    int rc = sl_store_task_put(st, t);
    t->params = NULL;
    return rc;
}

static int check_selection(const struct sl_event_selection *sel,
                           const struct sl_event_action_args *a, char *err, size_t errlen)
{
    if (!sel->org || !sl_uuid_valid(sel->org)) {
        sl_set_err(err, errlen, "organization: expected an organization uuid");
        return SL_EINVAL;
    }
    if (!sl_action_name(a->action)) {
        sl_set_err(err, errlen, "action: unknown action %d", (int)a->action);
        return SL_EINVAL;
    }
    if (!sel->uuids && !sel->filter) {
        sl_set_err(err, errlen, "nothing selected: give events or a filter");
        return SL_EINVAL;
    }
    if (sel->filter && (!sel->filter->org || strcmp(sel->filter->org, sel->org))) {
        sl_set_err(err, errlen, "filter: it must select the organization acted on");
        return SL_EINVAL;
    }
    for (size_t i = 0; sel->uuids && i < sel->nuuids; i++)
        if (!sel->uuids[i] || !sl_uuid_valid(sel->uuids[i])) {
            sl_set_err(err, errlen, "events[%zu]: expected an event uuid", i);
            return SL_EINVAL;
        }
    if (a->action == SL_ACT_ADD_TO_CASE && (!a->case_uuid || !sl_uuid_valid(a->case_uuid))) {
        sl_set_err(err, errlen, "case: expected a case uuid");
        return SL_EINVAL;
    }
    if (a->action == SL_ACT_DISMISS && (!a->reason || !a->reason[0])) {
        sl_set_err(err, errlen, "dismiss_reason: required to dismiss");
        return SL_EINVAL;
    }
    return 0;
}

int sl_action_start(struct sl_store *st, const struct sl_event_selection *sel,
                    const struct sl_event_action_args *a, struct sl_task *out_task,
                    int *out_complete, char *err, size_t errlen)
{
    struct sl_task *t = out_task;
    char *params = NULL;
    int more = 1, rc = check_selection(sel, a, err, errlen);
    *out_complete = 0;
    if (rc)
        return rc;
    if (!(params = params_print(sel, a))) {
        sl_set_err(err, errlen, "out of memory");
        return SL_ENOMEM;
    }
    memset(t, 0, sizeof(*t));
    sl_uuid4(t->id);
    snprintf(t->org, sizeof(t->org), "%s", sel->org);
    snprintf(t->kind, sizeof(t->kind), "%s", SL_TASK_EVENT_ACTION);
    snprintf(t->state, sizeof(t->state), "running");
    if (a->action == SL_ACT_ADD_TO_CASE)
        snprintf(t->ref, sizeof(t->ref), "%s", a->case_uuid);
    t->started_ms = sl_now_ms();
    t->params = params;
    rc = sl_store_task_put(st, t);
    cJSON_free(params);
    t->params = NULL;
    if (rc) {
        sl_set_err(err, errlen, "cannot record the task: %s", sl_strerror(rc));
        return rc;
    }
    int64_t inline_end = sl_mono_ms() + INLINE_MS;
    while (more && t->done < SL_ACTION_INLINE_MAX && sl_mono_ms() < inline_end) {
        rc = act_chunk(st, sel, a, &t->cursor, &t->done, &t->matched, &more, API_TRIES, 100);
        if (rc)
            break;
        /* Progress, and a sign of life: worker 0 leaves a running task alone while it is fresh. */
        if (more && sl_store_task_put(st, t) != 0)
            SL_DEBUG("action task %s: progress not written (store busy)", t->id);
    }
    if (rc) {
        if (rc == SL_ENOTFOUND)
            sl_set_err(err, errlen, "%s",
                       a->action == SL_ACT_ADD_TO_CASE ? "case: no such case in the organization"
                                                       : "organization: no such organization");
        else
            sl_set_err(err, errlen, "%s", sl_strerror(rc));
        if (finish(st, t, "failed", err) != 0)
            SL_WARN("action task %s: cannot record its failure", t->id);
        return rc;
    }
    if (!more) {
        rc = finish(st, t, "done", NULL);
        *out_complete = rc == 0;
    } else {
        snprintf(t->state, sizeof(t->state), "pending"); /* worker 0 goes on from the cursor */
        rc = sl_store_task_put(st, t);
    }
    if (rc) {
        sl_set_err(err, errlen, "cannot record the task's progress: %s", sl_strerror(rc));
        /* The client is told it failed: it must not go on behind its back. */
        if (finish(st, t, "failed", err) != 0)
            SL_WARN("action task %s: cannot record its failure (it resumes once stale)", t->id);
        return rc;
    }
    SL_DEBUG("action task %s: %s, %lld events looked at, %lld changed%s", t->id,
             sl_action_name(a->action), (long long)t->done, (long long)t->matched,
             more ? ", the rest left to worker 0" : "");
    return 0;
}

/* Runs one task from its cursor to the end, or until stop/quit (it then goes back to
 * "pending", cursor and counts kept, so the next start takes it up at once). */
static void run_task(struct sl_store *st, struct sl_task *t, volatile sig_atomic_t *stop,
                     _Atomic int *quit)
{
    struct parsed p;
    char *json = NULL, err[256];
    int more = 1, rc = sl_store_task_params(st, t->id, &json);
    if (rc) {
        SL_WARN("action task %s: cannot read its params: %s; will retry", t->id, sl_strerror(rc));
        return;
    }
    rc = params_parse(json, t->org, &p);
    free(json);
    if (rc) {
        if (rc == SL_EINVAL && finish(st, t, "failed", "malformed params") != 0)
            SL_WARN("action task %s: cannot record its failure", t->id);
        parsed_fini(&p);
        return;
    }
    int resumed = !strcmp(t->state, "running");
    snprintf(t->state, sizeof(t->state), "running");
    if (!t->started_ms)
        t->started_ms = sl_now_ms();
    t->params = NULL;
    sl_store_task_put(st, t);
    SL_INFO("action task %s: %s in %s from cursor %lld (%lld events looked at so far)%s", t->id,
            sl_action_name(p.a.action), t->org, (long long)t->cursor, (long long)t->done,
            resumed ? ", resumed" : "");
    int64_t last_progress = sl_mono_ms(), slice_end = last_progress + RUN_SLICE_MS;
    rc = 0;
    while (more && !*stop && !atomic_load(quit) && sl_mono_ms() < slice_end) {
        rc = act_chunk(st, &p.sel, &p.a, &t->cursor, &t->done, &t->matched, &more, WORKER_TRIES,
                       200);
        if (rc)
            break;
        if (more && sl_mono_ms() - last_progress >= PROGRESS_MS) {
            last_progress = sl_mono_ms();
            if (sl_store_task_put(st, t) != 0)
                SL_DEBUG("action task %s: progress not written (store busy)", t->id);
        }
    }
    if (rc) {
        snprintf(err, sizeof(err), "%s",
                 rc == SL_ENOTFOUND ? "the case (or organization) no longer exists"
                                    : sl_strerror(rc));
        SL_WARN("action task %s: stopped: %s", t->id, err);
        if (finish(st, t, "failed", err) != 0)
            SL_WARN("action task %s: cannot record its failure", t->id);
    } else if (more) {
        /* Its turn is over, or the worker stops: handed back. Were it left "running", the next
         * turn (or start) would wait STALE_MS. */
        snprintf(t->state, sizeof(t->state), "pending");
        if (sl_store_task_put(st, t) != 0)
            SL_WARN("action task %s: cannot record where it stopped (resumed once stale)", t->id);
        else
            SL_DEBUG("action task %s: paused at cursor %lld", t->id, (long long)t->cursor);
    } else {
        SL_INFO("action task %s: done, %lld events looked at, %lld changed", t->id,
                (long long)t->done, (long long)t->matched);
        if (finish(st, t, "done", NULL) != 0)
            SL_WARN("action task %s: cannot record its end", t->id);
    }
    parsed_fini(&p);
}

void sl_actions_run_pending(struct sl_store *st, volatile sig_atomic_t *stop, _Atomic int *quit)
{
    static const char *const states[] = {"running", "pending"};
    for (size_t s = 0; s < 2 && !*stop && !atomic_load(quit); s++) {
        struct sl_task *tasks = NULL;
        size_t n = 0;
        if (sl_store_task_list(st, states[s], TASKS_MAX, &tasks, &n) != 0)
            return;
        for (size_t i = 0; i < n && !*stop && !atomic_load(quit); i++) {
            struct sl_task *t = &tasks[i];
            if (strcmp(t->kind, SL_TASK_EVENT_ACTION))
                continue;
            /* A running task written lately has a runner (the api, inline): not ours. */
            if (s == 0 && sl_now_ms() - t->updated_ms < STALE_MS)
                continue;
            run_task(st, t, stop, quit);
        }
        free(tasks);
    }
}
