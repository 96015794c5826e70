"""GET /v1/audit/events: questions across jobs, one call each, paged and exported."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from api.audit_export import CSV_COLUMNS
from ledger.commands import RegisterJob
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.recovery.reconciler import ACTOR as MONITOR
from projections.recovery.reconciler import Reconciler
from tests.api.conftest import auth
from tests.conftest import JobFactory
from tests.integration.recovery_helpers import poll
from tests.integration.test_reconciler import REMOTE, checker

AUDITOR = auth("audrey")
OPERATOR = auth("alice")
PATH = "/v1/audit/events"


def ask(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get(PATH, params=params, headers=AUDITOR)
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def this_month() -> tuple[str, str]:
    """The month we are in, as since and until: "in November" when run in November."""
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (start + timedelta(days=32)).replace(day=1)
    return start.isoformat(), following.isoformat()


@pytest.fixture
def monitor_failed(store: EventStore, service: JobService, engine: Engine) -> str:
    """A job whose run died, marked failed by the health monitor's pass."""
    job_id = "dead-run-job"
    service.execute(job_id, _registration(), actor="trainer")
    JobQueue(store, lease_seconds=0.3).claim(REMOTE, actor="trainer")
    poll(lambda: checker(engine).check().orphaned)
    report = Reconciler(service, checker(engine)).run_once()
    assert report.of("mark_failed") == [job_id]
    return job_id


def _registration() -> RegisterJob:
    return RegisterJob(initial_status=JobStatus.QUEUED)


@pytest.fixture
def person_failed(client: TestClient, job_factory: JobFactory) -> str:
    """A job an operator (alice) marked failed."""
    job = job_factory(JobStatus.RUNNING)
    client.post(
        f"/v1/jobs/{job.job_id}/mark-failed", json={"reason": "stuck"}, headers=OPERATOR
    ).raise_for_status()
    return job.job_id


def test_every_mark_failed_by_a_person_in_a_month_is_one_call(
    client: TestClient, job_factory: JobFactory, monitor_failed: str, person_failed: str
) -> None:
    job_factory(JobStatus.FAILED)  # failed by its worker: not a mark-failed
    since, until = this_month()
    events = ask(client, type="job_marked_failed", not_actor=MONITOR, since=since, until=until)
    assert [(e["job_id"], e["actor"], e["reason"]) for e in events] == [
        (person_failed, "alice", "stuck")
    ]


def test_every_job_the_monitor_failed_last_night_and_why_is_one_call(
    client: TestClient, monitor_failed: str, person_failed: str
) -> None:
    now = datetime.now(UTC)
    events = ask(
        client,
        actor=MONITOR,
        status="failed",
        since=(now - timedelta(hours=12)).isoformat(),
        until=(now + timedelta(minutes=5)).isoformat(),
    )
    assert [(e["job_id"], e["status"], e["reason"]) for e in events] == [
        (monitor_failed, "failed", "process terminated unexpectedly (lease_expired)")
    ]


def test_who_force_started_a_job_is_one_call(client: TestClient, job_factory: JobFactory) -> None:
    job = job_factory(JobStatus.FAILED)
    other = job_factory(JobStatus.CANCELLED)
    for each in (job, other):
        client.post(
            f"/v1/jobs/{each.job_id}/force-start", json={"reason": "retry"}, headers=OPERATOR
        ).raise_for_status()
    events = ask(client, job_id=job.job_id, type="job_force_started")
    assert [(e["job_id"], e["actor"], e["status"]) for e in events] == [
        (job.job_id, "alice", "queued")
    ]


def test_pages_follow_the_next_link_to_every_event_in_time_order_once(
    client: TestClient, job_factory: JobFactory
) -> None:
    for _ in range(3):
        job_factory(JobStatus.COMPLETED)  # three events each
    seen: list[dict[str, Any]] = []
    link: str | None = f"{PATH}?limit=2&actor=w"
    for _ in range(10):  # three pages are expected; a cursor that does not move never ends
        if link is None:
            break
        response = client.get(link, headers=AUDITOR)
        body = response.json()
        seen += body["events"]
        assert len(body["events"]) <= 2
        link = body["next"]
        assert (response.headers.get("link") is None) == (link is None)
    assert len(seen) == 6
    assert [e["position"] for e in seen] == sorted(e["position"] for e in seen)
    assert {e["type"] for e in seen} == {"job_started", "job_completed"}


def test_several_types_are_merged_in_time_order(
    client: TestClient, job_factory: JobFactory
) -> None:
    for status in (JobStatus.PAUSED, JobStatus.COMPLETED, JobStatus.CANCELLED):
        job_factory(status)
    everything = ask(client, limit=1000)
    wanted = {"job_paused", "job_cancelled"}
    events = ask(client, type=sorted(wanted))
    assert events == [e for e in everything if e["type"] in wanted]
    assert len(events) == 2


def test_the_status_reached_includes_registrations_in_it_and_only_them(
    client: TestClient, job_factory: JobFactory
) -> None:
    pending = job_factory(JobStatus.PENDING)
    queued = job_factory(JobStatus.QUEUED)
    failed = job_factory(JobStatus.FAILED)
    client.post(f"/v1/jobs/{failed.job_id}/requeue", json={}, headers=OPERATOR).raise_for_status()
    assert [(e["job_id"], e["type"]) for e in ask(client, status="pending")] == [
        (pending.job_id, "job_registered")
    ]
    assert [(e["job_id"], e["type"]) for e in ask(client, status="queued")] == [
        (queued.job_id, "job_registered"),
        (failed.job_id, "job_registered"),
        (failed.job_id, "job_requeued"),
    ]
    checkpoints = ask(client, status="running")
    assert {e["type"] for e in checkpoints} == {"job_started"}


def test_a_job_id_prefix_matches_the_ids_starting_with_it(
    client: TestClient, job_factory: JobFactory
) -> None:
    job_factory(JobStatus.QUEUED, "train-a1")
    job_factory(JobStatus.QUEUED, "train-a2")
    job_factory(JobStatus.QUEUED, "train-b1")
    job_factory(JobStatus.QUEUED, "train-a\U0010ffff")
    assert {e["job_id"] for e in ask(client, job_id_prefix="train-a")} == {
        "train-a1",
        "train-a2",
        "train-a\U0010ffff",
    }
    assert {e["job_id"] for e in ask(client, job_id_prefix="train-a\U0010ffff")} == {
        "train-a\U0010ffff"
    }


def test_a_time_range_on_recorded_at_includes_since_and_leaves_out_until(
    client: TestClient, job_factory: JobFactory
) -> None:
    first = job_factory(JobStatus.QUEUED)
    second = job_factory(JobStatus.QUEUED)
    third = job_factory(JobStatus.QUEUED)
    at = {e["job_id"]: e["recorded_at"] for e in ask(client)}
    events = ask(client, since=at[second.job_id], until=at[third.job_id])
    assert [e["job_id"] for e in events] == [second.job_id]
    assert first.job_id in {e["job_id"] for e in ask(client, until=at[second.job_id])}


def test_the_emitters_clock_filters_and_orders_only_events_that_carry_it(
    client: TestClient, service: JobService
) -> None:
    late = datetime(2026, 11, 20, 23, 0, tzinfo=UTC)
    early = late - timedelta(hours=2)
    service.execute("emitted-late", _registration(), actor="trainer", occurred_at=late)
    service.execute("emitted-early", _registration(), actor="trainer", occurred_at=early)
    service.execute("no-clock", _registration(), actor="trainer")
    events = ask(client, clock="occurred_at", since="2026-11-20", until="2026-11-21")
    assert [e["job_id"] for e in events] == ["emitted-early", "emitted-late"]
    assert events[0]["occurred_at"] == early.isoformat()


def test_json_lines_stream_every_matching_event_whatever_the_limit(
    client: TestClient, job_factory: JobFactory
) -> None:
    for _ in range(3):
        job_factory(JobStatus.COMPLETED)
    response = client.get(
        PATH,
        params={"limit": 1, "actor": "w"},
        headers={**AUDITOR, "Accept": "application/x-ndjson"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["type"] for line in lines] == ["job_started", "job_completed"] * 3
    assert lines == ask(client, actor="w")


def test_csv_has_a_header_and_a_row_per_event_with_its_payload_as_json(
    client: TestClient, job_factory: JobFactory
) -> None:
    job = job_factory(JobStatus.FAILED)
    response = client.get(
        PATH, params={"job_id": job.job_id}, headers={**AUDITOR, "Accept": "text/csv"}
    )
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [(r["type"], r["status"], r["reason"]) for r in rows] == [
        ("job_registered", "queued", ""),
        ("job_started", "running", ""),
        ("job_failed", "failed", "boom"),
    ]
    assert json.loads(rows[1]["payload"])["worker_id"] == "worker-1"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-11-01T00:00:00"}, "until"),  # no offset: which day?
        ({"type": "job_exploded"}, "type"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "until"),
    ],
)
def test_a_bad_filter_is_a_422_problem_naming_it(
    client: TestClient, params: dict[str, str], field: str
) -> None:
    response = client.get(PATH, params=params, headers=AUDITOR)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/invalid-audit-filter")
    assert response.json()["field"] == field


def test_a_cursor_of_the_other_clock_is_refused(
    client: TestClient, job_factory: JobFactory
) -> None:
    job_factory(JobStatus.RUNNING)
    cursor = client.get(PATH, params={"limit": 1}, headers=AUDITOR).json()["next_cursor"]
    response = client.get(PATH, params={"cursor": cursor, "clock": "occurred_at"}, headers=AUDITOR)
    assert response.status_code == 422
    assert response.json()["field"] == "cursor"


def test_an_unknown_status_is_a_422(client: TestClient) -> None:
    response = client.get(PATH, params={"status": "exploded"}, headers=AUDITOR)
    assert response.status_code == 422


def test_a_caller_without_a_token_is_refused(client: TestClient) -> None:
    assert client.get(PATH).status_code == 401
