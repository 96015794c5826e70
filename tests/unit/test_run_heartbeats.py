"""One thread heartbeats every run of a client, and outlives any one failure."""

import threading
import time
from typing import Any

from ledger.errors import DatabaseUnavailable
from ledger.run_heartbeats import Beat, RunHeartbeats
from tests.integration.recovery_helpers import poll


class Run:
    def __init__(self, job_id: str, every: float = 0.01) -> None:
        self.job_id = job_id
        self.heartbeat_every = every
        self.answers: list[dict[str, Any]] = []

    def beat(self) -> Beat:
        return (self.job_id, 1, "token")

    def beat_answered(self, outcome: dict[str, Any]) -> None:
        self.answers.append(outcome)


class Server:
    """Answers each beat 200, after failing the first `failures` (each a given error)."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.sent: list[list[Beat]] = []
        self.lock = threading.Lock()

    def send(self, beats: list[Beat]) -> list[dict[str, Any]]:
        with self.lock:
            self.sent.append(beats)
            if self.failures:
                raise self.failures.pop(0)
        return [{"job_id": job_id, "status": 200} for job_id, _, _ in beats]


def test_every_run_is_beaten_in_one_request_and_the_thread_ends_with_the_last_run() -> None:
    server = Server()
    heartbeats = RunHeartbeats(server.send)
    first, second = Run("a"), Run("b")
    heartbeats.add(first)
    heartbeats.add(second)
    poll(lambda: second.answers and first.answers)
    assert any(sorted(job for job, _, _ in beats) == ["a", "b"] for beats in server.sent)

    heartbeats.remove(first)
    heartbeats.remove(second)

    poll(lambda: not heartbeats.beating)
    poll(lambda: "jobledger-heartbeats" not in {t.name for t in threading.enumerate()})


def test_a_failed_beat_of_any_kind_is_tried_again_at_the_next() -> None:
    server = Server(DatabaseUnavailable("away"), ValueError("not JSON"))
    heartbeats = RunHeartbeats(server.send)
    run = Run("a")
    heartbeats.add(run)
    poll(lambda: run.answers)
    heartbeats.remove(run)
    assert len(server.sent) >= 3


def test_a_run_that_left_is_not_told_of_an_answer_in_flight() -> None:
    left = Run("left")
    stays = Run("stays")
    release = threading.Event()
    heartbeats: RunHeartbeats

    def send(beats: list[Beat]) -> list[dict[str, Any]]:
        heartbeats.remove(left)  # leaves while its beat is on the wire
        release.set()
        return [{"job_id": job_id, "status": 409} for job_id, _, _ in beats]

    heartbeats = RunHeartbeats(send)
    heartbeats.add(left)
    heartbeats.add(stays)
    poll(lambda: stays.answers)
    heartbeats.remove(stays)
    assert release.is_set() and left.answers == []


class Odd(Run):
    """A run whose beat is not a number and which cannot take its answers."""

    def __init__(self) -> None:
        super().__init__("odd")
        self.heartbeat_every = "soon"  # type: ignore[assignment]

    def beat_answered(self, outcome: dict[str, Any]) -> None:
        super().beat_answered(outcome)
        raise TypeError("not a number")


def test_a_run_that_cannot_take_its_answer_stops_no_other_run() -> None:
    server = Server()
    heartbeats = RunHeartbeats(server.send)
    odd, run = Odd(), Run("a")
    heartbeats.add(odd)
    heartbeats.add(run)
    poll(lambda: len(odd.answers) >= 2 and len(run.answers) >= 2)
    later = Run("later")
    heartbeats.add(later)
    poll(lambda: later.answers)
    assert heartbeats.beating
    for each in (odd, run, later):
        heartbeats.remove(each)


def test_a_run_removed_while_its_beat_is_on_the_way_waits_for_the_answer() -> None:
    """A run's final report never reaches the ledger before its last heartbeat."""
    order: list[str] = []
    on_the_way, remove_called = threading.Event(), threading.Event()
    run = Run("ending")

    def send(beats: list[Beat]) -> list[dict[str, Any]]:
        on_the_way.set()
        assert remove_called.wait(timeout=10)
        time.sleep(0.2)  # time enough for a remove that did not wait to have returned
        order.append("answered")
        return [{"job_id": job_id, "status": 200} for job_id, _, _ in beats]

    heartbeats = RunHeartbeats(send)
    heartbeats.add(run)

    def end() -> None:
        assert on_the_way.wait(timeout=10)
        remove_called.set()
        heartbeats.remove(run, wait_s=10)
        order.append("removed")

    ender = threading.Thread(target=end)
    ender.start()
    ender.join(timeout=15)
    assert order == ["answered", "removed"]


class Slow(Run):
    """A run of a long beat that says when its beat was read (the thread is about to wait)."""

    def __init__(self) -> None:
        super().__init__("slow")
        self.read = threading.Event()

    @property
    def heartbeat_every(self) -> float:
        self.read.set()
        return 60.0

    @heartbeat_every.setter
    def heartbeat_every(self, every: float) -> None:
        pass


def test_a_run_that_joins_with_a_shorter_beat_brings_the_next_beat_forward() -> None:
    server = Server()
    heartbeats = RunHeartbeats(server.send)
    slow, quick = Slow(), Run("quick")
    heartbeats.add(slow)
    assert slow.read.wait(timeout=10)  # the next beat is a minute away
    heartbeats.add(quick)
    poll(lambda: quick.answers and slow.answers)
    heartbeats.remove(slow)
    heartbeats.remove(quick)
