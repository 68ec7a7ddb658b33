/* The sluice command: dispatches to the subcommands in cli/. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: sluice <command> [options]\n"
    "\n"
    "Takes security events in, decides what they mean, stores them and pushes them live.\n"
    "\n"
    "commands:\n"
    "  serve                 run the Event Processor: API, supervised workers, embedded stream\n"
    "  org create NAME       create an organization\n"
    "  apikey create --org NAME [--role admin|analyst|agent]\n"
    "                        issue an API key\n"
    "  config [--json|--markdown]\n"
    "                        print the effective settings and where each came from\n"
    "  rules test --rules FILE --events FILE.jsonl [--lists FILE]\n"
    "                        run event rules and intel lists against events, offline\n"
    "  rql check [-0]        compile RQL queries from stdin, one JSON verdict per query\n"
    "  version               print the version\n"
    "\n"
    "Settings come from the environment (REFLEX_EVENT_PROCESSOR_*, SLUICE_*): see\n"
    "`sluice config --markdown` or docs/configuration.md. `sluice <command> --help` for more.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version"))
        return sl_cli_version(1, argv + 1);
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"serve", sl_cli_serve},    {"org", sl_cli_org},     {"apikey", sl_cli_apikey},
                {"config", sl_cli_config},  {"rules", sl_cli_rules}, {"rql", sl_cli_rql},
                {"version", sl_cli_version}};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(cmd, cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown command \"%s\"\n\n%s", cmd, usage);
    return 2;
}
