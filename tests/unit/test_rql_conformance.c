/* RQL conformance: runs every case of the .jsonl files in tests/rql/conformance (one JSON object
 * a line: id, rule, event and match, or error with an optional error_at [line, col]; optional intel
 * lists, geo and dns tables) through sl_rql_compile and sl_rql_match. Intel lists are built
 * with the intel engine (src/rules/intel.h); geo and DNS callbacks answer from the case's
 * tables. Every failing case is printed with its id, rule, expected and actual result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "rules/intel.h"
#include "rules/rql.h"

#define MIN_CASES 200
#define MAX_FILES 64
#define MAX_LISTS 16

static char conf_dir[4096];
static char *files[MAX_FILES];
static size_t nfiles;
static size_t total_cases;

/* ---- the environment of one case ---------------------------------------------------------- */

struct case_env {
    const char *names[MAX_LISTS];
    struct sl_intel_list *lists[MAX_LISTS];
    size_t nlists;
    const cJSON *geo; /* {"ip": {"country": ..., "continent": ..., "timezone": ...}} */
    const cJSON *dns; /* {"kind:name": ["answer", ...]} */
};

static struct sl_intel_list *find_list(struct case_env *ce, const char *name)
{
    for (size_t i = 0; i < ce->nlists; i++)
        if (!strcmp(ce->names[i], name))
            return ce->lists[i];
    return NULL;
}

static int cb_intel(void *ud, const char *list, const char *value, size_t len,
                    const char *data_type)
{
    struct sl_intel_list *l = find_list(ud, list);
    return l ? sl_intel_match(l, data_type, value, len) : 0;
}

static int cb_cidr(void *ud, const char *list, const char *ip, size_t len)
{
    struct sl_intel_list *l = find_list(ud, list);
    return l ? sl_intel_match_cidr(l, ip, len) : 0;
}

static int cb_geo(void *ud, enum sl_rql_geo kind, const char *ip, char *out, size_t outlen)
{
    struct case_env *ce = ud;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(ce->geo, ip);
    const char *key = kind == SL_RQL_GEO_COUNTRY     ? "country"
                      : kind == SL_RQL_GEO_CONTINENT ? "continent"
                                                     : "timezone";
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, key);
    if (!cJSON_IsString(v))
        return 0;
    snprintf(out, outlen, "%s", v->valuestring);
    return 1;
}

static int cb_dns(void *ud, enum sl_rql_dns kind, const char *name, char out[][256], int max)
{
    static const char *const kinds[] = {"reverse", "a", "aaaa", "mx", "ns", "ptr"};
    struct case_env *ce = ud;
    char key[512];
    snprintf(key, sizeof(key), "%s:%s", kinds[kind], name);
    const cJSON *answers = cJSON_GetObjectItemCaseSensitive(ce->dns, key);
    if (!cJSON_IsArray(answers))
        return -1; /* not cached yet */
    int n = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, answers)
    {
        if (n == max)
            break;
        if (cJSON_IsString(a))
            snprintf(out[n++], 256, "%s", a->valuestring);
    }
    return n;
}

static const char *str_of(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

/* Builds the case's lists. Returns 0, or -1 with a reason in err. */
static int build_lists(struct case_env *ce, const cJSON *lists, char *err, size_t errlen)
{
    const cJSON *ld;
    cJSON_ArrayForEach(ld, lists)
    {
        if (ce->nlists == MAX_LISTS) {
            snprintf(err, errlen, "more than %d lists", MAX_LISTS);
            return -1;
        }
        const char *type = str_of(ld, "list_type", "values");
        const char *cols[SL_INTEL_MAX_COLUMNS];
        size_t ncols = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(ld, "csv_columns"))
        {
            if (ncols < SL_INTEL_MAX_COLUMNS)
                cols[ncols++] = cJSON_IsString(c) ? c->valuestring : "none";
        }
        struct sl_intel_def def = {
            .uuid = "00000000-0000-4000-8000-000000000000",
            .name = str_of(ld, "name", ""),
            .type = !strcmp(type, "patterns") ? SL_INTEL_PATTERNS
                    : !strcmp(type, "csv")    ? SL_INTEL_CSV
                                              : SL_INTEL_VALUES,
            .data_type = str_of(ld, "data_type", "generic"),
            .case_sensitive = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ld, "case_sensitive")),
            .csv_columns = cols,
            .ncsv_columns = ncols,
        };
        struct sl_intel_builder *b = sl_intel_builder_new(&def);
        if (!b) {
            snprintf(err, errlen, "sl_intel_builder_new refused list \"%s\"", def.name);
            return -1;
        }
        const cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(ld, "values"))
        {
            char e[256] = "";
            int rc = 0;
            if (cJSON_IsString(v)) {
                rc = sl_intel_builder_add(b, v->valuestring, strlen(v->valuestring), e, sizeof(e));
            } else if (cJSON_IsArray(v)) {
                const char *cells[SL_INTEL_MAX_COLUMNS];
                size_t lens[SL_INTEL_MAX_COLUMNS], n = 0;
                const cJSON *cell;
                cJSON_ArrayForEach(cell, v)
                {
                    if (n < SL_INTEL_MAX_COLUMNS) {
                        cells[n] = cJSON_IsString(cell) ? cell->valuestring : "";
                        lens[n] = strlen(cells[n]);
                        n++;
                    }
                }
                rc = sl_intel_builder_add_row(b, cells, lens, n, e, sizeof(e));
            }
            if (rc) {
                snprintf(err, errlen, "list \"%s\": value refused: %s", def.name, e);
                sl_intel_builder_free(b);
                return -1;
            }
        }
        char e[256] = "";
        struct sl_intel_list *l = NULL;
        if (sl_intel_builder_finish(b, &l, e, sizeof(e))) {
            snprintf(err, errlen, "list \"%s\": %s", def.name, e);
            return -1;
        }
        ce->names[ce->nlists] = def.name;
        ce->lists[ce->nlists++] = l;
    }
    return 0;
}

static void free_lists(struct case_env *ce)
{
    for (size_t i = 0; i < ce->nlists; i++)
        sl_intel_list_free(ce->lists[i]);
    ce->nlists = 0;
}

/* ---- one case ----------------------------------------------------------------------------- */

/* Runs one case; returns 0 when it passes, else prints why and returns 1. */
static int run_case(const char *file, int lineno, const cJSON *c, struct sl_arena *scratch)
{
    const char *id = str_of(c, "id", "?");
    const cJSON *rule = cJSON_GetObjectItemCaseSensitive(c, "rule");
    const cJSON *event = cJSON_GetObjectItemCaseSensitive(c, "event");
    int want_error = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "error"));
    const cJSON *match = cJSON_GetObjectItemCaseSensitive(c, "match");
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(c, "error_at");
    if (!cJSON_IsString(rule) || (!want_error && (!cJSON_IsBool(match) || !event))) {
        print_error("%s:%d %s: malformed case (needs rule and event+match or error)\n", file,
                    lineno, id);
        return 1;
    }
    struct sl_rql *prog = NULL;
    struct sl_rql_error err;
    int rc = sl_rql_compile(rule->valuestring, strlen(rule->valuestring), &prog, &err);
    if (want_error) {
        if (rc == 0) {
            print_error("FAIL %s (%s:%d)\n  rule: %s\n  expected: compile error, got: compiled\n",
                        id, file, lineno, rule->valuestring);
            sl_rql_free(prog);
            return 1;
        }
        if (cJSON_GetArraySize(at) == 2) {
            int line = cJSON_GetArrayItem(at, 0)->valueint;
            int col = cJSON_GetArrayItem(at, 1)->valueint;
            if (err.line != line || err.col != col) {
                print_error("FAIL %s (%s:%d)\n  rule: %s\n  expected: error at %d:%d, got: "
                            "error at %d:%d: %s\n",
                            id, file, lineno, rule->valuestring, line, col, err.line, err.col,
                            err.msg);
                return 1;
            }
        }
        return 0;
    }
    if (rc) {
        print_error("FAIL %s (%s:%d)\n  rule: %s\n  expected: match=%s, got: compile error "
                    "at %d:%d: %s\n",
                    id, file, lineno, rule->valuestring, cJSON_IsTrue(match) ? "true" : "false",
                    err.line, err.col, err.msg);
        return 1;
    }
    struct case_env ce = {.geo = cJSON_GetObjectItemCaseSensitive(c, "geo"),
                          .dns = cJSON_GetObjectItemCaseSensitive(c, "dns")};
    char lerr[512] = "";
    int failed = 0;
    if (build_lists(&ce, cJSON_GetObjectItemCaseSensitive(c, "lists"), lerr, sizeof(lerr))) {
        print_error("FAIL %s (%s:%d)\n  rule: %s\n  cannot build the case's lists: %s\n", id, file,
                    lineno, rule->valuestring, lerr);
        failed = 1;
    } else {
        struct sl_rql_env env = {.ud = &ce,
                                 .intel_match = cb_intel,
                                 .intel_cidr = cb_cidr,
                                 .geo = cb_geo,
                                 .dns = cb_dns};
        struct sl_rql_input in = {.event = event};
        int oom = 0;
        int got = sl_rql_match(prog, &in, &env, scratch, &oom);
        sl_rql_input_fini(&in);
        sl_arena_reset(scratch);
        if (oom || got != cJSON_IsTrue(match)) {
            char *ev = cJSON_PrintUnformatted(event);
            print_error("FAIL %s (%s:%d)\n  rule: %s\n  event: %.300s\n  expected: match=%s, "
                        "got: match=%s%s\n",
                        id, file, lineno, rule->valuestring, ev ? ev : "?",
                        cJSON_IsTrue(match) ? "true" : "false", got ? "true" : "false",
                        oom ? " (out of scratch memory)" : "");
            free(ev);
            failed = 1;
        }
    }
    free_lists(&ce);
    sl_rql_free(prog);
    return failed;
}

/* ---- files -------------------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap + 1);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            char *m = realloc(buf, 2 * cap + 1);
            if (!m) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = m;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[len] = '\0';
    *out_len = len;
    return buf;
}

static int blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r')
            return 0;
    return 1;
}

/* Calls fn on every non-blank line of path; returns the number of lines seen. */
static size_t for_each_case(const char *path, int (*fn)(const char *, int, const char *, void *),
                            void *arg, size_t *failures)
{
    size_t len, count = 0;
    char *text = read_file(path, &len);
    if (!text) {
        print_error("cannot read %s\n", path);
        (*failures)++;
        return 0;
    }
    int lineno = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        if (blank(line))
            continue;
        count++;
        if (fn && fn(path, lineno, line, arg))
            (*failures)++;
    }
    free(text);
    return count;
}

static int check_line(const char *path, int lineno, const char *line, void *arg)
{
    const char *file = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    cJSON *c = cJSON_Parse(line);
    if (!c || !cJSON_IsObject(c)) {
        print_error("%s:%d: not a JSON object: %.120s\n", file, lineno, line);
        cJSON_Delete(c);
        return 1;
    }
    int r = run_case(file, lineno, c, arg);
    cJSON_Delete(c);
    return r;
}

static void test_file(void **state)
{
    const char *path = *state;
    struct sl_arena *scratch = sl_arena_create(65536, 65536);
    assert_non_null(scratch);
    size_t failures = 0;
    size_t n = for_each_case(path, check_line, scratch, &failures);
    sl_arena_destroy(scratch);
    if (failures) {
        print_error("%zu of %zu cases failed in %s\n", failures, n, path);
        fail();
    }
    assert_true(n > 0);
}

static void test_case_count(void **state)
{
    (void)state;
    if (total_cases < MIN_CASES) {
        print_error("only %zu conformance cases in %s (at least %d expected)\n", total_cases,
                    conf_dir, MIN_CASES);
        fail();
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void find_files(void)
{
    char src[4096];
    snprintf(src, sizeof(src), "%s", __FILE__);
    snprintf(conf_dir, sizeof(conf_dir), "%s/../rql/conformance", dirname(src));
    DIR *d = opendir(conf_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && nfiles < MAX_FILES) {
        size_t n = strlen(e->d_name);
        if (n > 6 && !strcmp(e->d_name + n - 6, ".jsonl")) {
            char *p = malloc(strlen(conf_dir) + n + 2);
            if (!p)
                break;
            sprintf(p, "%s/%s", conf_dir, e->d_name);
            files[nfiles++] = p;
        }
    }
    closedir(d);
    qsort(files, nfiles, sizeof(files[0]), cmp_str);
    for (size_t i = 0; i < nfiles; i++) {
        size_t failures = 0;
        total_cases += for_each_case(files[i], NULL, NULL, &failures);
    }
}

int main(void)
{
    find_files();
    struct CMUnitTest tests[MAX_FILES + 1];
    size_t n = 0;
    for (size_t i = 0; i < nfiles; i++) {
        const char *base = strrchr(files[i], '/') + 1;
        tests[n++] =
            (struct CMUnitTest){.name = base, .test_func = test_file, .initial_state = files[i]};
    }
    tests[n++] = (struct CMUnitTest){.name = "case_count", .test_func = test_case_count};
    int rc = _cmocka_run_group_tests("rql_conformance", tests, n, NULL, NULL);
    for (size_t i = 0; i < nfiles; i++)
        free(files[i]);
    return rc;
}
