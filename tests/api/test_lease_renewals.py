"""Heartbeats that arrive together are renewed together (`api.lease_renewals`), each
answered as a heartbeat of its own would be."""

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from api.bootstrap import Ledger
from api.direct_handler import in_thread
from api.lease_renewals import MOST_TOGETHER, LeaseRenewals
from ledger.commands import RegisterJob, WorkerIdentity
from ledger.database import create_ledger_engine, libpq_url
from ledger.errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    JobNotFound,
    LockNotGranted,
    StaleAttempt,
)
from ledger.leases import RunHeartbeat
from ledger.loop_appends import LoopAppends
from ledger.settings import Settings
from ledger.store import EventStore
from ledger.telemetry import LedgerObserver

WORKER = WorkerIdentity(worker_id="w1", host="gpu-node-1")


def running(ledger: Ledger, count: int) -> list[RunHeartbeat]:
    """`count` jobs registered and started: a heartbeat of each run."""
    for n in range(count):
        ledger.service.execute(f"run-{n}", RegisterJob(), actor="trainer")
    beats = []
    for _ in range(count):
        claim = ledger.queue.claim(WORKER, actor="trainer")
        assert claim is not None
        beats.append(RunHeartbeat(claim.job.job_id, claim.attempt, claim.run_token))
    return beats


class FailsFirst:
    """`statements`, failing its first call only."""

    def __init__(self, statements: "Statements") -> None:
        self.statements = statements

    async def __call__(self, call: Callable[..., Any], values: dict[str, Any]) -> Any:
        try:
            return await self.statements(call, values)
        finally:
            self.statements.fail_with = None


class Statements:
    """`in_thread`, counting the heartbeats each renewal statement carries."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.sizes: list[int] = []
        self.fail_with = fail_with

    async def __call__(self, call: Callable[..., Any], values: dict[str, Any]) -> Any:
        self.sizes.append(len(values.get("heartbeats", [values])))
        if self.fail_with is not None:
            raise self.fail_with
        return await in_thread(call, values)


async def renew_all(renewals: LeaseRenewals, beats: list[RunHeartbeat]) -> list[Any]:
    return await asyncio.gather(*map(renewals.renew, beats), return_exceptions=True)


def test_heartbeats_that_arrive_together_share_one_statement(ledger: Ledger) -> None:
    beats = running(ledger, 5)
    statements = Statements()
    renewals = LeaseRenewals(ledger.store, 60.0, statements)
    outcomes = asyncio.run(renew_all(renewals, beats))
    assert statements.sizes == [5]
    assert all(isinstance(outcome, datetime) for outcome in outcomes), outcomes


def test_a_heartbeat_alone_goes_at_once_in_a_statement_of_its_own(ledger: Ledger) -> None:
    [beat] = running(ledger, 1)
    statements = Statements()
    renewals = LeaseRenewals(ledger.store, 60.0, statements)

    async def one_after_another() -> list[datetime]:
        return [await renewals.renew(beat), await renewals.renew(beat)]

    first, second = asyncio.run(one_after_another())
    assert statements.sizes == [1, 1]
    assert second >= first


def test_each_heartbeat_is_answered_as_its_own_would_be(ledger: Ledger) -> None:
    live, fenced = running(ledger, 2)
    forged = RunHeartbeat(fenced.job_id, fenced.attempt, "not-its-token")
    unknown = RunHeartbeat("no-such-job", 1, "token")
    statements = Statements()
    renewals = LeaseRenewals(ledger.store, 60.0, statements)
    outcomes = asyncio.run(renew_all(renewals, [live, forged, unknown, fenced]))
    assert statements.sizes == [4]
    assert isinstance(outcomes[0], datetime)
    assert isinstance(outcomes[1], StaleAttempt)
    assert isinstance(outcomes[2], JobNotFound)
    assert isinstance(outcomes[3], datetime)


def test_a_statement_carries_at_most_its_share_and_the_rest_follow(ledger: Ledger) -> None:
    [beat] = running(ledger, 1)
    statements = Statements()
    renewals = LeaseRenewals(ledger.store, 60.0, statements)
    outcomes = asyncio.run(renew_all(renewals, [beat] * (MOST_TOGETHER + 7)))
    assert statements.sizes == [MOST_TOGETHER, 7]
    assert all(isinstance(outcome, datetime) for outcome in outcomes)


@pytest.mark.parametrize(
    "failure",
    [DatabaseUnavailable("the database went away"), DatabaseBusy("statement timeout")],
    ids=["out-of-reach", "statement-timeout"],
)
def test_a_database_out_of_reach_or_too_slow_fails_each_heartbeat_at_once(
    ledger: Ledger, failure: Exception
) -> None:
    beats = running(ledger, 3)
    statements = Statements(fail_with=failure)
    renewals = LeaseRenewals(ledger.store, 60.0, statements)
    outcomes = asyncio.run(renew_all(renewals, beats))
    assert statements.sizes == [3]  # none tried alone: none would fare better
    assert all(type(outcome) is type(failure) for outcome in outcomes)
    assert len({id(outcome) for outcome in outcomes}) == 3
    # The next heartbeat gets a statement of its own: nothing was left waiting.
    statements.fail_with = None
    assert isinstance(asyncio.run(renewals.renew(beats[0])), datetime)


def test_a_failed_shared_statement_tries_each_heartbeat_alone(ledger: Ledger) -> None:
    beats = running(ledger, 3)
    statements = Statements(fail_with=LockNotGranted("canceling statement due to lock timeout"))
    first_only = FailsFirst(statements)
    renewals = LeaseRenewals(ledger.store, 60.0, first_only)
    outcomes = asyncio.run(renew_all(renewals, beats))
    assert statements.sizes == [3, 1, 1, 1]
    assert all(isinstance(outcome, datetime) for outcome in outcomes), outcomes


def test_a_lease_another_transaction_holds_fails_only_its_own_heartbeat(
    ledger: Ledger, database_url: str
) -> None:
    beats = running(ledger, 3)
    impatient = create_ledger_engine(database_url, Settings(lock_timeout_ms=200))
    renewals = LeaseRenewals(EventStore(impatient), 60.0, in_thread)
    try:
        with psycopg.connect(libpq_url(database_url)) as holder:
            holder.execute(
                "SELECT 1 FROM job_leases WHERE job_id = %s FOR UPDATE", [beats[1].job_id]
            )
            outcomes = asyncio.run(renew_all(renewals, beats))
            holder.rollback()
    finally:
        impatient.dispose()
    assert isinstance(outcomes[0], datetime)
    assert isinstance(outcomes[1], DatabaseBusy)
    assert isinstance(outcomes[2], datetime)


def test_a_heartbeat_whose_request_went_away_leaves_the_others_answered(
    ledger: Ledger,
) -> None:
    beats = running(ledger, 3)
    statements = Statements()
    renewals = LeaseRenewals(ledger.store, 60.0, statements)

    async def one_gone() -> list[Any]:
        tasks = [asyncio.create_task(renewals.renew(beat)) for beat in beats]
        await asyncio.sleep(0)  # each has joined the waiting heartbeats
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(one_gone())
    assert statements.sizes == [3]
    assert isinstance(outcomes[0], datetime)
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert isinstance(outcomes[2], datetime)


def test_a_stopped_renewal_cancels_the_heartbeats_it_had_not_answered(ledger: Ledger) -> None:
    beats = running(ledger, 2)
    entered = asyncio.Event()

    async def never_answers(call: Callable[..., Any], values: dict[str, Any]) -> Any:
        entered.set()
        await asyncio.Event().wait()

    renewals = LeaseRenewals(ledger.store, 60.0, never_answers)

    async def stopped() -> list[Any]:
        tasks = [asyncio.create_task(renewals.renew(beat)) for beat in beats]
        await entered.wait()
        later = asyncio.create_task(renewals.renew(beats[0]))  # waits for the next statement
        await asyncio.sleep(0)
        renewing = renewals.gathered.running()
        assert renewing is not None
        renewing.cancel()
        outcomes = await asyncio.gather(*tasks, later, return_exceptions=True)
        assert renewals.gathered.running() is None
        return outcomes

    outcomes = asyncio.run(stopped())
    assert [type(outcome) for outcome in outcomes] == [asyncio.CancelledError] * 3


def test_each_renewed_lease_expires_when_its_answer_says(ledger: Ledger) -> None:
    beats = running(ledger, 3)
    renewals = LeaseRenewals(ledger.store, 600.0, in_thread)
    expiries = asyncio.run(renew_all(renewals, beats))
    with ledger.engine.connect() as conn:
        rows = conn.execute(text("SELECT job_id, expires_at FROM job_leases")).all()
    stored: dict[str, datetime] = {job_id: expires for job_id, expires in rows}
    assert stored == {beat.job_id: expiry for beat, expiry in zip(beats, expiries, strict=True)}


def test_heartbeats_on_another_event_loop_are_gathered_there(ledger: Ledger) -> None:
    first, second = running(ledger, 2)
    entered, release = threading.Event(), threading.Event()

    async def held_until_released(call: Callable[..., Any], values: dict[str, Any]) -> Any:
        if values["heartbeats"][0] == first:
            entered.set()
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 10)
        return await in_thread(call, values)

    renewals = LeaseRenewals(ledger.store, 60.0, held_until_released)
    held: list[Any] = []
    other_loop = threading.Thread(target=lambda: held.append(asyncio.run(renewals.renew(first))))
    other_loop.start()
    try:
        assert entered.wait(10)
        # The other loop's statement is on its way: this loop's heartbeat goes on its own.
        assert isinstance(asyncio.run(asyncio.wait_for(renewals.renew(second), 10)), datetime)
    finally:
        release.set()
        other_loop.join(10)
    assert len(held) == 1 and isinstance(held[0], datetime)


def on_the_loop(
    ledger: Ledger,
    statements: Statements,
    beats: list[RunHeartbeat],
    *,
    in_one_request: bool = False,
) -> list[Any]:
    """Renew `beats` together through renewals whose statement goes from the event loop
    first (a server's), its thread path through `statements`: as single heartbeats that
    arrive together, or `in_one_request` (`renew_each`, as `POST /v1/heartbeats`)."""

    async def scenario() -> list[Any]:
        appends = LoopAppends(ledger.url, ledger.settings, ledger.store.observers)
        appends.open()
        renewals = LeaseRenewals(ledger.store, 60.0, statements, appends)
        try:
            if in_one_request:
                return await renewals.renew_each(beats)
            return await renew_all(renewals, beats)
        finally:
            await appends.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize("in_one_request", [False, True], ids=["gathered", "one request"])
def test_heartbeats_are_renewed_from_the_event_loop_without_a_thread(
    ledger: Ledger, in_one_request: bool
) -> None:
    beats = running(ledger, 5)
    statements = Statements()
    outcomes = on_the_loop(ledger, statements, beats, in_one_request=in_one_request)
    assert statements.sizes == [], "no thread's hop"
    with ledger.store.connection() as conn:
        expiries = dict(conn.execute("SELECT job_id, expires_at FROM job_leases").fetchall())
    assert outcomes == [expiries[beat.job_id] for beat in beats]


class Beats(LedgerObserver):
    def __init__(self) -> None:
        self.received: list[bool] = []

    def heartbeat_received(self, *, fenced: bool) -> None:
        self.received.append(fenced)


@pytest.mark.parametrize("in_one_request", [False, True], ids=["gathered", "one request"])
def test_a_heartbeat_the_loop_could_not_renew_is_told_on_a_thread(
    ledger: Ledger, in_one_request: bool
) -> None:
    live, fenced = running(ledger, 2)
    forged = RunHeartbeat(fenced.job_id, fenced.attempt, "not-its-token")
    unknown = RunHeartbeat("no-such-job", 1, "token")
    beats = Beats()
    ledger.store.observers.add(beats)
    statements = Statements()
    outcomes = on_the_loop(
        ledger, statements, [forged, live, unknown], in_one_request=in_one_request
    )
    assert statements.sizes == [2], "only those the loop did not renew, on a thread"
    assert isinstance(outcomes[0], StaleAttempt)
    assert isinstance(outcomes[1], datetime)
    assert isinstance(outcomes[2], JobNotFound)
    assert sorted(beats.received) == [False, True], "each heartbeat counted once"


def test_one_requests_heartbeats_go_on_a_thread_when_the_loop_cannot_take_them(
    ledger: Ledger,
) -> None:
    beats = running(ledger, 3)
    statements = Statements()
    renewals = LeaseRenewals(ledger.store, 60.0, statements)  # no loop connections
    outcomes = asyncio.run(renewals.renew_each(beats))
    assert statements.sizes == [3], "one statement, on a thread"
    assert all(isinstance(expires, datetime) for expires in outcomes)
