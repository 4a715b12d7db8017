"""Exactly-once processing against Courier: the idempotent, transactional producer
(InitProducerId with a transactional.id, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
EndTxn), read_committed fetches (last stable offset, aborted-transaction lists) and zombie
fencing, with real clients.

The copier (txn_copier.py) is a read-process-write loop run as its own process: it consumes an
input topic in a consumer group with isolation.level=read_committed and, per batch, writes one
output record per input record and commits the batch's input offsets in the same transaction.
The tests SIGKILL it at random points (each replacement uses the same transactional.id, so its
init_transactions() fences the dead one and aborts its open transaction), SIGKILL and restart the
broker once mid-run, and make it abort some transactions on purpose; a read_committed reader
of the output must then see every input value exactly once, in per-key order.

Covered for both confluent-kafka (librdkafka) and kafka-python; plus read_committed vs
read_uncommitted visibility of an aborted transaction, and fencing of a live zombie producer.
Kill points are random; each run prints its EXACTLY_ONCE_SEED, which reproduces them when set
in the environment.

The confluent-kafka copier sets metadata.recovery.strategy=none: with librdkafka's default
re-bootstrap, a single broker's restart leaves send_offsets_to_transaction() hanging
(confluentinc/librdkafka#5511), a client bug, not a broker one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import helpers
from helpers import wait_until
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# Fast group timings for tests: a short initial-rebalance delay and a low session-timeout floor.
BROKER_FLAGS = ("--group-initial-rebalance-delay-ms", "300",
                "--group-min-session-timeout-ms", "1000")
COPIER = Path(__file__).with_name("txn_copier.py")
TIMEOUT = 20.0
PARTITIONS = 3
ALL = set(range(PARTITIONS))
KEYS = 24


# ----------------------------------------------------------------------------- helpers


def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    helpers.create_topic(bootstrap, name, partitions, TIMEOUT)


def produce_keyed(bootstrap: str, topic: str, count: int):
    """Produces `count` keyed values with a plain (non-idempotent) acks=all producer, one at a
    time in order per key. Returns (values in production order, value -> key,
    value -> (partition, offset))."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "acks": "all",
                  "linger.ms": 5, "max.in.flight.requests.per.connection": 1,
                  "message.timeout.ms": 15000})
    values = [f"{topic}-{i:05d}" for i in range(count)]
    keys = {v: f"k{i % KEYS:02d}" for i, v in enumerate(values)}
    placed, errors = {}, []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            placed[msg.value().decode()] = (msg.partition(), msg.offset())

    for v in values:
        p.produce(topic, key=keys[v].encode(), value=v.encode(), on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(TIMEOUT) == 0, f"messages still undelivered after {TIMEOUT}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert len(placed) == count
    return values, keys, placed


def end_offsets(placed: dict[str, tuple[int, int]]) -> dict[int, int]:
    ends = {p: 0 for p in ALL}
    for p, o in placed.values():
        ends[p] = max(ends[p], o + 1)
    return ends


def read_all(bootstrap: str, topic: str, isolation: str, partitions: int = PARTITIONS,
             timeout: float = TIMEOUT):
    """Reads the whole topic from the beginning with the given isolation.level until every
    partition reports EOF (for read_committed: the last stable offset). Returns a list of
    (partition, offset, key, value) in per-partition order."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-reader",
                  "isolation.level": isolation, "enable.auto.commit": False,
                  "enable.partition.eof": True, "fetch.wait.max.ms": 100})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, eof = [], set()
    deadline = time.monotonic() + timeout
    try:
        while eof != set(range(partitions)):
            if time.monotonic() > deadline:
                pytest.fail(f"{isolation} reader of {topic}: no EOF on partitions "
                            f"{sorted(set(range(partitions)) - eof)} within {timeout:.0f}s "
                            f"({len(got)} records read)")
            for m in c.consume(num_messages=500, timeout=0.2):
                err = m.error()
                if err is None:
                    got.append((m.partition(), m.offset(),
                                m.key().decode() if m.key() is not None else None,
                                m.value().decode()))
                    eof.discard(m.partition())
                elif err.code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                else:
                    pytest.fail(f"{isolation} reader of {topic}: {err}")
    finally:
        c.close()
    return got


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (OffsetFetch, require_stable); 0 where
    nothing is committed."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in sorted(ALL)], timeout=TIMEOUT)
    finally:
        c.close()
    out = {}
    for tp in tps:
        assert tp.error is None, f"OffsetFetch {group} {topic}[{tp.partition}]: {tp.error}"
        out[tp.partition] = max(tp.offset, 0)
    return out


class Copier:
    """One txn_copier.py process and its event file."""

    def __init__(self, name: str, path: Path, argv: list[str]):
        self.name = name
        self.path = path
        self.stderr_path = path.with_suffix(".stderr")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)

    def lines(self) -> list[str]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        # A line is only complete once its newline is written.
        return text.split("\n")[:-1]

    def events(self, kind: str) -> list[str]:
        return [line for line in self.lines() if line.startswith(kind + " ") or line == kind]

    def committed(self) -> dict[int, int]:
        """Next offsets per partition of its acknowledged transaction commits."""
        out: dict[int, int] = {}
        for line in self.events("T"):
            for kv in line.split(" ")[2].split(","):
                p, o = kv.split(":")
                out[int(p)] = max(out.get(int(p), 0), int(o))
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT)

    def stop(self, timeout: float = TIMEOUT) -> None:
        """SIGTERM: the copier finishes its transaction, closes its clients and exits; fails
        unless it does so cleanly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"copier {self.name} did not exit within {timeout}s of SIGTERM\n"
                        f"{self.describe()}")
        assert code == 0 and "X" in self.lines(), \
            f"copier {self.name} did not stop cleanly (exit {code})\n{self.describe()}"

    def describe(self) -> str:
        try:
            stderr = self.stderr_path.read_text(errors="replace").splitlines()[-60:]
        except FileNotFoundError:
            stderr = []
        notes = [line for line in self.lines() if line[:1] in "ERF"]
        tail = "\n    ".join(stderr)
        return (f"[{self.name}] exit={self.proc.poll()} started={bool(self.events('S'))} "
                f"commits={len(self.events('T'))} aborts={len(self.events('B'))} "
                f"committed={self.committed()} last notes={notes[-4:]} stderr tail:\n    {tail}")


@pytest.fixture
def spawn_copier(tmp_path):
    """spawn_copier(name, bootstrap, input, output, group, txn_id, **options) -> Copier; options
    map to txn_copier.py flags. Leftover copiers are killed when the test ends."""
    started: list[Copier] = []

    def start(name, bootstrap, input_topic, output_topic, group, txn_id, **options) -> Copier:
        path = tmp_path / f"{name}.events"
        argv = [sys.executable, str(COPIER), "--bootstrap", bootstrap, "--input", input_topic,
                "--output", output_topic, "--group", group, "--txn-id", txn_id,
                "--out", str(path), "--client-id", name]
        for k, v in options.items():
            argv += [f"--{k.replace('_', '-')}", str(v)]
        c = Copier(name, path, argv)
        started.append(c)
        return c

    yield start
    for c in started:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()


def merged_progress(copiers: list[Copier]) -> dict[int, int]:
    out = {p: 0 for p in ALL}
    for c in copiers:
        for p, o in c.committed().items():
            out[p] = max(out[p], o)
    return out


# ----------------------------------------------------------------------------- copier + crashes


def run_copier_with_crashes(broker, topic_name, spawn_copier, client: str, count: int,
                            kills: int, record_delay_ms: float, seed: int | None = None):
    """Copies `count` keyed records from a 3-partition input to a 3-partition output with
    txn_copier.py processes (same group, same transactional.id), SIGKILLing the running copier
    `kills` times and the broker once (SIGKILL + restart) at random points of the progress,
    then checks the output: read_committed == input exactly, per-key order, keys kept, the
    group's committed offsets at the input's ends; read_uncommitted sees the aborted copies."""
    if seed is None:
        seed = int(os.environ.get("EXACTLY_ONCE_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    bootstrap = broker.bootstrap
    src = topic_name(f"{client}-in")
    dst = topic_name(f"{client}-out")
    create_topic(bootstrap, src)
    create_topic(bootstrap, dst)
    group = f"{src}-g"
    txn_id = f"{src}-txn"
    values, keys, placed = produce_keyed(bootstrap, src, count)
    ends = end_offsets(placed)

    # Kill points: fractions of the input committed, one in each of `kills` equal slices of
    # [0.1, 0.85]; the broker restart lands between the 2nd and 3rd kill.
    lo, hi = 0.1, 0.85
    width = (hi - lo) / kills
    kill_at = [lo + width * (i + rng.uniform(0.15, 0.85)) for i in range(kills)]
    restart_at = (kill_at[1] + kill_at[2]) / 2 if kills >= 3 else 0.5
    print(f"{client} (EXACTLY_ONCE_SEED={seed}): kill points "
          f"{[round(k, 3) for k in kill_at]}, broker restart at "
          f"{restart_at:.3f} of {count} records")

    opts = dict(client=client, batch=20, abort_fraction=0.1, record_delay_ms=record_delay_ms,
                session_timeout_ms=2500, heartbeat_interval_ms=300)
    copiers: list[Copier] = []
    unexpected_exits: list[str] = []

    def spawn(reason: str) -> Copier:
        c = spawn_copier(f"{client}-copier{len(copiers)}", bootstrap, src, dst, group, txn_id,
                         seed=rng.randrange(1 << 30), **opts)
        copiers.append(c)
        print(f"  started {c.name} ({reason})")
        return c

    def done() -> int:
        return sum(merged_progress(copiers).values())

    def state() -> str:
        return (f"progress {merged_progress(copiers)} of {ends}\n" +
                "\n".join(c.describe() for c in copiers))

    current = spawn("first")
    restarted = False
    pending_kills = list(kill_at)
    deadline = time.monotonic() + 80
    last_progress, last_change = -1, time.monotonic()
    while True:
        now_done = done()
        if merged_progress(copiers) == ends:
            break
        now = time.monotonic()
        if now_done != last_progress:
            last_progress, last_change = now_done, now
        if now > deadline or now - last_change > 40:
            if current.proc.poll() is None:  # its thread stacks, for the failure message
                current.proc.send_signal(signal.SIGUSR1)
                time.sleep(0.5)
            pytest.fail(f"copying stalled or too slow ({now_done}/{count} committed, no "
                        f"progress for {now - last_change:.0f}s):\n{state()}")
        if current.proc.poll() is not None:
            unexpected_exits.append(f"{current.name} exit {current.proc.returncode}: "
                                    f"{current.events('F')[-1:]}")
            if len(unexpected_exits) > 3:
                pytest.fail(f"copiers keep exiting on their own: {unexpected_exits}\n{state()}")
            current = spawn(f"the previous one exited with {current.proc.returncode}")
            continue
        if not restarted and now_done >= restart_at * count:
            time.sleep(rng.uniform(0, 0.15))
            broker.restart()
            restarted = True
            print(f"  broker SIGKILLed and restarted at ~{done()}/{count} committed")
            continue
        if pending_kills and now_done >= pending_kills[0] * count:
            pending_kills.pop(0)
            time.sleep(rng.uniform(0, 0.15))
            current.kill()
            print(f"  SIGKILLed {current.name} at ~{done()}/{count} committed")
            current = spawn("replacing the killed one")
            continue
        time.sleep(0.02)
    current.stop()
    assert restarted and not pending_kills, \
        f"copying finished before every crash was injected: {pending_kills}\n{state()}"

    # The group's committed offsets (through TxnOffsetCommit) are exactly the input's ends.
    committed = committed_offsets(bootstrap, group, src)
    assert committed == ends, f"group {group} committed {committed}, input ends {ends}"

    # read_committed: every input value exactly once.
    rc = read_all(bootstrap, dst, "read_committed")
    expected = Counter(f"copy:{v}" for v in values)
    got = Counter(v for _, _, _, v in rc)
    dups = sorted(v for v, n in got.items() if n > 1)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not dups and not missing and not extra, \
        (f"read_committed output != input: {len(dups)} duplicated (e.g. {dups[:5]}), "
         f"{len(missing)} missing (e.g. {missing[:5]}), {len(extra)} unknown "
         f"(e.g. {extra[:5]}); {len(rc)} records for {count} inputs\n{state()}")

    # Keys carried over, and per key the output order is the input order.
    out_by_key = defaultdict(list)
    for p, o, k, v in rc:
        src_value = v[len("copy:"):]
        assert k == keys[src_value], \
            f"output {v} at {p}/{o} has key {k}, the input had {keys[src_value]}"
        out_by_key[k].append(src_value)
    in_by_key = defaultdict(list)
    for v in sorted(values, key=lambda v: placed[v]):
        in_by_key[keys[v]].append(v)
    for k in in_by_key:
        if out_by_key[k] != in_by_key[k]:
            first_diff = next(i for i, (a, b) in enumerate(zip(out_by_key[k], in_by_key[k]))
                              if a != b)
            pytest.fail(f"key {k}: output order differs from input order at position "
                        f"{first_diff}: {out_by_key[k][first_diff:first_diff + 5]} vs "
                        f"{in_by_key[k][first_diff:first_diff + 5]}")
    # Per input partition, within each output partition, input offsets only go up.
    seen = defaultdict(lambda: -1)
    for p, o, _, v in rc:
        ip, io = placed[v[len("copy:"):]]
        assert io > seen[(p, ip)], \
            f"output partition {p} has input {ip}/{io} after input {ip}/{seen[(p, ip)]}"
        seen[(p, ip)] = io

    # read_uncommitted sees the aborted copies too: at least those of the deliberate aborts,
    # which the copier flushed (acks=all) before aborting.
    aborted = sum(int(line.split(" ")[1]) for c in copiers for line in c.events("B"))
    ru = read_all(bootstrap, dst, "read_uncommitted")
    assert len(ru) >= len(rc) + aborted, \
        (f"read_uncommitted read {len(ru)} records, fewer than read_committed's {len(rc)} plus "
         f"the {aborted} of deliberately aborted transactions")
    unknown = sorted({v for _, _, _, v in ru} - set(expected))
    assert not unknown, f"read_uncommitted saw values no input maps to: {unknown[:5]}"

    commits = sum(len(c.events("T")) for c in copiers)
    aborts = sum(len(c.events("B")) for c in copiers)
    error_aborts = sum(len(c.events("R")) for c in copiers)
    print(f"{client}: {count} records copied exactly once by {len(copiers)} copiers "
          f"({commits} commits, {aborts} deliberate aborts, {error_aborts} aborts after "
          f"errors); read_uncommitted saw {len(ru)} records, read_committed {len(rc)} "
          f"({len(ru) - len(rc) - aborted} aborted by fencing or after errors); "
          f"unexpected copier exits: {unexpected_exits or 'none'}")


@pytest.mark.timeout(120)
def test_copier_exactly_once_confluent(start_broker, topic_name, spawn_copier):
    """confluent-kafka copier, 3000 keyed records over 3 partitions: SIGKILLed 4 times at random
    points (each replacement fences the zombie), the broker SIGKILLed and restarted once, 10 %
    of transactions aborted on purpose. read_committed output == input, exactly, in per-key
    order."""
    broker = start_broker(*BROKER_FLAGS)
    run_copier_with_crashes(broker, topic_name, spawn_copier, "confluent", count=3000, kills=4,
                            record_delay_ms=1)


@pytest.mark.timeout(120)
def test_copier_exactly_once_kafka_python(start_broker, topic_name, spawn_copier):
    """The same with kafka-python's transactional producer and read_committed consumer.

    kafka-python 3.0 can lose a transactional request when the coordinator connection fails
    while the broker restarts (its sender drops the request handler when connecting raises),
    and then waits for it forever; the copier bounds those calls (--txn-call-timeout) and
    exits like a crash, and a replacement takes over. Found with a thread dump of a stalled
    copier under CPU load."""
    broker = start_broker(*BROKER_FLAGS)
    run_copier_with_crashes(broker, topic_name, spawn_copier, "kafka-python", count=3000,
                            kills=3, record_delay_ms=1)


# ----------------------------------------------------------------------------- visibility


def txn_producer(bootstrap: str, txn_id: str) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                  "transaction.timeout.ms": 20000, "linger.ms": 5})
    p.init_transactions(TIMEOUT)
    return p


def confluent_txn(p: Producer, topic: str, values: list[str], commit: bool) -> None:
    p.begin_transaction()
    for v in values:
        p.produce(topic, value=v.encode(), partition=0)
    assert p.flush(TIMEOUT) == 0, "transactional records undelivered"
    if commit:
        p.commit_transaction(TIMEOUT)
    else:
        p.abort_transaction(TIMEOUT)


def values_of(records) -> list[str]:
    return [v for _, _, _, v in records]


def batch(label: str, n: int = 10) -> list[str]:
    return [f"{label}-{i:02d}" for i in range(n)]


def test_read_committed_skips_aborted_confluent(bootstrap, topic_name):
    """confluent-kafka transactional producer, one partition: commit, abort, commit, then one
    transaction left open. read_committed sees exactly the committed records, in order, and
    stops before the open transaction (the last stable offset); read_uncommitted sees all of
    them. Once the open transaction commits, read_committed sees it too."""
    topic = topic_name("vis")
    create_topic(bootstrap, topic, partitions=1)
    p = txn_producer(bootstrap, f"{topic}-txn")
    try:
        c1, ab, c3, op = batch("c1"), batch("aborted"), batch("c3"), batch("open")
        confluent_txn(p, topic, c1, commit=True)
        confluent_txn(p, topic, ab, commit=False)
        confluent_txn(p, topic, c3, commit=True)
        p.begin_transaction()
        for v in op:
            p.produce(topic, value=v.encode(), partition=0)
        assert p.flush(TIMEOUT) == 0

        rc = values_of(read_all(bootstrap, topic, "read_committed", partitions=1))
        assert rc == c1 + c3, f"read_committed with a transaction open: {rc}"
        ru = values_of(read_all(bootstrap, topic, "read_uncommitted", partitions=1))
        assert ru == c1 + ab + c3 + op, f"read_uncommitted: {ru}"

        p.commit_transaction(TIMEOUT)
        rc = values_of(read_all(bootstrap, topic, "read_committed", partitions=1))
        assert rc == c1 + c3 + op, f"read_committed after the last commit: {rc}"
    finally:
        p.close()


def test_read_committed_skips_aborted_kafka_python(bootstrap, topic_name):
    """kafka-python's transactional producer: commit, abort, commit. A read_committed reader
    (confluent-kafka and kafka-python) sees only the committed records, in order; a
    read_uncommitted one sees the aborted ones too."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTopicPartition

    topic = topic_name("vis-kp")
    create_topic(bootstrap, topic, partitions=1)
    p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-txn",
                      linger_ms=5, max_block_ms=int(TIMEOUT * 1000))
    try:
        p.init_transactions()
        c1, ab, c3 = batch("c1"), batch("aborted"), batch("c3")
        for values, commit in ((c1, True), (ab, False), (c3, True)):
            p.begin_transaction()
            for v in values:
                p.send(topic, value=v.encode(), partition=0)
            p.flush(timeout=TIMEOUT)
            if commit:
                p.commit_transaction()
            else:
                p.abort_transaction()
    finally:
        p.close(timeout=TIMEOUT)

    rc = values_of(read_all(bootstrap, topic, "read_committed", partitions=1))
    assert rc == c1 + c3, f"read_committed (confluent-kafka): {rc}"
    ru = values_of(read_all(bootstrap, topic, "read_uncommitted", partitions=1))
    assert ru == c1 + ab + c3, f"read_uncommitted (confluent-kafka): {ru}"

    c = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                      enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        tp = KTopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        end = c.end_offsets([tp])[tp]  # read_committed: the last stable offset
        got: list[str] = []
        deadline = time.monotonic() + TIMEOUT
        while c.position(tp) < end:
            assert time.monotonic() < deadline, \
                f"kafka-python read_committed reader stuck at {c.position(tp)}/{end}: {got}"
            for rs in c.poll(timeout_ms=200).values():
                got += [r.value.decode() for r in rs]
    finally:
        c.close()
    assert got == c1 + c3, f"read_committed (kafka-python): {got}"


def test_live_zombie_is_fenced(bootstrap, topic_name):
    """Producer A (confluent-kafka) writes in a transaction; producer B starts with the same
    transactional.id. B's init_transactions() aborts A's transaction and fences A: A's commit
    fails, and only B's records are ever committed."""
    topic = topic_name("zombie")
    create_topic(bootstrap, topic, partitions=1)
    txn_id = f"{topic}-txn"
    a = txn_producer(bootstrap, txn_id)
    b = None
    try:
        a.begin_transaction()
        zombie = batch("zombie", 5)
        for v in zombie:
            a.produce(topic, value=v.encode(), partition=0)
        assert a.flush(TIMEOUT) == 0

        b = txn_producer(bootstrap, txn_id)
        with pytest.raises(KafkaException) as info:
            a.commit_transaction(TIMEOUT)
        err = info.value.args[0]
        # librdkafka turns the broker's PRODUCER_FENCED / INVALID_PRODUCER_EPOCH into a fatal
        # _FENCED error; anything else means the broker answered with another error code.
        assert err.fatal() and err.code() == KafkaError._FENCED, \
            f"the zombie's commit failed, but not as fenced: {err} (fatal={err.fatal()})"

        fresh = batch("fresh", 5)
        confluent_txn(b, topic, fresh, commit=True)
        rc = values_of(read_all(bootstrap, topic, "read_committed", partitions=1))
        assert rc == fresh, f"read_committed after fencing: {rc}"
        ru = values_of(read_all(bootstrap, topic, "read_uncommitted", partitions=1))
        assert ru == zombie + fresh, f"read_uncommitted after fencing: {ru}"
    finally:
        try:
            a.close()
        except KafkaException:  # close() re-raises the fenced producer's fatal error
            pass
        if b is not None:
            b.close()
