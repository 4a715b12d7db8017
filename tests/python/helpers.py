"""Helpers shared by the client tests: bounded waiting and topic creation."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic


def wait_until(cond, timeout: float, what, interval: float = 0.05):
    """Polls cond() until it returns something truthy (returned) or fails after `timeout`
    seconds with `what` (a string, or a callable giving one, for the current state)."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for "
                        f"{what() if callable(what) else what}")
        time.sleep(interval)


def create_topic(bootstrap: str, name: str, partitions: int, timeout: float = 20.0) -> None:
    """Creates a topic and waits until its metadata shows every partition."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                        operation_timeout=10, request_timeout=timeout)[name].result(timeout)

    def ready():
        md = admin.list_topics(name, timeout=timeout).topics.get(name)
        return md is not None and md.error is None and len(md.partitions) == partitions

    wait_until(ready, timeout, f"topic {name} to show {partitions} partitions")
