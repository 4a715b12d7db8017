"""A share-group consumer run as its own process by test_share_groups.py, so a test can
SIGKILL it while it holds acquired records.

    python share_worker.py --bootstrap HOST:PORT --topic T --group G --out FILE [--accept N]

It subscribes with a confluent-kafka ShareConsumer in explicit acknowledgement mode, polls
until one poll returns records, ACCEPTs the first N of them (commit_sync), and then holds the
rest unacknowledged until it is killed. Each line of FILE is written with one unbuffered write,
so a SIGKILL never loses or tears a line already reported:

    R <offset> <delivery count> <value>   a record it received
    C <offset>                            an ACCEPT of this record that commit_sync confirmed
    H                                     it now holds the other records without acknowledging
    E <text>                              an error
"""

from __future__ import annotations

import argparse
import os
import time

from confluent_kafka import AcknowledgeType, ShareConsumer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--accept", type=int, default=0)
    args = ap.parse_args()
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def line(text: str) -> None:
        os.write(fd, (text + "\n").encode())

    sc = ShareConsumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                        "share.acknowledgement.mode": "explicit"})
    sc.subscribe([args.topic])
    batch = []
    deadline = time.monotonic() + 30
    while not batch and time.monotonic() < deadline:
        batch = [m for m in sc.poll(0.5) if not m.error()]
    for m in batch:
        line(f"R {m.offset()} {m.delivery_count()} {m.value().decode()}")
    accepted = batch[:args.accept]
    if accepted:
        for m in accepted:
            sc.acknowledge(m, AcknowledgeType.ACCEPT)
        results = sc.commit_sync(timeout=20)
        failed = [err for err in results.values() if err is not None]
        if failed:
            line(f"E commit failed: {failed}")
        else:
            for m in accepted:
                line(f"C {m.offset()}")
    line("H")
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
