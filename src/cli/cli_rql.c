/* `sluice rql check`: compiles RQL queries from stdin and prints, per query, whether it compiled
 * (with the intel lists it names and whether it reads raw_log) or where and why it did not. */
#include "cli/cli.h"
#include "rules/rql.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char rql_usage[] =
    "usage: sluice rql check [-0]\n"
    "\n"
    "Reads RQL queries from stdin, one per line (with -0, separated by NUL bytes, so a query\n"
    "may span lines), compiles each and prints one JSON line per query:\n"
    "  {\"ok\":true,\"lists\":[\"Bad IPs\"],\"raw_log\":false}\n"
    "  {\"ok\":false,\"line\":1,\"col\":7,\"error\":\"unexpected '==' ...\"}\n"
    "lists are the intel lists the query names; raw_log says whether it reads raw_log.*;\n"
    "line and col (1-based, col in bytes) point into the query. Exit status: 0 when every\n"
    "query compiled, 1 when one did not, 2 for bad usage. The language: docs/rql.md.\n";

/* Prints the verdict on one query; returns 0 when it compiled. */
static int check_one(const char *q, size_t len)
{
    struct sl_rql *prog = NULL;
    struct sl_rql_error err;
    int rc = sl_rql_compile(q, len, &prog, &err);
    cJSON *out = cJSON_CreateObject();
    if (!out) {
        fputs("sluice: out of memory\n", stderr);
        sl_rql_free(prog);
        return 1;
    }
    if (rc == 0) {
        const char *const *names;
        size_t n = sl_rql_list_refs(prog, &names);
        cJSON_AddBoolToObject(out, "ok", 1);
        cJSON *lists = cJSON_AddArrayToObject(out, "lists");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(lists, cJSON_CreateString(names[i]));
        cJSON_AddBoolToObject(out, "raw_log", sl_rql_uses_raw_log(prog));
    } else {
        cJSON_AddBoolToObject(out, "ok", 0);
        cJSON_AddNumberToObject(out, "line", err.line);
        cJSON_AddNumberToObject(out, "col", err.col);
        cJSON_AddStringToObject(out, "error", err.msg[0] ? err.msg : "out of memory");
    }
    char *text = cJSON_PrintUnformatted(out);
    if (text) {
        puts(text);
        free(text);
    } else {
        fputs("{\"ok\":false,\"line\":0,\"col\":0,\"error\":\"out of memory\"}\n", stdout);
        rc = -1;
    }
    cJSON_Delete(out);
    sl_rql_free(prog);
    return rc != 0;
}

int sl_cli_rql(int argc, char **argv)
{
    int nul = 0;
    if (sl_cli_wants_help(argc, argv)) {
        fputs(rql_usage, stdout);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "check")) {
        fprintf(stderr, "sluice: expected the subcommand \"check\"\n%s", rql_usage);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-0")) {
            nul = 1;
        } else {
            fprintf(stderr, "sluice: unexpected argument \"%s\"\n%s", argv[i], rql_usage);
            return 2;
        }
    }
    int failed = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getdelim(&line, &cap, nul ? '\0' : '\n', stdin)) > 0) {
        size_t len = (size_t)n;
        if (line[len - 1] == (nul ? '\0' : '\n'))
            len--;
        if (!nul && len && line[len - 1] == '\r')
            len--;
        failed |= check_one(line, len);
        fflush(stdout);
    }
    free(line);
    if (ferror(stdin)) {
        perror("sluice: reading stdin");
        return 2;
    }
    return failed ? 1 : 0;
}
