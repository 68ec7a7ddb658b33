/* The worker's rule stage alone: Intel List checks of every observable and every Event Rule of
 * the organization, on realistic events, single-threaded.
 *
 *   build/bench/rules_bench [--rules N] [--values N] [--events N] [--seconds S] [--passes P]
 *                           [--hot 1]
 *
 * Builds N rules (a mix of the operators and mutators SOC rules use: title equality and lists,
 * observable lists, severity and source, substring, raw_log JSON fields, expand with CIDR,
 * lowercase + startswith, intel lookups, regexps), intel lists totalling --values values
 * (ip, domain and sha256 values lists, an ip network list, a patterns list, a csv list), and
 * --events distinct events (1-1.5 KB, 4 observables, a JSON raw_log); then applies the ruleset
 * to the events round-robin for --seconds (or exactly --passes times over the events) and
 * prints events/s on one core, ns per event and per rule, and the hit rate. Run it with
 * --rules 10, 100 and 1000 to see the scaling.
 *
 * The events' trees are spread over memory (20,000 events of ~8 KB), so by default each one is
 * read from far caches; the worker applies the rules to the tree it has just built. --hot 1
 * reads each tree right before applying the rules (and subtracts the time of that read, timed
 * on its own) to measure the stage as the worker runs it.
 *
 * As in a real SOC, few rules hit: the events' values are drawn from spaces much larger than
 * the rules', so about 2-3 % of events are hit by some rule at 1,000 rules.
 *
 * Instruction counts are steadier than time on a shared machine: only apply_pass() runs the
 * timed passes, so
 *   valgrind --tool=callgrind --toggle-collect=apply_pass rules_bench --passes 1 ...
 * counts exactly --events applications. */
#include "core/arena.h"
#include "core/util.h"
#include "event/event.h"
#include "rules/ruleset.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ORG "5b0c4a3e-0000-4000-8000-00000000b0b0"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void hex(char *out, size_t n)
{
    static const char h[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++)
        out[i] = h[next_rand() & 15];
    out[n] = 0;
}

static const char *query_for(int i, char *buf, size_t len)
{
    switch (i % 20) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
        snprintf(buf, len, "title = \"Alert %d\"", i);
        break;
    case 6:
    case 7:
        snprintf(buf, len, "title in [\"Alert %d\", \"Alert %d\", \"Alert %d\"] and severity >= 2",
                 i, i + 1, i + 2);
        break;
    case 8:
    case 9:
    case 10:
        snprintf(buf, len,
                 "observables.value in [\"198.51.%d.1\", \"198.51.%d.2\", \"evil-%d.example\", "
                 "\"user%d\", \"host-%d\"]",
                 i % 250, i % 250, i, i, i);
        break;
    case 11:
        snprintf(buf, len, "severity > 3 and source = \"sensor-%d\"", i % 50);
        break;
    case 12:
        snprintf(buf, len, "description contains \"campaign-%d \"", i);
        break;
    case 13:
        snprintf(buf, len, "raw_log.winlog.event_id = \"%d\" and raw_log.host.name exists",
                 4000 + i);
        break;
    case 14:
        snprintf(buf, len,
                 "expand observables (data_type = \"ip\" and value cidr \"10.%d.%d.0/24\")",
                 i % 256, (i / 256) % 256);
        break;
    case 15:
        snprintf(buf, len, "title|lowercase startswith \"suspicious %d \"", i);
        break;
    case 16:
        snprintf(buf, len, "intel(observables.value, 'Bad Domains') and severity = %d", i % 5);
        break;
    case 17:
        snprintf(buf, len, "description regexp \".*beacon-%d[0-9] observed\"", i);
        break;
    case 18:
        snprintf(buf, len, "tags contains \"mitre-t%05d\" or source = \"honeypot-%d\"", i, i);
        break;
    default:
        snprintf(buf, len,
                 "expand observables (data_type = \"user\" and value|lowercase = \"svc-%d\")", i);
        break;
    }
    return buf;
}

static cJSON *make_rules(int n)
{
    cJSON *rules = cJSON_CreateArray();
    char q[512], name[64], uuid[SL_UUID_LEN + 1];
    for (int i = 0; i < n; i++) {
        cJSON *r = cJSON_CreateObject();
        sl_uuid4(uuid);
        snprintf(name, sizeof(name), "rule %d", i);
        cJSON_AddStringToObject(r, "uuid", uuid);
        cJSON_AddStringToObject(r, "organization", ORG);
        cJSON_AddStringToObject(r, "name", name);
        cJSON_AddStringToObject(r, "query", query_for(i, q, sizeof(q)));
        cJSON_AddNumberToObject(r, "priority", i % 10 + 1);
        cJSON_AddBoolToObject(r, "active", 1);
        cJSON_AddBoolToObject(r, "add_tags", 1);
        cJSON *tags = cJSON_AddArrayToObject(r, "tags_to_add");
        cJSON_AddItemToArray(tags, cJSON_CreateString("rule-hit"));
        cJSON_AddItemToArray(rules, r);
    }
    return rules;
}

static cJSON *make_list(const char *name, const char *type, const char *dt, cJSON **values)
{
    cJSON *l = cJSON_CreateObject();
    char uuid[SL_UUID_LEN + 1];
    sl_uuid4(uuid);
    cJSON_AddStringToObject(l, "uuid", uuid);
    cJSON_AddStringToObject(l, "organization", ORG);
    cJSON_AddStringToObject(l, "name", name);
    cJSON_AddStringToObject(l, "list_type", type);
    cJSON_AddStringToObject(l, "data_type", dt);
    cJSON_AddBoolToObject(l, "tag_on_match", 1);
    cJSON_AddBoolToObject(l, "flag_ioc", 1);
    *values = cJSON_AddArrayToObject(l, "values");
    return l;
}

static cJSON *make_lists(long total)
{
    cJSON *lists = cJSON_CreateArray(), *v;
    char buf[128];
    long per = total / 4;
    cJSON *ips = make_list("Bad IPs", "values", "ip", &v);
    for (long i = 0; i < per; i++) {
        snprintf(buf, sizeof(buf), "%u.%u.%u.%u", 11 + (unsigned)(i >> 24) % 200,
                 (unsigned)(i >> 16) & 255, (unsigned)(i >> 8) & 255, (unsigned)i & 255);
        cJSON_AddItemToArray(v, cJSON_CreateString(buf));
    }
    cJSON_AddItemToArray(lists, ips);
    cJSON *doms = make_list("Bad Domains", "values", "domain", &v);
    for (long i = 0; i < per; i++) {
        snprintf(buf, sizeof(buf), "c2-%ld.bad-%ld.example", i, i % 977);
        cJSON_AddItemToArray(v, cJSON_CreateString(buf));
    }
    cJSON_AddItemToArray(lists, doms);
    cJSON *hashes = make_list("Bad Hashes", "values", "sha256hash", &v);
    for (long i = 0; i < per; i++) {
        hex(buf, 64);
        cJSON_AddItemToArray(v, cJSON_CreateString(buf));
    }
    cJSON_AddItemToArray(lists, hashes);
    cJSON *nets = make_list("Bad Networks", "values", "ip", &v);
    for (long i = 0; i < per - 1000; i++) {
        snprintf(buf, sizeof(buf), "%u.%u.%u.0/24", 100 + (unsigned)(i >> 16) % 100,
                 (unsigned)(i >> 8) & 255, (unsigned)i & 255);
        cJSON_AddItemToArray(v, cJSON_CreateString(buf));
    }
    cJSON_AddItemToArray(lists, nets);
    cJSON *pats = make_list("Bad Processes", "patterns", "process", &v);
    for (int i = 0; i < 500; i++) {
        snprintf(buf, sizeof(buf), ".*\\\\tool%d(-[a-z]+)?\\.exe$", i);
        cJSON_AddItemToArray(v, cJSON_CreateString(buf));
    }
    cJSON_AddItemToArray(lists, pats);
    cJSON *csv = make_list("Malware Bazaar", "csv", "generic", &v);
    cJSON *headers = cJSON_AddArrayToObject(csv, "csv_headers");
    cJSON *map = cJSON_AddObjectToObject(csv, "csv_header_map");
    cJSON_AddItemToArray(headers, cJSON_CreateString("date"));
    cJSON_AddItemToArray(headers, cJSON_CreateString("sha256"));
    cJSON_AddItemToArray(headers, cJSON_CreateString("md5"));
    cJSON_AddStringToObject(map, "date", "none");
    cJSON_AddStringToObject(map, "sha256", "sha256hash");
    cJSON_AddStringToObject(map, "md5", "md5hash");
    for (int i = 0; i < 500; i++) {
        cJSON *row = cJSON_CreateArray();
        cJSON_AddItemToArray(row, cJSON_CreateString("2026-01-01"));
        hex(buf, 64);
        cJSON_AddItemToArray(row, cJSON_CreateString(buf));
        hex(buf, 32);
        cJSON_AddItemToArray(row, cJSON_CreateString(buf));
        cJSON_AddItemToArray(v, row);
    }
    cJSON_AddItemToArray(lists, csv);
    return lists;
}

/* A uniform draw from 0..n-1. */
static long draw(long n)
{
    return (long)(next_rand() % (uint64_t)n);
}

/* A client event as the api would normalize it, prepared as the worker would. Each value is
 * drawn from a space much larger than the rules' values, so few rules hit (see query_for). */
static cJSON *make_event(long i, long nvalues)
{
    char rec[4096], sha[65], dom[128], err[256];
    hex(sha, 64);
    /* One event in a hundred has a domain of the "Bad Domains" list. */
    long bad = nvalues >= 4 && draw(100) == 0 ? draw(nvalues / 4) : -1;
    if (bad >= 0)
        snprintf(dom, sizeof(dom), "c2-%ld.bad-%ld.example", bad, bad % 977);
    else
        snprintf(dom, sizeof(dom), "host-%ld.corp.example", draw(4000));
    int n = snprintf(
        rec, sizeof(rec),
        "{\"title\":\"Alert %ld\",\"description\":\"Process beacon-%ld observed talking to a rare "
        "destination. Part of campaign-%ld according to the sensor heuristics; this text pads the "
        "event to a realistic size for an EDR alert description field.\",\"reference\":\"ref-%ld\","
        "\"source\":\"sensor-%ld\",\"severity\":%ld,\"tags\":[\"edr\",\"mitre-t%05ld\"],"
        "\"organization\":\"" ORG "\",\"observables\":["
        "{\"value\":\"10.%ld.%ld.%ld\",\"data_type\":\"ip\",\"tags\":[]},"
        "{\"value\":\"%s\",\"data_type\":\"domain\",\"tags\":[]},"
        "{\"value\":\"user%ld\",\"data_type\":\"user\",\"tags\":[]},"
        "{\"value\":\"%s\",\"data_type\":\"sha256hash\",\"tags\":[]}],"
        "\"raw_log\":\"{\\\"winlog\\\":{\\\"event_id\\\":\\\"%ld\\\",\\\"channel\\\":"
        "\\\"Security\\\"},"
        "\\\"host\\\":{\\\"name\\\":\\\"host-%ld\\\",\\\"os\\\":\\\"windows\\\"},\\\"process\\\":"
        "{\\\"executable\\\":\\\"C:\\\\\\\\Windows\\\\\\\\tool%ld.exe\\\",\\\"pid\\\":%ld},"
        "\\\"user\\\":{\\\"name\\\":\\\"user%ld\\\"}}\"}",
        draw(100000), draw(300000), draw(50000), i, draw(600), draw(5), draw(70000), draw(256),
        draw(256), draw(256), dom, draw(90000), sha, 4000 + draw(30000), draw(4000), draw(800),
        1000 + i, draw(90000));
    struct sl_event_prepared p;
    if (sl_event_prepare_tree(rec, (size_t)n, 0, sl_now_ms(), &p, err, sizeof(err)) != 0) {
        fprintf(stderr, "event %ld: %s\n", i, err);
        exit(1);
    }
    cJSON *tree = p.tree;
    p.tree = NULL;
    sl_event_prepared_fini(&p);
    return tree;
}

struct tally {
    long done, hit_events, hits, intel;
};

static volatile unsigned long touch_sink;

/* Reads every node of a tree and the start of its strings, as building it leaves them in
 * cache. */
static unsigned long touch(const cJSON *j)
{
    unsigned long sum = 0;
    for (; j; j = j->next) {
        sum += (unsigned long)j->type;
        if (j->string)
            sum += (unsigned char)j->string[0];
        if (j->valuestring)
            sum += (unsigned char)j->valuestring[0];
        if (j->child)
            sum += touch(j->child);
    }
    return sum;
}

/* One pass of the ruleset over every event. Returns 0, or -1 when an application failed. */
static inline __attribute__((always_inline)) int apply_all(const struct sl_ruleset *rs,
                                                           cJSON **events, long nevents,
                                                           int64_t now, struct sl_arena *scratch,
                                                           int hot, struct tally *t)
{
    struct sl_rules_result res;
    for (long i = 0; i < nevents; i++) {
        if (hot)
            touch_sink += touch(events[i]);
        if (sl_ruleset_apply(rs, events[i], now, NULL, scratch, &res))
            return -1;
        t->done++;
        t->hit_events += res.nrules_total > 0;
        t->hits += (long)res.nrules_total;
        t->intel += res.intel_hits;
    }
    return 0;
}

/* A timed pass: the only code a --toggle-collect=apply_pass callgrind run counts (its own
 * copy of the loop, so that the warm-up pass is not counted). */
__attribute__((noinline)) static int apply_pass(const struct sl_ruleset *rs, cJSON **events,
                                                long nevents, int64_t now, struct sl_arena *scratch,
                                                int hot, struct tally *t)
{
    return apply_all(rs, events, nevents, now, scratch, hot, t);
}

int main(int argc, char **argv)
{
    int nrules = 1000;
    long nvalues = 1000000, nevents = 20000;
    double seconds = 5;
    long passes = 0;
    int hot = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rules"))
            nrules = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--values"))
            nvalues = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--events"))
            nevents = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--passes"))
            passes = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--hot"))
            hot = atoi(argv[i + 1]);
    }
    char err[512];
    cJSON *rules = make_rules(nrules), *lists = make_lists(nvalues);
    struct sl_ruleset *rs = NULL;
    double t0 = now_s();
    if (sl_ruleset_build(rules, lists, NULL, ORG, sl_now_ms(), &rs, err, sizeof(err))) {
        fprintf(stderr, "ruleset: %s\n", err);
        return 1;
    }
    double built = now_s() - t0;
    cJSON_Delete(rules);
    cJSON_Delete(lists);
    cJSON **events = malloc((size_t)nevents * sizeof(*events));
    for (long i = 0; i < nevents; i++)
        events[i] = make_event(i, nvalues);
    struct sl_arena *scratch = sl_arena_create(64 * 1024, 4 << 20);
    struct tally warm = {0}, t = {0};
    int64_t now = sl_now_ms();
    /* One warm-up pass (first application adds the tags), then the timed passes. */
    if (apply_all(rs, events, nevents, now, scratch, 0, &warm)) {
        fprintf(stderr, "apply failed\n");
        return 1;
    }
    double w0 = now_s(), c0 = cpu_s();
    long npasses = 0;
    for (; passes ? npasses < passes : now_s() - w0 < seconds; npasses++) {
        if (apply_pass(rs, events, nevents, now, scratch, hot, &t)) {
            fprintf(stderr, "apply failed\n");
            return 1;
        }
    }
    double cpu = cpu_s() - c0, wall = now_s() - w0, touch_cpu = 0;
    if (hot) {
        double c1 = cpu_s();
        for (long p = 0; p < npasses; p++)
            for (long i = 0; i < nevents; i++)
                touch_sink += touch(events[i]);
        touch_cpu = cpu_s() - c1;
        cpu -= touch_cpu;
    }
    long done = t.done;
    printf("rules %d (loaded %zu), lists %zu totalling %ld values, events %ld\n", nrules,
           sl_ruleset_rule_count(rs), sl_ruleset_list_count(rs), nvalues, nevents);
    printf("ruleset build %.2f s\n", built);
    if (hot)
        printf("hot events: %.0f ns/event of reading each tree first subtracted\n",
               touch_cpu * 1e9 / (double)done);
    printf("applied %ld events in %.2f s (cpu %.2f s): %.0f events/s per core, %.0f ns/event, "
           "%.1f ns per rule\n",
           done, wall, cpu, (double)done / cpu, cpu * 1e9 / (double)done,
           cpu * 1e9 / (double)done / (nrules ? nrules : 1));
    printf("events hit by a rule: %.2f %%, rule hits per event %.3f, intel hits per event %.3f\n",
           100.0 * (double)t.hit_events / (double)done, (double)t.hits / (double)done,
           (double)t.intel / (double)done);
    for (long i = 0; i < nevents; i++)
        cJSON_Delete(events[i]);
    free(events);
    sl_arena_destroy(scratch);
    sl_ruleset_free(rs);
    return 0;
}
