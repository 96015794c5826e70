"""`LoopAppends` against a real PostgreSQL: closed while an append waits on a lock, its
connection stays until that append ends, the append is recorded, and then the connection
closes."""

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg

from ledger.commands import RegisterJob
from ledger.database import libpq_url
from ledger.decide import decide
from ledger.loop_appends import LoopAppends
from ledger.settings import Settings
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


def test_closing_during_an_append_closes_the_connection_once_the_append_ends(
    database_url: str, store: EventStore
) -> None:
    url = libpq_url(database_url)
    with (
        psycopg.connect(url, autocommit=True) as admin,
        psycopg.connect(url) as holder,  # a transaction: its lock is held until rollback
    ):

        def state_of(pid: int) -> tuple[str | None, ...] | None:
            return admin.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
            ).fetchone()

        async def scenario() -> None:
            appends = LoopAppends(database_url, Settings(lock_timeout_ms=30_000), store.observers)
            appends.open()
            await appends.append_new(new_job("first"))  # the connection opens
            assert appends._conn is not None
            pid = appends._conn.info.backend_pid

            holder.execute("LOCK TABLE job_events IN EXCLUSIVE MODE")
            on_its_way = asyncio.create_task(appends.append_new(new_job("second")))
            await until(lambda: state_of(pid) == ("Lock",), "the append waits on the lock")

            await appends.close()
            assert not appends.ready(), "closed: no append is taken"
            assert state_of(pid) is not None, "the connection outlives the close meanwhile"
            assert not on_its_way.done()

            holder.rollback()
            appended = await on_its_way
            assert appended.state.job_id == "second" and appended.state.version == 1
            await until(lambda: state_of(pid) is None, "the connection closes after it")
            assert appends._conn is None

        run_apart(scenario())
    assert [event.seq for event in store.history("second")] == [1]
