"""kafka-python (pure Python protocol implementation, strict decoding) against Courier.

kafka-python negotiates versions with ApiVersions and decodes every response field strictly, so
a response whose shape does not match its version fails here even where librdkafka shrugs.
Consumers here read partitions directly (group_id=None, assign() + seek); consumer groups are in
test_consumer_groups.py. No idempotence (not offered by Courier yet).
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

TIMEOUT = 15.0
PARTITIONS = 3


@pytest.fixture(scope="module")
def admin(bootstrap):
    a = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="courier-compat-admin",
                         request_timeout_ms=int(TIMEOUT * 1000))
    yield a
    a.close()


def create_topic(admin: KafkaAdminClient, name: str, partitions: int = PARTITIONS,
                 rf: int = 1) -> None:
    admin.create_topics({name: {"num_partitions": partitions, "replication_factor": rf}},
                        timeout_ms=10_000)
    wait_for_partitions(admin, name, partitions)


def partition_ids(admin: KafkaAdminClient, name: str) -> list[int]:
    (t,) = admin.describe_topics([name])
    if t["error_code"] != 0:
        return []
    return sorted(p["partition_index"] for p in t["partitions"])


def wait_for_partitions(admin: KafkaAdminClient, name: str, partitions: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while partition_ids(admin, name) != list(range(partitions)):
        if time.monotonic() > deadline:
            pytest.fail(f"{name} never showed {partitions} partitions")
        time.sleep(0.1)


def producer(bootstrap: str, **extra) -> KafkaProducer:
    conf = dict(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5,
                request_timeout_ms=int(TIMEOUT * 1000), retries=0)
    conf.update(extra)
    return KafkaProducer(**conf)


def produce_all(p: KafkaProducer, topic: str, messages: list[tuple]) -> list:
    """Sends (key, value) pairs; returns (key, value, RecordMetadata) in send order."""
    futures = [(k, v, p.send(topic, key=k, value=v)) for k, v in messages]
    p.flush(timeout=TIMEOUT)
    out = [(k, v, f.get(timeout=TIMEOUT)) for k, v, f in futures]
    p.close(timeout=5)
    return out


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int, **extra) -> list:
    """assign() + seek_to_beginning(); reads until `expected` records arrived and every
    partition's position reached its end offset."""
    conf = dict(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", request_timeout_ms=int(TIMEOUT * 1000) + 5000)
    conf.update(extra)
    c = KafkaConsumer(**conf)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        c.seek_to_beginning()
        end = c.end_offsets(tps)
        records = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            for batch in c.poll(timeout_ms=500).values():
                records.extend(batch)
            if len(records) >= expected and all(c.position(tp) >= end[tp] for tp in tps):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"consumed {len(records)}/{expected} from {topic}; end offsets "
                            f"{ {tp.partition: o for tp, o in end.items()} }")
        assert len(records) == expected, f"expected {expected} records, got {len(records)}"
        return records
    finally:
        c.close()


def check_round_trip(sent: list[tuple], consumed: list, acked: bool = True) -> None:
    by_partition = defaultdict(list)
    for r in consumed:
        by_partition[r.partition].append(r)
    for p, rs in by_partition.items():
        assert [r.offset for r in rs] == list(range(len(rs))), \
            f"partition {p}: offsets {[r.offset for r in rs][:20]}"

    key_partitions = defaultdict(set)
    sent_by_partition = defaultdict(list)
    for k, v, md in sent:
        key_partitions[k].add(md.partition)
        sent_by_partition[md.partition].append((k, v))
        if acked:  # with acks=0 kafka-python makes up offsets (-1 + index in batch)
            r = by_partition[md.partition][md.offset]
            assert (r.key, r.value) == (k, v), f"acked {md.partition}/{md.offset} differs"
    for k, parts in key_partitions.items():
        assert len(parts) == 1, f"key {k!r} in several partitions: {parts}"
    for p in set(sent_by_partition) | set(by_partition):
        got = [(r.key, r.value) for r in by_partition.get(p, [])]
        assert got == sent_by_partition.get(p, []), f"partition {p}: content or order differs"


def keyed_messages(n: int, keys: int = 10) -> list[tuple]:
    return [(f"key-{i % keys}".encode(), bytes((i + j) % 256 for j in range(i % 300)))
            for i in range(n)]


@pytest.mark.parametrize("acks", ["all", 1, 0])
def test_keyed_produce_consume(bootstrap, admin, topic_name, acks):
    topic = topic_name(f"acks{acks}")
    create_topic(admin, topic)
    msgs = keyed_messages(300)
    sent = produce_all(producer(bootstrap, acks=acks), topic, msgs)
    if acks != 0:
        assert all(md.offset >= 0 for _, _, md in sent)
    consumed = consume_all(bootstrap, topic, PARTITIONS, len(msgs))
    check_round_trip(sent, consumed, acked=acks != 0)
    assert len({r.partition for r in consumed}) > 1


def test_headers_and_timestamps(bootstrap, admin, topic_name):
    topic = topic_name()
    create_topic(admin, topic, partitions=1)
    p = producer(bootstrap, acks="all")
    ts0 = 1_700_000_000_000
    p.send(topic, key=b"k", value=b"v", headers=[("h", b"\x00\x01"), ("e", b"")],
           timestamp_ms=ts0).get(TIMEOUT)
    p.send(topic, key=b"tombstone", value=None, timestamp_ms=ts0 + 1).get(TIMEOUT)
    p.close(timeout=5)
    r0, r1 = consume_all(bootstrap, topic, 1, 2)
    assert (r0.key, r0.value, list(r0.headers), r0.timestamp) == \
        (b"k", b"v", [("h", b"\x00\x01"), ("e", b"")], ts0)
    assert (r1.key, r1.value, r1.timestamp) == (b"tombstone", None, ts0 + 1)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_round_trip(bootstrap, admin, topic_name, codec):
    topic = topic_name(codec)
    create_topic(admin, topic)
    msgs = [(f"key-{i % 7}".encode(), (f"{codec} record {i} " * 20).encode())
            for i in range(500)]
    sent = produce_all(producer(bootstrap, acks="all", compression_type=codec, linger_ms=50),
                       topic, msgs)
    check_round_trip(sent, consume_all(bootstrap, topic, PARTITIONS, len(msgs)))


def test_offsets_lookup(bootstrap, admin, topic_name):
    """beginning/end offsets and offsets_for_times, all via ListOffsets."""
    topic = topic_name()
    create_topic(admin, topic, partitions=1)
    ts0 = 1_700_000_000_000
    p = producer(bootstrap, acks="all")
    for i in range(10):
        p.send(topic, value=f"v{i}".encode(), partition=0, timestamp_ms=ts0 + i * 1000)
    p.flush(TIMEOUT)
    p.close(timeout=5)
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 10}
        found = c.offsets_for_times({tp: ts0 + 3500})[tp]
        assert (found.offset, found.timestamp) == (4, ts0 + 4000)
        assert c.offsets_for_times({tp: ts0 + 99_000})[tp] is None
    finally:
        c.close()


def test_admin_create_and_delete_topics(bootstrap, admin, topic_name):
    topic = topic_name()
    create_topic(admin, topic, partitions=2)
    assert topic in admin.list_topics()
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    admin.delete_topics([topic], timeout_ms=10_000)
    deadline = time.monotonic() + TIMEOUT
    while topic in admin.list_topics():
        assert time.monotonic() < deadline, f"{topic} still listed after delete"
        time.sleep(0.1)
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([topic])


def test_admin_replication_factor(bootstrap, admin, topic_name):
    ok = topic_name("rf3")
    create_topic(admin, ok, partitions=1, rf=3)
    (t,) = admin.describe_topics([ok])
    assert [len(p["replica_nodes"]) for p in t["partitions"]] == [1]
    bad = topic_name("rf4")
    with pytest.raises(InvalidReplicationFactorError):
        admin.create_topics({bad: {"num_partitions": 1, "replication_factor": 4}})


def test_admin_invalid_topic_name(admin):
    with pytest.raises(InvalidTopicError):
        admin.create_topics({"bad name!": {"num_partitions": 1, "replication_factor": 1}})


def test_admin_create_partitions(bootstrap, admin, topic_name):
    topic = topic_name()
    create_topic(admin, topic, partitions=1)
    admin.create_partitions({topic: 4})
    wait_for_partitions(admin, topic, 4)
    with pytest.raises(InvalidPartitionsError):
        admin.create_partitions({topic: 2})


def test_admin_describe_configs(bootstrap, admin, topic_name):
    from kafka.admin import ConfigResource, ConfigResourceType

    topic = topic_name()
    create_topic(admin, topic, partitions=1)
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                 config_filter="all")
    cfg = res["topic"][topic]
    assert "retention.ms" in cfg and "cleanup.policy" in cfg, sorted(cfg)


@pytest.mark.parametrize("api_version", [
    (0, 11),
    (1, 1),
    (2, 0),
    (2, 1),
    (2, 8),
], ids=lambda v: "kafka-" + ".".join(map(str, v)))
def test_old_protocol_versions(bootstrap, admin, topic_name, api_version):
    """A client pinned to an older Kafka release uses that release's request versions
    (e.g. 0.11: Produce v3, Fetch v5-6, ListOffsets v2, Metadata v4). ListOffsets v1-v3 have no
    leader_epoch: setting it made every such response fail to encode (found by this test)."""
    topic = topic_name()
    create_topic(admin, topic, partitions=2)
    msgs = keyed_messages(50, keys=5)
    sent = produce_all(producer(bootstrap, acks="all", api_version=api_version), topic, msgs)
    consumed = consume_all(bootstrap, topic, 2, len(msgs), api_version=api_version,
                           request_timeout_ms=3000)
    check_round_trip(sent, consumed)


@pytest.mark.parametrize("api_version", [(0, 11), (1, 1), (2, 0), (2, 1)],
                         ids=lambda v: "kafka-" + ".".join(map(str, v)))
def test_old_protocol_versions_without_list_offsets(bootstrap, admin, topic_name, api_version):
    """The same as above, but consuming from an explicit offset 0, so no ListOffsets is sent:
    old Produce, Fetch and Metadata versions on their own."""
    topic = topic_name()
    create_topic(admin, topic, partitions=2)
    msgs = keyed_messages(50, keys=5)
    sent = produce_all(producer(bootstrap, acks="all", api_version=api_version), topic, msgs)
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      api_version=api_version, request_timeout_ms=5000)
    try:
        tps = [TopicPartition(topic, p) for p in range(2)]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        records, deadline = [], time.monotonic() + TIMEOUT
        while len(records) < len(msgs) and time.monotonic() < deadline:
            for batch in c.poll(timeout_ms=500).values():
                records.extend(batch)
        for batch in c.poll(timeout_ms=300).values():  # nothing more may come
            records.extend(batch)
    finally:
        c.close()
    check_round_trip(sent, records)
