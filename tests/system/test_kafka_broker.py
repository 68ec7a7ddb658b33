"""The test Kafka broker itself, seen through an independent client (kafka-python, Debian's
python3-kafka): topics are created through the admin API, messages produced with acks=all all
come back to a consumer group that commits by hand, and the committed offsets are the ends of
the partitions. If this fails, the Kafka tests of sluice cannot be trusted."""

import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError

from kafka_fixture import kafka_broker  # noqa: F401  (a fixture)
from sluice_harness import deadline

PARTITIONS = 3
MESSAGES = 100


def test_topic_produce_consume_commit(kafka_broker):  # noqa: F811
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    group = f"smoke-group-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker, client_id="smoke-admin")
    producer = consumer = None
    try:
        admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                            timeout_ms=30000)
        described = admin.describe_topics([topic])
        assert [t["topic"] for t in described] == [topic], described
        assert described[0]["error_code"] == 0, described
        assert sorted(p["partition"] for p in described[0]["partitions"]) == \
            list(range(PARTITIONS)), described

        producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all")
        sent = [f"msg-{i}".encode() for i in range(MESSAGES)]
        # Keys spread the messages over the partitions; each send is acknowledged by the broker.
        futures = [producer.send(topic, key=str(i).encode(), value=v) for i, v in enumerate(sent)]
        producer.flush(timeout=30)
        metas = [f.get(timeout=30) for f in futures]
        used = {m.partition for m in metas}
        assert used == set(range(PARTITIONS)), f"messages went to partitions {used} only"

        consumer = KafkaConsumer(topic, bootstrap_servers=kafka_broker, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
        received = []
        end = deadline(30)
        while len(received) < MESSAGES and time.monotonic() < end:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(records)
        consumer.commit()

        assert len(received) == MESSAGES, f"received {len(received)} of {MESSAGES}"
        assert sorted(r.value for r in received) == sorted(sent)
        # Per partition, offsets arrive in order and without gaps.
        for p in range(PARTITIONS):
            offs = [r.offset for r in received if r.partition == p]
            assert offs == list(range(len(offs))), (p, offs)

        # The group's committed offsets, read by a separate admin request, are the partition ends.
        ends = {}
        for m in metas:
            ends[m.partition] = max(ends.get(m.partition, 0), m.offset + 1)
        committed = admin.list_consumer_group_offsets(group)
        assert {tp.partition: om.offset for tp, om in committed.items() if tp.topic == topic} \
            == ends
        assert consumer.committed(TopicPartition(topic, 0)) == ends[0]
    finally:
        if consumer is not None:
            consumer.close()
        if producer is not None:
            producer.close(timeout=10)
        admin.close()


def test_no_topic_created_by_a_produce(kafka_broker):  # noqa: F811
    """auto.create.topics.enable=false: sluice must create its topics itself, so a produce to a
    missing topic fails (its metadata never arrives) and leaves the topic missing."""
    topic = f"never-created-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker, client_id="smoke-admin")
    producer = KafkaProducer(bootstrap_servers=kafka_broker, acks="all", max_block_ms=2000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(topic, b"x").get(timeout=10)
        assert topic not in admin.list_topics()
    finally:
        producer.close(timeout=10)
        admin.close()
