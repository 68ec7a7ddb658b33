/* `sluice apikey create --org NAME [--role admin|analyst|agent]`: issues an API key. */
#include "cli/cli.h"
#include "core/error.h"
#include "store/store.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char apikey_usage[] =
    "usage: sluice apikey create --org NAME [--role admin|analyst|agent]\n"
    "\n"
    "Issues an API key for the organization and prints {\"key\": ...}. The key is shown once;\n"
    "only its hash is stored. Roles: admin (everything), analyst (read and work events),\n"
    "agent (ingest only; the default).\n"
    "Works on SLUICE_DATA_DIR with or without a running server.\n";

int sl_cli_apikey(int argc, char **argv)
{
    const char *org_name = NULL, *role = "agent";
    if (sl_cli_wants_help(argc, argv)) {
        fputs(apikey_usage, stdout);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "create")) {
        fputs(apikey_usage, stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--org") && i + 1 < argc) {
            org_name = argv[++i];
        } else if (!strcmp(argv[i], "--role") && i + 1 < argc) {
            role = argv[++i];
        } else {
            fprintf(stderr, "sluice: unexpected argument \"%s\"\n%s", argv[i], apikey_usage);
            return 2;
        }
    }
    if (!org_name) {
        fprintf(stderr, "sluice: --org NAME is required\n%s", apikey_usage);
        return 2;
    }
    if (strcmp(role, "admin") && strcmp(role, "analyst") && strcmp(role, "agent")) {
        fprintf(stderr, "sluice: --role %s: expected admin, analyst or agent\n", role);
        return 2;
    }
    struct sl_config cfg;
    int code = 0;
    struct sl_store *st = sl_cli_open_store(&cfg, &code);
    if (!st)
        return code;
    struct sl_org org;
    char key[SL_APIKEY_MAX];
    int rc = sl_store_org_get(st, NULL, org_name, &org);
    if (rc == 0)
        rc = sl_store_apikey_create(st, org.uuid, role, key);
    sl_store_close(st);
    if (rc == SL_ENOTFOUND) {
        fprintf(stderr,
                "sluice: no organization named \"%s\" (create it with `sluice org "
                "create`)\n",
                org_name);
        return 1;
    }
    if (rc) {
        fprintf(stderr, "sluice: cannot create the key: %s\n", sl_strerror(rc));
        return 1;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "key", key);
    cJSON_AddStringToObject(o, "organization", org.uuid);
    cJSON_AddStringToObject(o, "role", role);
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
    return 0;
}
