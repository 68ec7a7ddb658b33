/* `sluice org create NAME`: creates an organization in the store of the data directory. */
#include "cli/cli.h"
#include "core/error.h"
#include "store/store.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char org_usage[] =
    "usage: sluice org create NAME\n"
    "\n"
    "Creates an organization (tenant) and prints {\"uuid\": ..., \"name\": ...}.\n"
    "Works on SLUICE_DATA_DIR with or without a running server.\n";

int sl_cli_org(int argc, char **argv)
{
    struct sl_config cfg;
    if (sl_cli_wants_help(argc, argv)) {
        fputs(org_usage, stdout);
        return 0;
    }
    if (argc != 3 || strcmp(argv[1], "create")) {
        fputs(org_usage, stderr);
        return 2;
    }
    int code = 0;
    struct sl_store *st = sl_cli_open_store(&cfg, &code);
    if (!st)
        return code;
    struct sl_org org;
    int rc = sl_store_org_create(st, argv[2], &org);
    sl_store_close(st);
    if (rc == SL_EEXIST) {
        fprintf(stderr, "sluice: organization \"%s\" already exists\n", argv[2]);
        return 1;
    }
    if (rc == SL_EINVAL) {
        fprintf(stderr,
                "sluice: invalid organization name \"%s\": expected 1..%d printable "
                "characters\n",
                argv[2], SL_ORG_NAME_MAX);
        return 2;
    }
    if (rc) {
        fprintf(stderr, "sluice: cannot create organization: %s\n", sl_strerror(rc));
        return 1;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "uuid", org.uuid);
    cJSON_AddStringToObject(o, "name", org.name);
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
    return 0;
}
