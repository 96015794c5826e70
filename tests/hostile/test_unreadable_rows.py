"""A row the reading side cannot read never takes the service down, and is never hidden.

Rows are written here as a writer with INSERT on the log could (a payload that
does not fit its type, an event no command would produce) or as a database
left by a newer version would hold them (an event type this code does not know).
Each is read past, shown in the feed and the job's history, counted in the health
view and `/metrics`, and named by `projections verify`.
"""

import signal
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.bootstrap import Ledger
from api.cli import main
from ledger.commands import CancelJob
from ledger.database import libpq_url
from ledger.events import UnreadableEvent
from ledger.service import JobService
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.current_status.catchup import catch_up_current_status
from projections.current_status.rebuild import rebuild_current_status
from projections.current_status.verify import verify_current_status
from tests.api import conftest as api_fixtures
from tests.api.conftest import auth
from tests.conftest import JobFactory
from tests.e2e.conftest import Server
from tests.e2e.test_served_scenarios import read_stream

Admin = psycopg.Connection[tuple[object, ...]]

# The HTTP API's fixtures, shared with tests/api.
ledger, client_for, client = api_fixtures.ledger, api_fixtures.client_for, api_fixtures.client


@pytest.fixture
def admin(database_url: str) -> Iterator[Admin]:
    """A superuser's connection: it can write what the service's role could, and
    leave the log as a newer version's migrations would (a type this code does not know)."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        yield conn


def insert(admin: Admin, job_id: str, seq: int, type_: str, payload: str = "{}") -> None:
    admin.execute(
        "INSERT INTO job_events (job_id, seq, type, actor, payload) VALUES (%s, %s, %s, 'x', %s)",
        (job_id, seq, type_, payload),
    )


def insert_unknown_type(admin: Admin, job_id: str, seq: int) -> None:
    """An event of a type added by a later version: its migration widened the check."""
    admin.execute("ALTER TABLE job_events DROP CONSTRAINT IF EXISTS ck_job_events_known_type")
    insert(admin, job_id, seq, "totally_bogus_type", '{"what": "a newer version knows"}')


@pytest.fixture
def poisoned(admin: Admin, engine: Engine, job_factory: JobFactory) -> dict[str, str]:
    """Three jobs, each with a row this code cannot read or apply after its registration,
    and one whose registration itself cannot be read; written after the projection's
    checkpoint, as into a running ledger."""
    jobs = {
        "unknown_type": job_factory(JobStatus.QUEUED).job_id,
        "bad_payload": job_factory(JobStatus.QUEUED).job_id,
        "refused_state": job_factory(JobStatus.QUEUED).job_id,
    }
    catch_up_current_status(engine)
    insert_unknown_type(admin, jobs["unknown_type"], 2)
    insert(admin, jobs["bad_payload"], 2, "checkpoint_saved", '{"path": 5}')
    # readable, but it would leave a queued job running with no attempt: the table refuses it
    insert(admin, jobs["refused_state"], 2, "job_resumed")
    insert(admin, "poison-registration", 1, "job_registered", '{"initial_status": "running"}')
    jobs["unreadable_registration"] = "poison-registration"
    return jobs


def test_the_feed_carries_each_unreadable_row_with_what_is_wrong(
    store: EventStore, poisoned: dict[str, str]
) -> None:
    events = store.read_feed(None, 1000).events
    unreadable = {e.job_id: e.data for e in events if isinstance(e.data, UnreadableEvent)}
    assert set(unreadable) == {
        poisoned["unknown_type"],
        poisoned["bad_payload"],
        poisoned["unreadable_registration"],
    }
    assert unreadable[poisoned["unknown_type"]].TYPE == "totally_bogus_type"
    assert "unknown event type" in unreadable[poisoned["unknown_type"]].problem
    assert unreadable[poisoned["bad_payload"]].problem == "checkpoint_saved.path cannot be 5"
    assert "not registered as 'running'" in unreadable[poisoned["unreadable_registration"]].problem


def test_catch_up_reads_past_them_and_commands_work_on_the_job_again(
    engine: Engine, store: EventStore, service: JobService, poisoned: dict[str, str]
) -> None:
    catch_up_current_status(engine)  # start-up: it raised KeyError before

    for name in ("unknown_type", "bad_payload"):
        state = store.load(poisoned[name])
        assert state is not None
        assert (state.version, state.status) == (2, JobStatus.QUEUED), "only the version moved"
        service.execute(poisoned[name], CancelJob(reason="after the poison"), actor="op")
        assert store.history(poisoned[name])[-1].seq == 3
    refused = store.load(poisoned["refused_state"])
    assert refused is not None and refused.version == 1, "a refused state leaves the row as it was"
    assert store.load("poison-registration") is None


def test_rebuild_and_verify_read_past_them_and_verify_names_each(
    engine: Engine, poisoned: dict[str, str]
) -> None:
    rebuilt = rebuild_current_status(engine)
    # the jobs whose events lead to a state: not the unreadable registration's, nor the
    # one whose state the table refuses (the register names it)
    assert rebuilt.jobs == 2

    report = verify_current_status(engine)
    named = {(item.job_id, item.seq) for item in report.unreadable}
    assert named == {
        (poisoned["unknown_type"], 2),
        (poisoned["bad_payload"], 2),
        ("poison-registration", 1),
    }
    assert not report.clean


def test_rebuild_folds_in_python_when_the_database_cannot_fold_a_row(
    engine: Engine, admin: Admin, job_factory: JobFactory, store: EventStore
) -> None:
    job = job_factory(JobStatus.PENDING).job_id
    other = job_factory(JobStatus.QUEUED).job_id
    # The in-database fold casts the priority to an integer: this one stops it.
    insert(
        admin, "bad-priority", 1, "job_registered", '{"initial_status": "queued", "priority": "x"}'
    )

    report = rebuild_current_status(engine)

    assert report.jobs == 2
    assert {s.job_id for s in (store.load(job), store.load(other)) if s} == {job, other}
    assert store.load("bad-priority") is None


def test_verify_on_the_command_line_names_the_row_and_exits_1(
    poisoned: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
) -> None:
    monkeypatch.setenv("JOBLEDGER_DATABASE_URL", database_url)
    assert main(["projections", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"{poisoned['unknown_type']} seq 2 (totally_bogus_type)" in out
    assert "the log holds 3 events this code cannot read" in out


def test_feed_history_health_and_metrics_show_and_count_them(
    client: TestClient, ledger: Ledger, poisoned: dict[str, str]
) -> None:
    feed = client.get("/v1/events", params={"after": "0-0"}, headers=auth("audrey"))
    assert feed.status_code == 200
    shown = [e for e in feed.json()["events"] if e["unreadable"]]
    assert {e["job_id"] for e in shown} == {
        poisoned["unknown_type"],
        poisoned["bad_payload"],
        "poison-registration",
    }
    bogus = next(e for e in shown if e["job_id"] == poisoned["unknown_type"])
    assert (bogus["type"], bogus["payload"]) == (
        "totally_bogus_type",
        {"what": "a newer version knows"},
    )

    history = client.get(f"/v1/jobs/{poisoned['unknown_type']}/history", headers=auth("audrey"))
    assert history.status_code == 200
    last = history.json()["events"][-1]
    assert (last["seq"], last["type"], last["to_status"]) == (2, "totally_bogus_type", "queued")
    assert "unknown event type" in last["unreadable"]

    health = client.get("/v1/health", headers=auth("audrey"))
    assert health.json()["unreadable_events"] == 3, "each noted once, by the feed's reader"
    metrics = client.get("/metrics", headers=auth("audrey")).text
    assert "jobledger_unreadable_events 3.0" in metrics


@pytest.mark.slow
def test_serve_starts_on_a_poisoned_log_and_streams_the_row(
    database_url: str, admin: Admin, job_factory: JobFactory
) -> None:
    job = job_factory(JobStatus.QUEUED).job_id
    insert_unknown_type(admin, job, 2)
    server = Server(database_url)
    server.start()  # start-up crashed with KeyError in catch-up before
    try:
        lines = read_stream(server, 2, after="0-0")
        assert '"spec_bytes":' in lines[0], "the stream shows a registration's spec as its size"
        assert '"totally_bogus_type"' in lines[-1] and '"unreadable"' in lines[-1]
        health = httpx.get(
            f"{server.url}/v1/health",
            headers={"Authorization": "Bearer t-audrey-0123456789abcdef"},
            timeout=10,
        )
        assert health.json()["unreadable_events"] == 1
        server.client("alice").cancel(job, "the job still takes commands")
    finally:
        server.close_clients()
        server.kill(signal.SIGTERM)


def test_the_register_is_written_once_per_row(
    store: EventStore, admin: Admin, poisoned: dict[str, str]
) -> None:
    for _ in range(3):
        store.read_feed(None, 1000)
    rows = admin.execute("SELECT job_id, seq FROM unreadable_events ORDER BY job_id").fetchall()
    assert len(rows) == 3 and len(set(rows)) == 3
