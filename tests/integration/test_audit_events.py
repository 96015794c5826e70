"""The audit log read from the ledger: the status each event reached, pages across events
of one transaction, and exports in constant memory."""

import tracemalloc

import psycopg

from api.audit_export import ExportFormat, exported_lines
from ledger.audit_events import AuditFilter, AuditLog
from ledger.commands import ForceStart, RequeueJob, SaveCheckpoint
from ledger.database import libpq_url
from ledger.service import JobService
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.history import transitions
from tests.conftest import JobFactory


def test_the_status_reached_is_the_status_replaying_the_event_moves_its_job_to(
    store: EventStore, service: JobService, job_factory: JobFactory
) -> None:
    jobs = [job_factory(status) for status in JobStatus]
    running = job_factory(JobStatus.RUNNING)
    checkpoint = SaveCheckpoint(attempt=1, run_token=f"token-{running.job_id}", path="/c/1")
    service.execute(running.job_id, checkpoint, actor="w")
    service.execute(running.job_id, ForceStart(run_is_dead=True), actor="alice")
    failed = next(job for job in jobs if job.status is JobStatus.FAILED)
    service.execute(failed.job_id, RequeueJob(reason="again"), actor="alice")
    page = AuditLog(store).page(AuditFilter(), limit=1000)
    replayed = {
        (item.event.job_id, item.event.seq): item.to_status
        for job in [*jobs, running]
        for item in transitions(store.history(job.job_id))
    }
    assert len(page.events) == len(replayed)
    for shown in page.events:
        expected = replayed[(shown.event.job_id, shown.event.seq)]
        assert shown.status == (None if shown.event.type == "checkpoint_saved" else expected)


def test_pages_of_one_event_split_the_events_of_one_transaction_without_losing_any(
    store: EventStore, service: JobService, job_factory: JobFactory
) -> None:
    job = job_factory(JobStatus.RUNNING)
    service.execute(job.job_id, ForceStart(run_is_dead=True), actor="alice")  # two events
    audit = AuditLog(store)
    question = AuditFilter(actor="alice")
    first = audit.page(question, limit=1)
    assert first.next_cursor is not None
    second = audit.page(question, first.next_cursor, limit=1)
    events = [shown.event for shown in first.events + second.events]
    assert [event.type for event in events] == ["job_marked_failed", "job_force_started"]
    assert events[0].recorded_at == events[1].recorded_at
    assert second.next_cursor is None


def register_many(url: str, prefix: str, count: int) -> None:
    """`count` registrations in one statement, each with a spec of some size."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job_events (job_id, seq, type, payload, actor) "
            "SELECT %s || n, 1, 'job_registered', jsonb_build_object("
            "'initial_status', 'queued', 'spec', jsonb_build_object('blob', repeat('x', 500)), "
            "'priority', 0, 'max_attempts', 1, 'auto_retry', false), 'trainer' "
            "FROM generate_series(1, %s) AS n",
            (prefix, count),
        )


def export_peak(store: EventStore) -> tuple[int, int]:
    """The lines a CSV export of every registration wrote, and the most memory it held."""
    audit = AuditLog(store)
    tracemalloc.start()
    try:
        lines = 0
        for chunk in exported_lines(
            ExportFormat.CSV, audit.batches(AuditFilter(statuses=(JobStatus.QUEUED,)), batch=200)
        ):
            lines += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return lines, peak


def test_an_export_ten_times_longer_holds_no_more_memory(
    database_url: str, store: EventStore
) -> None:
    register_many(database_url, "short-", 1_000)
    short_lines, short_peak = export_peak(store)
    register_many(database_url, "long-", 9_000)
    long_lines, long_peak = export_peak(store)
    assert (short_lines, long_lines) == (1_001, 10_001)  # a header and a line per event
    assert long_peak < 1.5 * short_peak
