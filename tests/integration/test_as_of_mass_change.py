"""The ledger as of the moment before a change of many jobs at once: the pages equal the fold
of every job's events recorded by then, and a page of a status common among the changed
jobs reads about a page of them, not all."""

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from ledger.commands import MarkFailed, RegisterJob
from ledger.job_listing import JobsCursor, page_params
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.state import JobState
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.current_status.as_of import NEWEST_READ, PastLedger, past_page_sql
from tests.conftest import WORKER

RUNNING = 30
QUEUED = 2
PENDING = 2


def mass_change(service: JobService, store: EventStore, running: int = RUNNING) -> datetime:
    """Jobs registered pending and queued, most of them started, every one then marked
    failed at once; return the moment before the change."""
    queue = JobQueue(store)
    for n in range(PENDING):
        service.execute(f"pending-{n}", RegisterJob(initial_status=JobStatus.PENDING), actor="t")
    for n in range(running + QUEUED):
        job_id = f"{'queued' if n % 8 == 3 and n // 8 < QUEUED else 'running'}-{n:03d}"
        service.execute(job_id, RegisterJob(), actor="t")
        if job_id.startswith("running"):
            queue.start(job_id, WORKER, actor="w")
    before = store.history(job_id)[-1].recorded_at
    for job_id in everyone(store, before):
        service.execute(job_id, MarkFailed(reason="the node was lost"), actor="health-monitor")
    return before


def everyone(store: EventStore, at: datetime) -> list[str]:
    with store.transaction() as conn:
        query = "SELECT job_id FROM job_status WHERE created_at <= %s ORDER BY job_id"
        return [row[0] for row in conn.execute(query, (at,)).fetchall()]


def newest_first(past: PastLedger, at: datetime) -> list[JobState]:
    """Every job as `PastLedger.job` has it at `at`, newest first, as lists show them."""
    states = [past.job(job_id, at) for job_id in everyone(past.store, at)]
    states.sort(key=lambda state: (state.created_at, state.job_id), reverse=True)
    return [state._replace(spec=None, result=None) for state in states]


def every_page(
    past: PastLedger, at: datetime, status: JobStatus, limit: int, search: str | None = None
) -> list[JobState]:
    jobs: list[JobState] = []
    after: JobsCursor | None = None
    while True:
        page = past.page(at, status, search=search, after=after, limit=limit)
        jobs.extend(page.jobs)
        if page.next_cursor is None:
            return jobs
        after = page.next_cursor


@pytest.mark.parametrize("newest_read", [NEWEST_READ, 7, 1])
def test_every_status_as_of_the_moment_before_a_mass_change_is_the_fold_of_each_job(
    service: JobService, store: EventStore, newest_read: int
) -> None:
    before = mass_change(service, store)
    past = PastLedger(store, newest_read=newest_read)
    expected = newest_first(past, before)
    assert {job.status for job in expected} == {"pending", "queued", "running"}
    assert all(job.status == "failed" for job in newest_first(past, datetime.now(before.tzinfo)))
    for status in JobStatus:
        in_status = [job for job in expected if job.status is status]
        for limit in (1, 4, 50):
            assert every_page(past, before, status, limit) == in_status, (status, limit)
        searched = [job for job in in_status if "-01" in job.job_id]
        assert every_page(past, before, status, 3, search="-01") == searched, status


def test_a_rare_status_among_the_changed_jobs_is_found_past_the_newest_read(
    service: JobService, store: EventStore
) -> None:
    before = mass_change(service, store)
    past = PastLedger(store, newest_read=4)

    queued = every_page(past, before, JobStatus.QUEUED, limit=1)
    pending = past.page(before, JobStatus.PENDING, limit=50)

    assert [job.job_id for job in queued] == ["queued-011", "queued-003"]
    assert [job.job_id for job in pending.jobs] == ["pending-1", "pending-0"]
    assert all(past.job(job.job_id, before).status == "queued" for job in queued)


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan] + [node for child in plan.get("Plans", []) for node in _plan_nodes(child)]


def test_a_page_of_a_status_common_among_the_changed_jobs_reads_about_a_page_of_them(
    service: JobService, store: EventStore, engine: Engine
) -> None:
    before = mass_change(service, store, running=200)
    statement = past_page_sql(by_status=True, after_cursor=False, search=None)
    params = {
        "as_of": before,
        "status": JobStatus.RUNNING,
        "newest_read": NEWEST_READ,
        **page_params(None, None, 5),
    }
    with engine.connect() as conn:  # read by index, as on a log too large to read whole
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql("SET enable_bitmapscan = off")
        try:
            explained = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", params)
            nodes = _plan_nodes(explained.scalar_one()[0]["Plan"])
        finally:
            conn.exec_driver_sql("RESET enable_seqscan")
            conn.exec_driver_sql("RESET enable_bitmapscan")
    log_reads = [n for n in nodes if n.get("Relation Name") == "job_events"]
    events_read = sum(n["Actual Rows"] * n["Actual Loops"] for n in log_reads)
    assert events_read < 200, "fewer events read than jobs changed: about a page's"
