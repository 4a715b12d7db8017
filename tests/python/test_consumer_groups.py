"""Consumer groups (the classic protocol: JoinGroup/SyncGroup/Heartbeat/LeaveGroup, committed
offsets) against Courier, with real clients.

Group members run as separate processes (group_worker.py) so a test can SIGKILL one mid-stream
and then read, from the worker's output file, exactly what it had processed and committed.
Covered: fan-out across groups with one owner per partition (confluent-kafka and kafka-python),
at-least-once (commit after processing: the duplicates after a crash are exactly the
processed-but-uncommitted records), at-most-once (commit before processing: no duplicates),
a SIGKILLed member's partitions moving to the survivor after the session timeout, a broker
SIGKILL + restart with a group active, and a clean leave handing partitions over at once.

No idempotent producers (Courier has none yet); no KIP-848 `group.protocol=consumer`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

import helpers
from helpers import wait_until
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# Fast group timings for tests: a short initial-rebalance delay and a low session-timeout floor.
BROKER_FLAGS = ("--group-initial-rebalance-delay-ms", "300",
                "--group-min-session-timeout-ms", "1000")
WORKER = Path(__file__).with_name("group_worker.py")
TIMEOUT = 20.0
PARTITIONS = 4
ALL = set(range(PARTITIONS))
# session.timeout.ms of members that get SIGKILLed: the group notices the death after this long.
CRASH_SESSION_MS = 4000


# ----------------------------------------------------------------------------- helpers


def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    helpers.create_topic(bootstrap, name, partitions, TIMEOUT)


def produce(bootstrap: str, topic: str, values: list[str]) -> dict[str, tuple[int, int]]:
    """Produces keyless values (spread over the partitions); returns value -> (partition,
    offset) from the delivery reports. Fails on any delivery error."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False,
                  "linger.ms": 5, "message.timeout.ms": 15000})
    placed, errors = {}, []

    def on_delivery(err, msg):
        if err:
            errors.append(err)
        else:
            placed[msg.value().decode()] = (msg.partition(), msg.offset())

    for v in values:
        p.produce(topic, value=v.encode(), on_delivery=on_delivery)
        p.poll(0)
    assert p.flush(TIMEOUT) == 0, f"messages still undelivered after {TIMEOUT}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    assert len(placed) == len(values)
    return placed


def end_offsets(placed: dict[str, tuple[int, int]]) -> dict[int, int]:
    """Per-partition log end offset of a topic only these produces wrote to."""
    ends = {p: 0 for p in ALL}
    for p, o in placed.values():
        ends[p] = max(ends[p], o + 1)
    return ends


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition (OffsetFetch, without joining the group);
    0 where nothing is committed."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in sorted(ALL)], timeout=TIMEOUT)
    finally:
        c.close()
    out = {}
    for tp in tps:
        assert tp.error is None, f"OffsetFetch {group} {topic}[{tp.partition}]: {tp.error}"
        out[tp.partition] = max(tp.offset, 0)  # OFFSET_INVALID (-1001): nothing committed
    return out


def stable_committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Committed offsets once two reads 0.3 s apart agree (a commit the killed member sent just
    before dying may still be landing)."""
    last = committed_offsets(bootstrap, group, topic)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = committed_offsets(bootstrap, group, topic)
        if now == last:
            return now
        last = now
    pytest.fail(f"committed offsets of {group} kept changing: {last}")


class Worker:
    """One group_worker.py process and its output file."""

    def __init__(self, name: str, out: Path, argv: list[str]):
        self.name = name
        self.out = out
        self.stderr_path = out.with_suffix(".stderr")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err,
                                         stdin=subprocess.DEVNULL)

    def lines(self) -> list[str]:
        try:
            text = self.out.read_text()
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        return lines[:-1]  # drops "" after the last newline, or a line still being written

    def records(self) -> list[tuple[int, int, str]]:
        """(partition, offset, value) of each processed record, in processing order."""
        out = []
        for line in self.lines():
            if line.startswith("R "):
                _, p, o, v = line.split(" ", 3)
                out.append((int(p), int(o), v))
        return out

    def assignment(self) -> set[int] | None:
        """The partitions of its latest assignment (None before the first)."""
        last = None
        for line in self.lines():
            if line.startswith("A "):
                last = {int(p) for p in line[2:].split(",") if p}
        return last

    def commits(self) -> list[dict[int, int]]:
        """Acknowledged synchronous commits, in order: {partition: next offset}."""
        out = []
        for line in self.lines():
            if line.startswith("C "):
                out.append({int(p): int(o) for p, o in
                            (kv.split(":") for kv in line[2:].split(","))})
        return out

    def closed_cleanly(self) -> bool:
        return "X" in self.lines()

    def kill(self) -> None:
        """SIGKILL: no commit, no LeaveGroup."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT)

    def close(self, timeout: float = TIMEOUT) -> None:
        """SIGTERM: the worker commits what it processed, calls consumer.close() (LeaveGroup)
        and exits; fails unless it does so cleanly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"worker {self.name} did not exit within {timeout}s of SIGTERM\n"
                        f"{self.describe()}")
        assert code == 0 and self.closed_cleanly(), \
            f"worker {self.name} did not close cleanly (exit {code})\n{self.describe()}"

    def describe(self) -> str:
        lines = self.lines()
        errors = [line for line in lines if line.startswith("E ")]
        try:
            stderr = self.stderr_path.read_text(errors="replace").splitlines()[-15:]
        except FileNotFoundError:
            stderr = []
        return (f"[{self.name}] exit={self.proc.poll()} processed={len(self.records())} "
                f"assignment={self.assignment()} commits={len(self.commits())} "
                f"last errors={errors[-3:]} stderr tail={stderr}")


@pytest.fixture
def spawn(tmp_path):
    """spawn(name, bootstrap, topic, group, **options) -> Worker. Options map to
    group_worker.py flags (commit_every=50 -> --commit-every 50). Leftover workers are killed
    when the test ends."""
    started: list[Worker] = []

    def start(name: str, bootstrap: str, topic: str, group: str, **options) -> Worker:
        argv = [sys.executable, str(WORKER), "--bootstrap", bootstrap, "--topic", topic,
                "--group", group, "--out", str(tmp_path / f"{name}.out"), "--client-id", name]
        for k, v in options.items():
            argv += [f"--{k.replace('_', '-')}", str(v)]
        w = Worker(name, tmp_path / f"{name}.out", argv)
        started.append(w)
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()


def describe_all(workers) -> str:
    return "\n".join(w.describe() for w in workers)


def wait_for_stable_assignment(members: list[Worker], timeout: float = TIMEOUT) -> None:
    """Until every member holds a non-empty assignment and together they hold every partition
    exactly once."""

    def stable():
        got = [w.assignment() for w in members]
        if any(not a for a in got):
            return False
        return sum(len(a) for a in got) == PARTITIONS and set().union(*got) == ALL

    wait_until(stable, timeout, lambda: "every partition to be assigned once across "
               f"{[w.name for w in members]}:\n{describe_all(members)}")


def wait_processed(workers: list[Worker], values, timeout: float = TIMEOUT) -> None:
    """Until the workers, together, have processed every one of `values`."""
    want = set(values)

    def missing():
        seen = {v for w in workers for _, _, v in w.records()}
        return want - seen

    wait_until(lambda: not missing(), timeout,
               lambda: f"{len(missing())}/{len(want)} values still unprocessed "
                       f"(e.g. {sorted(missing())[:5]}):\n{describe_all(workers)}")


def check_placement(records, placed: dict[str, tuple[int, int]], who: str) -> None:
    """Every processed record is the value produced at that partition and offset."""
    for p, o, v in records:
        assert v in placed, f"{who} processed a value nobody produced: {v!r} at {p}/{o}"
        assert placed[v] == (p, o), f"{who} got {v!r} at {p}/{o}, it was produced at {placed[v]}"


def by_partition(records) -> dict[int, list[int]]:
    out = defaultdict(list)
    for p, o, _ in records:
        out[p].append(o)
    return out


# ----------------------------------------------------------------------------- fan-out


def run_fanout(bootstrap, topic_name, spawn, client: str, groups: int, members: int,
               count: int) -> None:
    topic = topic_name(f"fanout-{client}")
    create_topic(bootstrap, topic)
    group_ids = [f"{topic}-g{g}" for g in range(groups)]
    workers = {g: [spawn(f"{client}-g{gi}-m{m}", bootstrap, topic, g, client=client,
                         commit_every=50, session_timeout_ms=10000)
                   for m in range(members)]
               for gi, g in enumerate(group_ids)}
    everyone = [w for ws in workers.values() for w in ws]
    # Produce only once every group is settled, so a clean run has no rebalance mid-stream.
    for ws in workers.values():
        wait_for_stable_assignment(ws, timeout=30)
    values = [f"{topic}-{i:05d}" for i in range(count)]
    placed = produce(bootstrap, topic, values)
    for ws in workers.values():
        wait_processed(ws, values)
    for w in everyone:
        w.close()

    for g, ws in workers.items():
        got = Counter(v for w in ws for _, _, v in w.records())
        dups = {v: n for v, n in got.items() if n > 1}
        assert not dups, f"group {g} processed values more than once: {list(dups.items())[:5]}"
        assert set(got) == set(values), f"group {g} missed {sorted(set(values) - set(got))[:5]}"
        owners = defaultdict(set)
        for w in ws:
            records = w.records()
            check_placement(records, placed, w.name)
            for p, offsets in by_partition(records).items():
                owners[p].add(w.name)
                assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), \
                    f"{w.name} partition {p}: offsets not consecutive: {offsets[:20]}"
        shared = {p: sorted(o) for p, o in owners.items() if len(o) > 1}
        assert not shared, f"group {g}: partitions consumed by more than one member: {shared}"


def test_fanout_confluent_three_groups(bootstrap, topic_name, spawn):
    """3 groups x 2 members (confluent-kafka subscribe): each group gets every message exactly
    once; within a group each partition has one owner."""
    run_fanout(bootstrap, topic_name, spawn, "confluent", groups=3, members=2, count=1000)


def test_fanout_kafka_python_two_groups(bootstrap, topic_name, spawn):
    """The same with kafka-python's classic group consumer: 2 groups x 2 members."""
    run_fanout(bootstrap, topic_name, spawn, "kafka-python", groups=2, members=2, count=600)


# ----------------------------------------------------------------------------- delivery guarantees


def crash_and_resume(bootstrap, topic_name, spawn, mode: str, commit_every: int, label: str):
    """Produces, runs worker 1 in `mode` until it has processed 300 + commit_every/2 records
    (mid-batch), SIGKILLs it,
    reads the group's committed offsets, runs worker 2 in the same group to the end. Returns
    (placed, ends, committed, records of worker 1, records of worker 2)."""
    topic = topic_name(label)
    create_topic(bootstrap, topic)
    group = f"{topic}-g"
    values = [f"{topic}-{i:05d}" for i in range(2000)]
    placed = produce(bootstrap, topic, values)
    ends = end_offsets(placed)

    opts = dict(mode=mode, commit_every=commit_every, session_timeout_ms=CRASH_SESSION_MS,
                heartbeat_interval_ms=400)
    w1 = spawn("first", bootstrap, topic, group, record_delay_ms=2, **opts)
    kill_at = 300 + commit_every // 2
    wait_until(lambda: len(w1.records()) >= kill_at, TIMEOUT,
               lambda: f"worker 1 to process {kill_at} records: {w1.describe()}", interval=0.01)
    w1.kill()
    r1 = w1.records()
    assert len(r1) < len(values), "worker 1 finished before it was killed; nothing tested"
    committed = stable_committed(bootstrap, group, topic)
    assert sum(committed.values()) > 0, f"worker 1 never committed: {w1.describe()}"

    # The replacement waits for the dead member's session to expire, then gets every partition.
    w2 = spawn("second", bootstrap, topic, group, **opts)
    want = sum(ends[p] - committed[p] for p in ALL)
    wait_until(lambda: len(w2.records()) >= want, CRASH_SESSION_MS / 1000 + TIMEOUT,
               lambda: f"worker 2 to process the {want} records from the committed offsets "
                       f"{committed} to the ends {ends}: {w2.describe()}")
    w2.close()
    r2 = w2.records()
    check_placement(r1, placed, "worker 1")
    check_placement(r2, placed, "worker 2")

    # Worker 2 resumed exactly at the committed offset of every partition and read to the end.
    got2 = by_partition(r2)
    for p in ALL:
        assert got2.get(p, []) == list(range(committed[p], ends[p])), \
            (f"worker 2 on partition {p}: expected offsets {committed[p]}..{ends[p] - 1} once, "
             f"in order, got {got2.get(p, [])[:10]}... ({len(got2.get(p, []))} records)")
    # Worker 1 read each partition in order from the start, each record once.
    for p, offsets in by_partition(r1).items():
        assert offsets == list(range(len(offsets))), \
            f"worker 1 on partition {p}: offsets not 0,1,2..: {offsets[:20]}"
    return placed, ends, committed, r1, r2


def test_at_least_once_crash_redelivers_only_uncommitted(bootstrap, topic_name, spawn):
    """Commit after processing, every 50 records; SIGKILL mid-stream. Nothing is lost, and the
    duplicates are exactly what worker 1 processed at or past the committed offsets."""
    n = 50
    placed, ends, committed, r1, r2 = crash_and_resume(bootstrap, topic_name, spawn, "after", n,
                                                       "alo")
    seen1 = by_partition(r1)
    for p in ALL:
        # Commit after processing: everything below the committed offset was processed.
        assert len(seen1.get(p, [])) >= committed[p], \
            (f"partition {p} committed at {committed[p]} but worker 1 processed only "
             f"{len(seen1.get(p, []))} records of it")
    processed = {v for _, _, v in r1} | {v for _, _, v in r2}
    lost = set(placed) - processed
    assert not lost, f"{len(lost)} values never processed, e.g. {sorted(lost)[:5]}"
    dups = {v for _, _, v in r1} & {v for _, _, v in r2}
    uncommitted = {v for p, o, v in r1 if o >= committed[p]}
    assert dups == uncommitted, \
        (f"duplicates {len(dups)} should be exactly worker 1's processed-but-uncommitted "
         f"records {len(uncommitted)}: extra {sorted(dups - uncommitted)[:5]}, "
         f"missing {sorted(uncommitted - dups)[:5]}; committed {committed}")
    assert len(dups) <= n, f"{len(dups)} duplicates from one uncommitted batch of at most {n}"
    print(f"at-least-once: worker 1 processed {len(r1)}, committed {committed}; "
          f"{len(dups)} redelivered")


def test_at_most_once_crash_never_duplicates(bootstrap, topic_name, spawn):
    """Commit before processing (batches of 10); SIGKILL mid-stream. No value is processed
    twice; what is lost is at most the one committed-but-unprocessed batch."""
    n = 10
    placed, ends, committed, r1, r2 = crash_and_resume(bootstrap, topic_name, spawn, "before", n,
                                                       "amo")
    counts = Counter(v for _, _, v in r1 + r2)
    dups = sorted(v for v, c in counts.items() if c > 1)
    assert not dups, f"{len(dups)} values processed twice, e.g. {dups[:5]}; committed {committed}"
    seen1 = by_partition(r1)
    lost = set(placed) - set(counts)
    for p in ALL:
        # Commit before processing: worker 1 never processed past what was committed.
        assert len(seen1.get(p, [])) <= committed[p], \
            (f"partition {p}: worker 1 processed {len(seen1.get(p, []))} records but only "
             f"{committed[p]} were committed")
    expected_lost = {v for v, (p, o) in placed.items() if len(seen1.get(p, [])) <= o < committed[p]}
    assert lost == expected_lost, \
        f"lost {sorted(lost)[:5]} ({len(lost)}), expected the in-flight batch {len(expected_lost)}"
    assert len(lost) <= n, f"lost {len(lost)} records, more than one batch of {n}"
    print(f"at-most-once: worker 1 processed {len(r1)}, committed {committed}; {len(lost)} lost")


# ----------------------------------------------------------------------------- membership


def test_sigkilled_member_partitions_move_to_survivor(bootstrap, topic_name, spawn):
    """2 members, one SIGKILLed: after its session times out the survivor owns all partitions
    and processes everything produced afterwards; nothing is skipped."""
    topic = topic_name("rebalance")
    create_topic(bootstrap, topic)
    group = f"{topic}-g"
    opts = dict(commit_every=20, session_timeout_ms=CRASH_SESSION_MS, heartbeat_interval_ms=400)
    a = spawn("a", bootstrap, topic, group, **opts)
    b = spawn("b", bootstrap, topic, group, **opts)
    wait_for_stable_assignment([a, b], timeout=30)
    a_parts = a.assignment()

    batch1 = [f"{topic}-1-{i:04d}" for i in range(400)]
    placed = produce(bootstrap, topic, batch1)
    wait_processed([a, b], batch1)
    a.kill()
    killed_at = time.monotonic()
    batch2 = [f"{topic}-2-{i:04d}" for i in range(400)]
    placed.update(produce(bootstrap, topic, batch2))

    wait_until(lambda: b.assignment() == ALL, CRASH_SESSION_MS / 1000 + TIMEOUT,
               lambda: f"the survivor to own all partitions after {a.name} was killed "
                       f"(it had {sorted(a_parts)}): {b.describe()}")
    took = time.monotonic() - killed_at
    batch3 = [f"{topic}-3-{i:04d}" for i in range(400)]
    placed.update(produce(bootstrap, topic, batch3))
    wait_processed([b], batch2 + batch3)
    b.close()

    check_placement(a.records(), placed, "a")
    check_placement(b.records(), placed, "b")
    processed = {v for w in (a, b) for _, _, v in w.records()}
    lost = set(placed) - processed
    assert not lost, f"{len(lost)} values never processed, e.g. {sorted(lost)[:5]}"
    # The survivor read each of the dead member's partitions on from where it was committed, so
    # its offsets there are consecutive up to the end.
    got = by_partition(b.records())
    ends = end_offsets(placed)
    for p in a_parts:
        offsets = sorted(set(got.get(p, [])))
        assert offsets and offsets == list(range(offsets[0], ends[p])), \
            f"survivor on {a.name}'s partition {p}: offsets {offsets[:10]}.. end {ends[p]}"
    print(f"survivor owned all partitions {took:.1f}s after the SIGKILL "
          f"(session.timeout.ms={CRASH_SESSION_MS})")


def test_member_close_hands_over_without_session_timeout(bootstrap, topic_name, spawn):
    """A member that closes (consumer.close(): LeaveGroup) hands its partitions to the other
    member at once, far sooner than the 30 s session timeout."""
    topic = topic_name("leave")
    create_topic(bootstrap, topic)
    group = f"{topic}-g"
    opts = dict(commit_every=20, session_timeout_ms=30000, heartbeat_interval_ms=300)
    a = spawn("a", bootstrap, topic, group, **opts)
    b = spawn("b", bootstrap, topic, group, **opts)
    wait_for_stable_assignment([a, b], timeout=30)
    started = time.monotonic()
    a.close()
    wait_until(lambda: b.assignment() == ALL, 10,
               lambda: f"the remaining member to own all partitions after the other closed: "
                       f"{b.describe()}")
    took = time.monotonic() - started
    assert took < 5, f"handover took {took:.1f}s; a LeaveGroup should not wait for the session"
    values = [f"{topic}-{i:04d}" for i in range(200)]
    placed = produce(bootstrap, topic, values)
    wait_processed([b], values)
    b.close()
    check_placement(b.records(), placed, "b")
    print(f"handover after a clean close took {took:.2f}s (session.timeout.ms=30000)")


# ----------------------------------------------------------------------------- broker restart


def test_broker_sigkill_restart_keeps_committed_offsets(start_broker, topic_name, spawn):
    """A worker commits as it goes; the broker is SIGKILLed and restarted on the same port and
    data dir. The worker carries on: nothing is lost, and nothing before its last acknowledged
    commit is delivered again."""
    broker = start_broker(*BROKER_FLAGS)
    bootstrap = broker.bootstrap
    topic = topic_name("restart")
    create_topic(bootstrap, topic)
    group = f"{topic}-g"
    before = [f"{topic}-a-{i:05d}" for i in range(1200)]
    placed = produce(bootstrap, topic, before)
    w = spawn("w", bootstrap, topic, group, commit_every=20, record_delay_ms=3,
              session_timeout_ms=6000, heartbeat_interval_ms=500)
    wait_until(lambda: len(w.records()) >= 300 and w.commits(), TIMEOUT,
               lambda: f"the worker to process 300 records and commit: {w.describe()}")
    broker.kill()
    # With the broker dead no commit can succeed, so these are all the acknowledged commits.
    acked = {p: 0 for p in ALL}
    for c in w.commits():
        for p, o in c.items():
            acked[p] = max(acked[p], o)
    processed_before_restart = len(w.records())
    assert processed_before_restart < len(before), "the worker finished before the broker died"
    broker.start()
    assert broker.bootstrap == bootstrap
    # Every acknowledged commit survived the SIGKILL (the worker only commits forward since).
    committed = committed_offsets(bootstrap, group, topic)
    assert all(committed[p] >= acked[p] for p in ALL), \
        f"committed offsets after the restart {committed} are behind acknowledged ones {acked}"

    after = [f"{topic}-b-{i:05d}" for i in range(200)]
    placed.update(produce(bootstrap, topic, after))
    wait_processed([w], before + after, timeout=45)
    w.close()

    records = w.records()
    check_placement(records, placed, "w")
    counts = Counter((p, o) for p, o, _ in records)
    early_dups = sorted((p, o) for (p, o), n in counts.items() if n > 1 and o < acked[p])
    assert not early_dups, \
        (f"records below the last acknowledged commit {acked} delivered again after the "
         f"restart: {early_dups[:10]}")
    ends = end_offsets(placed)
    committed = committed_offsets(bootstrap, group, topic)
    assert committed == ends, f"after a clean close the group should have committed {ends}, " \
                              f"has {committed}"
    dups = sum(n - 1 for n in counts.values())
    print(f"processed {processed_before_restart} before the broker SIGKILL; {dups} records "
          f"redelivered after the restart (acknowledged commits {acked})")
