"""`LoopAppends` against a real PostgreSQL: closed while an append waits on a lock, its
connection stays until that append ends, the append is recorded, and then the connection
closes; an append to an existing job is recorded, and writes the job's row whole when it
is at another version than the append was decided on."""

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import psycopg
import pytest

from ledger.commands import CancelJob, RegisterJob
from ledger.database import libpq_url
from ledger.decide import decide
from ledger.loop_appends import LoopAppends
from ledger.settings import Settings
from ledger.state import JobState
from ledger.store import EventStore, PreparedAppend, prepare_append

DEADLINE_S = 10.0


def new_job(job_id: str) -> PreparedAppend:
    events = decide(None, RegisterJob(), job_id=job_id)
    return prepare_append(job_id, None, events, actor="trainer")


def run_apart(scenario: Coroutine[Any, Any, None]) -> None:
    """Run `scenario` to its end on an event loop of a thread of its own: this thread may
    hold another library's running loop (the browser tests' Playwright keeps one)."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(scenario)
        except BaseException as failure:
            failures.append(failure)

    thread = threading.Thread(target=run, name="scenario")
    thread.start()
    thread.join(DEADLINE_S * 3)
    assert not thread.is_alive(), "the scenario ends"
    if failures:
        raise failures[0]


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


Connections = tuple[psycopg.Connection[tuple[Any, ...]], psycopg.Connection[tuple[Any, ...]]]


@pytest.fixture
def admin_and_holder(database_url: str) -> Iterator[Connections]:
    """A connection to look with, and one whose transaction holds a lock until rollback."""
    url = libpq_url(database_url)
    with psycopg.connect(url, autocommit=True) as admin, psycopg.connect(url) as holder:
        yield admin, holder


def lock_waits(admin: psycopg.Connection[tuple[Any, ...]]) -> int:
    """How many of this database's connections wait on a lock."""
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return int(row[0]) if row else 0


def test_closing_during_an_append_closes_the_connection_once_the_append_ends(
    database_url: str, store: EventStore, admin_and_holder: Connections
) -> None:
    admin, holder = admin_and_holder

    def state_of(pid: int) -> tuple[str | None, ...] | None:
        return admin.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone()

    async def scenario() -> None:
        appends = LoopAppends(database_url, Settings(lock_timeout_ms=30_000), store.observers)
        appends.open()
        await appends.append(new_job("first"))  # the connection opens
        (pid,) = appends.backend_pids()

        holder.execute("LOCK TABLE job_events IN EXCLUSIVE MODE")
        on_its_way = asyncio.create_task(appends.append(new_job("second")))
        await until(lambda: state_of(pid) == ("Lock",), "the append waits on the lock")

        await appends.close()
        assert not appends.ready(), "closed: no append is taken"
        assert state_of(pid) is not None, "the connection outlives the close meanwhile"
        assert not on_its_way.done()

        holder.rollback()
        appended = await on_its_way
        assert appended.state.job_id == "second" and appended.state.version == 1
        await until(lambda: state_of(pid) is None, "the connection closes after it")
        assert appends.backend_pids() == []

    run_apart(scenario())
    assert [event.seq for event in store.history("second")] == [1]


def test_an_append_to_an_existing_job_is_recorded_and_a_row_elsewhere_is_written_whole(
    database_url: str, store: EventStore
) -> None:
    registered, repaired = (
        store.append(job_id, None, decide(None, RegisterJob(), job_id=job_id), actor="t")
        for job_id in ("on-loop", "repaired")
    )
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        # A projection being repaired: the row holds another version than the log.
        admin.execute("UPDATE job_status SET version = 7 WHERE job_id = 'repaired'")

    def cancel(state: JobState) -> PreparedAppend:
        events = decide(state, CancelJob(reason="not needed"), job_id=state.job_id)
        return prepare_append(state.job_id, state, events, actor="alice")

    async def scenario() -> None:
        appends = LoopAppends(database_url, Settings(), store.observers)
        appends.open()
        try:
            for state in (registered.state, repaired.state):
                appended = await appends.append(cancel(state))
                assert appended.state.version == 2 and appended.state.status == "cancelled"
            assert appends.ready(), "the connection is kept"
        finally:
            await appends.close()

    run_apart(scenario())
    for job_id in ("on-loop", "repaired"):
        cancelled = store.load(job_id)
        assert cancelled is not None and cancelled.status == "cancelled"
        assert cancelled.version == 2, "the row at another version is written whole"
        assert [event.seq for event in store.history(job_id)] == [1, 2]


def test_appends_at_once_take_a_connection_each_up_to_the_most(
    database_url: str, store: EventStore, admin_and_holder: Connections
) -> None:
    admin, holder = admin_and_holder

    async def scenario() -> None:
        appends = LoopAppends(database_url, Settings(), store.observers, connections=2)
        appends.open()
        try:
            holder.execute("LOCK TABLE job_events IN EXCLUSIVE MODE")
            first = asyncio.create_task(appends.append(new_job("first")))
            await until(lambda: lock_waits(admin) == 1, "the first append waits on the lock")
            assert appends.ready(), "one connection in use: another append may go"
            second = asyncio.create_task(appends.append(new_job("second")))
            await until(lambda: lock_waits(admin) == 2, "the second append waits too")
            assert not appends.ready(), "both in use: no third goes"
            holder.rollback()
            recorded = await asyncio.gather(first, second)
            assert [a.state.job_id for a in recorded] == ["first", "second"]
            assert appends.ready()
            assert len(set(appends.backend_pids())) == 2, "two connections, kept"
        finally:
            await appends.close()
        assert appends.backend_pids() == []

    run_apart(scenario())
    assert [event.seq for event in store.history("second")] == [1]


def test_an_append_cancelled_on_its_way_leaves_its_connection_unused(
    database_url: str, store: EventStore, admin_and_holder: Connections
) -> None:
    admin, holder = admin_and_holder

    async def scenario() -> None:
        appends = LoopAppends(database_url, Settings(), store.observers)
        appends.open()
        try:
            await appends.append(new_job("before"))
            (first_pid,) = appends.backend_pids()
            holder.execute("LOCK TABLE job_events IN EXCLUSIVE MODE")
            on_its_way = asyncio.create_task(appends.append(new_job("cancelled")))
            await until(lambda: lock_waits(admin) == 1, "the append waits on the lock")
            on_its_way.cancel()
            with pytest.raises(asyncio.CancelledError):
                await on_its_way
            assert appends.backend_pids() == [], "its connection is not kept"
            assert appends.ready()
            holder.rollback()
            after = await appends.append(new_job("after"))
            assert after.state.version == 1
            assert first_pid not in appends.backend_pids()
        finally:
            await appends.close()

    run_apart(scenario())
    assert [event.seq for event in store.history("after")] == [1]
