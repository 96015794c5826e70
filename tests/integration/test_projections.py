"""The current-status projection is the log, replayed: rebuild, verify, catch up."""

import threading

import psycopg
import pytest
from sqlalchemy import Engine, text

from ledger.commands import SaveCheckpoint
from ledger.database import libpq_url
from ledger.job_listing import JobListing
from ledger.service import JobService
from ledger.state import JobState
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections import current_status
from projections.current_status.catchup import (
    CATCH_UP_LOCK_KEY,
    CatchUpReport,
    catch_up_current_status,
)
from projections.current_status.rebuild import rebuild_current_status
from projections.current_status.verify import verify_current_status
from tests.conftest import JobFactory
from tests.integration.recovery_helpers import poll


@pytest.fixture
def jobs_in_every_status(job_factory: JobFactory) -> list[str]:
    return [job_factory(status).job_id for status in JobStatus for _ in range(2)]


def stored_states(store: EventStore) -> list[JobState]:
    return sorted(JobListing(store).page(limit=1000).jobs)


def execute(engine: Engine, statement: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(statement))


def test_a_rebuild_reproduces_the_live_projection_exactly(
    engine: Engine, store: EventStore, jobs_in_every_status: list[str]
) -> None:
    before = stored_states(store)
    report = rebuild_current_status(engine)

    assert report.jobs == len(jobs_in_every_status)
    assert report.events == sum(len(store.history(job)) for job in jobs_in_every_status)
    assert stored_states(store) == before


def test_a_rebuild_repairs_a_tampered_projection(
    engine: Engine, store: EventStore, jobs_in_every_status: list[str]
) -> None:
    before = stored_states(store)
    execute(engine, "UPDATE job_status SET priority = priority + 7, spec = '{\"x\": 1}'")
    # A status no constraint rules out: a queued job shown as pending.
    execute(engine, "UPDATE job_status SET status = 'pending' WHERE status = 'queued'")
    execute(engine, f"DELETE FROM job_status WHERE job_id = '{jobs_in_every_status[0]}'")
    assert not verify_current_status(engine).clean

    rebuild_current_status(engine)
    assert stored_states(store) == before
    assert verify_current_status(engine).clean


def test_verify_names_every_drifted_row(engine: Engine, jobs_in_every_status: list[str]) -> None:
    assert verify_current_status(engine).clean
    changed, deleted = jobs_in_every_status[2], jobs_in_every_status[3]
    execute(engine, f"UPDATE job_status SET priority = 99 WHERE job_id = '{changed}'")
    execute(engine, f"DELETE FROM job_status WHERE job_id = '{deleted}'")
    execute(
        engine,
        "INSERT INTO job_status SELECT 'ghost', status, version, created_at, updated_at, "
        "status_changed_at, priority, max_attempts, auto_retry, spec, attempt, run_token_sha256, "
        "queued_at, started_at, finished_at, worker_id, worker_host, worker_pid, "
        "worker_pid_started_at, worker_boot_id, failure_reason, checkpoint_path, "
        f"checkpoint_step, resume_from, result FROM job_status WHERE job_id = '{changed}'",
    )

    report = verify_current_status(engine)
    found = {(d.job_id, d.kind) for d in report.drifts}
    assert found == {(changed, "differs"), (deleted, "missing"), ("ghost", "unexpected")}
    [differs] = [d for d in report.drifts if d.kind == "differs"]
    assert differs.fields["priority"][0] == 99
    assert "priority stored=99" in differs.describe()


def test_catch_up_applies_events_the_projection_has_not_seen(
    engine: Engine, store: EventStore, job_factory: JobFactory, database_url: str
) -> None:
    job = job_factory(JobStatus.RUNNING)
    catch_up_current_status(engine)  # the first catch-up builds the projection and checkpoint
    with psycopg.connect(libpq_url(database_url)) as conn:
        # An event written straight into the log, as an older writer might have.
        conn.execute(
            "INSERT INTO job_events (job_id, seq, type, payload, actor, attempt) "
            "VALUES (%s, %s, 'checkpoint_saved', '{\"path\": \"/ck/9\", \"step\": 9}', 'w', 1)",
            (job.job_id, job.version + 1),
        )
    assert not verify_current_status(engine).clean

    report = catch_up_current_status(engine)

    assert not report.rebuilt
    assert report.jobs_repaired == 1
    loaded = store.load(job.job_id)
    assert loaded is not None and loaded.checkpoint_path == "/ck/9"
    assert verify_current_status(engine).clean
    assert catch_up_current_status(engine).events_read == 0


def test_a_catch_up_waits_for_one_another_process_holds_and_then_finds_nothing_to_do(
    engine: Engine, job_factory: JobFactory, database_url: str
) -> None:
    job_factory(JobStatus.RUNNING)
    catch_up_current_status(engine)
    reports: list[CatchUpReport] = []
    with psycopg.connect(libpq_url(database_url), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (CATCH_UP_LOCK_KEY,))
        waiting = threading.Thread(target=lambda: reports.append(catch_up_current_status(engine)))
        waiting.start()
        poll(
            lambda: (
                other.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                ).fetchone()
                == (1,)
            )
        )
        assert not reports
        other.execute("SELECT pg_advisory_unlock(%s)", (CATCH_UP_LOCK_KEY,))
        waiting.join(timeout=30)
    assert [report.events_read for report in reports] == [0]


def test_a_projection_built_by_another_version_is_rebuilt_on_catch_up(
    engine: Engine, jobs_in_every_status: list[str]
) -> None:
    catch_up_current_status(engine)
    execute(engine, "UPDATE projection_checkpoints SET version = 0")
    execute(engine, "UPDATE job_status SET priority = 42")

    report = catch_up_current_status(engine)

    assert report.rebuilt
    assert verify_current_status(engine).clean
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version FROM projection_checkpoints")).scalar_one()
    assert version == current_status.VERSION


@pytest.mark.slow
def test_a_rebuild_during_live_appends_loses_none_of_them(
    engine: Engine, store: EventStore, service: JobService, job_factory: JobFactory
) -> None:
    for _ in range(200):
        job_factory(JobStatus.QUEUED)
    busy = job_factory(JobStatus.RUNNING)
    stop = threading.Event()
    written: list[int] = []

    def keep_appending() -> None:
        step = 0
        while not stop.is_set():
            step += 1
            command = SaveCheckpoint(
                attempt=1, run_token=f"token-{busy.job_id}", path=f"/ck/{step}", step=step
            )
            written.append(service.execute(busy.job_id, command, actor="w").state.version)

    writer = threading.Thread(target=keep_appending)
    writer.start()
    try:
        for _ in range(3):
            rebuild_current_status(engine)
    finally:
        stop.set()
        writer.join()

    assert written, "the writer appended during the rebuilds"
    loaded = store.load(busy.job_id)
    assert loaded is not None and loaded.version == written[-1]
    assert verify_current_status(engine).clean


def test_events_committed_between_replay_and_swap_are_applied_under_the_lock(
    engine: Engine, store: EventStore, service: JobService, job_factory: JobFactory
) -> None:
    from ledger.database import driver_connection
    from projections.current_status.rebuild import _fold_into_staging, _swap_in

    job = job_factory(JobStatus.RUNNING)
    with driver_connection(engine) as writer:
        snapshot_xmin, events, jobs = _fold_into_staging(writer, engine)
        late = service.execute(
            job.job_id,
            SaveCheckpoint(attempt=1, run_token=f"token-{job.job_id}", path="/ck/late"),
            actor="w",
        )
        applied = _swap_in(writer, snapshot_xmin)

    assert (events, jobs, applied) == (2, 1, 1)
    assert store.load(job.job_id) == late.state
    assert verify_current_status(engine).clean


def test_catch_up_rebuilds_when_a_row_it_must_extend_is_missing(
    engine: Engine, store: EventStore, job_factory: JobFactory, database_url: str
) -> None:
    job = job_factory(JobStatus.RUNNING)
    catch_up_current_status(engine)  # builds the projection; the checkpoint passes the job
    execute(engine, f"DELETE FROM job_status WHERE job_id = '{job.job_id}'")
    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.execute(
            "INSERT INTO job_events (job_id, seq, type, payload, actor, attempt) "
            "VALUES (%s, %s, 'checkpoint_saved', '{\"path\": \"/ck/3\"}', 'w', 1)",
            (job.job_id, job.version + 1),
        )

    report = catch_up_current_status(engine)

    assert report.rebuilt
    loaded = store.load(job.job_id)
    assert loaded is not None and loaded.checkpoint_path == "/ck/3"
    assert verify_current_status(engine).clean
