/* `sluice serve`: validates the configuration and runs the supervisor. */
#include "cli/cli.h"
#include "processor/processor.h"
#include "rules/netlookup.h"

#include <stdio.h>

static const char serve_usage[] =
    "usage: sluice serve\n"
    "\n"
    "Runs the Event Processor: the supervisor forks the HTTP api and the workers, restarts any\n"
    "that die or hang, and drains on SIGTERM. Everything is configured by environment\n"
    "variables (see `sluice config`); a bad value stops start-up with exit code 2.\n"
    "On first start with an empty data directory it creates the organization \"default\" and\n"
    "writes an admin API key to <data dir>/admin.key.\n";

static void warn_stderr(const char *msg)
{
    fprintf(stderr, "sluice: warning: %s\n", msg);
}

int sl_cli_serve(int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        fputs(serve_usage, stdout);
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr,
                "sluice: serve takes no arguments (settings come from the "
                "environment)\n%s",
                serve_usage);
        return 2;
    }
    struct sl_config cfg;
    if (sl_cli_load_config(&cfg))
        return 2;
    if (cfg.dedicated_workers) {
        fprintf(stderr,
                "sluice: REFLEX_EVENT_PROCESSOR_DEDICATED_WORKERS=true: dedicated "
                "(per-organization) workers are not available in this build; set it to false to "
                "run shared workers\n");
        return 2;
    }
    char err[512];
    if (sl_config_check_kafka(&cfg, err, sizeof(err), warn_stderr) != 0) {
        fprintf(stderr, "sluice: %s\n", err);
        return 2;
    }
    if (cfg.kafka_bootstrap[0]) {
        /* librdkafka checks every setting and loads the SSL material when a handle is made
         * (this one is closed at once, before it has done anything with a broker): a bad one
         * stops start-up here, once, not in every child. */
        struct sl_stream *s = sl_processor_open_stream(&cfg, err, sizeof(err));
        if (!s) {
            fprintf(stderr, "sluice: REFLEX_EVENT_PROCESSOR_KAFKA_BOOTSTRAP_SERVERS=%s: %s\n",
                    cfg.kafka_bootstrap, err);
            return 2;
        }
        sl_stream_destroy(s);
    } else if (cfg.stream_max_bytes < 4 * cfg.max_body_bytes) {
        /* A request's records take about twice its body in LMDB pages; with less room than
         * that a single large request could never be accepted, whatever the backlog. */
        fprintf(stderr,
                "sluice: SLUICE_STREAM_MAX_BYTES=%lld is too small for SLUICE_MAX_BODY_BYTES=%lld: "
                "the stream must hold at least 4 times the largest body\n",
                (long long)cfg.stream_max_bytes, (long long)cfg.max_body_bytes);
        return 2;
    }
    /* The GeoIP database and DNS server are opened by every worker: refuse a bad one here,
     * once and clearly, rather than let workers fail and restart forever. */
    struct sl_netlookup *net =
        sl_netlookup_open(cfg.geoip_db, cfg.dns_server, (size_t)cfg.dns_cache_size,
                          cfg.dns_cache_ttl_s, cfg.dns_timeout_s, err, sizeof(err));
    if (!net) {
        fprintf(stderr, "sluice: %s\n", err);
        return 2;
    }
    sl_netlookup_close(net);
    return sl_supervisor_run(&cfg);
}
