"""Shared fixtures for the client-compatibility tests.

Each test module gets its own broker: the `courier` binary (COURIER_BIN, default
target/debug/courier) serving a fresh data dir on a free loopback port. The broker's log goes to
a file; when a test fails, the log is attached to the failure report.

A module may set BROKER_FLAGS (a sequence of extra `courier serve` arguments) for its `broker`;
a test that needs a broker of its own (e.g. to SIGKILL and restart it) calls the `start_broker`
factory fixture: `b = start_broker("--flag", "value")`, then `b.restart()` to SIGKILL it and
start it again on the same port and data dir.
"""

from __future__ import annotations

import itertools
import os
import re
import select
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LISTEN_RE = re.compile(r"^courier listening on (127\.0\.0\.1:\d+)$")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# How much of the broker log to attach to a failing test's report.
LOG_TAIL_LINES = 200


def courier_bin() -> Path:
    path = Path(os.environ.get("COURIER_BIN", REPO_ROOT / "target" / "debug" / "courier"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


class Broker:
    """One running `courier serve` process."""

    def __init__(self, data_dir: Path, log_path: Path, flags=()):
        self.data_dir = data_dir
        self.log_path = log_path
        self.flags = [str(f) for f in flags]
        self.proc: subprocess.Popen | None = None
        self.bootstrap: str | None = None

    def start(self, timeout: float = 20.0) -> None:
        binary = courier_bin()
        if not binary.exists():
            pytest.fail(f"broker binary {binary} not found: run `cargo build -p courier-cli` "
                        "or set COURIER_BIN")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.setdefault("COURIER_LOG", "info")
        env["NO_COLOR"] = "1"
        # A restart listens on the address the first start got, so clients reconnect to it.
        listen = self.bootstrap or "127.0.0.1:0"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), "serve", "--listen", listen, "--data-dir", str(self.data_dir),
                 *self.flags],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        # The first stdout line is exactly "courier listening on 127.0.0.1:PORT".
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                pytest.fail(f"broker did not report its port (exit={self.proc.returncode}, "
                            f"stdout so far={line!r})\n{self.log_text()}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 1)
                if not chunk:
                    continue
                line += chunk
        m = LISTEN_RE.match(line.decode(errors="replace").rstrip("\n"))
        if not m:
            self.kill()
            pytest.fail(f"unexpected first stdout line from broker: {line!r}")
        self.bootstrap = m.group(1)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (clean shutdown), then SIGKILL if it does not exit in time. Returns the exit
        code after SIGTERM, or None when it had to be killed."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stdout and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def restart(self, timeout: float = 20.0) -> None:
        """SIGKILLs the broker (no clean shutdown) and starts it again on the same address and
        data dir."""
        self.kill()
        self.start(timeout)

    def log_text(self, tail: int | None = LOG_TAIL_LINES) -> str:
        try:
            text = ANSI_RE.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return "(no broker log)"
        lines = text.splitlines()
        if tail is not None and len(lines) > tail:
            lines = [f"... ({len(lines) - tail} earlier lines in {self.log_path})"] + lines[-tail:]
        return "\n".join(lines)


# Brokers of the tests now running, so a failure report can carry their logs.
_live_brokers: list[Broker] = []


def _stop_checked(b: Broker) -> None:
    code = b.stop()
    if code != 0:
        print(f"\n---- broker log ({b.log_path}) ----\n{b.log_text()}")
        pytest.fail(f"broker did not shut down cleanly on SIGTERM (exit code {code}; "
                    "None means it had to be killed)")


@pytest.fixture(scope="module")
def broker(request, tmp_path_factory) -> Broker:
    """A broker of this test module's own, on a fresh data dir, started with the module's
    BROKER_FLAGS, if any."""
    base = tmp_path_factory.mktemp("courier")
    b = Broker(base / "data", base / "broker.log", getattr(request.module, "BROKER_FLAGS", ()))
    b.start()
    _live_brokers.append(b)
    yield b
    _live_brokers.remove(b)
    _stop_checked(b)


@pytest.fixture
def start_broker(tmp_path_factory):
    """Factory for brokers of one test's own: start_broker(*extra_serve_flags) -> Broker, on a
    fresh data dir; each is stopped (and must shut down cleanly) when the test ends."""
    started: list[Broker] = []

    def start(*flags) -> Broker:
        base = tmp_path_factory.mktemp("courier")
        b = Broker(base / "data", base / "broker.log", flags)
        b.start()
        started.append(b)
        _live_brokers.append(b)
        return b

    yield start
    for b in started:
        _live_brokers.remove(b)
    for b in started:
        _stop_checked(b)


@pytest.fixture(scope="module")
def bootstrap(broker) -> str:
    """"127.0.0.1:PORT" of this module's broker."""
    return broker.bootstrap


_topic_counter = itertools.count()


@pytest.fixture
def topic_name(request):
    """Makes unique, readable topic names: topic_name("acks-all") -> "test_x-acks-all-3-1a2b3c"."""

    def make(label: str = "t") -> str:
        test = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:80]
        return f"{test}-{label}-{next(_topic_counter)}-{uuid.uuid4().hex[:6]}"

    return make


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _live_brokers:
        for b in _live_brokers:
            report.sections.append((f"courier broker log ({b.log_path})", b.log_text()))
