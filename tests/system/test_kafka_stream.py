"""sluice on Kafka (shared mode): REFLEX_EVENT_PROCESSOR_KAFKA_BOOTSTRAP_SERVERS makes the ingest
stream the Kafka topic `events`, on a real broker (kafka_fixture.py). Topics, retention and the
consumer group's offsets are checked with an independent client (kafka-python), not with sluice.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from kafka_fixture import KafkaBroker, free_port, kafka_broker  # noqa: F401  (a fixture)
from sluice_harness import (Loader, TIME_FACTOR, group_pids, make_events, new_prefix, run_cli,
                            wait_for)
from test_crash import check_exactly_once, wait_settled

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


def test_whole_tree_sigkill_and_restart(servers, fresh):
    """SIGKILL of the whole server mid-load: after a restart on the same data dir and topic,
    every acknowledged event is stored exactly once (uncommitted records come back from
    Kafka, committed ones do not)."""
    srv = servers(env=kafka_env(fresh, workers=2))
    key = srv.admin_key()
    total = 20_000
    ld = Loader(lambda: srv.url, key, new_prefix("ktree"), total, batch=500, threads=4,
                stop_on_error=True).start()
    ld.wait_acked(total // 2)
    srv.kill()
    assert not group_pids(srv.pgid)
    ld.join()
    assert ld.acked_events < total, "the kill came too late to test anything"
    srv = servers(data_dir=srv.data_dir, env=kafka_env(fresh, workers=2))
    c = srv.client()
    wait_settled(c, len(ld.acked), timeout=120)
    check_exactly_once(c, ld.acked, ld.unknown)
    committed, ends = group_offsets_and_ends(fresh)
    assert committed == ends, (committed, ends)


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


def test_backlog_and_queue_bound(servers, fresh):
    """With processing off the backlog is what waits in Kafka: counted from the partitions'
    start (no committed offsets yet), and past MAX_QUEUE_SIZE ingest is throttled (429)."""
    srv = servers(env=kafka_env(fresh, workers=2, REFLEX_EVENT_PROCESSOR_DISABLED="true",
                                REFLEX_EVENT_PROCESSOR_MAX_QUEUE_SIZE="150"))
    c = srv.client()
    c.ingest(make_events("kb-a", 100))
    c.ingest(make_events("kb-b", 100))
    wait_for("backlog of 200", lambda: c.queue_stats()["size"] == 200, 10)
    r = c.post_bulk(make_events("kb-c", 10))
    assert r.status_code == 429 and r.headers.get("Retry-After"), (r.status_code, r.text[:300])
    assert c.total() == 0
    # Processing on: the backlog drains to zero and the group commits the ends.
    srv.terminate()
    srv.env["REFLEX_EVENT_PROCESSOR_DISABLED"] = "false"
    srv.start()
    c = srv.client()
    c.wait_stored(200, timeout=60)
    committed, ends = group_offsets_and_ends(fresh)
    assert committed == ends and sum(ends.values()) == 200, (committed, ends)


def test_sasl_plain(servers, tmp_path):
    """KAFKA_SASL=plain:user:pass against a broker's SASL_PLAINTEXT listener that only knows that
    user: events flow; a wrong password stops `serve` with the broker's authentication error
    instead of running without a stream. (SCRAM is not tested here: Debian 12's librdkafka
    2.0.2 computes a SCRAM proof that Kafka >= 3.8.1 rejects, librdkafka #4895, fixed in 2.6.1;
    sluice warns about it at start.)"""
    directory = tempfile.mkdtemp(prefix="sluice-kafka-sasl-")
    broker = KafkaBroker(directory)
    broker.port, broker.controller_port, sasl_port = free_port(), free_port(), free_port()
    broker.extra_properties = f"""
listeners=PLAINTEXT://127.0.0.1:{broker.port},CONTROLLER://127.0.0.1:{broker.controller_port},\
SASL_PLAINTEXT://127.0.0.1:{sasl_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{broker.port},SASL_PLAINTEXT://127.0.0.1:{sasl_port}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,\
SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=\
org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="alice:secret";
"""
    try:
        broker.start()
        sasl = f"127.0.0.1:{sasl_port}"
        bad = servers(env=kafka_env(sasl, KAFKA_SASL="plain:alice:wrong"), wait=False,
                      name="bad")
        rc = bad.proc.wait(timeout=60 * TIME_FACTOR)
        assert rc != 0, bad.log_tail()
        assert "Authentication failed" in bad.log_text(), bad.log_tail()

        # The password may contain colons: only the first two separate.
        srv = servers(env=kafka_env(sasl, KAFKA_SASL="plain:alice:alice:secret"))
        assert "in clear" in srv.log_text()  # SASL without SSL is warned about
        c = srv.client()
        c.ingest(make_events("ks", 100))
        c.wait_stored(100, timeout=60)
        parts, retention = topic_state(broker.bootstrap)  # checked on the plain listener
        assert parts == 2 and retention == str(RETENTION_S * 1000)
    finally:
        broker.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


def make_certs(d):
    """A CA, a broker certificate for 127.0.0.1 and a client certificate whose key is encrypted
    with the passphrase "keypass", all PEM, made with the openssl command."""
    def ossl(*args):
        r = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=sluice-test-ca")
    for name, ext in (("broker", "subjectAltName=IP:127.0.0.1"),
                      ("client", "extendedKeyUsage=clientAuth")):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
             f"{name}.csr", "-subj", f"/CN={name}")
        (d / f"{name}.ext").write_text(ext + "\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    ossl("pkcs8", "-topk8", "-in", "client.key", "-out", "client.enc.key", "-passout",
         "pass:keypass")
    ossl("pkcs8", "-topk8", "-nocrypt", "-in", "broker.key", "-out", "broker.p8")
    (d / "broker.keystore.pem").write_text((d / "broker.p8").read_text() +
                                           (d / "broker.pem").read_text())


def test_ssl_with_client_certificate(servers, tmp_path):
    """KAFKA_SSL_ENABLED with the CA, a client certificate and an encrypted key (the RIG
    settings) against a broker listener that requires client certificates: events flow.
    Without the client certificate the broker refuses the connection and serve stops."""
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certs(certs)
    directory = tempfile.mkdtemp(prefix="sluice-kafka-ssl-")
    broker = KafkaBroker(directory)
    broker.port, broker.controller_port, ssl_port = free_port(), free_port(), free_port()
    broker.extra_properties = f"""
listeners=PLAINTEXT://127.0.0.1:{broker.port},CONTROLLER://127.0.0.1:{broker.controller_port},\\
SSL://127.0.0.1:{ssl_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{broker.port},SSL://127.0.0.1:{ssl_port}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL
ssl.keystore.type=PEM
ssl.keystore.location={certs}/broker.keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location={certs}/ca.pem
ssl.client.auth=required
"""
    ssl_env = {"KAFKA_SSL_ENABLED": "true", "KAFKA_SSL_CA_CERTFILE": str(certs / "ca.pem")}
    try:
        broker.start()
        bootstrap = f"127.0.0.1:{ssl_port}"
        bad = servers(env=kafka_env(bootstrap, **ssl_env), wait=False, name="nocert")
        assert bad.proc.wait(timeout=60 * TIME_FACTOR) != 0, bad.log_tail()
        assert "ssl://" in bad.log_text() and "cannot create topic" in bad.log_text(), \
            bad.log_tail()

        srv = servers(env=kafka_env(bootstrap, **ssl_env,
                                    KAFKA_SSL_CERTFILE=certs / "client.pem",
                                    KAFKA_SSL_KEYFILE=certs / "client.enc.key",
                                    KAFKA_SSL_KEYFILE_PASS="keypass"))
        c = srv.client()
        c.ingest(make_events("kssl", 100))
        c.wait_stored(100, timeout=60)
        assert topic_state(broker.bootstrap) == (2, str(RETENTION_S * 1000))
    finally:
        broker.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
