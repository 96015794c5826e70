"""One health monitor leads; when it dies another takes over within one lease period."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

LEASE_SECONDS = 1.0


class Monitor:
    """A real `jobledger monitor` process, its output lines read as they come."""

    def __init__(self, database_url: str) -> None:
        env = {**os.environ, "JOBLEDGER_DATABASE_URL": database_url}
        env["JOBLEDGER_LEASE_SECONDS"] = str(LEASE_SECONDS)
        env["JOBLEDGER_RECONCILE_INTERVAL_S"] = "1"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "monitor"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def next_role(self, timeout: float) -> str:
        """The next "leader" or "follower" line within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no leadership change reported in time")
            line = self.lines.get(timeout=remaining)
            if line in ("leader", "follower"):
                return line

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def monitors(database_url: str) -> Iterator[tuple[Monitor, Monitor]]:
    first = Monitor(database_url)
    assert first.next_role(timeout=30) == "leader"
    second = Monitor(database_url)
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.mark.slow
def test_one_of_two_monitors_leads_and_the_other_takes_over_when_it_is_killed(
    monitors: tuple[Monitor, Monitor],
) -> None:
    leader, follower = monitors
    assert follower.next_role(timeout=30) == "follower"

    killed_at = time.monotonic()
    leader.stop(signal.SIGKILL)

    assert follower.next_role(timeout=LEASE_SECONDS + 5) == "leader"
    assert time.monotonic() - killed_at < LEASE_SECONDS + 5
