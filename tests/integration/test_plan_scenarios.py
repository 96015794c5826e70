"""The plan's manual test scenarios, automated against a real PostgreSQL and real processes."""

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import Engine

from api.bootstrap import wire_ledger
from ledger.commands import CompleteJob
from ledger.database import create_ledger_engine
from ledger.errors import StaleAttempt
from ledger.host import process_identity
from ledger.settings import Settings
from ledger.statuses import JobStatus
from projections.current_status.catchup import catch_up_current_status
from projections.current_status.verify import verify_current_status
from tests.conftest import WORKER, JobFactory
from tests.integration.recovery_helpers import poll, training_process


def test_a_stuck_pending_job_is_reported_force_started_with_a_position_and_claimed(
    database_url: str, engine: Engine, job_factory: JobFactory
) -> None:
    ledger = wire_ledger(database_url, engine, Settings(stale_pending_minutes=0.005))
    job_factory()  # already in the queue, ahead of the stuck job
    stuck = job_factory(JobStatus.PENDING)

    [stale] = poll(lambda: ledger.health.check().stale_pending)
    assert stale.job_id == stuck.job_id

    started = ledger.force_starter.force_start(stuck.job_id, actor="operator", reason="stuck")
    assert started.state.status is JobStatus.QUEUED
    assert started.queue_position == 2

    first = ledger.queue.claim(WORKER, actor="w")
    second = ledger.queue.claim(WORKER, actor="w")
    assert first is not None and second is not None
    assert second.job.job_id == stuck.job_id
    loaded = ledger.store.load(stuck.job_id)
    assert loaded is not None and loaded.status is JobStatus.RUNNING


def test_an_orphaned_run_is_detected_failed_and_its_late_completion_fenced(
    database_url: str, engine: Engine, job_factory: JobFactory
) -> None:
    ledger = wire_ledger(database_url, engine, Settings())
    job = job_factory()
    with training_process() as child:
        claim = ledger.queue.claim(process_identity("trainer", child.pid), actor="trainer")
        assert claim is not None and claim.job.job_id == job.job_id
        assert ledger.health.check().healthy
        os.kill(child.pid, signal.SIGKILL)
        child.wait()

    [orphan] = ledger.health.check().orphaned
    assert (orphan.job_id, orphan.reason) == (job.job_id, "process_gone")

    report = ledger.reconciler.run_once()
    assert report.of("mark_failed") == [job.job_id]
    failed = ledger.store.load(job.job_id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.failure_reason == "process terminated unexpectedly (process_gone)"

    late = CompleteJob(attempt=claim.attempt, run_token=claim.run_token)
    try:
        ledger.service.execute(job.job_id, late, actor="trainer")
    except StaleAttempt:
        pass
    else:
        raise AssertionError("the dead worker's completion was accepted")
    assert ledger.store.load(job.job_id) == failed


QUEUE_THREE_AND_WAIT = """
import sys, time
from ledger.commands import RegisterJob
from ledger.database import create_ledger_engine
from ledger.service import JobService
from ledger.store import EventStore
service = JobService(EventStore(create_ledger_engine(sys.argv[1])))
for name in ("restart-a", "restart-b", "restart-c"):
    service.execute(name, RegisterJob(spec={"name": name}), actor="training-server")
print("queued", flush=True)
time.sleep(120)
"""


def test_queued_jobs_survive_a_sigkilled_server_in_order_and_claimable(database_url: str) -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", QUEUE_THREE_AND_WAIT, database_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    with server.stdout:
        try:
            assert server.stdout.readline().strip() == "queued"
        finally:
            server.send_signal(signal.SIGKILL)
            server.wait()
    assert server.returncode == -signal.SIGKILL

    fresh = create_ledger_engine(database_url)
    try:
        catch_up_current_status(fresh)
        ledger = wire_ledger(database_url, fresh, Settings())
        queued = ledger.listing.page(JobStatus.QUEUED).jobs
        assert [job.job_id for job in queued] == ["restart-c", "restart-b", "restart-a"]
        positions = {r.state.job_id: r.queue_position for r in ledger.reader.readings(queued)}
        assert positions == {"restart-a": 1, "restart-b": 2, "restart-c": 3}

        claimed = [ledger.queue.claim(WORKER, actor="w") for _ in range(3)]
        assert [c.job.job_id for c in claimed if c] == ["restart-a", "restart-b", "restart-c"]
        assert verify_current_status(fresh).clean
    finally:
        fresh.dispose()


def test_sixteen_concurrent_force_starts_of_one_job_append_one_queued_event(
    database_url: str, engine: Engine, job_factory: JobFactory
) -> None:
    ledger = wire_ledger(database_url, engine, Settings())
    job = job_factory(JobStatus.PENDING)
    barrier = threading.Barrier(16)

    def force_start(index: int) -> int | None:
        barrier.wait()
        return ledger.force_starter.force_start(job.job_id, actor=f"op-{index}").queue_position

    with ThreadPoolExecutor(16) as pool:
        positions = list(pool.map(force_start, range(16)))

    types = [event.type for event in ledger.store.history(job.job_id)]
    assert types == ["job_registered", "job_force_started"]
    assert positions == [1] * 16


def test_force_start_on_a_live_running_job_is_refused_and_on_an_orphan_requeues_it(
    database_url: str, engine: Engine, job_factory: JobFactory
) -> None:
    from ledger.errors import IllegalTransition

    ledger = wire_ledger(database_url, engine, Settings())
    job = job_factory()
    with training_process() as child:
        ledger.queue.claim(process_identity("trainer", child.pid), actor="trainer")
        try:
            ledger.force_starter.force_start(job.job_id, actor="op")
        except IllegalTransition as refused:
            assert "orphaned" in str(refused)
        else:
            raise AssertionError("force start of a live run was accepted")
        child.kill()
        child.wait()

    started = ledger.force_starter.force_start(job.job_id, actor="op", reason="node died")
    assert started.queue_position == 1
    closing = ledger.store.history(job.job_id)[-2:]
    assert [e.type for e in closing] == ["job_marked_failed", "job_force_started"]
    assert closing[0].attempt == 1 and closing[0].tx_id == closing[1].tx_id


def test_the_stale_pending_threshold_can_be_overridden_per_pass(
    database_url: str, engine: Engine, job_factory: JobFactory
) -> None:
    ledger = wire_ledger(database_url, engine, Settings())
    pending = job_factory(JobStatus.PENDING)
    assert ledger.reconciler.run_once(dry_run=True).actions == []
    poll(lambda: ledger.health.check(stale_pending_after=timedelta(seconds=0.2)).stale_pending)
    report = ledger.reconciler.run_once(dry_run=True, stale_pending_after=timedelta(seconds=0.2))
    assert [a.job_id for a in report.actions] == [pending.job_id]
