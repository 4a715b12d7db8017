"""A transactional read-process-write copier run as its own process by test_exactly_once.py, so
a test can SIGKILL it mid-transaction and start a replacement with the same transactional.id.

    python txn_copier.py --bootstrap HOST:PORT --input IN --output OUT --group G \
        --txn-id TID --out FILE [options]

It consumes IN in consumer group G (classic protocol, isolation.level=read_committed, no
auto-commit) and, for each polled batch of up to --batch records, runs one transaction:
  1. for every input record, one output record to OUT with the same key and the value
     b"copy:" + input value;
  2. a flush, so the records are in the log (an abort or a SIGKILL leaves aborted data behind);
  3. --record-delay-ms per record of sleep (pacing: a SIGKILL then likely hits an open
     transaction);
  4. the batch's next offsets sent to the transaction (send_offsets_to_transaction);
  5. commit. With --abort-fraction F, about that fraction of transactions are aborted on
     purpose instead, and the consumer is rewound to the batch's first offsets (the last
     committed position), so a later transaction copies the batch again.
An error that requires an abort is handled the same way (event R); a fatal one (e.g. fenced)
ends the process with status 3.

Clients: confluent-kafka (librdkafka) or kafka-python. init_transactions() runs before the
consumer subscribes, so a predecessor's open transaction (a SIGKILLed zombie with the same
transactional.id) is aborted before this copier reads the group's committed offsets.

Events, one line each, appended to FILE with a single unbuffered write (a SIGKILL never tears
or loses a line already written):

    S <pid>                    init_transactions() succeeded; this copier owns the txn id
    A <p,p,...>                its assignment changed (empty after a revoke)
    T <n> <p:o,p:o,...>        committed a transaction of n records with these next offsets
    B <n> <p:o,...>            aborted a transaction of n records on purpose; rewound to p:o
    R <n> <p:o,...> <error>    aborted a transaction of n records after an error; rewound to p:o
    E <text>                   a non-fatal error (retried)
    F <text>                   a fatal error; the process exits with status 3 (5: a
                               kafka-python transactional call never returned)
    X                          it stopped cleanly (SIGTERM: finishes the transaction, closes)
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import random
import signal
import sys
import threading
import time
import traceback

stopping = False


def on_sigterm(signum, frame):
    global stopping
    stopping = True


class Out:
    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def line(self, text: str) -> None:
        os.write(self.fd, (text.replace("\n", " ") + "\n").encode())


def fmt_offsets(offsets: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(offsets.items()))


def batch_offsets(records) -> tuple[dict[int, int], dict[int, int]]:
    """(first offset, next offset) per partition of a batch of (partition, offset) pairs."""
    first: dict[int, int] = {}
    nxt: dict[int, int] = {}
    for p, o in records:
        first[p] = min(first.get(p, o), o)
        nxt[p] = max(nxt.get(p, 0), o + 1)
    return first, nxt


class Fatal(Exception):
    pass


def run_confluent(args, out: Out, rng: random.Random) -> None:
    from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "client.id": f"{args.client_id}-p",
        "transactional.id": args.txn_id,
        "transaction.timeout.ms": args.transaction_timeout_ms,
        "linger.ms": 5,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
        # librdkafka >= 2.10 re-bootstraps when every broker is down (a single broker's
        # restart) and decommissions the known broker; a decommissioned broker cached as the
        # group coordinator makes send_offsets_to_transaction() hang until its timeout
        # (confluentinc/librdkafka#5511, fix in PR #5512). Not re-bootstrapping avoids it.
        "metadata.recovery.strategy": "none",
        **({"debug": args.debug} if args.debug else {}),
    })
    producer.init_transactions(args.op_timeout)
    out.line(f"S {os.getpid()}")

    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "client.id": f"{args.client_id}-c",
        "group.id": args.group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": args.heartbeat_interval_ms,
        "fetch.wait.max.ms": 100,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 500,
    })

    def on_assign(c, partitions):
        out.line("A " + ",".join(str(p) for p in sorted(tp.partition for tp in partitions)))

    def on_revoke(c, partitions):
        out.line("A ")

    consumer.subscribe([args.input], on_assign=on_assign, on_revoke=on_revoke,
                       on_lost=on_revoke)

    def rewind(first: dict[int, int]) -> None:
        for p, o in first.items():
            try:
                consumer.seek(TopicPartition(args.input, p, o))
            except KafkaException as e:  # revoked meanwhile: the next owner starts there anyway
                out.line(f"E seek {p}:{o} failed: {e}")

    def retry(what: str, fn) -> None:
        """Calls fn until it does not raise a retriable error (or the deadline passes)."""
        deadline = time.monotonic() + args.op_timeout
        while True:
            try:
                return fn()
            except KafkaException as e:
                err = e.args[0]
                if err.retriable() and not err.fatal() and time.monotonic() < deadline:
                    out.line(f"E {what} (retrying): {err}")
                    time.sleep(0.1)
                    continue
                raise

    def transact(msgs) -> None:
        first, nxt = batch_offsets((m.partition(), m.offset()) for m in msgs)
        try:
            producer.begin_transaction()
            for m in msgs:
                while True:
                    try:
                        producer.produce(args.output, key=m.key(), value=b"copy:" + m.value())
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
            # Wait until the records are in the log, so an abort (or a SIGKILL from here to
            # the commit) leaves aborted data there, not just purged client-side queues.
            if producer.flush(args.op_timeout):
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "flush timed out",
                                                retriable=False, txn_requires_abort=True))
            if args.record_delay_ms:
                time.sleep(args.record_delay_ms * len(msgs) / 1000)
            retry("send_offsets_to_transaction", lambda: producer.send_offsets_to_transaction(
                [TopicPartition(args.input, p, o) for p, o in nxt.items()],
                consumer.consumer_group_metadata(), args.op_timeout))
            if args.abort_fraction and rng.random() < args.abort_fraction:
                retry("abort_transaction", lambda: producer.abort_transaction(args.op_timeout))
                rewind(first)
                out.line(f"B {len(msgs)} {fmt_offsets(first)}")
                return
            retry("commit_transaction", lambda: producer.commit_transaction(args.op_timeout))
            out.line(f"T {len(msgs)} {fmt_offsets(nxt)}")
        except KafkaException as e:
            err = e.args[0]
            if err.fatal() or not err.txn_requires_abort():
                raise Fatal(str(err)) from e
            try:
                retry("abort_transaction", lambda: producer.abort_transaction(args.op_timeout))
            except KafkaException as e2:
                raise Fatal(f"abort after {err} failed: {e2.args[0]}") from e2
            rewind(first)
            out.line(f"R {len(msgs)} {fmt_offsets(first)} {err}")

    try:
        while not stopping:
            msgs = []
            for m in consumer.consume(num_messages=args.batch, timeout=0.2):
                err = m.error()
                if err is None:
                    msgs.append(m)
                elif err.fatal():
                    raise Fatal(str(err))
                elif err.code() != KafkaError._PARTITION_EOF:
                    out.line(f"E consume: {err}")
            if msgs:
                transact(msgs)
    except (Fatal, KafkaException) as e:
        out.line(f"F {e}")
        sys.exit(3)
    consumer.close()
    producer.flush(args.op_timeout)


def run_kafka_python(args, out: Out, rng: random.Random) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka import errors as Errors
    from kafka.structs import OffsetAndMetadata

    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap,
        client_id=f"{args.client_id}-p",
        transactional_id=args.txn_id,
        transaction_timeout_ms=args.transaction_timeout_ms,
        linger_ms=5,
        max_block_ms=int(args.op_timeout * 1000),
        request_timeout_ms=10000,
        reconnect_backoff_ms=100,
        reconnect_backoff_max_ms=500,
    )
    producer.init_transactions()
    out.line(f"S {os.getpid()}")

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            out.line("A ")

        def on_partitions_assigned(self, assigned):
            out.line("A " + ",".join(str(p) for p in sorted(tp.partition for tp in assigned)))

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        client_id=f"{args.client_id}-c",
        group_id=args.group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        fetch_max_wait_ms=100,
        request_timeout_ms=30000,
        reconnect_backoff_ms=100,
        reconnect_backoff_max_ms=500,
    )
    consumer.subscribe(topics=[args.input], listener=Listener())

    def rewind(first: dict[int, int]) -> None:
        for p, o in first.items():
            try:
                consumer.seek(TopicPartition(args.input, p), o)
            except (Errors.KafkaError, AssertionError, ValueError) as e:
                out.line(f"E seek {p}:{o} failed: {e!r}")

    def bounded(what: str, fn, *fn_args) -> None:
        """Runs a transactional call that kafka-python waits on without a timeout, giving up
        after --txn-call-timeout seconds: kafka-python 3.0's sender drops a transactional
        request when connecting to the coordinator raises (sender.py: the handler is neither
        sent nor re-enqueued), and the caller then waits forever. A copier stuck that way
        exits (status 5, like a crash); its replacement fences it and carries on."""
        done = threading.Event()
        failure: list[BaseException] = []

        def call():
            try:
                fn(*fn_args)
            except BaseException as e:  # handed to the caller's thread
                failure.append(e)
            finally:
                done.set()

        threading.Thread(target=call, daemon=True, name=what).start()
        if not done.wait(args.txn_call_timeout):
            out.line(f"F {what} did not return within {args.txn_call_timeout}s "
                     "(kafka-python lost the request); exiting")
            faulthandler.dump_traceback(all_threads=True)
            os._exit(5)
        if failure:
            raise failure[0]

    def transact(records) -> None:
        first, nxt = batch_offsets((r.partition, r.offset) for r in records)
        try:
            producer.begin_transaction()
            for r in records:
                producer.send(args.output, key=r.key, value=b"copy:" + r.value)
            producer.flush(timeout=args.op_timeout)  # in the log before the offsets/abort
            if args.record_delay_ms:
                time.sleep(args.record_delay_ms * len(records) / 1000)
            bounded("send_offsets_to_transaction", producer.send_offsets_to_transaction,
                    {TopicPartition(args.input, p): OffsetAndMetadata(o, "", -1)
                     for p, o in nxt.items()},
                    consumer.group_metadata())
            if args.abort_fraction and rng.random() < args.abort_fraction:
                bounded("abort_transaction", producer.abort_transaction)
                rewind(first)
                out.line(f"B {len(records)} {fmt_offsets(first)}")
                return
            bounded("commit_transaction", producer.commit_transaction)
            out.line(f"T {len(records)} {fmt_offsets(nxt)}")
        except (Errors.ProducerFencedError, Errors.InvalidProducerEpochError,
                Errors.TransactionalIdAuthorizationFailedError) as e:
            raise Fatal(repr(e)) from e
        except Errors.KafkaError as e:
            try:
                bounded("abort_transaction", producer.abort_transaction)
            except Errors.KafkaError as e2:
                raise Fatal(f"abort after {e!r} failed: {e2!r}") from e2
            rewind(first)
            out.line(f"R {len(records)} {fmt_offsets(first)} {e!r}")

    try:
        while not stopping:
            polled = consumer.poll(timeout_ms=200, max_records=args.batch)
            records = sorted((r for rs in polled.values() for r in rs),
                             key=lambda r: (r.partition, r.offset))
            if records:
                transact(records)
    except (Fatal, Errors.KafkaError) as e:
        out.line(f"F {e!r}")
        os._exit(3)  # skip kafka-python's atexit close, which may block on a fenced producer
    consumer.close(autocommit=False)
    producer.close(timeout=args.op_timeout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--txn-id", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--client", choices=["confluent", "kafka-python"], default="confluent")
    ap.add_argument("--client-id", default="txn-copier")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--abort-fraction", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--record-delay-ms", type=float, default=0,
                    help="pacing: sleep this long per record inside each transaction, after "
                         "the flush (so a SIGKILL likely lands in an open transaction)")
    ap.add_argument("--transaction-timeout-ms", type=int, default=20000)
    ap.add_argument("--op-timeout", type=float, default=20.0,
                    help="seconds for init/commit/abort/send_offsets calls, retries included")
    ap.add_argument("--txn-call-timeout", type=float, default=15.0,
                    help="kafka-python: seconds to wait for send_offsets_to_transaction, "
                         "commit_transaction or abort_transaction before exiting (status 5)")
    ap.add_argument("--debug", default="", help="librdkafka debug contexts of the producer")
    ap.add_argument("--session-timeout-ms", type=int, default=3000)
    ap.add_argument("--heartbeat-interval-ms", type=int, default=300)
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, on_sigterm)
    # Diagnostics for a stalled copier: SIGUSR1 dumps every thread's stack to stderr, and the
    # clients' warnings go there too (the test shows stderr's tail when it fails).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Out(args.out)
    rng = random.Random(args.seed)
    try:
        if args.client == "confluent":
            run_confluent(args, out, rng)
        else:
            run_kafka_python(args, out, rng)
    except Exception as e:  # a bug here, or an unexpected client exception
        traceback.print_exc()
        out.line(f"F unexpected {e!r}")
        os._exit(4)
    out.line("X")
    sys.exit(0)


if __name__ == "__main__":
    main()
