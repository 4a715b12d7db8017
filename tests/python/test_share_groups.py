"""Share groups (KIP-932, "queues for Kafka") against Courier with confluent-kafka's
ShareConsumer: records shared by the members of a group, each processed by exactly one of
them; RELEASE, REJECT and the delivery limit, with dead letters; a consumer SIGKILLed while
it holds records (its acquisition locks run out and another member gets them, their delivery
count showing the first delivery); and a broker SIGKILLed with records in flight (after the
restart nothing accepted comes back and nothing else is lost).

Consumers that must be SIGKILLed run as their own processes (share_worker.py).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import helpers
from helpers import wait_until
from confluent_kafka import (OFFSET_BEGINNING, AcknowledgeType, Consumer, Producer,
                             ShareConsumer, TopicPartition)
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, ResourceType)

WORKER = Path(__file__).with_name("share_worker.py")
TIMEOUT = 20.0


def set_group_config(bootstrap: str, group: str, **configs: str) -> None:
    """IncrementalAlterConfigs SET on the group's settings (resource type GROUP); then checks
    DescribeConfigs shows them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entries = [ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
               for name, value in configs.items()]
    for f in admin.incremental_alter_configs(
            [ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)]).values():
        f.result(TIMEOUT)
    described = {}
    for f in admin.describe_configs([ConfigResource(ResourceType.GROUP, group)]).values():
        described = {name: e.value for name, e in f.result(TIMEOUT).items()}
    for name, value in configs.items():
        assert described.get(name) == value, f"{name}: described as {described.get(name)!r}"


def produce(bootstrap: str, topic: str, values: list[str]) -> dict[str, int]:
    """Produces keyed values to partition 0; returns value -> offset."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    placed, errors = {}, []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            placed[msg.value().decode()] = msg.offset()

    for v in values:
        p.produce(topic, key=f"k-{v}".encode(), value=v.encode(), partition=0,
                  on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(TIMEOUT) == 0
    assert not errors, errors[:5]
    assert len(placed) == len(values)
    return placed


def share_consumer(bootstrap: str, group: str, topic: str, **conf) -> ShareConsumer:
    sc = ShareConsumer({"bootstrap.servers": bootstrap, "group.id": group, **conf})
    sc.subscribe([topic])
    return sc


def read_topic(bootstrap: str, topic: str, count: int) -> list:
    """The first `count` records of partition 0 of `topic`, with a plain consumer."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(out) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                out.append(m)
    finally:
        c.close()
    assert len(out) == count, f"{topic}: {len(out)} of {count} records"
    return out


class Worker:
    """One share_worker.py process and what it reported."""

    def __init__(self, tmp: Path, name: str, bootstrap: str, topic: str, group: str,
                 accept: int = 0):
        self.out = tmp / f"{name}.out"
        self.err = tmp / f"{name}.stderr"
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), "--bootstrap", bootstrap, "--topic", topic,
                 "--group", group, "--out", str(self.out), "--accept", str(accept)],
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)

    def lines(self) -> list[str]:
        try:
            return self.out.read_text().split("\n")[:-1]
        except FileNotFoundError:
            return []

    def holding(self) -> bool:
        return "H" in self.lines()

    def received(self) -> dict[str, int]:
        """value -> delivery count."""
        return {parts[3]: int(parts[2]) for parts in
                (line.split(" ", 3) for line in self.lines() if line.startswith("R "))}

    def accepted(self) -> set[int]:
        return {int(line[2:]) for line in self.lines() if line.startswith("C ")}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT)

    def describe(self) -> str:
        return f"lines={self.lines()[-5:]} stderr={self.err.read_text(errors='replace')[-800:]}"


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def start(*args, **kwargs) -> Worker:
        w = Worker(tmp_path, *args, **kwargs)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()


def drain(sc: ShareConsumer, want: int, timeout: float = TIMEOUT,
          ack=lambda m: AcknowledgeType.ACCEPT) -> list:
    """Polls (explicit mode) until `want` records arrived, acknowledging each with ack(m);
    returns them."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        for m in sc.poll(0.5):
            assert not m.error(), m.error()
            got.append(m)
            sc.acknowledge(m, ack(m))
    return got


def test_members_of_a_share_group_each_process_different_records(bootstrap, topic_name):
    topic, group = topic_name("work"), topic_name("g")
    helpers.create_topic(bootstrap, topic, 1, TIMEOUT)
    set_group_config(bootstrap, group, **{"share.auto.offset.reset": "earliest"})
    values = [f"job-{i}" for i in range(300)]
    got: dict[int, list[tuple[str, int]]] = {0: [], 1: [], 2: []}
    done = threading.Event()
    errors = []

    def member(n: int) -> None:
        # Implicit mode: what one poll() returned is ACCEPTed by the next poll() (or close()).
        # Small polls so that every member gets a share of the one partition.
        sc = share_consumer(bootstrap, group, topic, **{"max.poll.records": 10})
        try:
            while not done.is_set():
                for m in sc.poll(0.5):
                    if m.error():
                        errors.append(str(m.error()))
                    else:
                        got[n].append((m.value().decode(), m.delivery_count()))
                        time.sleep(0.002)  # "processing"
        finally:
            sc.close()

    threads = [threading.Thread(target=member, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        produce(bootstrap, topic, values)
        wait_until(lambda: sum(len(v) for v in got.values()) >= len(values), TIMEOUT,
                   lambda: f"300 records, got {[len(v) for v in got.values()]}")
        time.sleep(1.0)  # anything delivered twice would show up now
    finally:
        done.set()
        for t in threads:
            t.join(TIMEOUT)
    assert not errors, errors[:5]
    counts = Counter(v for records in got.values() for v, _ in records)
    assert set(counts) == set(values), f"missing: {sorted(set(values) - set(counts))[:10]}"
    assert [v for v, c in counts.items() if c > 1] == [], "a record was processed twice"
    assert all(dc == 1 for records in got.values() for _, dc in records)
    assert sum(1 for records in got.values() if records) > 1, \
        f"only one member got records: {[len(v) for v in got.values()]}"


def test_release_redelivers_reject_and_the_delivery_limit_dead_letter(bootstrap, topic_name):
    topic, group = topic_name("work"), topic_name("g")
    helpers.create_topic(bootstrap, topic, 1, TIMEOUT)
    set_group_config(bootstrap, group, **{"share.auto.offset.reset": "earliest",
                                          "share.delivery.count.limit": "3"})
    placed = produce(bootstrap, topic, ["ok-1", "retry-1", "bad-1", "ok-2"])
    sc = share_consumer(bootstrap, group, topic, **{"share.acknowledgement.mode": "explicit"})
    seen: list[tuple[str, int]] = []

    def ack(m):
        v = m.value().decode()
        return {"ok": AcknowledgeType.ACCEPT, "retry": AcknowledgeType.RELEASE,
                "bad": AcknowledgeType.REJECT}[v.split("-")[0]]

    try:
        deadline = time.monotonic() + TIMEOUT
        # Three deliveries of retry-1 (the limit), then a while longer to see nothing else.
        while time.monotonic() < deadline:
            batch = drain(sc, 1, timeout=1.0, ack=ack)
            seen += [(m.value().decode(), m.delivery_count()) for m in batch]
            if batch:
                results = sc.commit_sync(timeout=TIMEOUT)
                assert all(e is None for e in results.values()), results
            if ("retry-1", 3) in seen and not batch:
                break
        for _ in range(4):
            assert drain(sc, 1, timeout=0.5) == [], "an archived record came back"
    finally:
        sc.close()
    assert sorted(dc for v, dc in seen if v == "retry-1") == [1, 2, 3], seen
    assert [dc for v, dc in seen if v == "bad-1"] == [1], "a rejected record came back"
    assert [dc for v, dc in seen if v.startswith("ok")] == [1, 1], seen

    dead = read_topic(bootstrap, f"{group}.dlq", 2)
    by_value = {m.value().decode(): dict(m.headers()) for m in dead}
    assert set(by_value) == {"bad-1", "retry-1"}
    for value, reason, count in [("bad-1", b"rejected", b"1"),
                                 ("retry-1", b"delivery-limit", b"3")]:
        h = by_value[value]
        assert h["courier-dlq-topic"] == topic.encode()
        assert h["courier-dlq-partition"] == b"0"
        assert h["courier-dlq-offset"] == str(placed[value]).encode()
        assert h["courier-dlq-delivery-count"] == count
        assert h["courier-dlq-reason"] == reason
    assert {m.key() for m in dead} == {b"k-bad-1", b"k-retry-1"}


def test_records_of_a_killed_consumer_come_back_when_their_lock_ends(
        bootstrap, topic_name, workers):
    topic, group = topic_name("work"), topic_name("g")
    helpers.create_topic(bootstrap, topic, 1, TIMEOUT)
    set_group_config(bootstrap, group, **{"share.auto.offset.reset": "earliest",
                                          "share.record.lock.duration.ms": "2000"})
    values = [f"job-{i}" for i in range(10)]
    produce(bootstrap, topic, values)
    w = workers("doomed", bootstrap, topic, group)
    wait_until(w.holding, TIMEOUT, lambda: f"the worker to hold records: {w.describe()}")
    held = w.received()
    assert held and all(dc == 1 for dc in held.values()), held
    w.kill()

    sc = share_consumer(bootstrap, group, topic, **{"share.acknowledgement.mode": "explicit"})
    try:
        got = drain(sc, len(values))
        sc.commit_sync(timeout=TIMEOUT)
    finally:
        sc.close()
    delivered = {m.value().decode(): m.delivery_count() for m in got}
    assert sorted(delivered) == sorted(values), f"missing {set(values) - set(delivered)}"
    assert len(got) == len(values), "a record was delivered twice to the survivor"
    for v, dc in delivered.items():
        assert dc == (2 if v in held else 1), f"{v}: delivery count {dc}"


def test_a_broker_crash_loses_no_record_and_brings_back_no_accepted_one(
        start_broker, topic_name, workers):
    b = start_broker()
    topic, group = topic_name("work"), topic_name("g")
    helpers.create_topic(b.bootstrap, topic, 1, TIMEOUT)
    set_group_config(b.bootstrap, group, **{"share.auto.offset.reset": "earliest"})
    values = [f"job-{i}" for i in range(20)]
    placed = produce(b.bootstrap, topic, values)
    w = workers("inflight", b.bootstrap, topic, group, accept=5)
    wait_until(w.holding, TIMEOUT, lambda: f"the worker to hold records: {w.describe()}")
    received, accepted = w.received(), w.accepted()
    assert len(received) == len(values), w.describe()
    assert len(accepted) == 5, w.describe()

    b.restart()  # SIGKILL with 15 records acquired and not acknowledged
    w.kill()

    sc = share_consumer(b.bootstrap, group, topic, **{"share.acknowledgement.mode": "explicit"})
    try:
        got = drain(sc, len(values) - len(accepted))
        sc.commit_sync(timeout=TIMEOUT)
        assert drain(sc, 1, timeout=2.0) == [], "a record came back after being accepted"
    finally:
        sc.close()
    offsets = {m.offset(): m.delivery_count() for m in got}
    assert len(got) == len(offsets), "a record was delivered twice after the restart"
    assert set(offsets) == set(placed.values()) - accepted, \
        f"lost: {set(placed.values()) - accepted - set(offsets)}, back: {set(offsets) & accepted}"
    assert all(dc == 2 for dc in offsets.values()), \
        f"the delivery before the crash is not counted: {offsets}"
