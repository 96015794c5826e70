"""Timing client threads: the harness the benchmarks share.

`measure` starts every client, releases them together, lets each run its
operation in a loop until the deadline (or until it has done its share of a
fixed number of operations), records each operation's latency, then has every
client check that all its operations landed. While they run, the process's heap is
settled (`settled_heap`).
"""

import gc
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from api.heap import settle_heap


class BenchError(RuntimeError):
    """A measurement did not do what it was meant to."""


class Client(Protocol):
    """One writer: set up (connected, its job ready) before the clock starts."""

    def op(self, n: int) -> None:
        """The timed operation; `n` counts from 0 for this client."""

    def check(self, ops: int) -> None:
        """After the clock: raise `BenchError` unless all `ops` operations landed."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Measurement:
    ops: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.ops / self.seconds


@dataclass(slots=True)
class _Run:
    """What the client threads of one measurement share."""

    clients: int
    seconds: float
    quota: int | None = None
    """Operations per client, when the measurement is of a fixed amount of work."""
    deadline: float = 0.0
    started: float = 0.0
    ops: list[int] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)
    latencies: list[list[float]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ops = [0] * self.clients
        self.finished = [0.0] * self.clients
        self.latencies = [[] for _ in range(self.clients)]

    def start_clock(self) -> None:
        """Run by the barrier once every client is ready, before any is released."""
        self.started = time.perf_counter()
        self.deadline = self.started + self.seconds


@contextmanager
def settled_heap() -> Iterator[None]:
    """This process's heap settled while clients are timed, as `jobledger serve` settles its
    own (`api.heap.settle_heap`): what exists is frozen, never looked at again, and the
    youngest generation is collected less often; afterwards, the collector as it was.

    Every client of a measurement is a thread of this one process, so a full collection
    stops them all at once. Over a benchmark's heap (its drivers and the peer libraries
    imported) one took 60-90 ms, every few thousand operations: the operations of that
    moment took that much longer, a latency of the harness rather than of the system
    measured, in the tail of whichever measurement it fell in. Settled, a full collection
    looks only at what the measurement made."""
    threshold = gc.get_threshold()
    settle_heap()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def measure(
    make_client: Callable[[int], Client],
    clients: int,
    seconds: float = math.inf,
    *,
    ops_per_client: int | None = None,
) -> Measurement:
    """Run `clients` threads for `seconds`, each timing its client's `op` in a loop;
    with `ops_per_client`, each stops after that many operations."""
    run = _Run(clients, seconds, ops_per_client)
    barrier = threading.Barrier(clients, action=run.start_clock)
    threads = [
        threading.Thread(target=_client_thread, args=(run, barrier, make_client, index))
        for index in range(clients)
    ]
    with settled_heap():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if run.errors:
        raise BenchError(f"{len(run.errors)} client(s) failed") from run.errors[0]
    latencies = [latency for per_client in run.latencies for latency in per_client]
    return Measurement(sum(run.ops), max(run.finished) - run.started, latencies)


def _client_thread(
    run: _Run, barrier: threading.Barrier, make_client: Callable[[int], Client], index: int
) -> None:
    try:
        client = make_client(index)
    except BaseException as exc:
        run.errors.append(exc)
        barrier.abort()
        return
    try:
        barrier.wait()
        latencies = run.latencies[index]
        ops = 0
        now = time.perf_counter()
        quota = math.inf if run.quota is None else run.quota
        while now < run.deadline and ops < quota:
            client.op(ops)
            done = time.perf_counter()
            latencies.append((done - now) * 1000)
            now = done
            ops += 1
        run.finished[index] = now
        run.ops[index] = ops
        client.check(ops)
    except threading.BrokenBarrierError:
        pass  # another client failed to set up; it reported why
    except BaseException as exc:
        run.errors.append(exc)
    finally:
        client.close()


def at_once(calls: list[Callable[[], None]]) -> None:
    """Make the calls at once, a thread each; raise the first one's error, once all end."""
    failures: list[BaseException] = []

    def call(made: Callable[[], None]) -> None:
        try:
            made()
        except BaseException as failure:
            failures.append(failure)

    threads = [threading.Thread(target=call, args=(made,)) for made in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
