"""confluent-kafka (bundled librdkafka) against Courier: produce, consume, compression, admin.

Consumers here use assign() to read partitions directly (consumer groups are covered in
test_consumer_groups.py); producers run without idempotence, which Courier does not offer yet.
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

TIMEOUT = 15.0
PARTITIONS = 3


# ----------------------------------------------------------------------------- helpers


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(admin: AdminClient, name: str, partitions: int = PARTITIONS, rf: int = 1,
                 config: dict | None = None) -> None:
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=rf, config=config or {})],
        operation_timeout=10, request_timeout=TIMEOUT)
    futures[name].result(TIMEOUT)
    wait_for_partitions(admin, name, partitions)


def wait_for_partitions(admin: AdminClient, name: str, partitions: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        md = admin.list_topics(name, timeout=TIMEOUT).topics.get(name)
        if md is not None and md.error is None and len(md.partitions) == partitions:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"topic {name} metadata never showed {partitions} partitions: {md!r}")
        time.sleep(0.1)


def producer(bootstrap: str, **extra) -> Producer:
    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": False,
        "linger.ms": 5,
        "message.timeout.ms": 15000,
    }
    conf.update(extra)
    return Producer(conf)


def produce_all(p: Producer, topic: str, messages: list[tuple], **kw) -> list:
    """Produces (key, value[, headers]) tuples; returns delivered messages in delivery order.
    Fails on any delivery error."""
    delivered, errors = [], []

    def on_delivery(err, msg):
        (errors if err else delivered).append((err, msg) if err else msg)

    for m in messages:
        key, value = m[0], m[1]
        headers = m[2] if len(m) > 2 else None
        p.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery, **kw)
        p.poll(0)
    remaining = p.flush(TIMEOUT)
    assert remaining == 0, f"{remaining} messages still undelivered after {TIMEOUT}s"
    assert not errors, f"delivery errors: {[(str(e), m.partition()) for e, m in errors[:5]]}"
    assert len(delivered) == len(messages)
    return delivered


def consumer(bootstrap: str, **extra) -> Consumer:
    # group.id is mandatory in confluent-kafka, but nothing here joins a group or commits.
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": "courier-compat-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }
    conf.update(extra)
    return Consumer(conf)


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int,
                timeout: float = TIMEOUT) -> list:
    """Reads every partition from the beginning until `expected` messages arrived and every
    partition reached its end; fails on consumer errors, on too few or too many messages."""
    c = consumer(bootstrap)
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        msgs, eof = [], set()
        deadline = time.monotonic() + timeout
        while len(msgs) < expected or len(eof) < partitions:
            if time.monotonic() > deadline:
                pytest.fail(f"consumed {len(msgs)}/{expected} messages from {topic}, "
                            f"partitions at end: {sorted(eof)}")
            for m in c.consume(num_messages=500, timeout=0.5):
                err = m.error()
                if err is None:
                    msgs.append(m)
                    eof.discard(m.partition())
                elif err.code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                else:
                    pytest.fail(f"consumer error on {topic}: {err}")
        assert len(msgs) == expected, f"expected {expected} messages, got {len(msgs)}"
        return msgs
    finally:
        c.close()


def check_round_trip(sent: list[tuple], delivered: list, consumed: list) -> None:
    """Every produced message comes back once, byte for byte, at the offset it was acked with
    (when acked with one), in per-partition offset order; a key always maps to one partition."""
    by_partition = defaultdict(list)
    for m in consumed:
        by_partition[m.partition()].append(m)
    for p, ms in by_partition.items():
        offsets = [m.offset() for m in ms]
        assert offsets == list(range(offsets[0], offsets[0] + len(ms))), \
            f"partition {p}: offsets not contiguous/increasing: {offsets[:20]}"
        assert offsets[0] == 0, f"partition {p} starts at {offsets[0]}"

    # Per-partition order of values must match the order they were produced in.
    key_partition = {}
    for d in delivered:
        key_partition.setdefault(d.key(), set()).add(d.partition())
    for key, parts in key_partition.items():
        assert len(parts) == 1, f"key {key!r} went to several partitions: {parts}"

    sent_by_partition = defaultdict(list)
    for d in delivered:
        sent_by_partition[d.partition()].append((d.key(), d.value()))
    for p in set(sent_by_partition) | set(by_partition):
        got = [(m.key(), m.value()) for m in by_partition.get(p, [])]
        want = sent_by_partition.get(p, [])
        assert sorted(got, key=repr) == sorted(want, key=repr), f"partition {p}: content differs"
        # librdkafka delivers reports in order per partition, so order must match too.
        assert got == want, f"partition {p}: order differs"

    # Acked offsets (acks != 0) must be where the consumer finds the message.
    for d in delivered:
        if d.offset() is not None and d.offset() >= 0:
            m = by_partition[d.partition()][d.offset()]
            assert (m.key(), m.value()) == (d.key(), d.value()), \
                f"acked offset {d.partition()}/{d.offset()} holds another message"

    assert sorted(((m.key(), m.value()) for m in consumed), key=repr) == \
        sorted(((s[0], s[1]) for s in sent), key=repr)


def keyed_messages(n: int, keys: int = 10) -> list[tuple]:
    out = []
    for i in range(n):
        key = f"key-{i % keys}".encode()
        # Binary payloads: every byte value, varying length, including an empty value.
        value = bytes((i + j) % 256 for j in range(i % 300))
        out.append((key, value))
    return out


def error_of(future) -> KafkaError:
    with pytest.raises(KafkaException) as ei:
        future.result(TIMEOUT)
    return ei.value.args[0]


# ----------------------------------------------------------------------------- produce/consume


@pytest.mark.parametrize("acks", ["all", "1", "0"])
def test_keyed_produce_consume(bootstrap, topic_name, acks):
    admin = admin_client(bootstrap)
    topic = topic_name(f"acks{acks}")
    create_topic(admin, topic)
    sent = keyed_messages(300)
    delivered = produce_all(producer(bootstrap, acks=acks), topic, sent)
    if acks != "0":
        assert all(d.offset() >= 0 for d in delivered)
    consumed = consume_all(bootstrap, topic, PARTITIONS, len(sent))
    check_round_trip(sent, delivered, consumed)
    assert len({m.partition() for m in consumed}) > 1, "10 keys all landed in one partition"


def test_headers_timestamps_and_null_values(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    create_topic(admin, topic, partitions=1)
    p = producer(bootstrap, acks="all")
    ts0 = 1_700_000_000_000
    sent = [
        (b"k0", None, [("h1", b"v1"), ("h2", b"\x00\xff")]),
        (None, b"no key", None),
        (b"k2", b"", [("empty", b"")]),
        (b"k3", b"x" * 100_000, None),
    ]
    for i, (k, v, h) in enumerate(sent):
        p.produce(topic, key=k, value=v, headers=h, timestamp=ts0 + i)
    assert p.flush(TIMEOUT) == 0
    got = consume_all(bootstrap, topic, 1, len(sent))
    for i, (m, (k, v, h)) in enumerate(zip(got, sent)):
        assert m.offset() == i
        assert m.key() == k and m.value() == v
        assert (m.headers() or []) == (h or []), f"headers of offset {i}"
        assert m.timestamp() == (1, ts0 + i)  # TIMESTAMP_CREATE_TIME


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(bootstrap, topic_name, codec):
    admin = admin_client(bootstrap)
    topic = topic_name(codec)
    create_topic(admin, topic)
    sent = [(f"key-{i % 7}".encode(), (f"{codec} record {i} " * 20).encode()) for i in range(500)]
    sent += [(b"bin", bytes(range(256)) * 4)]
    delivered = produce_all(producer(bootstrap, acks="all", **{"compression.type": codec,
                                                               "linger.ms": 50}),
                            topic, sent)
    consumed = consume_all(bootstrap, topic, PARTITIONS, len(sent))
    check_round_trip(sent, delivered, consumed)


# ----------------------------------------------------------------------------- admin


def test_create_topic_replication_factor_3_gives_one_replica(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    create_topic(admin, topic, partitions=2, rf=3)
    md = admin.list_topics(topic, timeout=TIMEOUT)
    node_ids = list(md.brokers)
    assert len(node_ids) == 1
    parts = md.topics[topic].partitions
    assert sorted(parts) == [0, 1]
    for p in parts.values():
        assert p.leader == node_ids[0]
        assert p.replicas == [node_ids[0]]
        assert p.isrs == [node_ids[0]]


def test_create_topic_replication_factor_4_fails(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    fut = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=4)],
                              request_timeout=TIMEOUT)[topic]
    assert error_of(fut).code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert topic not in admin.list_topics(timeout=TIMEOUT).topics


@pytest.mark.parametrize("bad", ["bad name!", "a" * 250, ".."])
def test_create_topic_invalid_name_fails(bootstrap, bad):
    admin = admin_client(bootstrap)
    fut = admin.create_topics([NewTopic(bad, num_partitions=1, replication_factor=1)],
                              request_timeout=TIMEOUT)[bad]
    assert error_of(fut).code() == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION (17)


def test_create_existing_topic_fails(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    create_topic(admin, topic, partitions=1)
    fut = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                              request_timeout=TIMEOUT)[topic]
    assert error_of(fut).code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_create_partitions_grows_topic(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    create_topic(admin, topic, partitions=2)
    admin.create_partitions([NewPartitions(topic, 5)], request_timeout=TIMEOUT)[topic] \
        .result(TIMEOUT)
    wait_for_partitions(admin, topic, 5)
    # The new partitions take writes and reads.
    p = producer(bootstrap, acks="all")
    sent = [(None, f"p{i}".encode()) for i in range(5)]
    for i, (_, v) in enumerate(sent):
        p.produce(topic, value=v, partition=i)
    assert p.flush(TIMEOUT) == 0
    got = consume_all(bootstrap, topic, 5, 5)
    assert sorted((m.partition(), m.value()) for m in got) == \
        [(i, f"p{i}".encode()) for i in range(5)]
    # Shrinking is refused.
    err = error_of(admin.create_partitions([NewPartitions(topic, 3)],
                                           request_timeout=TIMEOUT)[topic])
    assert err.code() == KafkaError.INVALID_PARTITIONS


def describe_topic_config(admin: AdminClient, topic: str) -> dict:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)


def test_describe_configs(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    create_topic(admin, topic, partitions=1, config={"retention.bytes": "123456789"})
    cfg = describe_topic_config(admin, topic)
    for key in ("retention.ms", "retention.bytes", "segment.bytes", "cleanup.policy",
                "max.message.bytes"):
        assert key in cfg, f"{key} missing from DescribeConfigs: {sorted(cfg)}"
    assert int(cfg["retention.ms"].value) >= -1
    assert cfg["retention.bytes"].value == "123456789"
    assert not cfg["retention.bytes"].is_default


def test_incremental_alter_configs(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    create_topic(admin, topic, partitions=1)
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)
    cfg = describe_topic_config(admin, topic)
    assert cfg["retention.ms"].value == "3600000"
    assert not cfg["retention.ms"].is_default

    # DELETE goes back to the default.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    admin.incremental_alter_configs([res], request_timeout=TIMEOUT)[res].result(TIMEOUT)
    assert describe_topic_config(admin, topic)["retention.ms"].value != "3600000"

    # An unknown key is refused, and nothing changes.
    bad = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("no.such.config", "1", incremental_operation=AlterConfigOpType.SET)])
    err = error_of(admin.incremental_alter_configs([bad], request_timeout=TIMEOUT)[bad])
    assert err.code() == KafkaError.INVALID_CONFIG
    assert "no.such.config" not in describe_topic_config(admin, topic)


def test_delete_topics(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    create_topic(admin, topic, partitions=2)
    admin.delete_topics([topic], operation_timeout=10, request_timeout=TIMEOUT)[topic] \
        .result(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while topic in admin.list_topics(timeout=TIMEOUT).topics:
        assert time.monotonic() < deadline, f"{topic} still listed after delete"
        time.sleep(0.1)
    err = error_of(admin.delete_topics([topic], request_timeout=TIMEOUT)[topic])
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def produce_timestamped(bootstrap: str, topic: str, ts0: int, n: int) -> None:
    p = producer(bootstrap, acks="all")
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), partition=0, timestamp=ts0 + i * 1000)
    assert p.flush(TIMEOUT) == 0


def test_list_offsets_admin(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    create_topic(admin, topic, partitions=1)
    ts0 = 1_700_000_000_000
    produce_timestamped(bootstrap, topic, ts0, 10)
    tp = TopicPartition(topic, 0)

    def offset_of(spec):
        return admin.list_offsets({tp: spec}, request_timeout=TIMEOUT)[tp].result(TIMEOUT)

    assert offset_of(OffsetSpec.earliest()).offset == 0
    assert offset_of(OffsetSpec.latest()).offset == 10
    r = offset_of(OffsetSpec.max_timestamp())
    assert (r.offset, r.timestamp) == (9, ts0 + 9000)
    # First offset whose timestamp is >= the one asked for.
    assert offset_of(OffsetSpec.for_timestamp(ts0 + 3000)).offset == 3
    assert offset_of(OffsetSpec.for_timestamp(ts0 + 3500)).offset == 4
    assert offset_of(OffsetSpec.for_timestamp(ts0)).offset == 0
    # Past the newest timestamp: no such offset (-1).
    assert offset_of(OffsetSpec.for_timestamp(ts0 + 60_000)).offset == -1


def test_offsets_for_times_consumer(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    create_topic(admin, topic, partitions=1)
    ts0 = 1_700_000_000_000
    produce_timestamped(bootstrap, topic, ts0, 10)
    c = consumer(bootstrap)
    try:
        got = c.offsets_for_times([TopicPartition(topic, 0, ts0 + 5000)], timeout=TIMEOUT)
        assert got[0].error is None and got[0].offset == 5
        got = c.offsets_for_times([TopicPartition(topic, 0, ts0 + 99_000)], timeout=TIMEOUT)
        assert got[0].offset == -1
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (0, 10)
        # Seek by time and read from there.
        c.assign([TopicPartition(topic, 0, 7)])
        msgs, deadline = [], time.monotonic() + TIMEOUT
        while len(msgs) < 3 and time.monotonic() < deadline:
            msgs += [m for m in c.consume(10, 0.5) if m.error() is None]
        assert [(m.offset(), m.value(), m.timestamp()[1]) for m in msgs] == \
            [(i, f"v{i}".encode(), ts0 + i * 1000) for i in (7, 8, 9)]
    finally:
        c.close()


def test_delete_records_moves_low_watermark(bootstrap, topic_name):
    admin = admin_client(bootstrap)
    topic = topic_name()
    create_topic(admin, topic, partitions=2)
    p = producer(bootstrap, acks="all")
    for i in range(20):
        p.produce(topic, value=f"m{i}".encode(), partition=i % 2)
    assert p.flush(TIMEOUT) == 0

    tp0 = TopicPartition(topic, 0, 4)
    res = admin.delete_records([tp0], request_timeout=TIMEOUT)
    deleted = res[next(iter(res))].result(TIMEOUT)
    assert deleted.low_watermark == 4
    c = consumer(bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT) == (4, 10)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=TIMEOUT) == (0, 10)
    finally:
        c.close()
    tp = TopicPartition(topic, 0)
    assert admin.list_offsets({tp: OffsetSpec.earliest()}, request_timeout=TIMEOUT)[tp] \
        .result(TIMEOUT).offset == 4
    # Reading from the beginning now starts at offset 4.
    got = consume_all(bootstrap, topic, 2, 16)
    p0 = [(m.offset(), m.value()) for m in got if m.partition() == 0]
    assert p0 == [(i, f"m{2 * i}".encode()) for i in range(4, 10)]

    # Deleting past the high watermark is refused.
    res = admin.delete_records([TopicPartition(topic, 1, 11)], request_timeout=TIMEOUT)
    err = error_of(res[next(iter(res))])
    assert err.code() == KafkaError.OFFSET_OUT_OF_RANGE
