/* The Kafka backend of the stream abstraction, on librdkafka: topics are Kafka topics, consumer
 * groups are Kafka consumer groups whose offsets sluice commits by hand.
 *
 * Handles (each rd_kafka_t runs its own threads, so all are opened after fork()):
 *   producer  appends (acks=all, idempotent), metadata and admin requests. A thread of ours
 *             serves its delivery reports (rd_kafka_poll); each append counts its own reports
 *             on its stack (struct append_call), so concurrent appends never wait for each
 *             other the way rd_kafka_flush would make them.
 *   group     backlog only: a consumer handle of the group asked about, for its committed
 *             offsets (rd_kafka_committed) and the partitions' ends (ListOffsets).
 *   consumer  one per sl_stream_consumer: explicit partitions (rd_kafka_assign, no group
 *             membership, so no rebalance ever moves a partition under a worker), starting at
 *             the group's committed offsets; auto commit and auto offset store off.
 *
 * Differences from the embedded backend:
 *   - An append that fails (broker down past message.timeout.ms, local buffer full) may have
 *     delivered some of its records: Kafka makes one record atomic, not n without transactions.
 *     The api answers 503 and the client resends; the store's (organization, reference) key
 *     turns the records that did arrive into duplicates, so nothing is stored twice.
 *   - trim is Kafka's own retention (retention.ms of the topic): sl_stream_trim returns 0.
 *     Retention deletes by age whether or not a group has committed: a backlog older than
 *     REFLEX_EVENT_PROCESSOR_KAFKA_TOPIC_RETENTION is lost, as in Kafka itself.
 *   - topic_ensure also sets the topic's retention.ms. librdkafka 2.0.2 has no
 *     IncrementalAlterConfigs, and AlterConfigs replaces every dynamic config of the topic:
 *     sluice owns its topics' configs. It carries over the other dynamic (non-sensitive)
 *     configs it reads with DescribeConfigs, so only a concurrent change by someone else, or a
 *     sensitive value, can be lost. */
#include "stream/stream.h"
#include "core/error.h"
#include "core/log.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DELIVERY_TIMEOUT_MS 10000 /* message.timeout.ms: an append fails after this at most */
#define META_TIMEOUT_MS     10000
#define ADMIN_TIMEOUT_MS    15000
#define BACKLOG_TIMEOUT_MS  1000 /* the api asks every 100 ms: never block it long */
#define PARTS_CACHE_MS      1000 /* backlog re-reads the partition count this often */
#define DR_POLL_MS          100
#define QUEUE_MAX_DEFAULT   (256ULL * 1024 * 1024)

struct kstream {
    struct sl_stream base;
    char *bootstrap, *client_id, *ssl_ca, *ssl_cert, *ssl_key, *ssl_key_pass, *sasl;
    int ssl;
    int64_t retention_ms;
    uint64_t queue_max_bytes;
    rd_kafka_t *producer;
    pthread_t dr_thread;
    int dr_started;
    atomic_int stop;
    pthread_mutex_t lock; /* append completion counts */
    pthread_cond_t delivered;
    pthread_mutex_t admin_lock;           /* the fields below */
    char ensured[SL_STREAM_NAME_MAX + 1]; /* topic fully ensured (created, retention) by us */
    uint32_t ensured_parts;
    rd_kafka_t *group_rk; /* backlog's handle, of group_name */
    char group_name[SL_STREAM_NAME_MAX + 1];
    char parts_topic[SL_STREAM_NAME_MAX + 1]; /* backlog's cached partition count */
    uint32_t parts_cached;
    int64_t parts_read_ms;
};

/* What one append waits for: its records' delivery reports (under kstream.lock). */
struct append_call {
    size_t pending;
    int rc;
    int64_t first_offset; /* the smallest offset reported: the first record's (one partition,
                             idempotent producer: the records keep their order) */
};

struct kconsumer {
    struct sl_stream_consumer base;
    rd_kafka_t *rk;
    char *topic;
    rd_kafka_message_t **msgs; /* the last poll's, destroyed by the next poll */
    struct sl_stream_record *recs;
    size_t nmsgs, cap;
    uint32_t *parts;
    int64_t *pos; /* per assigned partition: offset after the last record polled (-1: none) */
    size_t nparts;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int map_err(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return SL_ENOTFOUND;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return SL_EFULL;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
        return SL_ETIMEDOUT;
    case RD_KAFKA_RESP_ERR__NO_OFFSET:
        return SL_ENOTFOUND;
    default:
        return SL_EIO;
    }
}

/* librdkafka's log lines (called on its threads) go to ours. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (level <= 4)
        SL_WARN("kafka %s %s: %s", rd_kafka_name(rk), fac, buf);
    else
        SL_DEBUG("kafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

/* librdkafka's error events: its log lines already say what failed, once per handle; only
 * "every broker is down" and fatal errors are worth a line of their own. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        SL_WARN("kafka %s: %s", rd_kafka_name(rk), reason);
    else
        SL_DEBUG("kafka %s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(err), reason);
}

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err,
                    size_t errlen)
{
    char es[512];
    if (rd_kafka_conf_set(conf, name, value, es, sizeof(es)) != RD_KAFKA_CONF_OK) {
        sl_set_err(err, errlen, "kafka setting %s: %s", name, es);
        return SL_EINVAL;
    }
    return 0;
}

/* Splits "mechanism:user:password" (the password may hold colons) into librdkafka's settings. */
static int conf_sasl(rd_kafka_conf_t *conf, const char *sasl, char *err, size_t errlen)
{
    static const char *const names[][2] = {
        {"plain", "PLAIN"}, {"scram-sha-256", "SCRAM-SHA-256"}, {"scram-sha-512", "SCRAM-SHA-512"}};
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", sasl);
    char *user = strchr(buf, ':');
    char *pass = user ? strchr(user + 1, ':') : NULL;
    if (!pass) {
        sl_set_err(err, errlen, "KAFKA_SASL: expected mechanism:user:password");
        return SL_EINVAL;
    }
    *user++ = 0;
    *pass++ = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcasecmp(buf, names[i][0]))
            return conf_set(conf, "sasl.mechanisms", names[i][1], err, errlen) ||
                           conf_set(conf, "sasl.username", user, err, errlen) ||
                           conf_set(conf, "sasl.password", pass, err, errlen)
                       ? SL_EINVAL
                       : 0;
    sl_set_err(err, errlen, "KAFKA_SASL: unknown mechanism %s", buf);
    return SL_EINVAL;
}

/* The settings every handle shares: brokers, identity, SSL and SASL. NULL and err on failure. */
static rd_kafka_conf_t *base_conf(const struct kstream *k, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int sasl = k->sasl[0] != 0;
    const char *proto =
        k->ssl ? (sasl ? "sasl_ssl" : "ssl") : (sasl ? "sasl_plaintext" : "plaintext");
    int rc = conf_set(conf, "bootstrap.servers", k->bootstrap, err, errlen);
    if (!rc && k->client_id[0])
        rc = conf_set(conf, "client.id", k->client_id, err, errlen);
    if (!rc)
        rc = conf_set(conf, "security.protocol", proto, err, errlen);
    /* sluice creates its topics itself, with its partitions and retention. */
    if (!rc)
        rc = conf_set(conf, "allow.auto.create.topics", "false", err, errlen);
    if (!rc && k->ssl && k->ssl_ca[0])
        rc = conf_set(conf, "ssl.ca.location", k->ssl_ca, err, errlen);
    if (!rc && k->ssl && k->ssl_cert[0])
        rc = conf_set(conf, "ssl.certificate.location", k->ssl_cert, err, errlen);
    if (!rc && k->ssl && k->ssl_key[0])
        rc = conf_set(conf, "ssl.key.location", k->ssl_key, err, errlen);
    if (!rc && k->ssl && k->ssl_key_pass[0])
        rc = conf_set(conf, "ssl.key.password", k->ssl_key_pass, err, errlen);
    if (!rc && sasl)
        rc = conf_sasl(conf, k->sasl, err, errlen);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    return conf;
}

/* rd_kafka_new, which takes conf in every case. */
static rd_kafka_t *handle_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *err, size_t errlen)
{
    char es[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, es, sizeof(es));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        sl_set_err(err, errlen, "%s", es);
    }
    return rk;
}

/* ---- appends ---------------------------------------------------------------------------- */

/* On the delivery thread: counts one record's report into its append. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct kstream *k = opaque;
    struct append_call *c = m->_private;
    (void)rk;
    pthread_mutex_lock(&k->lock);
    if (m->err) {
        if (!c->rc) {
            c->rc = map_err(m->err);
            SL_WARN("kafka: record to %s [%d] not delivered: %s", rd_kafka_topic_name(m->rkt),
                    (int)m->partition, rd_kafka_err2str(m->err));
        }
    } else if (c->first_offset < 0 || m->offset < c->first_offset) {
        c->first_offset = m->offset;
    }
    if (--c->pending == 0)
        pthread_cond_broadcast(&k->delivered);
    pthread_mutex_unlock(&k->lock);
}

static void *dr_main(void *arg)
{
    struct kstream *k = arg;
    while (!atomic_load(&k->stop))
        rd_kafka_poll(k->producer, DR_POLL_MS);
    return NULL;
}

static int k_append(struct sl_stream *s, const char *topic, uint32_t partition,
                    const struct sl_stream_msg *msgs, size_t n, uint64_t *out_first_offset)
{
    struct kstream *k = (struct kstream *)s;
    struct append_call c = {.pending = n, .first_offset = -1};
    size_t i = 0;
    int rc = 0;
    if (n == 0)
        return 0;
    for (; i < n; i++) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            k->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION((int32_t)partition),
            RD_KAFKA_V_VALUE((void *)msgs[i].data, msgs[i].len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&c), RD_KAFKA_V_END);
        if (e) {
            rc = map_err(e);
            SL_WARN("kafka: cannot queue a record for %s [%u]: %s", topic, partition,
                    rd_kafka_err2str(e));
            break;
        }
    }
    /* Every record queued gets exactly one report, within message.timeout.ms: wait for them
     * all, so c outlives every callback that points at it. */
    pthread_mutex_lock(&k->lock);
    c.pending -= n - i;
    while (c.pending > 0)
        pthread_cond_wait(&k->delivered, &k->lock);
    if (!rc)
        rc = c.rc;
    pthread_mutex_unlock(&k->lock);
    if (rc == 0 && out_first_offset)
        *out_first_offset = (uint64_t)c.first_offset;
    return rc;
}

/* ---- metadata and admin ----------------------------------------------------------------- */

/* The partition count of topic, from the brokers' metadata. SL_ENOTFOUND if it does not exist. */
static int topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, uint32_t *out_parts)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return SL_ENOMEM;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (e)
        return map_err(e);
    int rc = 0;
    if (md->topic_cnt != 1)
        rc = SL_EIO;
    else if (md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        rc = SL_ENOTFOUND;
    else if (md->topics[0].err && md->topics[0].partition_cnt == 0)
        rc = map_err(md->topics[0].err);
    else
        *out_parts = (uint32_t)md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* Runs one admin request on its own queue and returns its result event (NULL: timed out). */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q)
{
    return rd_kafka_queue_poll(q, ADMIN_TIMEOUT_MS + 5000);
}

static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk, rd_kafka_admin_op_t op)
{
    char es[256];
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, op);
    rd_kafka_AdminOptions_set_request_timeout(o, ADMIN_TIMEOUT_MS, es, sizeof(es));
    if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS || op == RD_KAFKA_ADMIN_OP_CREATEPARTITIONS)
        rd_kafka_AdminOptions_set_operation_timeout(o, ADMIN_TIMEOUT_MS, es, sizeof(es));
    return o;
}

/* The error of an admin result event, logged with what was tried. */
static int event_rc(rd_kafka_event_t *ev, const char *what, const char *topic)
{
    if (!ev) {
        SL_ERROR("kafka: %s of topic %s: no answer in %d ms", what, topic, ADMIN_TIMEOUT_MS);
        return SL_ETIMEDOUT;
    }
    if (rd_kafka_event_error(ev)) {
        SL_ERROR("kafka: %s of topic %s: %s", what, topic, rd_kafka_event_error_string(ev));
        return map_err(rd_kafka_event_error(ev));
    }
    return 0;
}

/* The error of the one topic result of CreateTopics or CreatePartitions; `ok` is fine too. */
static int topic_result_rc(const rd_kafka_topic_result_t *const *res, size_t n, const char *what,
                           const char *topic, rd_kafka_resp_err_t ok)
{
    rd_kafka_resp_err_t e = n == 1 ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR__FAIL;
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == ok)
        return 0;
    SL_ERROR("kafka: %s of topic %s: %s", what, topic,
             n == 1 ? rd_kafka_topic_result_error_string(res[0]) : "no result");
    return e == RD_KAFKA_RESP_ERR_POLICY_VIOLATION ? SL_EINVAL : SL_EIO;
}

static int create_topic(struct kstream *k, const char *topic, uint32_t partitions)
{
    char es[256], ret[32];
    size_t n = 0;
    /* -1: the broker's default replication factor (default.replication.factor). */
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, (int)partitions, -1, es, sizeof(es));
    if (!nt) {
        SL_ERROR("kafka: topic %s: %s", topic, es);
        return SL_EINVAL;
    }
    snprintf(ret, sizeof(ret), "%lld", (long long)k->retention_ms);
    rd_kafka_NewTopic_set_config(nt, "retention.ms", ret);
    rd_kafka_AdminOptions_t *o = admin_options(k->producer, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->producer);
    rd_kafka_CreateTopics(k->producer, &nt, 1, o, q);
    rd_kafka_event_t *ev = admin_wait(q);
    int rc = event_rc(ev, "creation", topic);
    if (rc == 0) {
        const rd_kafka_topic_result_t *const *res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rc = topic_result_rc(res, n, "creation", topic, RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS);
    }
    if (rc == 0)
        SL_INFO("kafka: topic %s: %u partitions, retention.ms %s", topic, partitions, ret);
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

static int grow_topic(struct kstream *k, const char *topic, uint32_t partitions)
{
    char es[256];
    size_t n = 0;
    rd_kafka_NewPartitions_t *np = rd_kafka_NewPartitions_new(topic, partitions, es, sizeof(es));
    if (!np) {
        SL_ERROR("kafka: topic %s: %s", topic, es);
        return SL_EINVAL;
    }
    rd_kafka_AdminOptions_t *o = admin_options(k->producer, RD_KAFKA_ADMIN_OP_CREATEPARTITIONS);
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->producer);
    rd_kafka_CreatePartitions(k->producer, &np, 1, o, q);
    rd_kafka_event_t *ev = admin_wait(q);
    int rc = event_rc(ev, "growth", topic);
    if (rc == 0) {
        const rd_kafka_topic_result_t *const *res =
            rd_kafka_CreatePartitions_result_topics(rd_kafka_event_CreatePartitions_result(ev), &n);
        /* INVALID_PARTITIONS: another process grew it first. */
        rc = topic_result_rc(res, n, "growth", topic, RD_KAFKA_RESP_ERR_INVALID_PARTITIONS);
    }
    if (rc == 0)
        SL_INFO("kafka: topic %s grown to %u partitions", topic, partitions);
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_NewPartitions_destroy(np);
    return rc;
}

/* Reads the topic's configs; if retention.ms differs, writes it with AlterConfigs, carrying
 * over the other dynamic configs (AlterConfigs replaces them all). */
static int ensure_retention(struct kstream *k, const char *topic)
{
    char want[32];
    size_t n = 0, nc = 0;
    int rc, differs = 1;
    snprintf(want, sizeof(want), "%lld", (long long)k->retention_ms);
    rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_ConfigResource_t *alter = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    rd_kafka_AdminOptions_t *o = admin_options(k->producer, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->producer);
    rd_kafka_event_t *ev = NULL;
    rd_kafka_DescribeConfigs(k->producer, &cr, 1, o, q);
    ev = admin_wait(q);
    rc = event_rc(ev, "config read", topic);
    if (rc == 0) {
        const rd_kafka_ConfigResource_t *const *rs = rd_kafka_DescribeConfigs_result_resources(
            rd_kafka_event_DescribeConfigs_result(ev), &n);
        if (n != 1 || rd_kafka_ConfigResource_error(rs[0])) {
            SL_ERROR("kafka: config read of topic %s: %s", topic,
                     n == 1 ? rd_kafka_ConfigResource_error_string(rs[0]) : "no result");
            rc = SL_EIO;
        }
        const rd_kafka_ConfigEntry_t *const *ce =
            rc == 0 ? rd_kafka_ConfigResource_configs(rs[0], &nc) : NULL;
        for (size_t i = 0; i < nc; i++) {
            const char *name = rd_kafka_ConfigEntry_name(ce[i]);
            const char *value = rd_kafka_ConfigEntry_value(ce[i]);
            if (!strcmp(name, "retention.ms")) {
                differs = !value || strcmp(value, want) != 0;
                if (differs)
                    SL_INFO("kafka: topic %s has retention.ms %s; setting %s", topic,
                            value ? value : "(unset)", want);
            } else if (rd_kafka_ConfigEntry_source(ce[i]) ==
                           RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG &&
                       value && !rd_kafka_ConfigEntry_is_sensitive(ce[i])) {
                rd_kafka_ConfigResource_set_config(alter, name, value);
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    ev = NULL;
    if (rc == 0 && differs) {
        rd_kafka_AdminOptions_destroy(o);
        o = admin_options(k->producer, RD_KAFKA_ADMIN_OP_ALTERCONFIGS);
        rd_kafka_ConfigResource_set_config(alter, "retention.ms", want);
        rd_kafka_AlterConfigs(k->producer, &alter, 1, o, q);
        ev = admin_wait(q);
        rc = event_rc(ev, "config change", topic);
        if (rc == 0) {
            const rd_kafka_ConfigResource_t *const *rs =
                rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);
            if (n != 1 || rd_kafka_ConfigResource_error(rs[0])) {
                SL_ERROR("kafka: config change of topic %s: %s", topic,
                         n == 1 ? rd_kafka_ConfigResource_error_string(rs[0]) : "no result");
                rc = SL_EIO;
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_ConfigResource_destroy(cr);
    rd_kafka_ConfigResource_destroy(alter);
    return rc;
}

/* Waits until the metadata shows at least `want` partitions (creation propagates). */
static int wait_partitions(struct kstream *k, const char *topic, uint32_t want, uint32_t *out_parts)
{
    int64_t deadline = mono_ms() + META_TIMEOUT_MS;
    for (;;) {
        int rc = topic_partitions(k->producer, topic, META_TIMEOUT_MS, out_parts);
        if ((rc == 0 && *out_parts >= want) || (rc && rc != SL_ENOTFOUND) || mono_ms() > deadline)
            return rc == 0 && *out_parts < want ? SL_ETIMEDOUT : rc;
        sleep_ms(100);
    }
}

static int k_topic_ensure(struct sl_stream *s, const char *topic, uint32_t partitions,
                          uint32_t *out_partitions)
{
    struct kstream *k = (struct kstream *)s;
    uint32_t have = 0;
    if (partitions == 0 || partitions > SL_STREAM_MAX_PARTITIONS)
        return SL_EINVAL;
    pthread_mutex_lock(&k->admin_lock);
    int rc = topic_partitions(k->producer, topic, META_TIMEOUT_MS, &have);
    /* Once this handle created or checked the topic, a call is one metadata request. */
    int done = rc == 0 && have >= partitions && !strcmp(k->ensured, topic);
    if (!done) {
        if (rc == SL_ENOTFOUND)
            rc = create_topic(k, topic, partitions);
        else if (rc == 0 && have < partitions)
            rc = grow_topic(k, topic, partitions);
        if (rc == 0)
            rc = wait_partitions(k, topic, partitions, &have);
        if (rc == 0)
            rc = ensure_retention(k, topic);
        if (rc == 0)
            snprintf(k->ensured, sizeof(k->ensured), "%s", topic);
    }
    pthread_mutex_unlock(&k->admin_lock);
    if (rc == 0 && out_partitions)
        *out_partitions = have;
    return rc;
}

/* ---- backlog ---------------------------------------------------------------------------- */

/* The entry of partition p in a list that was built with every partition (librdkafka may
 * reorder a list it fills in, so never index by position). */
static const rd_kafka_topic_partition_t *part_of(const rd_kafka_topic_partition_list_t *list,
                                                 const char *topic, uint32_t p)
{
    static const rd_kafka_topic_partition_t none = {.offset = -1, .err = RD_KAFKA_RESP_ERR__FAIL};
    const rd_kafka_topic_partition_t *e =
        rd_kafka_topic_partition_list_find(list, topic, (int32_t)p);
    return e ? e : &none;
}

/* Under admin_lock: makes k->group_rk a consumer handle of group (for committed offsets). */
static int group_handle(struct kstream *k, const char *group)
{
    char err[512] = "";
    if (k->group_rk && !strcmp(k->group_name, group))
        return 0;
    if (k->group_rk)
        rd_kafka_destroy(k->group_rk);
    k->group_rk = NULL;
    rd_kafka_conf_t *conf = base_conf(k, err, sizeof(err));
    if (conf && conf_set(conf, "group.id", group, err, sizeof(err)) == 0 &&
        conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) == 0)
        k->group_rk = handle_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    else if (conf)
        rd_kafka_conf_destroy(conf);
    if (!k->group_rk) {
        SL_ERROR("kafka: backlog handle: %s", err);
        return SL_EIO;
    }
    snprintf(k->group_name, sizeof(k->group_name), "%s", group);
    return 0;
}

static int k_backlog(struct sl_stream *s, const char *topic, const char *group,
                     uint64_t *out_records)
{
    struct kstream *k = (struct kstream *)s;
    int rc = 0;
    rd_kafka_topic_partition_list_t *committed = NULL, *ends = NULL, *starts = NULL;
    pthread_mutex_lock(&k->admin_lock);
    if ((rc = group_handle(k, group)) != 0)
        goto out;
    int64_t now = mono_ms();
    if (strcmp(k->parts_topic, topic) || now - k->parts_read_ms >= PARTS_CACHE_MS) {
        rc = topic_partitions(k->group_rk, topic, BACKLOG_TIMEOUT_MS, &k->parts_cached);
        if (rc)
            goto out;
        snprintf(k->parts_topic, sizeof(k->parts_topic), "%s", topic);
        k->parts_read_ms = now;
    }
    uint32_t np = k->parts_cached;
    committed = rd_kafka_topic_partition_list_new((int)np);
    ends = rd_kafka_topic_partition_list_new((int)np);
    for (uint32_t p = 0; p < np; p++) {
        rd_kafka_topic_partition_list_add(committed, topic, (int32_t)p);
        rd_kafka_topic_partition_list_add(ends, topic, (int32_t)p)->offset = RD_KAFKA_OFFSET_END;
    }
    rd_kafka_resp_err_t e = rd_kafka_committed(k->group_rk, committed, BACKLOG_TIMEOUT_MS);
    /* ListOffsets with the "latest" timestamp answers each partition's end. */
    if (!e)
        e = rd_kafka_offsets_for_times(k->group_rk, ends, BACKLOG_TIMEOUT_MS);
    if (e) {
        rc = map_err(e);
        goto out;
    }
    /* A partition the group never committed counts from its first retained record. */
    for (uint32_t p = 0; p < np; p++) {
        if (part_of(committed, topic, p)->offset >= 0)
            continue;
        if (!starts)
            starts = rd_kafka_topic_partition_list_new((int)np);
        rd_kafka_topic_partition_list_add(starts, topic, (int32_t)p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    if (starts && (e = rd_kafka_offsets_for_times(k->group_rk, starts, BACKLOG_TIMEOUT_MS))) {
        rc = map_err(e);
        goto out;
    }
    uint64_t sum = 0;
    for (uint32_t p = 0; p < np; p++) {
        const rd_kafka_topic_partition_t *e_end = part_of(ends, topic, p);
        int64_t from = part_of(committed, topic, p)->offset, end = e_end->offset;
        if (from < 0)
            from = part_of(starts, topic, p)->offset;
        if (e_end->err || end < 0) {
            rc = map_err(e_end->err ? e_end->err : RD_KAFKA_RESP_ERR__FAIL);
            goto out;
        }
        if (from >= 0 && end > from)
            sum += (uint64_t)(end - from);
    }
    *out_records = sum;
out:
    pthread_mutex_unlock(&k->admin_lock);
    if (committed)
        rd_kafka_topic_partition_list_destroy(committed);
    if (ends)
        rd_kafka_topic_partition_list_destroy(ends);
    if (starts)
        rd_kafka_topic_partition_list_destroy(starts);
    return rc;
}

/* Kafka deletes by retention.ms (set by topic_ensure): nothing to do here. */
static int k_trim(struct sl_stream *s, const char *topic, uint64_t *out_trimmed)
{
    (void)s;
    (void)topic;
    if (out_trimmed)
        *out_trimmed = 0;
    return 0;
}

/* ---- consumers -------------------------------------------------------------------------- */

static void release_msgs(struct kconsumer *c)
{
    for (size_t i = 0; i < c->nmsgs; i++)
        rd_kafka_message_destroy(c->msgs[i]);
    c->nmsgs = 0;
}

static void k_consumer_destroy(struct sl_stream_consumer *base)
{
    struct kconsumer *c = (struct kconsumer *)base;
    release_msgs(c);
    if (c->rk) {
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    free(c->topic);
    free(c->msgs);
    free(c->recs);
    free(c->parts);
    free(c->pos);
    free(c);
}

static struct sl_stream_consumer *k_consumer_create(struct sl_stream *s, const char *topic,
                                                    const char *group, const uint32_t *partitions,
                                                    size_t npartitions)
{
    struct kstream *k = (struct kstream *)s;
    char err[512] = "";
    struct kconsumer *c = calloc(1, sizeof(*c));
    rd_kafka_topic_partition_list_t *list = NULL;
    if (!c)
        return NULL;
    c->base.stream = s;
    c->topic = strdup(topic);
    c->parts = calloc(npartitions ? npartitions : 1, sizeof(*c->parts));
    c->pos = calloc(npartitions ? npartitions : 1, sizeof(*c->pos));
    if (!c->topic || !c->parts || !c->pos)
        goto fail;
    c->nparts = npartitions;
    rd_kafka_conf_t *conf = base_conf(k, err, sizeof(err));
    if (!conf)
        goto fail;
    if (conf_set(conf, "group.id", group, err, sizeof(err)) ||
        conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) ||
        conf_set(conf, "enable.auto.offset.store", "false", err, sizeof(err)) ||
        conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err)) ||
        conf_set(conf, "enable.partition.eof", "false", err, sizeof(err))) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    c->rk = handle_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!c->rk)
        goto fail;
    rd_kafka_poll_set_consumer(c->rk);
    /* Explicit partitions from the group's committed offsets (earliest when none): no group
     * membership, so no rebalance, and a worker always reads exactly the partitions it owns. */
    list = rd_kafka_topic_partition_list_new((int)npartitions);
    for (size_t i = 0; i < npartitions; i++) {
        c->parts[i] = partitions[i];
        c->pos[i] = -1;
        rd_kafka_topic_partition_list_add(list, topic, (int32_t)partitions[i])->offset =
            RD_KAFKA_OFFSET_STORED;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (e) {
        sl_set_err(err, sizeof(err), "assign: %s", rd_kafka_err2str(e));
        goto fail;
    }
    return &c->base;
fail:
    SL_ERROR("kafka: consumer of %s in group %s: %s", topic, group, err[0] ? err : "out of memory");
    k_consumer_destroy(&c->base);
    return NULL;
}

static void note_position(struct kconsumer *c, int32_t partition, int64_t offset)
{
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i] == (uint32_t)partition && offset + 1 > c->pos[i])
            c->pos[i] = offset + 1;
}

static int k_poll(struct sl_stream_consumer *base, size_t max_records, int timeout_ms,
                  const struct sl_stream_record **out_records, size_t *out_n)
{
    struct kconsumer *c = (struct kconsumer *)base;
    release_msgs(c);
    *out_n = 0;
    *out_records = NULL;
    if (max_records > c->cap) {
        rd_kafka_message_t **m = realloc(c->msgs, max_records * sizeof(*m));
        if (m)
            c->msgs = m;
        struct sl_stream_record *r = m ? realloc(c->recs, max_records * sizeof(*r)) : NULL;
        if (!r)
            return SL_ENOMEM;
        c->recs = r;
        c->cap = max_records;
    }
    int64_t deadline = mono_ms() + timeout_ms;
    /* Wait for the first record only; then take what is already fetched, without waiting. */
    while (c->nmsgs < max_records) {
        int64_t left = c->nmsgs ? 0 : deadline - mono_ms();
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, left > 0 ? (int)left : 0);
        if (!m)
            break;
        if (m->err) {
            /* Transport errors and the like: librdkafka retries by itself. */
            SL_DEBUG("kafka: consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            if (!c->nmsgs && mono_ms() >= deadline)
                break;
            continue;
        }
        struct sl_stream_record *r = &c->recs[c->nmsgs];
        r->partition = (uint32_t)m->partition;
        r->offset = (uint64_t)m->offset;
        r->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
        r->data = m->payload;
        r->len = m->len;
        note_position(c, m->partition, m->offset);
        c->msgs[c->nmsgs++] = m;
    }
    *out_records = c->recs;
    *out_n = c->nmsgs;
    return 0;
}

static int commit_list(struct kconsumer *c, const uint32_t *parts, const int64_t *next, size_t n)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        if (next[i] >= 0)
            rd_kafka_topic_partition_list_add(list, c->topic, (int32_t)parts[i])->offset = next[i];
    rd_kafka_resp_err_t e = list->cnt ? rd_kafka_commit(c->rk, list, 0) : 0;
    for (int i = 0; !e && i < list->cnt; i++)
        e = list->elems[i].err;
    rd_kafka_topic_partition_list_destroy(list);
    if (e)
        SL_WARN("kafka: offset commit on %s: %s", c->topic, rd_kafka_err2str(e));
    return e ? SL_EIO : 0;
}

static int k_commit(struct sl_stream_consumer *base)
{
    struct kconsumer *c = (struct kconsumer *)base;
    return commit_list(c, c->parts, c->pos, c->nparts);
}

/* rd_kafka_commit is thread-safe and waits on its own queue, so this may run beside k_poll. */
static int k_commit_offsets(struct sl_stream_consumer *base, const uint32_t *partitions,
                            const uint64_t *next_offsets, size_t n)
{
    struct kconsumer *c = (struct kconsumer *)base;
    int64_t next[SL_STREAM_MAX_PARTITIONS];
    if (n > SL_STREAM_MAX_PARTITIONS)
        return SL_EINVAL;
    for (size_t i = 0; i < n; i++)
        next[i] = (int64_t)next_offsets[i];
    return commit_list(c, partitions, next, n);
}

/* ---- the stream object ------------------------------------------------------------------ */

static void k_destroy(struct sl_stream *s)
{
    struct kstream *k = (struct kstream *)s;
    if (k->dr_started) {
        atomic_store(&k->stop, 1);
        pthread_join(k->dr_thread, NULL);
    }
    if (k->group_rk)
        rd_kafka_destroy(k->group_rk);
    if (k->producer)
        rd_kafka_destroy(k->producer);
    pthread_mutex_destroy(&k->lock);
    pthread_mutex_destroy(&k->admin_lock);
    pthread_cond_destroy(&k->delivered);
    free(k->bootstrap);
    free(k->client_id);
    free(k->ssl_ca);
    free(k->ssl_cert);
    free(k->ssl_key);
    free(k->ssl_key_pass);
    free(k->sasl);
    free(k);
}

static const struct sl_stream_ops kafka_ops = {
    .name = "kafka",
    .destroy = k_destroy,
    .topic_ensure = k_topic_ensure,
    .append = k_append,
    .backlog = k_backlog,
    .trim = k_trim,
    .consumer_create = k_consumer_create,
    .consumer_destroy = k_consumer_destroy,
    .poll = k_poll,
    .commit = k_commit,
    .commit_offsets = k_commit_offsets,
};

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

struct sl_stream *sl_stream_kafka_create(const struct sl_stream_config *cfg, char *err,
                                         size_t errlen)
{
    char qkb[32];
    struct kstream *k = calloc(1, sizeof(*k));
    if (!k) {
        sl_set_err(err, errlen, "out of memory");
        return NULL;
    }
    k->base.ops = &kafka_ops;
    pthread_mutex_init(&k->lock, NULL);
    pthread_mutex_init(&k->admin_lock, NULL);
    pthread_cond_init(&k->delivered, NULL);
    k->ssl = cfg->ssl;
    k->retention_ms = cfg->retention_ms;
    k->queue_max_bytes = cfg->queue_max_bytes ? cfg->queue_max_bytes : QUEUE_MAX_DEFAULT;
    k->bootstrap = dup_or_empty(cfg->bootstrap);
    k->client_id = dup_or_empty(cfg->client_id);
    k->ssl_ca = dup_or_empty(cfg->ssl_ca);
    k->ssl_cert = dup_or_empty(cfg->ssl_cert);
    k->ssl_key = dup_or_empty(cfg->ssl_key);
    k->ssl_key_pass = dup_or_empty(cfg->ssl_key_pass);
    k->sasl = dup_or_empty(cfg->sasl);
    if (!k->bootstrap || !k->client_id || !k->ssl_ca || !k->ssl_cert || !k->ssl_key ||
        !k->ssl_key_pass || !k->sasl) {
        sl_set_err(err, errlen, "out of memory");
        goto fail;
    }
    if (!k->bootstrap[0]) {
        sl_set_err(err, errlen, "no bootstrap servers");
        goto fail;
    }
    rd_kafka_conf_t *conf = base_conf(k, err, errlen);
    if (!conf)
        goto fail;
    char tmo[16];
    snprintf(qkb, sizeof(qkb), "%llu", (unsigned long long)(k->queue_max_bytes / 1024));
    snprintf(tmo, sizeof(tmo), "%d", DELIVERY_TIMEOUT_MS);
    if (conf_set(conf, "acks", "all", err, errlen) ||
        conf_set(conf, "enable.idempotence", "true", err, errlen) ||
        conf_set(conf, "message.timeout.ms", tmo, err, errlen) ||
        conf_set(conf, "linger.ms", "2", err, errlen) ||
        conf_set(conf, "queue.buffering.max.kbytes", qkb, err, errlen) ||
        conf_set(conf, "queue.buffering.max.messages", "1000000", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_conf_set_opaque(conf, k);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    k->producer = handle_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (!k->producer)
        goto fail;
    if (pthread_create(&k->dr_thread, NULL, dr_main, k) != 0) {
        sl_set_err(err, errlen, "cannot start the delivery thread");
        goto fail;
    }
    k->dr_started = 1;
    /* librdkafka before 2.6.1 repeats the client nonce in its SCRAM proof, which brokers since
     * Kafka 3.8.1 (the CVE-2024-56128 fix) reject as invalid credentials (librdkafka #4895). */
    if (!strncasecmp(k->sasl, "scram", 5) && rd_kafka_version() < 0x020601ff)
        SL_WARN("kafka: librdkafka %s cannot authenticate with SCRAM to Kafka 3.8.1 or later "
                "(fixed in librdkafka 2.6.1); use plain over SSL with those brokers",
                rd_kafka_version_str());
    return &k->base;
fail:
    k_destroy(&k->base);
    return NULL;
}
