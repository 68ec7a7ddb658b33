/* The `sluice` subcommands. Each takes the arguments after its name and returns the process
 * exit code: 0 success, 1 failure at run time, 2 bad usage or configuration. */
#ifndef SL_CLI_CLI_H
#define SL_CLI_CLI_H

#include "core/config.h"

int sl_cli_serve(int argc, char **argv);
int sl_cli_org(int argc, char **argv);
int sl_cli_apikey(int argc, char **argv);
int sl_cli_config(int argc, char **argv);
int sl_cli_version(int argc, char **argv);
int sl_cli_rql(int argc, char **argv);
int sl_cli_rules(int argc, char **argv);

/* Loads the configuration from the environment; on a bad value prints it to stderr and returns
 * non-zero (the caller exits 2). Unknown variables are warned about on stderr. */
int sl_cli_load_config(struct sl_config *cfg);
struct sl_store;
/* Loads the configuration into cfg and opens the store of its data directory. On failure
 * prints why, sets *out_code to the exit code (2 bad configuration, 1 store) and returns NULL.
 * The caller closes the store. */
struct sl_store *sl_cli_open_store(struct sl_config *cfg, int *out_code);

/* True when argv[1..] asks for help (-h, --help, help). */
int sl_cli_wants_help(int argc, char **argv);

#endif
