/* `sluice config` (effective settings and their sources) and `sluice version`. */
#include "cli/cli.h"

#include <cjson/cJSON.h>
#include <lmdb.h>
#include <microhttpd.h>
#include <openssl/opensslv.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

static const char config_usage[] =
    "usage: sluice config [--json | --markdown]\n"
    "\n"
    "Prints every setting with its effective value and where it came from (environment or\n"
    "default). --markdown prints the reference table with defaults and meanings.\n"
    "A bad value is reported with exit code 2, as `serve` would.\n";

int sl_cli_config(int argc, char **argv)
{
    int format = 0;
    if (sl_cli_wants_help(argc, argv)) {
        fputs(config_usage, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            format = 1;
        } else if (!strcmp(argv[i], "--markdown")) {
            format = 2;
        } else {
            fprintf(stderr, "sluice: unexpected argument \"%s\"\n%s", argv[i], config_usage);
            return 2;
        }
    }
    struct sl_config cfg;
    if (sl_cli_load_config(&cfg))
        return 2;
    sl_config_print(&cfg, NULL, stdout, format);
    return 0;
}

int sl_cli_version(int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        fputs("usage: sluice version\n\nPrints the version of sluice and its libraries.\n", stdout);
        return 0;
    }
    printf("sluice %s\n", SLUICE_VERSION);
    printf("libmicrohttpd %s, LMDB %d.%d.%d, SQLite %s, cJSON %s, %s\n", MHD_get_version(),
           MDB_VERSION_MAJOR, MDB_VERSION_MINOR, MDB_VERSION_PATCH, sqlite3_libversion(),
           cJSON_Version(), OPENSSL_VERSION_TEXT);
    return 0;
}
