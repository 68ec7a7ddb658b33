/* Helpers shared by the subcommands: configuration loading and help detection. */
#include "cli/cli.h"
#include "core/log.h"
#include "store/store.h"

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

struct sl_store *sl_cli_open_store(struct sl_config *cfg, int *out_code)
{
    char err[512];
    if (sl_cli_load_config(cfg)) {
        *out_code = 2;
        return NULL;
    }
    struct sl_store *st = sl_store_open(cfg->data_dir, err, sizeof(err));
    if (!st) {
        fprintf(stderr, "sluice: cannot open the store in %s: %s\n", cfg->data_dir, err);
        *out_code = 1;
    }
    return st;
}
