"""The heartbeats of every run a training server process holds, in one request a beat.

A process that runs many jobs at once (a host's eight GPUs, or a scheduler's whole
fleet) heartbeats all of them with one `POST /v1/heartbeats` every beat, from one thread,
instead of one request and one thread per run: the server's load grows with the hosts,
not with the GPUs. The beat is a third of the shortest lease a run was told of; a run
that joins is beaten at the next beat, and the thread ends when the last run leaves.
"""

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ledger.errors import LedgerError
from ledger.settings import DEFAULT_LEASE_SECONDS

log = logging.getLogger("jobledger.client")

Beat = tuple[str, int, str]
"""A run as its heartbeat names it: job id, attempt, run token."""

SendBeats = Callable[[list[Beat]], list[dict[str, Any]]]
"""Heartbeats many runs; each run's outcome, in order (`LedgerClient.heartbeat_many`)."""


class BeatingRun(Protocol):
    @property
    def heartbeat_every(self) -> float:
        """Seconds between this run's heartbeats."""
        ...

    def beat(self) -> Beat: ...

    def beat_answered(self, outcome: dict[str, Any]) -> None:
        """What the ledger answered for this run: renewed, fenced or refused."""


class RunHeartbeats:
    """One thread that heartbeats every run `add`ed until it is `remove`d."""

    def __init__(self, send: SendBeats) -> None:
        self._send = send
        self._runs: dict[int, BeatingRun] = {}
        self._lock = threading.Lock()
        self._sent = threading.Condition(self._lock)
        self._sending: set[int] = set()
        """The runs of the beat on its way, until its answer is taken."""
        self._changed = threading.Event()
        """Set when a run joins, or the last one leaves: the beat's time is worked out again."""
        self._thread: threading.Thread | None = None

    def add(self, run: BeatingRun) -> None:
        with self._lock:
            self._runs[id(run)] = run
            self._changed.set()
            if self._thread is None or not self._thread.is_alive():  # or lost in a fork
                self._thread = threading.Thread(
                    target=self._beat, name="jobledger-heartbeats", daemon=True
                )
                self._thread.start()

    def remove(self, run: BeatingRun, wait_s: float = 0.0) -> None:
        """Stop heartbeating `run`; an answer about it still in flight is not told it.
        With `wait_s`, wait that long at most for a beat of it on its way to be answered,
        so none reaches the ledger after what the caller sends next (a run's final
        report)."""
        with self._lock:
            self._runs.pop(id(run), None)
            if not self._runs:
                self._changed.set()
            if wait_s > 0 and threading.current_thread() is not self._thread:
                self._sent.wait_for(lambda: id(run) not in self._sending, timeout=wait_s)

    @property
    def beating(self) -> bool:
        """Whether the thread is running (it ends once no run is left)."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def _current(self) -> list[BeatingRun] | None:
        """The runs to beat now; None (and the thread is done) when there are none."""
        with self._lock:
            if not self._runs:
                self._thread = None
                return None
            return list(self._runs.values())

    def _beat(self) -> None:
        """Beat every run a beat after the last one, the beat being the shortest of the
        runs' now: a run that joins with a shorter one brings the next beat forward."""
        try:
            last = time.monotonic()
            while (runs := self._current()) is not None:
                wait = last + _interval(runs) - time.monotonic()
                if wait > 0:
                    self._changed.wait(wait)
                    self._changed.clear()  # the runs are read again, after this
                    continue
                last = time.monotonic()
                self._send_beats(runs)
        finally:  # ended by the process's own end; the next `add` starts another
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _send_beats(self, runs: list[BeatingRun]) -> None:
        """Beat `runs` and tell each what was answered; never raises: the thread beats for
        every run, so it outlives any one failure."""
        with self._lock:
            self._sending = {id(run) for run in runs}
        try:
            outcomes = self._send([run.beat() for run in runs])
            answered = list(zip(runs, outcomes, strict=True))
        except LedgerError as exc:
            log.warning("heartbeat failed, trying again: %s", exc)
            return
        except Exception:
            log.exception("heartbeat failed, trying again")
            return
        finally:
            with self._lock:
                self._sending = set()
                self._sent.notify_all()
        for run, outcome in answered:
            with self._lock:
                held = id(run) in self._runs
            if not held:
                continue
            try:
                run.beat_answered(outcome)
            except Exception:
                log.exception("a heartbeat's answer could not be taken: %r", outcome)


def _interval(runs: list[BeatingRun]) -> float:
    """The shortest of the runs' beats that is a number of seconds above zero (the
    default lease's third when none is)."""
    intervals = []
    for run in runs:
        try:
            every = float(run.heartbeat_every)
        except Exception:
            continue
        if 0 < every < math.inf:
            intervals.append(every)
    return min(intervals, default=DEFAULT_LEASE_SECONDS / 3)
