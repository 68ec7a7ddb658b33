/* The configuration table: every setting's name, type, default, bounds and meaning, read from
 * the environment and validated before anything is bound or opened. The same table prints
 * `sluice config` and generates docs/configuration.md. */
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

extern char **environ;

/* T_OPTPATH: a path that may be empty (off); T_OPTADDR: host:port or empty (off); T_SECRET: any
 * text, never printed; T_SASL: mechanism:user:password or empty, printed without the password. */
enum cfg_type {
    T_BOOL,
    T_INT,
    T_SIZE,
    T_DURATION,
    T_LOGLEVEL,
    T_STRING,
    T_LISTEN,
    T_BROKERS,
    T_OPTPATH,
    T_OPTADDR,
    T_SECRET,
    T_SASL
};

struct cfg_entry {
    const char *name;
    enum cfg_type type;
    size_t offset;    /* into struct sl_config */
    const char *def;  /* default as text; NULL: computed (worker count) */
    int64_t min, max; /* for numbers: bounds (durations in seconds, sizes in bytes) */
    const char *desc;
};

#define OFF(f) offsetof(struct sl_config, f)
#define GIB    (1024LL * 1024 * 1024)
#define MIB    (1024LL * 1024)

static const struct cfg_entry table[] = {
    {"REFLEX_EVENT_PROCESSOR_DISABLED", T_BOOL, OFF(disabled), "false", 0, 1,
     "Turns event processing off: the API still accepts and durably queues events (up to "
     "MAX_QUEUE_SIZE), but no worker runs; queue_stats and /health say so."},
    {"REFLEX_EVENT_PROCESSOR_MAX_QUEUE_SIZE", T_INT, OFF(max_queue_size), "1000000", 0,
     INT64_C(1000000000000),
     "Backlog bound in events: while this many accepted events wait for a worker, ingest "
     "answers 429 with Retry-After instead of accepting more (requests already past the check "
     "may each add one batch). 0 = bounded only by SLUICE_STREAM_MAX_BYTES. (Reflex reads it "
     "and never uses it.)"},
    {"REFLEX_EVENT_PROCESSOR_WORKER_COUNT", T_INT, OFF(worker_count), NULL, 1, SL_MAX_WORKERS,
     "Worker processes in shared mode. Default: CPU cores - 1, at least 1."},
    {"REFLEX_EVENT_PROCESSOR_META_DATA_REFRESH_INTERVAL", T_DURATION, OFF(meta_refresh_s), "300", 1,
     86400,
     "How often workers re-read their metadata (Event Rules, Intel Lists, close reasons) from "
     "the store at the latest. A change made through the API or CLI reaches them within a "
     "second anyway (they watch the store's change counter); this bounds a missed notice."},
    {"REFLEX_EVENT_PROCESSOR_ES_BULK_SIZE", T_INT, OFF(es_bulk_size), "500", 1, 100000,
     "Events a worker takes from the stream and writes to the store in one transaction."},
    {"REFLEX_EVENT_PROCESSOR_LOG_LEVEL", T_LOGLEVEL, OFF(log_level), "INFO", 0, 3,
     "DEBUG, INFO, WARN or ERROR, for the supervisor, the api and the workers. (Reflex "
     "defaults to ERROR; sluice to INFO so start-up and healing are visible.)"},
    {"REFLEX_EVENT_PROCESSOR_WORKER_CHECK_INTERVAL", T_DURATION, OFF(worker_check_s), "5", 1, 3600,
     "How often the supervisor checks worker heartbeats. A worker that exits is restarted at "
     "once (with backoff) regardless. (Reflex: 60 s, and healing off by default.)"},
    {"REFLEX_EVENT_PROCESSOR_DEDICATED_WORKERS", T_BOOL, OFF(dedicated_workers), "false", 0, 1,
     "Dedicated mode: workers per organization. Not available in this build: `serve` refuses "
     "to start with it set to true rather than run in a mode you did not ask for."},
    {"REFLEX_EVENT_PROCESSOR_MAX_WORKERS_PER_ORGANIZATION", T_INT, OFF(max_workers_per_org), "5", 1,
     SL_MAX_WORKERS, "Dedicated mode: workers (and stream partitions) per organization."},
    {"REFLEX_EVENT_PROCESSOR_KAFKA_BOOTSTRAP_SERVERS", T_BROKERS, OFF(kafka_bootstrap), "", 0, 0,
     "Comma-separated host:port list of Kafka brokers. Set: the ingest stream is the Kafka "
     "topic `events` (WORKER_COUNT partitions, created or grown by `serve`; consumer group "
     "`workers`) instead of the embedded stream in SLUICE_DATA_DIR. Shared mode only."},
    {"REFLEX_EVENT_PROCESSOR_KAFKA_TOPIC_RETENTION", T_DURATION, OFF(kafka_retention_s), "7d", 60,
     INT64_C(315360000),
     "Retention of the Kafka event topics, set as the topic's retention.ms when `serve` "
     "creates it and brought in line on every start if someone changed it. A number is "
     "seconds; s, m, h and d suffixes are accepted (Reflex multiplies a bare number by 1000 "
     "into the wrong topic setting). sluice owns its topics' configs: librdkafka 2.0 can only "
     "replace a topic's dynamic configs as a whole (AlterConfigs), so a change made by "
     "someone else between sluice's read and write is lost. Kafka deletes by age whether or "
     "not the workers have read a record: keep it well above any outage you plan to ride out."},
    {"KAFKA_SSL_ENABLED", T_BOOL, OFF(kafka_ssl), "false", 0, 1,
     "TLS to the Kafka brokers (shared with the RIG gateway, seed 002). With KAFKA_SASL set, "
     "SASL over TLS."},
    {"KAFKA_SSL_CA_CERTFILE", T_OPTPATH, OFF(kafka_ssl_ca), "", 0, 0,
     "PEM file of the CA(s) that signed the brokers' certificates. Empty: the system's CA "
     "store. (RIG's default ca.crt.pem is relative to its own priv directory; sluice has "
     "none, so set full paths.)"},
    {"KAFKA_SSL_CERTFILE", T_OPTPATH, OFF(kafka_ssl_cert), "", 0, 0,
     "PEM client certificate for brokers that require one (with KAFKA_SSL_KEYFILE). Empty: "
     "none."},
    {"KAFKA_SSL_KEYFILE", T_OPTPATH, OFF(kafka_ssl_key), "", 0, 0,
     "PEM private key of KAFKA_SSL_CERTFILE."},
    {"KAFKA_SSL_KEYFILE_PASS", T_SECRET, OFF(kafka_ssl_key_pass), "", 0, 0,
     "Passphrase of KAFKA_SSL_KEYFILE, if it is encrypted. Never printed."},
    {"KAFKA_SASL", T_SASL, OFF(kafka_sasl), "", 0, 0,
     "SASL credentials as mechanism:user:password with mechanism plain, scram-sha-256 or "
     "scram-sha-512 (the password may contain colons). Empty: no SASL. Without "
     "KAFKA_SSL_ENABLED the password crosses the network in clear (a warning is logged). "
     "`sluice config` prints it without the password. SCRAM needs librdkafka 2.6.1 or later "
     "with Kafka 3.8.1 or later brokers (librdkafka #4895; Debian 12 ships 2.0.2, and serve "
     "warns): use plain over SSL there."},
    {"SLUICE_LISTEN", T_LISTEN, OFF(listen), "127.0.0.1:8080", 0, 0,
     "host:port the HTTP API listens on. Port 0 picks a free port; the bound address is "
     "written to <data dir>/listen.addr."},
    {"SLUICE_DATA_DIR", T_STRING, OFF(data_dir), "./data", 0, 0,
     "Directory of the embedded stream, the SQLite store, admin.key and listen.addr."},
    {"SLUICE_MAX_BODY_BYTES", T_SIZE, OFF(max_body_bytes), "16M", 1024, GIB,
     "Largest request body accepted (413 above). K, M and G suffixes are accepted."},
    {"SLUICE_MAX_EVENTS_PER_REQUEST", T_INT, OFF(max_events_per_request), "10000", 1, 1000000,
     "Most events in one bulk request (413 above)."},
    {"SLUICE_HTTP_THREADS", T_INT, OFF(http_threads), "2", 1, 64,
     "Threads of the HTTP server in the api process."},
    {"SLUICE_STREAM_RETENTION", T_DURATION, OFF(stream_retention_s), "1d", 0, INT64_C(315360000),
     "How long processed records stay in the embedded stream (for replay) before they are "
     "trimmed. Records no worker has committed are never trimmed."},
    {"SLUICE_STREAM_MAX_BYTES", T_SIZE, OFF(stream_max_bytes), "16G", 16 * MIB, 4096 * GIB,
     "Size bound of the embedded stream on disk; a full stream answers 503 rather than grow."},
    {"SLUICE_WORKER_HANG_TIMEOUT", T_DURATION, OFF(worker_hang_s), "60", 2, 86400,
     "A worker or api whose heartbeat is older than this is killed and restarted."},
    {"SLUICE_GEOIP_DB", T_OPTPATH, OFF(geoip_db), "", 0, 0,
     "A MaxMind DB file (GeoLite2-City or -Country format) for the RQL mutators geo_country, "
     "geo_continent and geo_timezone. Empty: those mutators yield no value."},
    {"SLUICE_DNS_SERVER", T_OPTADDR, OFF(dns_server), "", 0, 0,
     "The DNS server (host:port, IPv4) the RQL DNS mutators (reverse_lookup, ns_lookup_*) "
     "ask. Empty: the first nameserver of /etc/resolv.conf."},
    {"SLUICE_DNS_CACHE_SIZE", T_INT, OFF(dns_cache_size), "65536", 16, 16777216,
     "Answers a worker's DNS cache holds. A lookup not in the cache never blocks the worker: "
     "it evaluates as no value, is counted (dns_misses), and is resolved in the background."},
    {"SLUICE_DNS_CACHE_TTL", T_DURATION, OFF(dns_cache_ttl_s), "300", 1, 86400,
     "How long a DNS answer (or a known absence of one) stays in the cache."},
    {"SLUICE_DNS_TIMEOUT", T_DURATION, OFF(dns_timeout_s), "2", 1, 60,
     "How long the background resolver waits for one DNS answer."},
    {"SLUICE_LIST_POLL_CHECK", T_DURATION, OFF(list_poll_check_s), "60", 1, 3600,
     "How often the list poller (a thread of worker 0) looks for Intel Lists with a url whose "
     "poll_interval has passed, or whose poll was asked for through the API. (Reflex: "
     "REFLEX_THREAT_LIST_POLLER_INTERVAL, 5 minutes.)"},
    {"SLUICE_LIST_MAX_VALUES", T_INT, OFF(list_max_values), "5000000", 1, INT64_C(100000000),
     "Most values one Intel List may hold (added through the API or by its feed); every worker "
     "holds every list in memory, about 50 bytes per value. A feed past it is cut there and "
     "its status says so; an API request past it is refused (409)."},
    {"SLUICE_LIST_FETCH_PRIVATE", T_BOOL, OFF(list_fetch_private), "false", 0, 1,
     "Let list feeds (url) be fetched from loopback, private, link-local, shared and "
     "multicast addresses. Off by default: a list's url is set by API users, and the server "
     "must not become their way into internal services (checked at connect time, so "
     "redirects and DNS answers are covered)."},
    {"SLUICE_INGEST_TASK_RETENTION", T_DURATION, OFF(ingest_task_retention_s), "86400", 1,
     INT64_C(315360000),
     "How long the outcome of a bulk request (what became of each of its events, read with "
     "GET /api/v2.0/task/ID) is kept after its last event was processed. Worker 0 deletes "
     "older ones about once a minute."},
    {"SLUICE_DRAIN_TIMEOUT", T_DURATION, OFF(drain_timeout_s), "30", 1, 3600,
     "On SIGTERM, how long children may take to finish their batch and requests before they "
     "are killed."},
};
#define NENTRIES (sizeof(table) / sizeof(table[0]))

int sl_config_default_workers(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 1 ? (int)(n - 1) : 1;
}

static const char *env_get(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (!strncmp(*e, name, n) && (*e)[n] == '=')
            return *e + n + 1;
    return NULL;
}

/* Parses "<number>[suffix]" where the suffixes multiply. Returns 0 or SL_EINVAL. */
static int parse_scaled(const char *s, const char *const *suffixes, const int64_t *mult,
                        int64_t *out)
{
    char *end = NULL;
    if (!s || !isdigit((unsigned char)*s))
        return SL_EINVAL;
    long long v = strtoll(s, &end, 10);
    int64_t m = 1;
    if (*end) {
        int found = 0;
        for (int i = 0; suffixes[i]; i++) {
            if (!strcasecmp(end, suffixes[i])) {
                m = mult[i];
                found = 1;
                break;
            }
        }
        if (!found)
            return SL_EINVAL;
    }
    if (v < 0 || (m > 1 && v > INT64_MAX / m))
        return SL_EINVAL;
    *out = v * m;
    return 0;
}

static int parse_listen(const char *s)
{
    const char *colon = strrchr(s, ':');
    int64_t port;
    if (!colon || colon == s || colon - s > 200)
        return SL_EINVAL;
    return sl_parse_int64(colon + 1, 0, 65535, &port);
}

static int parse_brokers(const char *s)
{
    if (!*s)
        return 0;
    char buf[1024];
    if (strlen(s) >= sizeof(buf))
        return SL_EINVAL;
    strcpy(buf, s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (parse_listen(tok))
            return SL_EINVAL;
    }
    return 0;
}

/* "" or mechanism:user:password with a known mechanism, a user and a password. */
static int parse_sasl(const char *s)
{
    static const char *const mechs[] = {"plain", "scram-sha-256", "scram-sha-512"};
    const char *c1 = strchr(s, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!*s)
        return 0;
    if (!c2 || c2 == c1 + 1 || !c2[1])
        return SL_EINVAL;
    for (size_t i = 0; i < sizeof(mechs) / sizeof(mechs[0]); i++)
        if (strlen(mechs[i]) == (size_t)(c1 - s) && !strncasecmp(s, mechs[i], (size_t)(c1 - s)))
            return 0;
    return SL_EINVAL;
}

static const char *accepted_text(const struct cfg_entry *e, char *buf, size_t len)
{
    switch (e->type) {
    case T_BOOL:
        return "true or false (also 1/0, yes/no, on/off)";
    case T_LOGLEVEL:
        return "DEBUG, INFO, WARN or ERROR";
    case T_LISTEN:
        return "host:port with a port 0..65535";
    case T_BROKERS:
        return "a comma-separated list of host:port";
    case T_STRING:
        return "a non-empty path";
    case T_OPTPATH:
        return "a path, or empty for none";
    case T_OPTADDR:
        return "host:port, or empty for the system's";
    case T_SECRET:
        return "any text, or empty for none";
    case T_SASL:
        return "plain:USER:PASSWORD, scram-sha-256:USER:PASSWORD or scram-sha-512:USER:PASSWORD, "
               "or empty for none";
    case T_INT:
        snprintf(buf, len, "an integer %lld..%lld", (long long)e->min, (long long)e->max);
        return buf;
    case T_SIZE:
        snprintf(buf, len, "a size in bytes %lld..%lld, with an optional K, M or G suffix",
                 (long long)e->min, (long long)e->max);
        return buf;
    case T_DURATION:
        snprintf(buf, len,
                 "a duration of %lld..%lld seconds: a number of seconds or a number "
                 "with an s, m, h or d suffix",
                 (long long)e->min, (long long)e->max);
        return buf;
    }
    return "?";
}

static int apply(struct sl_config *cfg, const struct cfg_entry *e, const char *v)
{
    static const char *const size_sfx[] = {"K",   "KB", "KiB", "M",   "MB",
                                           "MiB", "G",  "GB",  "GiB", NULL};
    static const int64_t size_mul[] = {1024, 1024, 1024, MIB, MIB, MIB, GIB, GIB, GIB};
    static const char *const dur_sfx[] = {"s", "m", "h", "d", NULL};
    static const int64_t dur_mul[] = {1, 60, 3600, 86400};
    char *field = (char *)cfg + e->offset;
    int64_t n = 0;
    int b = 0;
    switch (e->type) {
    case T_BOOL:
        if (sl_parse_bool(v, &b))
            return SL_EINVAL;
        *(int *)field = b;
        return 0;
    case T_LOGLEVEL:
        if ((b = sl_log_level_parse(v)) < 0)
            return SL_EINVAL;
        *(int *)field = b;
        return 0;
    case T_INT:
        if (sl_parse_int64(v, e->min, e->max, &n))
            return SL_EINVAL;
        break;
    case T_SIZE:
        if (parse_scaled(v, size_sfx, size_mul, &n) || n < e->min || n > e->max)
            return SL_EINVAL;
        break;
    case T_DURATION:
        if (parse_scaled(v, dur_sfx, dur_mul, &n) || n < e->min || n > e->max)
            return SL_EINVAL;
        break;
    case T_OPTPATH:
        if (strlen(v) >= sizeof(cfg->geoip_db))
            return SL_EINVAL;
        snprintf(field, sizeof(cfg->geoip_db), "%s", v);
        return 0;
    case T_OPTADDR:
        if (strlen(v) >= sizeof(cfg->dns_server) || (*v && parse_listen(v)))
            return SL_EINVAL;
        snprintf(field, sizeof(cfg->dns_server), "%s", v);
        return 0;
    case T_SECRET:
    case T_SASL:
        if (strlen(v) >= sizeof(cfg->kafka_sasl) || (e->type == T_SASL && parse_sasl(v)))
            return SL_EINVAL;
        snprintf(field, sizeof(cfg->kafka_sasl), "%s", v);
        return 0;
    case T_LISTEN:
    case T_BROKERS:
    case T_STRING:
        if (strlen(v) >= 256 && e->type == T_LISTEN)
            return SL_EINVAL;
        if (e->type == T_LISTEN && parse_listen(v))
            return SL_EINVAL;
        if (e->type == T_BROKERS && parse_brokers(v))
            return SL_EINVAL;
        if (e->type == T_STRING && (!*v || strlen(v) >= sizeof(cfg->data_dir)))
            return SL_EINVAL;
        snprintf(field, e->type == T_LISTEN ? sizeof(cfg->listen) : sizeof(cfg->data_dir), "%s", v);
        return 0;
    }
    /* Integer-valued fields: worker counts and sizes are int or int64_t. */
    if (e->offset == OFF(worker_count) || e->offset == OFF(es_bulk_size) ||
        e->offset == OFF(max_workers_per_org) || e->offset == OFF(http_threads))
        *(int *)field = (int)n;
    else
        *(int64_t *)field = n;
    return 0;
}

static void report_unknown(char **envp, void (*warn)(const char *msg))
{
    static const char *const prefixes[] = {"SLUICE_", "REFLEX_EVENT_PROCESSOR_"};
    char msg[512];
    for (char **e = envp; warn && e && *e; e++) {
        for (size_t p = 0; p < 2; p++) {
            size_t pl = strlen(prefixes[p]);
            if (strncmp(*e, prefixes[p], pl))
                continue;
            const char *eq = strchr(*e, '=');
            size_t nl = eq ? (size_t)(eq - *e) : strlen(*e);
            int known = 0;
            for (size_t i = 0; i < NENTRIES && !known; i++)
                known = strlen(table[i].name) == nl && !strncmp(table[i].name, *e, nl);
            /* SLUICE_TEST_* and SLUICE_BIN belong to the test suite, not the server. */
            if (!known && strncmp(*e, "SLUICE_TEST_", 12) && strncmp(*e, "SLUICE_BIN=", 11)) {
                snprintf(msg, sizeof(msg), "unknown setting %.*s ignored (see `sluice config`)",
                         (int)nl, *e);
                warn(msg);
            }
        }
    }
}

int sl_config_load(struct sl_config *cfg, char **envp, char *err, size_t errlen,
                   void (*warn)(const char *msg))
{
    char acc[256];
    memset(cfg, 0, sizeof(*cfg));
    if (!envp)
        envp = environ;
    for (size_t i = 0; i < NENTRIES; i++) {
        const struct cfg_entry *e = &table[i];
        if (e->def && apply(cfg, e, e->def) != 0) {
            snprintf(err, errlen, "internal: bad default for %s", e->name);
            return SL_EINVAL;
        }
        if (!e->def)
            cfg->worker_count = sl_config_default_workers();
        const char *v = env_get(envp, e->name);
        if (v && apply(cfg, e, v) != 0) {
            snprintf(err, errlen, "%s=%s: expected %s", e->name, v,
                     accepted_text(e, acc, sizeof(acc)));
            return SL_EINVAL;
        }
    }
    report_unknown(envp, warn);
    return 0;
}

static void value_text(const struct sl_config *cfg, const struct cfg_entry *e, char *buf,
                       size_t len)
{
    const char *field = (const char *)cfg + e->offset;
    switch (e->type) {
    case T_BOOL:
        snprintf(buf, len, "%s", *(const int *)field ? "true" : "false");
        break;
    case T_LOGLEVEL:
        snprintf(buf, len, "%s", sl_log_level_name(*(const int *)field));
        break;
    case T_LISTEN:
    case T_BROKERS:
    case T_STRING:
    case T_OPTPATH:
    case T_OPTADDR:
        snprintf(buf, len, "%s", field);
        break;
    case T_SECRET:
        snprintf(buf, len, "%s", *field ? "(set)" : "");
        break;
    case T_SASL: {
        const char *c2 = *field ? strchr(strchr(field, ':') + 1, ':') : NULL;
        snprintf(buf, len, "%.*s%s", c2 ? (int)(c2 - field) : 0, field, c2 ? ":(password)" : "");
        break;
    }
    case T_DURATION:
        snprintf(buf, len, "%llds", (long long)*(const int64_t *)field);
        break;
    case T_INT:
    case T_SIZE:
        if (e->offset == OFF(worker_count) || e->offset == OFF(es_bulk_size) ||
            e->offset == OFF(max_workers_per_org) || e->offset == OFF(http_threads))
            snprintf(buf, len, "%d", *(const int *)field);
        else
            snprintf(buf, len, "%lld", (long long)*(const int64_t *)field);
        break;
    }
}

static void json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

void sl_config_print(const struct sl_config *cfg, char **envp, FILE *out, int format)
{
    char val[1100];
    if (!envp)
        envp = environ;
    if (format == 2) {
        fprintf(out, "| variable | default | accepted | meaning |\n|---|---|---|---|\n");
    } else if (format == 1) {
        fprintf(out, "{");
    }
    for (size_t i = 0; i < NENTRIES; i++) {
        const struct cfg_entry *e = &table[i];
        const char *src = env_get(envp, e->name) ? "environment" : "default";
        char acc[256];
        value_text(cfg, e, val, sizeof(val));
        if (format == 2) {
            fprintf(out, "| `%s` | %s%s%s | %s | %s |\n", e->name, e->def ? "`" : "",
                    e->def ? (*e->def ? e->def : "(unset)") : "CPU cores - 1 (min 1)",
                    e->def ? "`" : "", accepted_text(e, acc, sizeof(acc)), e->desc);
        } else if (format == 1) {
            fprintf(out, "%s\n  ", i ? "," : "");
            json_string(out, e->name);
            fprintf(out, ": {\"value\": ");
            json_string(out, val);
            fprintf(out, ", \"source\": \"%s\"}", src);
        } else {
            fprintf(out, "%s=%s  (%s)\n", e->name, val, src);
        }
    }
    if (format == 1)
        fprintf(out, "\n}\n");
}

/* A file the server will read: it must exist and be readable by us. */
static int check_file(const char *name, const char *path, char *err, size_t errlen)
{
    if (!*path || access(path, R_OK) == 0)
        return 0;
    snprintf(err, errlen, "%s=%s: cannot read the file: %s", name, path, strerror(errno));
    return SL_EINVAL;
}

int sl_config_check_kafka(const struct sl_config *cfg, char *err, size_t errlen,
                          void (*warn)(const char *msg))
{
    if (!cfg->kafka_bootstrap[0])
        return 0;
    if (cfg->kafka_ssl) {
        if (check_file("KAFKA_SSL_CA_CERTFILE", cfg->kafka_ssl_ca, err, errlen) ||
            check_file("KAFKA_SSL_CERTFILE", cfg->kafka_ssl_cert, err, errlen) ||
            check_file("KAFKA_SSL_KEYFILE", cfg->kafka_ssl_key, err, errlen))
            return SL_EINVAL;
        if (!cfg->kafka_ssl_cert[0] != !cfg->kafka_ssl_key[0]) {
            snprintf(err, errlen,
                     "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE: a client certificate "
                     "needs its key: set both or neither");
            return SL_EINVAL;
        }
        if (cfg->kafka_ssl_key_pass[0] && !cfg->kafka_ssl_key[0]) {
            snprintf(err, errlen, "KAFKA_SSL_KEYFILE_PASS is set but KAFKA_SSL_KEYFILE is not");
            return SL_EINVAL;
        }
    } else if (cfg->kafka_ssl_ca[0] || cfg->kafka_ssl_cert[0] || cfg->kafka_ssl_key[0]) {
        if (warn)
            warn("KAFKA_SSL_* files are set but KAFKA_SSL_ENABLED is false: they are not used");
    }
    if (cfg->kafka_sasl[0] && !cfg->kafka_ssl && warn)
        warn("KAFKA_SASL without KAFKA_SSL_ENABLED: the password crosses the network in clear");
    return 0;
}
