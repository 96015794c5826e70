"""Single registrations that arrive together are recorded together
(`api.gathered_registrations`), each answered, logged and counted as its own."""

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from starlette.testclient import TestClient

from api.bootstrap import Ledger
from api.direct_handler import in_thread
from api.gathered_registrations import MOST_SPEC_BYTES, Registrations
from api.gathering import Gathered
from ledger.command_log import LOGGER
from ledger.commands import RegisterJob
from ledger.errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    DuplicateJob,
    IdempotencyKeyReused,
    LockNotGranted,
)
from ledger.registrations import Registered, Registration
from ledger.telemetry import LedgerObserver
from tests.api.conftest import auth


class Calls:
    """`in_thread`, naming each call it makes and how many registrations it carries;
    failing the first with `fail_first`."""

    def __init__(self, fail_first: Exception | None = None) -> None:
        self.made: list[tuple[str, int]] = []
        self.fail_first = fail_first

    async def __call__(self, call: Callable[..., Any], values: dict[str, Any]) -> Any:
        self.made.append((call.__name__, len(values.get("registrations", [values]))))
        failure, self.fail_first = self.fail_first, None
        if failure is not None:
            raise failure
        return await in_thread(call, values)


def registration(job_id: str, actor: str = "trainer", **fields: Any) -> Registration:
    return Registration(job_id=job_id, command=RegisterJob(), actor=actor, **fields)


async def register_all(registrations: Registrations, items: Sequence[Registration]) -> list[Any]:
    return await asyncio.gather(*map(registrations.register, items), return_exceptions=True)


def test_registrations_that_arrive_together_share_one_transaction(ledger: Ledger) -> None:
    ledger.service.execute("there", RegisterJob(), actor="trainer")
    ledger.service.execute("keyed", RegisterJob(), actor="trainer", idempotency_key="k1")
    calls = Calls()
    registrations = Registrations(ledger.service, calls)
    items = [
        registration("new-1"),
        registration("there"),  # no key: a duplicate
        registration("keyed", idempotency_key="k1"),  # the same registration again
        registration("keyed", idempotency_key="k2"),  # another key: a duplicate
        registration("new-2", idempotency_key="k3"),
    ]
    outcomes = asyncio.run(register_all(registrations, items))
    assert calls.made == [("register_each", 5)]
    assert isinstance(outcomes[0], Registered) and not outcomes[0].replayed
    assert isinstance(outcomes[1], DuplicateJob)
    assert isinstance(outcomes[2], Registered) and outcomes[2].replayed
    assert isinstance(outcomes[3], DuplicateJob)
    assert isinstance(outcomes[4], Registered) and outcomes[4].state.job_id == "new-2"


def test_a_key_used_for_another_registration_is_refused(ledger: Ledger) -> None:
    ledger.service.execute("first", RegisterJob(), actor="trainer", idempotency_key="k")
    registrations = Registrations(ledger.service, in_thread)
    other = Registration(
        job_id="first", command=RegisterJob(priority=9), idempotency_key="k", actor="trainer"
    )
    [outcome] = asyncio.run(register_all(registrations, [other]))
    assert isinstance(outcome, IdempotencyKeyReused)


def test_each_event_records_its_own_caller_and_correlation(ledger: Ledger) -> None:
    registrations = Registrations(ledger.service, in_thread)
    items = [
        registration("by-a", actor="alice", correlation_id="corr-a"),
        registration("by-b", actor="bob", correlation_id="corr-b"),
        registration("by-c", actor="carol"),
    ]
    outcomes = asyncio.run(register_all(registrations, items))
    assert all(isinstance(outcome, Registered) for outcome in outcomes), outcomes
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT job_id, actor, correlation_id FROM job_events ORDER BY job_id")
        ).all()
    assert [tuple(row) for row in rows] == [
        ("by-a", "alice", "corr-a"),
        ("by-b", "bob", "corr-b"),
        ("by-c", "carol", None),
    ]


def test_each_registration_is_logged_and_counted_as_its_own(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    ledger.service.execute("there", RegisterJob(), actor="trainer")

    class Counted(LedgerObserver):
        appended: list[str] = []
        refused: list[str] = []

        def events_appended(self, event_types: Sequence[str]) -> None:
            self.appended.extend(event_types)

        def command_refused(self, kind: str) -> None:
            self.refused.append(kind)

    counted = Counted()
    ledger.store.observers.add(counted)
    registrations = Registrations(ledger.service, in_thread)
    items = [registration("fresh", correlation_id="c-1"), registration("there", actor="bob")]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        asyncio.run(register_all(registrations, items))
    lines = [
        (r.job_id, r.actor, r.outcome, r.correlation_id)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == LOGGER
    ]
    assert lines == [("fresh", "trainer", "accepted", "c-1"), ("there", "bob", "refused", None)]
    assert counted.appended == ["job_registered"]
    assert counted.refused == ["duplicate-job"]


def test_a_failed_shared_transaction_tries_each_registration_alone(ledger: Ledger) -> None:
    calls = Calls(fail_first=LockNotGranted("canceling statement due to lock timeout"))
    registrations = Registrations(ledger.service, calls)
    items = [registration("a"), registration("b", idempotency_key="kb"), registration("c")]
    outcomes = asyncio.run(register_all(registrations, items))
    assert calls.made == [("register_each", 3)] + [("register_alone", 1)] * 3
    assert [outcome.state.job_id for outcome in outcomes] == ["a", "b", "c"]
    assert not any(outcome.replayed for outcome in outcomes)


@pytest.mark.parametrize(
    "failure",
    [DatabaseUnavailable("the database went away"), DatabaseBusy("statement timeout")],
    ids=["out-of-reach", "statement-timeout"],
)
def test_a_database_out_of_reach_or_too_slow_fails_each_registration_at_once(
    ledger: Ledger, failure: DatabaseBusy | DatabaseUnavailable, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls(fail_first=failure)
    registrations = Registrations(ledger.service, calls)
    items = [registration("a", correlation_id="c-a"), registration("b", actor="bob")]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        outcomes = asyncio.run(register_all(registrations, items))
    assert calls.made == [("register_each", 2)]
    assert all(type(outcome) is type(failure) for outcome in outcomes)
    assert outcomes[0] is not outcomes[1]
    lines = [
        (r.job_id, r.actor, r.outcome, r.kind, r.correlation_id)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == LOGGER
    ]
    kind = type(failure).kind
    assert lines == [("a", "trainer", "failed", kind, "c-a"), ("b", "bob", "failed", kind, None)]


def test_a_key_another_registration_used_is_refused_among_others(ledger: Ledger) -> None:
    ledger.service.execute("first", RegisterJob(), actor="trainer", idempotency_key="k")
    calls = Calls()
    registrations = Registrations(ledger.service, calls)
    other = Registration(
        job_id="first", command=RegisterJob(priority=9), idempotency_key="k", actor="trainer"
    )
    outcomes = asyncio.run(register_all(registrations, [other, registration("second")]))
    assert calls.made == [("register_each", 2)]
    assert isinstance(outcomes[0], IdempotencyKeyReused)
    assert isinstance(outcomes[1], Registered)


def test_registrations_of_large_specs_go_in_transactions_of_a_bounded_size(
    ledger: Ledger,
) -> None:
    calls = Calls()
    registrations = Registrations(ledger.service, calls)
    spec = {"blob": "x" * (MOST_SPEC_BYTES // 3)}
    items = [
        Registration(job_id=f"big-{n}", command=RegisterJob(spec=spec), actor="trainer")
        for n in range(7)
    ]
    outcomes = asyncio.run(register_all(registrations, items))
    assert all(isinstance(outcome, Registered) for outcome in outcomes), outcomes
    assert [size for _, size in calls.made] == [2, 2, 2, 1]  # all at once: [7]


def test_registrations_sent_together_over_http_share_a_transaction(client: TestClient) -> None:
    calls = Calls()
    arrived = asyncio.Event()
    seen: list[Registration] = []

    class Counted(Registrations):
        async def register(self, registration: Registration) -> Registered:
            seen.append(registration)
            if len(seen) == 4:
                arrived.set()
            return await super().register(registration)

    async def held(call: Callable[..., Any], values: dict[str, Any]) -> Any:
        answer = calls(call, values)
        await arrived.wait()  # the first transaction is on its way as the rest arrive
        return await answer

    app = client.app
    assert isinstance(app, FastAPI)
    app.state.registrations = Counted(app.state.ledger.service, held)
    keyed = {**auth("trainer"), "Idempotency-Key": "sweep-7"}

    async def together() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as http:
            sent = [
                http.post("/v1/jobs", json={"job_id": "h-1"}, headers=auth("trainer")),
                http.post("/v1/jobs", json={"job_id": "h-2", "priority": 3}, headers=keyed),
                http.post("/v1/jobs", json={"job_id": "h-2", "priority": 3}, headers=keyed),
                http.post("/v1/jobs", json={"job_id": "h-1"}, headers=auth("trainer")),
            ]
            return list(await asyncio.gather(*sent))

    answers = asyncio.run(asyncio.wait_for(together(), 30))
    assert sorted(answer.status_code for answer in answers) == [200, 201, 201, 409]
    [refused] = [answer for answer in answers if answer.status_code == 409]
    assert refused.json()["type"].endswith("duplicate-job")
    answered = [answer for answer in answers if answer is not refused]
    assert sorted(answer.headers["location"] for answer in answered) == [
        "/v1/jobs/h-1",
        "/v1/jobs/h-2",
        "/v1/jobs/h-2",
    ]
    assert [answer.json()["priority"] for answer in answers[1:3]] == [3, 3]
    assert [seen_item.actor for seen_item in seen] == ["trainer"] * 4
    assert sum(size for _, size in calls.made) == 4 and len(calls.made) <= 2, calls.made


def test_a_gathering_whose_call_raises_fails_each_waiting_call_with_its_error() -> None:
    async def broken(items: Sequence[int]) -> Sequence[int]:
        raise RuntimeError("a bug in the shared call")

    gathered = Gathered[int, int](broken, 10)

    async def all_of() -> list[Any]:
        outcomes = await asyncio.gather(*map(gathered, range(3)), return_exceptions=True)
        assert gathered.running() is None
        return outcomes

    outcomes = asyncio.run(all_of())
    assert [type(outcome) for outcome in outcomes] == [RuntimeError] * 3
