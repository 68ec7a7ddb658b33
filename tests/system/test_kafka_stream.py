"""sluice on Kafka (shared mode): REFLEX_EVENT_PROCESSOR_KAFKA_BOOTSTRAP_SERVERS makes the ingest
stream the Kafka topic `events`, on a real broker (kafka_fixture.py). Topics, retention and the
consumer group's offsets are checked with an independent client (kafka-python), not with sluice.
"""

import os
import shutil
import signal
import tempfile
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from kafka_fixture import KafkaBroker, kafka_broker  # noqa: F401  (a fixture)
from sluice_harness import Loader, TIME_FACTOR, make_events, new_prefix, run_cli, wait_for
from test_crash import check_exactly_once

TOPIC = "events"
GROUP = "workers"
RETENTION_S = 7200


def kafka_env(bootstrap, workers=2, **extra):
    env = {"REFLEX_EVENT_PROCESSOR_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
           "REFLEX_EVENT_PROCESSOR_KAFKA_TOPIC_RETENTION": str(RETENTION_S),
           "REFLEX_EVENT_PROCESSOR_WORKER_COUNT": str(workers),
           "REFLEX_EVENT_PROCESSOR_WORKER_CHECK_INTERVAL": "1"}
    env.update(extra)
    return env


def delete_topic(bootstrap):
    """Each test starts without the topic (the broker is shared by the module)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-admin")
    try:
        if TOPIC in admin.list_topics():
            admin.delete_topics([TOPIC], timeout_ms=30000)
            wait_for("topic events deleted", lambda: TOPIC not in admin.list_topics(), 30)
        groups = [g for g, _ in admin.list_consumer_groups()]
        if GROUP in groups:
            admin.delete_consumer_groups([GROUP])
    finally:
        admin.close()


def topic_state(bootstrap):
    """(partition count, retention.ms) of the topic, read by kafka-python."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-admin")
    try:
        desc = admin.describe_topics([TOPIC])[0]
        assert desc["error_code"] == 0, desc
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)])
        entries = res[0].resources[0][4]
        retention = {e[0]: e[1] for e in entries}["retention.ms"]
        return len(desc["partitions"]), retention
    finally:
        admin.close()


def group_offsets_and_ends(bootstrap):
    """({partition: committed offset of group workers}, {partition: end offset})."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-admin")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="test-ends")
    try:
        committed = {tp.partition: om.offset
                     for tp, om in admin.list_consumer_group_offsets(GROUP).items()
                     if tp.topic == TOPIC}
        parts = consumer.partitions_for_topic(TOPIC)
        ends = consumer.end_offsets([TopicPartition(TOPIC, p) for p in parts])
        return committed, {tp.partition: off for tp, off in ends.items()}
    finally:
        consumer.close()
        admin.close()


@pytest.fixture
def fresh(kafka_broker):  # noqa: F811
    delete_topic(kafka_broker)
    return kafka_broker


def test_ingest_stored_once_topic_and_offsets(servers, fresh):
    srv = servers(env=kafka_env(fresh, workers=3))
    assert "kafka" in srv.log_text().lower()
    c = srv.client()
    n = 0
    for i in range(6):
        c.ingest(make_events(f"kf-{i}", 200))
        n += 200
    c.wait_stored(n, timeout=60)
    refs = c.all_references()
    assert len(refs) == n and len(set(refs)) == n

    parts, retention = topic_state(fresh)
    assert parts == 3
    assert retention == str(RETENTION_S * 1000)

    # After draining, the group's committed offsets are the partitions' ends, and the records
    # really went through Kafka (the ends add up to every event sent).
    def drained():
        committed, ends = group_offsets_and_ends(fresh)
        return committed == ends and (committed, ends)
    committed, ends = wait_for("committed offsets == end offsets", drained, 30)
    assert sum(ends.values()) == n, ends
    assert all(v > 0 for v in ends.values()), ends  # the api spreads requests over partitions
    assert c.queue_stats()["size"] == 0

    # A restart on the same topic neither replays nor loses anything.
    srv.terminate()
    srv.start()
    c = srv.client()
    c.ingest(make_events("kf-after", 100))
    c.wait_stored(n + 100, timeout=60)


def test_existing_topic_retention_corrected_and_grown(servers, fresh):
    admin = KafkaAdminClient(bootstrap_servers=fresh, client_id="test-admin")
    try:
        admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1,
                                      topic_configs={"retention.ms": "60000",
                                                     "cleanup.policy": "delete",
                                                     "segment.bytes": "10485760"})],
                            timeout_ms=30000)
    finally:
        admin.close()
    assert topic_state(fresh) == (1, "60000")
    srv = servers(env=kafka_env(fresh, workers=2))
    assert topic_state(fresh) == (2, str(RETENTION_S * 1000))
    # The other dynamic config the operator set is kept (AlterConfigs replaces them all).
    admin = KafkaAdminClient(bootstrap_servers=fresh, client_id="test-admin")
    try:
        res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC)])
        assert {e[0]: e[1] for e in res[0].resources[0][4]}["segment.bytes"] == "10485760"
    finally:
        admin.close()
    c = srv.client()
    c.ingest(make_events("kr", 50))
    c.wait_stored(50, timeout=60)


def test_worker_sigkill_under_load(servers, fresh):
    srv = servers(env=kafka_env(fresh, workers=2))
    c = srv.client()
    total = 20_000
    ld = Loader(lambda: srv.url, srv.admin_key(), new_prefix("kkill"), total, batch=500,
                threads=4, stop_on_error=False).start()
    kills = []
    for frac in (0.3, 0.6):
        ld.wait_acked(int(total * frac))
        qs = c.queue_stats()
        victims = [w["pid"] for w in qs["workers"] if w["alive"] and srv.owns(w["pid"])]
        assert victims, qs["workers"]
        victim = victims[len(kills) % len(victims)]
        os.kill(victim, signal.SIGKILL)
        kills.append(victim)
        wait_for(f"worker {victim} replaced",
                 lambda: (lambda q: q["respawns"] >= len(kills)
                          and sum(1 for w in q["workers"] if w["alive"]) == 2)(c.queue_stats()),
                 60)
    ld.join()
    assert ld.errors == [], ld.errors
    assert ld.statuses == {200: ld.nbatches}, ld.statuses
    c.wait_stored(total, timeout=120)
    assert c.queue_stats()["events"]["duplicates"] == 0
    check_exactly_once(c, ld.acked, [])


def test_broker_outage_503_then_recovery(servers, tmp_path):
    """The broker stopped: ingest answers 503 with Retry-After (never 200) within a bounded
    time; started again (same data): ingest recovers by itself, nothing acknowledged is lost."""
    directory = tempfile.mkdtemp(prefix="sluice-kafka-outage-")
    broker = KafkaBroker(directory)
    try:
        broker.start()
        srv = servers(env=kafka_env(broker.bootstrap, workers=2))
        c = srv.client()
        acked = []
        for i in range(3):
            evs = make_events(f"ko-before-{i}", 100)
            c.ingest(evs)
            acked += [e["reference"] for e in evs]
        broker.stop()

        unknown = []
        t0 = time.monotonic()
        r = c.post_bulk(make_events("ko-down", 50))
        took = time.monotonic() - t0
        assert r.status_code == 503, (r.status_code, r.text[:300])
        assert r.headers.get("Retry-After"), r.headers
        assert took < 30 * TIME_FACTOR, took
        unknown += [f"ko-down-{i}" for i in range(50)]  # a 503 may have delivered a part

        broker.start()
        evs = make_events("ko-after", 100)

        def accepted():
            r = c.post_bulk(evs)
            assert r.status_code in (200, 503), (r.status_code, r.text[:300])
            return r.status_code == 200
        wait_for("ingest to recover after the broker restarted", accepted, 90, interval=1)
        acked += [e["reference"] for e in evs]

        def settled():
            refs = set(c.all_references())
            return set(acked) <= refs and c.queue_stats()["size"] == 0
        wait_for("every acknowledged event stored", settled, 120, interval=0.5)
        check_exactly_once(c, acked, unknown)
    finally:
        broker.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def test_bad_kafka_settings_refused(tmp_path):
    env = {"REFLEX_EVENT_PROCESSOR_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    r = run_cli(["serve"], tmp_path, env={**env, "KAFKA_SASL": "gssapi:u:p"}, timeout=30)
    assert r.returncode == 2 and "KAFKA_SASL=gssapi:u:p" in r.stderr, r.stderr
    r = run_cli(["serve"], tmp_path, env={**env, "KAFKA_SSL_ENABLED": "true",
                                          "KAFKA_SSL_CA_CERTFILE": "/nonexistent/ca.pem"},
                timeout=30)
    assert r.returncode == 2 and "KAFKA_SSL_CA_CERTFILE=/nonexistent/ca.pem" in r.stderr, r.stderr
    r = run_cli(["serve"], tmp_path, env={**env, "REFLEX_EVENT_PROCESSOR_DEDICATED_WORKERS":
                                          "true"}, timeout=30)
    assert r.returncode == 2 and "DEDICATED_WORKERS" in r.stderr, r.stderr
    r = run_cli(["config"], tmp_path, env={**env, "KAFKA_SASL": "scram-sha-512:alice:s3:cret",
                                           "KAFKA_SSL_KEYFILE_PASS": "hunter2"}, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "s3:cret" not in r.stdout and "hunter2" not in r.stdout, r.stdout
    assert "KAFKA_SASL=scram-sha-512:alice:(password)" in r.stdout, r.stdout
