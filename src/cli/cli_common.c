/* Helpers shared by the subcommands: configuration loading and help detection. */
#include "cli/cli.h"
#include "core/log.h"

#include <stdio.h>
#include <string.h>

static void warn_stderr(const char *msg)
{
    fprintf(stderr, "sluice: warning: %s\n", msg);
}

int sl_cli_load_config(struct sl_config *cfg)
{
    char err[1400];
    if (sl_config_load(cfg, NULL, err, sizeof(err), warn_stderr) != 0) {
        fprintf(stderr, "sluice: %s\n", err);
        return -1;
    }
    sl_log_level_current = cfg->log_level;
    return 0;
}

int sl_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help") || !strcmp(argv[i], "help"))
            return 1;
    return 0;
}
