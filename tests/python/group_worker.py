"""A consumer-group member run as its own process by test_consumer_groups.py, so a test can
SIGKILL it mid-stream and then read what it had processed.

    python group_worker.py --bootstrap HOST:PORT --topic T --group G --out FILE [options]

It subscribes to one topic with the classic group protocol (confluent-kafka or kafka-python)
and appends one line per event to FILE, each line written with a single unbuffered write, so a
SIGKILL never loses or tears a line already reported:

    A <p,p,...>        its assignment changed (empty after a revoke)
    R <p> <o> <value>  it processed the record at partition p, offset o ("processing" is this line)
    C <p:o,p:o,...>    a synchronous commit of these next-offsets succeeded
    E <text>           a non-fatal client error
    X                  it closed cleanly (SIGTERM -> consumer.close(), which leaves the group)

Modes:
    after   at-least-once: process, then commit synchronously every --commit-every records (and
            when idle, and on revoke); a failed commit is retried at the next such point
    before  at-most-once: commit the next offsets of a fetched batch (up to --commit-every
            records) synchronously, then process it; a failed commit skips the batch
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

stopping = False


def on_sigterm(signum, frame):
    global stopping
    stopping = True


class Out:
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def line(self, text: str) -> None:
        os.write(self.fd, (text + "\n").encode())

    def sync(self) -> None:
        os.fsync(self.fd)


def fmt_offsets(offsets: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(offsets.items()))


def run_confluent(args, out: Out) -> None:
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    conf = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": args.heartbeat_interval_ms,
        "fetch.wait.max.ms": 100,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
    }
    pending: dict[int, int] = {}  # partition -> next offset, processed but not committed
    since_commit = 0

    def commit(offsets: dict[int, int]) -> bool:
        if not offsets:
            return True
        try:
            c.commit(offsets=[TopicPartition(args.topic, p, o) for p, o in offsets.items()],
                     asynchronous=False)
        except KafkaException as e:
            out.line(f"E commit {fmt_offsets(offsets)} failed: {e}")
            return False
        out.line(f"C {fmt_offsets(offsets)}")
        return True

    def on_assign(consumer, partitions):
        out.line("A " + ",".join(str(p.partition) for p in sorted(partitions,
                                                                   key=lambda p: p.partition)))

    def on_revoke(consumer, partitions):
        nonlocal since_commit
        if args.mode == "after":
            commit(pending)
        pending.clear()
        since_commit = 0
        out.line("A ")

    def on_lost(consumer, partitions):
        nonlocal since_commit
        pending.clear()
        since_commit = 0
        out.line("A ")

    c = Consumer(conf)
    c.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    try:
        while not stopping:
            batch = c.consume(num_messages=args.commit_every if args.mode == "before" else 100,
                              timeout=0.2)
            msgs = []
            for m in batch:
                err = m.error()
                if err is None:
                    msgs.append(m)
                elif err.fatal():
                    raise KafkaException(err)
                elif err.code() != KafkaError._PARTITION_EOF:
                    out.line(f"E {err}")
            if args.mode == "before":
                if not msgs:
                    continue
                nxt: dict[int, int] = {}
                for m in msgs:
                    nxt[m.partition()] = max(nxt.get(m.partition(), 0), m.offset() + 1)
                if not commit(nxt):
                    continue
                for m in msgs:
                    out.line(f"R {m.partition()} {m.offset()} {m.value().decode()}")
                    if args.record_delay_ms:
                        time.sleep(args.record_delay_ms / 1000)
                out.sync()
            else:
                if not msgs:
                    if pending:  # idle: commit what was processed so far
                        out.sync()
                        if commit(pending):
                            pending.clear()
                            since_commit = 0
                    continue
                for m in msgs:
                    out.line(f"R {m.partition()} {m.offset()} {m.value().decode()}")
                    pending[m.partition()] = m.offset() + 1
                    since_commit += 1
                    if args.record_delay_ms:
                        time.sleep(args.record_delay_ms / 1000)
                    if since_commit >= args.commit_every:
                        out.sync()
                        if commit(pending):
                            pending.clear()
                        since_commit = 0  # after a failure, retry at the next boundary
    finally:
        if stopping:
            if args.mode == "after":
                out.sync()
                commit(pending)
            c.close()
            out.line("X")


def run_kafka_python(args, out: Out) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    pending: dict[int, int] = {}
    since_commit = 0

    def commit(offsets: dict[int, int]) -> bool:
        if not offsets:
            return True
        try:
            c.commit({TopicPartition(args.topic, p): OffsetAndMetadata(o, "", -1)
                      for p, o in offsets.items()})
        except KafkaError as e:
            out.line(f"E commit {fmt_offsets(offsets)} failed: {e!r}")
            return False
        out.line(f"C {fmt_offsets(offsets)}")
        return True

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            nonlocal since_commit
            if args.mode == "after":
                commit(pending)
            pending.clear()
            since_commit = 0
            out.line("A ")

        def on_partitions_assigned(self, assigned):
            out.line("A " + ",".join(str(p) for p in sorted(tp.partition for tp in assigned)))

    c = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        client_id=args.client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        fetch_max_wait_ms=100,
        request_timeout_ms=30000,
    )
    c.subscribe(topics=[args.topic], listener=Listener())
    try:
        while not stopping:
            polled = c.poll(timeout_ms=200, max_records=100)
            msgs = sorted((r for rs in polled.values() for r in rs),
                          key=lambda r: (r.partition, r.offset))
            if args.mode == "before":
                raise SystemExit("mode=before is implemented for confluent-kafka only")
            if not msgs:
                if pending:
                    out.sync()
                    if commit(pending):
                        pending.clear()
                        since_commit = 0
                continue
            for r in msgs:
                out.line(f"R {r.partition} {r.offset} {r.value.decode()}")
                pending[r.partition] = r.offset + 1
                since_commit += 1
                if since_commit >= args.commit_every:
                    out.sync()
                    if commit(pending):
                        pending.clear()
                    since_commit = 0  # after a failure, retry at the next boundary
    finally:
        if stopping:
            if args.mode == "after":
                out.sync()
                commit(pending)
            c.close(autocommit=False)
            out.line("X")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    ap.add_argument("--client-id", default="group-worker")
    ap.add_argument("--mode", choices=["after", "before"], default="after")
    ap.add_argument("--commit-every", type=int, default=50)
    ap.add_argument("--record-delay-ms", type=float, default=0)
    ap.add_argument("--session-timeout-ms", type=int, default=6000)
    ap.add_argument("--heartbeat-interval-ms", type=int, default=500)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, on_sigterm)
    out = Out(args.out)
    if args.client == "confluent":
        run_confluent(args, out)
    else:
        run_kafka_python(args, out)
    sys.exit(0)


if __name__ == "__main__":
    main()
