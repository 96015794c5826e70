"""Registrations from many threads of one process (`ledger.concurrent_registrations`):
those that wait while one is on its way are registered together, in one transaction,
each with the outcome its own `execute` would have had."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from ledger.commands import RegisterJob
from ledger.concurrent_registrations import ConcurrentRegistrations
from ledger.database import libpq_url
from ledger.errors import DuplicateJob, IdempotencyKeyReused, InvalidCommand
from ledger.registrations import Registered
from ledger.service import JobService

DEADLINE_S = 10.0


class Calls:
    """Registrations made on threads of their own, each's answer or error kept."""

    def __init__(self, together: ConcurrentRegistrations) -> None:
        self.together = together
        self.answers: dict[str, Registered | Exception] = {}
        self.threads: list[threading.Thread] = []

    def start(self, name: str, job_id: str, key: str | None = None, **fields: Any) -> None:
        def call() -> None:
            try:
                self.answers[name] = self.together.register(
                    job_id, RegisterJob(**fields), actor="trainer", idempotency_key=key
                )
            except Exception as refused:
                self.answers[name] = refused

        thread = threading.Thread(target=call, name=f"register-{name}")
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(DEADLINE_S)
            assert not thread.is_alive(), "every registration is answered"


def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@contextmanager
def log_held(database_url: str) -> Iterator[Callable[[], None]]:
    """The log locked by another transaction (no append goes through) until the function
    yielded is called."""
    with psycopg.connect(libpq_url(database_url)) as holder:
        holder.execute("LOCK TABLE job_events IN EXCLUSIVE MODE")
        yield holder.rollback


def transactions(engine: Engine, job_ids: list[str]) -> dict[str, str]:
    """The transaction that recorded each job's first event."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT job_id, tx_id::text FROM job_events WHERE seq = 1 AND job_id = ANY(:ids)"),
            {"ids": job_ids},
        )
        return {job_id: tx_id for job_id, tx_id in rows}


def test_registrations_that_wait_are_registered_together_in_one_transaction(
    service: JobService, engine: Engine, database_url: str
) -> None:
    together = ConcurrentRegistrations(service)
    calls = Calls(together)
    waiting = [f"waits-{i}" for i in range(5)]
    with log_held(database_url) as release:
        calls.start("first", "first")  # alone, through `execute`: it waits on the lock
        until(lambda: together._on_its_way, "the first registration is on its way")
        for job_id in waiting:
            calls.start(job_id, job_id)
        until(lambda: together.waiting() == len(waiting), "the others wait behind it")
        release()
    calls.join()

    assert all(isinstance(calls.answers[name], Registered) for name in ["first", *waiting])
    recorded = transactions(engine, ["first", *waiting])
    assert len({recorded[job_id] for job_id in waiting}) == 1, "one transaction for those"
    assert recorded["first"] != recorded[waiting[0]]
    assert together.waiting() == 0 and not together._on_its_way


def test_each_registration_of_a_shared_call_has_its_own_outcome(
    service: JobService, database_url: str
) -> None:
    service.execute("keyed", RegisterJob(priority=3), actor="trainer", idempotency_key="k-1")
    service.execute("plain", RegisterJob(), actor="trainer")
    together = ConcurrentRegistrations(JobService(service.store))  # a cache of its own
    calls = Calls(together)
    with log_held(database_url) as release:
        calls.start("first", "first")
        until(lambda: together._on_its_way, "the first registration is on its way")
        calls.start("new", "new", "k-new", spec={"lr": 0.1})
        calls.start("replay", "keyed", "k-1", priority=3)
        calls.start("duplicate", "plain")
        calls.start("reused", "keyed", "k-1", priority=4)
        until(lambda: together.waiting() == 4, "the others wait behind it")
        release()
    calls.join()

    new, replay = calls.answers["new"], calls.answers["replay"]
    assert isinstance(new, Registered) and not new.replayed and new.state.spec == {"lr": 0.1}
    assert isinstance(replay, Registered) and replay.replayed and replay.state.priority == 3
    assert isinstance(calls.answers["duplicate"], DuplicateJob)
    assert isinstance(calls.answers["reused"], IdempotencyKeyReused)
    assert len(service.store.history("keyed")) == len(service.store.history("plain")) == 1


def test_a_value_the_database_cannot_store_fails_only_its_own_registration(
    service: JobService, engine: Engine, database_url: str
) -> None:
    together = ConcurrentRegistrations(service)
    calls = Calls(together)
    others = ["ok-1", "ok-2"]
    with log_held(database_url) as release:
        calls.start("first", "first")
        until(lambda: together._on_its_way, "the first registration is on its way")
        calls.start("ok-1", "ok-1")
        calls.start("nul", "nul", spec={"note": "a\x00b"})
        calls.start("ok-2", "ok-2")
        until(lambda: together.waiting() == 3, "the others wait behind it")
        release()
    calls.join()

    assert isinstance(calls.answers["nul"], InvalidCommand)
    assert all(isinstance(calls.answers[job_id], Registered) for job_id in others)
    assert sorted(transactions(engine, [*others, "nul"])) == others, "tried again alone"


def test_a_lone_caller_registers_and_replays_as_execute_does(service: JobService) -> None:
    together = ConcurrentRegistrations(service)
    first = together.register("lone", RegisterJob(priority=2), actor="trainer", idempotency_key="k")
    again = together.register("lone", RegisterJob(priority=2), actor="trainer", idempotency_key="k")

    assert not first.replayed and again.replayed and again.state == first.state
    with pytest.raises(DuplicateJob):
        together.register("lone", RegisterJob(priority=2), actor="trainer")
    assert [event.actor for event in service.store.history("lone")] == ["trainer"]


def test_many_threads_register_every_job_once_and_some_together(service: JobService) -> None:
    together = ConcurrentRegistrations(service, most=4)
    failures: list[BaseException] = []

    def register_some(thread: int) -> None:
        try:
            for n in range(25):
                together.register(f"t{thread}-{n}", RegisterJob(), actor="trainer")
        except BaseException as failure:  # a thread's failure fails the test below
            failures.append(failure)

    threads = [threading.Thread(target=register_some, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S * 3)
    assert failures == [] and not any(thread.is_alive() for thread in threads)
    job_ids = [f"t{index}-{n}" for index in range(8) for n in range(25)]
    for job_id in job_ids:
        assert [event.seq for event in service.store.history(job_id)] == [1]
    recorded = transactions(service.store.engine, job_ids)
    assert len(set(recorded.values())) < len(job_ids), "some were registered together"
    assert together.waiting() == 0 and not together._on_its_way
