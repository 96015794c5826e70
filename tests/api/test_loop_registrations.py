"""A registration that reaches the server alone is appended from the event loop
(`ledger.loop_appends`) while the server runs, and through `execute` when only a fresh
read can tell what becomes of it."""

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from api.app import create_app
from api.auth import TokenBook
from api.bootstrap import Ledger, wire_ledger
from api.gathered_registrations import LOOP_SPEC_BYTES, Registrations
from ledger.command_log import LOGGER
from ledger.commands import RegisterJob
from ledger.database import libpq_url
from ledger.errors import DatabaseUnavailable, DuplicateJob, LockNotGranted
from ledger.loop_appends import LoopAppends
from ledger.registrations import Registered, Registration
from ledger.service import JobService
from ledger.settings import Settings
from ledger.store import Appended
from ledger.telemetry import LedgerObserver
from projections.current_status.catchup import catch_up_current_status
from tests.api.conftest import TOKENS, auth, token_of
from tests.api.test_gathered_registrations import Calls, register_all, registration


@pytest.fixture
def quick_locks(database_url: str, engine: Engine) -> Ledger:
    """The ledger of a server whose lock waits end after 300 ms."""
    settings = Settings(lease_seconds=60, lock_timeout_ms=300)
    return wire_ledger(database_url, engine, settings, catch_up_current_status(engine))


def served(ledger: Ledger, calls: Calls) -> TestClient:
    """A test client of the app whose registrations go to threads through `calls`; its
    server runs (the event loop's appends open) inside its `with` block."""
    spec = ",".join(f"{name}:{role}:{token_of(name)}" for name, role in TOKENS.items())
    app = create_app(ledger, TokenBook.from_env({"JOBLEDGER_TOKENS": spec}))
    app.state.registrations = Registrations(ledger.service, calls, app.state.appends)
    return TestClient(app, raise_server_exceptions=False)


def loop_appends(client: TestClient) -> LoopAppends:
    app = client.app
    assert isinstance(app, FastAPI)
    appends = app.state.appends
    assert app.state.registrations.appends is appends
    assert app.state.renewals.appends is appends
    assert isinstance(appends, LoopAppends)
    return appends


def backend_pid(appends: LoopAppends) -> int:
    """The server process of the loop's connection used last (the one one caller uses)."""
    pids = appends.backend_pids()
    assert pids, "the loop's connection is open"
    return pids[-1]


@pytest.fixture
def running(ledger: Ledger) -> Iterator[tuple[TestClient, Calls]]:
    calls = Calls()
    with served(ledger, calls) as client:
        yield client, calls


def test_a_new_job_is_registered_without_a_thread(
    running: tuple[TestClient, Calls], engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    client, calls = running
    headers = {**auth("trainer"), "X-Request-ID": "corr-loop", "Idempotency-Key": "k-1"}
    with caplog.at_level(logging.INFO, logger=LOGGER):
        answer = client.post("/v1/jobs", json={"job_id": "on-loop", "priority": 2}, headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["priority"] == 2
    assert calls.made == [], "a new job's registration took no thread"
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT actor, correlation_id, idempotency_key, command_sha256 IS NOT NULL"
                " FROM job_events WHERE job_id = 'on-loop'"
            )
        ).one()
    assert tuple(row) == ("trainer", "corr-loop", "k-1", True)
    lines = [
        (r.job_id, r.actor, r.outcome, r.correlation_id)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == LOGGER
    ]
    assert lines == [("on-loop", "trainer", "accepted", "corr-loop")]
    replay = client.post("/v1/jobs", json={"job_id": "on-loop", "priority": 2}, headers=headers)
    assert replay.status_code == 200, replay.text
    assert calls.made == [("register_alone", 1)], "a job the cache holds is decided on a fresh read"
    metrics = client.get("/metrics", headers=auth("alice")).text
    assert 'jobledger_events_appended_total{type="job_registered"} 1.0' in metrics


def test_a_job_registered_elsewhere_is_decided_on_a_fresh_read(
    running: tuple[TestClient, Calls], ledger: Ledger
) -> None:
    client, calls = running
    elsewhere = JobService(ledger.store)  # another process: this one's cache never saw it
    elsewhere.execute("there", RegisterJob(), actor="trainer", idempotency_key="k-there")
    elsewhere.execute("plain", RegisterJob(), actor="trainer")
    appended: list[str] = []
    store_append = ledger.store.append

    def counted_append(job_id: str, *args: Any, **kwargs: Any) -> Appended:
        appended.append(job_id)
        return store_append(job_id, *args, **kwargs)

    ledger.store.append = counted_append  # type: ignore[method-assign]
    keyed = {**auth("trainer"), "Idempotency-Key": "k-there"}
    replayed = client.post("/v1/jobs", json={"job_id": "there"}, headers=keyed)
    refused = client.post("/v1/jobs", json={"job_id": "plain"}, headers=auth("trainer"))
    assert replayed.status_code == 200, replayed.text
    assert refused.status_code == 409 and refused.json()["type"].endswith("duplicate-job")
    assert calls.made == [("register_alone", 1), ("register_alone", 1)]
    assert appended == [], "after the log refused the guess, a fresh read and no second try"
    assert len(ledger.store.history("there")) == len(ledger.store.history("plain")) == 1


def test_a_large_spec_is_registered_on_a_thread(running: tuple[TestClient, Calls]) -> None:
    client, calls = running
    within = {"notes": "x" * (LOOP_SPEC_BYTES - 100)}
    past = {"notes": "x" * LOOP_SPEC_BYTES}
    for job_id, spec in (("within", within), ("past", past)):
        body = {"job_id": job_id, "spec": spec}
        answer = client.post("/v1/jobs", json=body, headers=auth("trainer"))
        assert answer.status_code == 201, answer.text
    assert calls.made == [("register_alone", 1)], "only the spec past the limit took a thread"


def test_a_lost_connection_fails_its_registration_and_the_next_connects_again(
    running: tuple[TestClient, Calls], database_url: str
) -> None:
    client, calls = running
    assert client.post("/v1/jobs", json={"job_id": "before"}, headers=auth("trainer")).is_success
    appends = loop_appends(client)
    lost = backend_pid(appends)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [lost])
    failed = client.post("/v1/jobs", json={"job_id": "lost"}, headers=auth("trainer"))
    assert failed.status_code == 503, failed.text
    assert failed.json()["type"].endswith("database-unavailable")
    again = client.post("/v1/jobs", json={"job_id": "lost"}, headers=auth("trainer"))
    assert again.status_code == 201, again.text
    assert backend_pid(appends) != lost
    assert calls.made == []


def test_a_lock_not_granted_keeps_the_connection(quick_locks: Ledger, database_url: str) -> None:
    calls = Calls()
    with served(quick_locks, calls) as client:
        assert client.post("/v1/jobs", json={"job_id": "first"}, headers=auth("trainer")).is_success
        pid = backend_pid(loop_appends(client))
        with psycopg.connect(libpq_url(database_url)) as other:  # a transaction left open
            other.execute(
                "INSERT INTO job_events (job_id, seq, type, payload, actor)"
                " VALUES ('held', 1, 'job_registered', '{}', 'other')"
            )
            busy = client.post("/v1/jobs", json={"job_id": "held"}, headers=auth("trainer"))
            other.rollback()
        assert busy.status_code == 503, busy.text
        assert busy.json()["type"].endswith("database-busy")
        after = client.post("/v1/jobs", json={"job_id": "held"}, headers=auth("trainer"))
        assert after.status_code == 201, after.text
        assert backend_pid(loop_appends(client)) == pid
        assert calls.made == []


def test_the_server_stopping_closes_the_connection(ledger: Ledger, database_url: str) -> None:
    calls = Calls()
    with served(ledger, calls) as client:
        assert client.post("/v1/jobs", json={"job_id": "j"}, headers=auth("trainer")).is_success
        appends = loop_appends(client)
        pid = backend_pid(appends)
    assert appends.backend_pids() == [], "no connection kept once the server stopped"
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        deadline = time.monotonic() + 10
        while admin.execute("SELECT FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the backend outlived the server's stop"
            time.sleep(0.02)
    outside = client.post("/v1/jobs", json={"job_id": "after"}, headers=auth("trainer"))
    assert outside.status_code == 201, outside.text
    assert calls.made == [("register_alone", 1)], "outside the server's loop, through a thread"


def test_those_tried_alone_after_a_shared_failure_take_a_thread_while_the_loop_s_is_busy(
    ledger: Ledger,
) -> None:
    calls = Calls(fail_first=LockNotGranted("held"))  # the shared statement fails so
    # Specs that together pass what one statement on the loop carries: the shared one goes
    # to a thread; each alone is small enough for the loop.
    spec = {"data": "x" * (LOOP_SPEC_BYTES // 3)}
    items = [
        Registration(job_id=f"alone-{i}", command=RegisterJob(spec=spec), actor="trainer")
        for i in range(4)
    ]
    outcomes = gathered_on_the_loop(ledger, calls, items)

    assert all(isinstance(outcome, Registered) for outcome in outcomes), outcomes
    # the four together (failed), then each alone: one on the loop's connection, three
    # through `register_alone` (`execute`) on a thread while it was in use
    assert calls.made == [("register_each", 4)] + [("register_alone", 1)] * 3
    for item in items:
        assert [event.seq for event in ledger.store.history(item.job_id)] == [1]


def gathered_on_the_loop(ledger: Ledger, calls: Calls, items: list[Registration]) -> list[Any]:
    """`items` registered together through `Registrations` whose statements go from the
    event loop first (a server's, on one connection), their thread path through `calls`."""
    registrations = Registrations(ledger.service, calls)

    async def scenario() -> list[Any]:
        appends = LoopAppends(ledger.url, ledger.settings, ledger.store.observers)
        appends.open()
        registrations.appends = appends
        try:
            return await register_all(registrations, items)
        finally:
            await appends.close()

    return asyncio.run(scenario())


def test_registrations_gathered_together_are_registered_from_the_loop(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    items = [
        registration(f"together-{i}", actor=f"trainer-{i}", correlation_id=f"corr-{i}")
        for i in range(4)
    ]
    calls = Calls()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        outcomes = gathered_on_the_loop(ledger, calls, items)
    assert calls.made == [], "one statement from the loop, no thread's hop"
    assert [outcome.state.job_id for outcome in outcomes] == [item.job_id for item in items]
    for i, item in enumerate(items):
        [event] = ledger.store.history(item.job_id)
        assert (event.actor, event.correlation_id) == (f"trainer-{i}", f"corr-{i}")
    lines = [r for r in caplog.records if getattr(r, "command", None) == "register"]
    assert sorted((r.job_id, r.outcome) for r in lines) == [  # type: ignore[attr-defined]
        (item.job_id, "accepted") for item in items
    ]


class Counted(LedgerObserver):
    def __init__(self) -> None:
        self.appended: list[str] = []
        self.refused: list[str] = []

    def events_appended(self, event_types: Sequence[str]) -> None:
        self.appended.extend(event_types)

    def command_refused(self, kind: str) -> None:
        self.refused.append(kind)


def test_a_job_there_already_is_told_on_a_thread_the_others_recorded_from_the_loop(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    ledger.service.execute("there", RegisterJob(), actor="trainer")
    counted = Counted()
    ledger.store.observers.add(counted)
    calls = Calls()
    items = [registration("new-1"), registration("there", actor="bob"), registration("new-2")]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        outcomes = gathered_on_the_loop(ledger, calls, items)
    # only the job left out, on a thread, told on a fresh read: no second statement appends
    assert calls.made == [("tell_each", 1)]
    assert isinstance(outcomes[0], Registered) and isinstance(outcomes[2], Registered)
    assert isinstance(outcomes[1], DuplicateJob)
    lines = [(r.job_id, r.actor, r.outcome) for r in caplog.records if r.name == LOGGER]  # type: ignore[attr-defined]
    assert sorted(lines) == [
        ("new-1", "trainer", "accepted"),
        ("new-2", "trainer", "accepted"),
        ("there", "bob", "refused"),
    ], "each registration logged once"
    assert counted.appended == ["job_registered", "job_registered"]
    assert counted.refused == ["duplicate-job"]


def test_a_failure_telling_the_jobs_left_out_fails_only_those(ledger: Ledger) -> None:
    ledger.service.execute("there", RegisterJob(), actor="trainer")
    calls = Calls(fail_first=DatabaseUnavailable("the database went away"))
    items = [registration("kept-1"), registration("there"), registration("kept-2")]
    outcomes = gathered_on_the_loop(ledger, calls, items)
    assert calls.made == [("tell_each", 1)]
    assert isinstance(outcomes[1], DatabaseUnavailable)
    for index in (0, 2):
        assert isinstance(outcomes[index], Registered), outcomes
        assert [e.seq for e in ledger.store.history(items[index].job_id)] == [1]
