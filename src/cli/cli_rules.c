/* `sluice rules test`: runs Event Rules and Intel Lists from files against events from a file,
 * offline (no server, no store), and prints per event the rules that hit and what they did. */
#include "cli/cli.h"
#include "core/arena.h"
#include "core/error.h"
#include "core/util.h"
#include "event/event.h"
#include "rules/ruleset.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_ORG    "00000000-0000-4000-8000-000000000001"
#define FILE_MAX    ((long)1 << 30)
#define LINE_MAX_EV (8L << 20)

static const char rules_usage[] =
    "usage: sluice rules test --rules FILE --events FILE.jsonl [--lists FILE] [--show-event]\n"
    "\n"
    "Runs Event Rules against events offline, as a worker would, and prints one JSON line per\n"
    "event: its line number, reference and title, the rules that hit (uuid, name, the actions\n"
    "they took) and the observables that matched an intel list; with --show-event, the event\n"
    "as it would be stored. Exit status: 0 when every event was processed, 1 when an event\n"
    "line was not a valid event (reported on its line), 2 for bad usage or a rule that does\n"
    "not compile.\n"
    "\n"
    "  --rules FILE   a JSON array of event rule documents as the API takes them (name, query,\n"
    "                 priority, actions...), or an object {\"rules\": [...], \"lists\": [...],\n"
    "                 \"close_reasons\": [...]}. uuid and organization may be left out.\n"
    "  --lists FILE   a JSON array of intel list documents (name, list_type, data_type, ...),\n"
    "                 each with its \"values\" (strings; csv rows as arrays of cells).\n"
    "  --events FILE  one client event per line, as sent to /api/v2.0/event/_bulk.\n";

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (!f) {
        fprintf(stderr, "sluice: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n <= FILE_MAX && fseek(f, 0, SEEK_SET) == 0 &&
            (buf = malloc((size_t)n + 1))) {
            *len = fread(buf, 1, (size_t)n, f);
            buf[*len] = 0;
        }
    }
    if (!buf)
        fprintf(stderr, "sluice: %s: cannot read (too large or not a file)\n", path);
    fclose(f);
    return buf;
}

static cJSON *read_json(const char *path)
{
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text)
        return NULL;
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!doc)
        fprintf(stderr, "sluice: %s: malformed JSON at byte %ld\n", path,
                end ? (long)(end - text) : 0L);
    free(text);
    return doc;
}

/* Gives documents without them a uuid and the test organization, so a hand-written file works. */
static int fill_ids(cJSON *docs)
{
    cJSON *d;
    cJSON_ArrayForEach(d, docs)
    {
        char uuid[SL_UUID_LEN + 1];
        if (!cJSON_IsObject(d))
            continue;
        if (!cJSON_GetObjectItemCaseSensitive(d, "uuid")) {
            sl_uuid4(uuid);
            if (!cJSON_AddStringToObject(d, "uuid", uuid))
                return SL_ENOMEM;
        }
        if (!cJSON_GetObjectItemCaseSensitive(d, "organization") &&
            !cJSON_AddStringToObject(d, "organization", TEST_ORG))
            return SL_ENOMEM;
    }
    return 0;
}

static const cJSON *rule_by_uuid(const cJSON *rules, const char *uuid)
{
    const cJSON *r;
    cJSON_ArrayForEach(r, rules)
    {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(r, "uuid");
        if (cJSON_IsString(u) && !strcmp(u->valuestring, uuid))
            return r;
    }
    return NULL;
}

/* The actions of a rule document, as words: ["add_tags", "dismiss", ...]. */
static cJSON *actions_of(const cJSON *rule)
{
    static const char *const flags[] = {"add_tags",         "remove_tags",     "create_new_case",
                                        "set_organization", "merge_into_case", "dismiss",
                                        "update_severity",  "mute_event"};
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < sizeof(flags) / sizeof(flags[0]); i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rule, flags[i])))
            cJSON_AddItemToArray(a, cJSON_CreateString(flags[i]));
    return a;
}

static cJSON *intel_of(const cJSON *event)
{
    cJSON *a = cJSON_CreateArray();
    const cJSON *ob;
    cJSON_ArrayForEach(ob, cJSON_GetObjectItemCaseSensitive(event, "observables"))
    {
        const cJSON *lists = cJSON_GetObjectItemCaseSensitive(ob, "intel_lists");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(ob, "value");
        if (!a || !cJSON_IsArray(lists) || !cJSON_IsString(v))
            continue;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "value", v->valuestring);
        cJSON_AddItemToObject(m, "lists", cJSON_Duplicate(lists, 1));
        cJSON_AddItemToArray(a, m);
    }
    return a;
}

/* One event line: normalize as the api would, prepare as the worker would, apply, report. */
static int test_line(const struct sl_ruleset *rs, const cJSON *rules, const char *line, size_t len,
                     long lineno, int show, struct sl_arena *scratch)
{
    char err[512], *record = NULL;
    size_t rlen = 0;
    struct sl_event_prepared p;
    struct sl_rules_result res;
    struct sl_ingest_ctx ctx = {TEST_ORG, "rules-test", "admin", "rules-test", sl_now_ms(), 0};
    cJSON *ev = cJSON_ParseWithLength(line, len);
    cJSON *out = cJSON_CreateObject();
    int rc = SL_EINVAL;
    memset(&p, 0, sizeof(p));
    cJSON_AddNumberToObject(out, "line", (double)lineno);
    if (!ev) {
        snprintf(err, sizeof(err), "malformed JSON");
        goto report;
    }
    if ((rc = sl_event_normalize(ev, &ctx, &record, &rlen, err, sizeof(err))) ||
        (rc = sl_event_prepare_tree(record, rlen, 0, sl_now_ms(), &p, err, sizeof(err))))
        goto report;
    if ((rc = sl_ruleset_apply(rs, p.tree, sl_now_ms(), NULL, scratch, &res))) {
        snprintf(err, sizeof(err), "rule stage: %s", sl_strerror(rc));
        goto report;
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(p.tree, "reference");
    cJSON_AddItemToObject(out, "reference", cJSON_Duplicate(ref, 0));
    cJSON_AddStringToObject(out, "title", p.row.title);
    cJSON *hits = cJSON_AddArrayToObject(out, "rules");
    for (size_t i = 0; hits && i < res.nrules; i++) {
        const cJSON *doc = rule_by_uuid(rules, res.rules[i]);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(doc, "name");
        cJSON *h = cJSON_CreateObject();
        cJSON_AddStringToObject(h, "uuid", res.rules[i]);
        cJSON_AddStringToObject(h, "name", cJSON_IsString(name) ? name->valuestring : "");
        cJSON_AddItemToObject(h, "actions", actions_of(doc));
        cJSON_AddItemToArray(hits, h);
    }
    cJSON_AddItemToObject(out, "intel", intel_of(p.tree));
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(p.tree, "status");
    cJSON_AddItemToObject(out, "status",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(status, "name"), 0));
    if (res.case_uuid[0])
        cJSON_AddStringToObject(out, "case", res.case_uuid);
    if (res.mute_until_ms > 0)
        cJSON_AddNumberToObject(out, "mutes_for_ms", (double)(res.mute_until_ms - sl_now_ms()));
    if (show)
        cJSON_AddItemToObject(out, "event", cJSON_Duplicate(p.tree, 1));
report:
    if (rc) {
        cJSON_AddStringToObject(out, "error", err);
        if (rc == SL_ENOMEM)
            fprintf(stderr, "sluice: line %ld: out of memory\n", lineno);
    }
    char *text = cJSON_PrintUnformatted(out);
    if (text)
        puts(text);
    free(text);
    cJSON_Delete(out);
    cJSON_Delete(ev);
    free(record);
    sl_event_prepared_fini(&p);
    return rc;
}

static int run(const char *rules_path, const char *lists_path, const char *events_path, int show)
{
    cJSON *rules_doc = read_json(rules_path),
          *lists_doc = lists_path ? read_json(lists_path) : NULL;
    cJSON *rules = NULL, *lists = NULL, *reasons = NULL;
    struct sl_ruleset *rs = NULL;
    struct sl_arena *scratch = sl_arena_create(64 * 1024, 4 << 20);
    FILE *f = NULL;
    char err[512], *line = NULL;
    size_t cap = 0;
    int code = 2, bad = 0;
    if (!rules_doc || (lists_path && !lists_doc) || !scratch)
        goto out;
    if (cJSON_IsArray(rules_doc)) {
        rules = rules_doc;
    } else {
        rules = cJSON_GetObjectItemCaseSensitive(rules_doc, "rules");
        lists = cJSON_GetObjectItemCaseSensitive(rules_doc, "lists");
        reasons = cJSON_GetObjectItemCaseSensitive(rules_doc, "close_reasons");
    }
    if (lists_doc)
        lists = lists_doc;
    if (!cJSON_IsArray(rules) || (lists && !cJSON_IsArray(lists))) {
        fprintf(stderr, "sluice: --rules: expected an array of rules (or {\"rules\": [...]}), "
                        "--lists: an array of lists\n");
        goto out;
    }
    if (fill_ids(rules) || fill_ids(lists)) {
        fprintf(stderr, "sluice: out of memory\n");
        goto out;
    }
    if (sl_ruleset_build(rules, lists, reasons, TEST_ORG, sl_now_ms(), &rs, err, sizeof(err))) {
        fprintf(stderr, "sluice: %s\n", err);
        goto out;
    }
    if (!(f = fopen(events_path, "rb"))) {
        fprintf(stderr, "sluice: %s: %s\n", events_path, strerror(errno));
        goto out;
    }
    code = 0;
    long lineno = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (n == 0)
            continue;
        if (n > LINE_MAX_EV || test_line(rs, rules, line, (size_t)n, lineno, show, scratch))
            bad = 1;
    }
    code = bad;
out:
    if (f)
        fclose(f);
    free(line);
    sl_ruleset_free(rs);
    sl_arena_destroy(scratch);
    cJSON_Delete(rules_doc);
    cJSON_Delete(lists_doc);
    return code;
}

int sl_cli_rules(int argc, char **argv)
{
    const char *rules = NULL, *lists = NULL, *events = NULL;
    int show = 0;
    if (sl_cli_wants_help(argc, argv)) {
        fputs(rules_usage, stdout);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "test")) {
        fputs(rules_usage, stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--show-event")) {
            show = 1;
        } else if (i + 1 < argc && !strcmp(a, "--rules")) {
            rules = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--lists")) {
            lists = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--events")) {
            events = argv[++i];
        } else {
            fprintf(stderr, "sluice: rules test: unexpected argument \"%s\"\n\n%s", a, rules_usage);
            return 2;
        }
    }
    if (!rules || !events) {
        fprintf(stderr, "sluice: rules test: --rules and --events are required\n\n%s", rules_usage);
        return 2;
    }
    return run(rules, lists, events, show);
}
