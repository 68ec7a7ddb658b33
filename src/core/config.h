/* The effective configuration: one table of settings, read from the environment and validated
 * before anything is bound or opened. */
#ifndef SL_CORE_CONFIG_H
#define SL_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SL_MAX_WORKERS 256

struct sl_config {
    /* REFLEX_EVENT_PROCESSOR_* (seed 000) */
    int disabled;               /* DISABLED: API up, processing off */
    int64_t max_queue_size;     /* MAX_QUEUE_SIZE: backlog (events) above which ingest is 429;
                                   0 = no limit but the stream's size */
    int worker_count;           /* WORKER_COUNT: shared-mode workers */
    int64_t meta_refresh_s;     /* META_DATA_REFRESH_INTERVAL, seconds */
    int es_bulk_size;           /* ES_BULK_SIZE: events per store write */
    int log_level;              /* LOG_LEVEL */
    int64_t worker_check_s;     /* WORKER_CHECK_INTERVAL, seconds */
    int dedicated_workers;      /* DEDICATED_WORKERS */
    int max_workers_per_org;    /* MAX_WORKERS_PER_ORGANIZATION */
    char kafka_bootstrap[1024]; /* KAFKA_BOOTSTRAP_SERVERS ("" = unset) */
    int64_t kafka_retention_s;  /* KAFKA_TOPIC_RETENTION, seconds */
    /* KAFKA_* shared with the RIG gateway (seed 002) */
    int kafka_ssl;                 /* KAFKA_SSL_ENABLED */
    char kafka_ssl_ca[1024];       /* KAFKA_SSL_CA_CERTFILE ("" = the system's CA store) */
    char kafka_ssl_cert[1024];     /* KAFKA_SSL_CERTFILE ("" = no client certificate) */
    char kafka_ssl_key[1024];      /* KAFKA_SSL_KEYFILE */
    char kafka_ssl_key_pass[1024]; /* KAFKA_SSL_KEYFILE_PASS */
    char kafka_sasl[1024];         /* KAFKA_SASL: mechanism:user:password ("" = none) */
    /* SLUICE_* */
    char listen[256];               /* SLUICE_LISTEN host:port ("127.0.0.1:8080"; port 0 = any) */
    char data_dir[1024];            /* SLUICE_DATA_DIR */
    int64_t max_body_bytes;         /* SLUICE_MAX_BODY_BYTES: largest accepted request body */
    int64_t max_events_per_request; /* SLUICE_MAX_EVENTS_PER_REQUEST */
    int http_threads;               /* SLUICE_HTTP_THREADS */
    int64_t stream_retention_s;     /* SLUICE_STREAM_RETENTION: keep processed records this long */
    int64_t stream_max_bytes;       /* SLUICE_STREAM_MAX_BYTES: size bound of the embedded stream */
    int64_t worker_hang_s;          /* SLUICE_WORKER_HANG_TIMEOUT: stale heartbeat => restart */
    int64_t drain_timeout_s;        /* SLUICE_DRAIN_TIMEOUT: SIGTERM grace before SIGKILL */
    char geoip_db[1024];            /* SLUICE_GEOIP_DB: MaxMind DB path ("" = none) */
    char dns_server[256];           /* SLUICE_DNS_SERVER: host:port ("" = resolv.conf) */
    int64_t dns_cache_size;         /* SLUICE_DNS_CACHE_SIZE: answers cached per worker */
    int64_t dns_cache_ttl_s;        /* SLUICE_DNS_CACHE_TTL */
    int64_t dns_timeout_s;          /* SLUICE_DNS_TIMEOUT */
    int64_t list_poll_check_s;      /* SLUICE_LIST_POLL_CHECK */
    int64_t list_max_values;        /* SLUICE_LIST_MAX_VALUES */
    int list_fetch_private;         /* SLUICE_LIST_FETCH_PRIVATE */
    int64_t ingest_task_retention_s; /* SLUICE_INGEST_TASK_RETENTION: bulk request outcomes */
};

enum sl_config_source { SL_CONFIG_DEFAULT = 0, SL_CONFIG_ENV = 1 };

/* Fills cfg with defaults, then applies the environment (envp, NULL-terminated; NULL means the
 * process environment). On a bad value returns SL_EINVAL with a message naming the variable,
 * the value and what is accepted in err. Unknown SLUICE_* and REFLEX_EVENT_PROCESSOR_* names
 * are reported through the warn callback (may be NULL). */
int sl_config_load(struct sl_config *cfg, char **envp, char *err, size_t errlen,
                   void (*warn)(const char *msg));

/* Writes the effective settings: name, value and source ("default" or "environment").
 * format: 0 = text, 1 = JSON, 2 = Markdown reference table (defaults and descriptions). */
void sl_config_print(const struct sl_config *cfg, char **envp, FILE *out, int format);

/* Checks the Kafka settings together (files readable, certificate and key paired). Returns 0,
 * or SL_EINVAL with a message naming the variable in err. Warnings (SASL without SSL sends the
 * password in clear) go through warn (may be NULL). */
int sl_config_check_kafka(const struct sl_config *cfg, char *err, size_t errlen,
                          void (*warn)(const char *msg));

/* The number of online CPUs minus one, at least 1: the default worker count. */
int sl_config_default_workers(void);

#endif
