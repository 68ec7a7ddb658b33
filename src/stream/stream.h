/* The stream abstraction: named topics of ordered partitions, read by consumer groups with
 * committed offsets. Everything that moves events between processes is a stream. */
#ifndef SL_STREAM_STREAM_H
#define SL_STREAM_STREAM_H

#include <stddef.h>
#include <stdint.h>

#define SL_STREAM_MAX_PARTITIONS 1024
#define SL_STREAM_NAME_MAX       200 /* topic and group names: [A-Za-z0-9._-], 1..200 chars */

struct sl_stream;
struct sl_stream_consumer;

/* Settings of a backend. Strings are borrowed: the creator copies what it keeps. */
struct sl_stream_config {
    const char *dir;      /* embedded backend: directory of the LMDB environment (created) */
    uint64_t max_bytes;   /* embedded backend: size bound of the environment (LMDB map size) */
    int64_t retention_ms; /* embedded: records committed by every group and older than this are
                             trimmed; Kafka: the topics' retention.ms */
    /* Kafka backend only (NULL or "" = not set): */
    const char *bootstrap;    /* host:port[,host:port...] */
    const char *client_id;    /* client.id of every handle */
    int ssl;                  /* security.protocol ssl (sasl_ssl with sasl) */
    const char *ssl_ca;       /* ssl.ca.location ("" = the system's CA store) */
    const char *ssl_cert;     /* ssl.certificate.location (client certificate) */
    const char *ssl_key;      /* ssl.key.location */
    const char *ssl_key_pass; /* ssl.key.password */
    const char *sasl;         /* "mechanism:user:password", mechanism plain, scram-sha-256 or
                                 scram-sha-512 (validated by the configuration) */
    uint64_t queue_max_bytes; /* Kafka: the producer's local buffer bound (0 = 256 MiB) */
};

/* One record to append. */
struct sl_stream_msg {
    const void *data;
    size_t len;
};

/* One record read. data points into memory owned by the consumer, valid until the next
 * sl_stream_poll or sl_stream_consumer_destroy on that consumer. */
struct sl_stream_record {
    uint32_t partition;
    uint64_t offset;
    int64_t timestamp_ms; /* append time */
    const void *data;
    size_t len;
};

/* Backend table: every backend (stream_lmdb.c, later stream_kafka.c) fills one. Callers use the
 * sl_stream_* functions below, which dispatch through it. */
struct sl_stream_ops {
    const char *name;
    void (*destroy)(struct sl_stream *s);
    int (*topic_ensure)(struct sl_stream *s, const char *topic, uint32_t partitions,
                        uint32_t *out_partitions);
    int (*append)(struct sl_stream *s, const char *topic, uint32_t partition,
                  const struct sl_stream_msg *msgs, size_t n, uint64_t *out_first_offset);
    int (*backlog)(struct sl_stream *s, const char *topic, const char *group,
                   uint64_t *out_records);
    int (*trim)(struct sl_stream *s, const char *topic, uint64_t *out_trimmed);
    struct sl_stream_consumer *(*consumer_create)(struct sl_stream *s, const char *topic,
                                                  const char *group, const uint32_t *partitions,
                                                  size_t npartitions);
    void (*consumer_destroy)(struct sl_stream_consumer *c);
    int (*poll)(struct sl_stream_consumer *c, size_t max_records, int timeout_ms,
                const struct sl_stream_record **out_records, size_t *out_n);
    int (*commit)(struct sl_stream_consumer *c);
    int (*commit_offsets)(struct sl_stream_consumer *c, const uint32_t *partitions,
                          const uint64_t *next_offsets, size_t n);
};

/* Every backend's stream object starts with a struct sl_stream, and every backend's consumer
 * object starts with a struct sl_stream_consumer (C's first-member rule makes the casts safe). */
struct sl_stream {
    const struct sl_stream_ops *ops;
};
struct sl_stream_consumer {
    struct sl_stream *stream;
};

/* Opens the embedded (LMDB) stream in cfg->dir, creating it if needed. Safe to open from several
 * processes at once (each opens its own handle; never share one handle across fork()).
 * Returns NULL and a message in err on failure. The caller owns the result. */
struct sl_stream *sl_stream_lmdb_create(const struct sl_stream_config *cfg, char *err,
                                        size_t errlen);

/* Opens the Kafka backend on cfg->bootstrap (stream_kafka.c, librdkafka). Connects lazily:
 * a broker that is down is not an error here, only in the calls that need it. Same rules as the
 * embedded stream for fork(): open after it. Differences from the embedded backend, which the
 * contracts below mention: an append that fails may have made some of its records visible
 * (Kafka has no multi-record atomicity without transactions; a retry is deduplicated by the
 * store), trim is Kafka's retention (always 0), and topic_ensure also sets retention.ms.
 * Returns NULL and a message in err on a bad setting (unreadable SSL files, bad SASL). The caller
 * owns the result. */
struct sl_stream *sl_stream_kafka_create(const struct sl_stream_config *cfg, char *err,
                                         size_t errlen);

/* Closes s. Consumers created from s must be destroyed first. */
void sl_stream_destroy(struct sl_stream *s);

/* Creates topic with `partitions` partitions, or grows an existing topic to that many (never
 * shrinks). *out_partitions (may be NULL) receives the resulting count. */
int sl_stream_topic_ensure(struct sl_stream *s, const char *topic, uint32_t partitions,
                           uint32_t *out_partitions);

/* Appends n records to one partition. Returns 0 only once the records are durable (on disk for
 * the embedded backend); *out_first_offset (may be NULL) receives the offset of the first one.
 * Thread-safe: concurrent appends from threads of one process are committed together (group
 * commit). Errors: SL_ENOTFOUND (no such topic/partition), SL_EFULL (stream at its size bound),
 * SL_EIO. On error nothing of the n records is visible to readers. */
int sl_stream_append(struct sl_stream *s, const char *topic, uint32_t partition,
                     const struct sl_stream_msg *msgs, size_t n, uint64_t *out_first_offset);

/* Records in topic not yet committed by group, summed over partitions. */
int sl_stream_backlog(struct sl_stream *s, const char *topic, const char *group,
                      uint64_t *out_records);

/* Deletes records that every consumer group of topic has committed and that are older than the
 * retention; nothing if no group has committed. Bounded work: one call deletes at most 50,000
 * records in total over all partitions (LMDB: one transaction, one fsync), oldest first within a
 * partition, partitions in order. *out_trimmed (may be NULL) receives what this call deleted (0 on
 * error). Returns 0 when nothing eligible remains, SL_EAGAIN when it stopped at the budget with
 * more left (then *out_trimmed is the full budget, so a loop always progresses; call again,
 * heartbeating in between), SL_ENOTFOUND for a missing topic, SL_EINVAL for a bad name, or
 * another negative SL_E* code (SL_EIO, SL_EFULL, ...) with nothing deleted. Thread-safe. */
int sl_stream_trim(struct sl_stream *s, const char *topic, uint64_t *out_trimmed);

/* A consumer of the given partitions of topic in group, starting at the group's committed
 * offsets (or the beginning). Not thread-safe; one thread uses it. Returns NULL on failure. */
struct sl_stream_consumer *sl_stream_consumer_create(struct sl_stream *s, const char *topic,
                                                     const char *group, const uint32_t *partitions,
                                                     size_t npartitions);
void sl_stream_consumer_destroy(struct sl_stream_consumer *c);

/* Reads up to max_records records past the consumer's position. If none are available, waits up
 * to timeout_ms for an append (without busy polling; other processes' appends wake it too).
 * *out_n = 0 on timeout. Records stay valid until the next poll. Each poll moves the position
 * past what it returned; the position is not committed until sl_stream_commit. */
int sl_stream_poll(struct sl_stream_consumer *c, size_t max_records, int timeout_ms,
                   const struct sl_stream_record **out_records, size_t *out_n);

/* Durably commits the consumer's position (everything returned by polls so far). After a crash
 * a new consumer of the group resumes from the last commit, so uncommitted records are
 * delivered again. */
int sl_stream_commit(struct sl_stream_consumer *c);

/* Durably commits next_offsets[i] (the offset after the last record handled) as the group's
 * position on partitions[i], for n partitions of the consumer. Unlike sl_stream_commit it does
 * not read the consumer's poll position, so a pipelined worker may commit batch k from a second
 * thread while the consumer's own thread polls batch k+1: this is the one call that may run
 * concurrently with sl_stream_poll on the same consumer. Offsets should only move forward. */
int sl_stream_commit_offsets(struct sl_stream_consumer *c, const uint32_t *partitions,
                             const uint64_t *next_offsets, size_t n);

#endif
