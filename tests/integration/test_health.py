"""The health view: orphaned runs and why, stale pending jobs, the queue."""

import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from ledger.commands import WorkerIdentity
from ledger.host import LocalHost, boot_id, hostname, process_identity
from ledger.leases import renew_lease
from ledger.queue import JobQueue
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.recovery.health import HealthCheck, OrphanReason
from tests.conftest import JobFactory
from tests.integration.recovery_helpers import poll, training_process

REMOTE = WorkerIdentity(worker_id="remote", host="other-host", pid=1234, pid_started_at=1.0)


def health(engine: Engine, lease_seconds: float = 60, stale_after_s: float = 600) -> HealthCheck:
    return HealthCheck(
        engine,
        local=LocalHost.detect(),
        lease_seconds=lease_seconds,
        stale_pending_after=timedelta(seconds=stale_after_s),
    )


def lease_expired(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(text("SELECT bool_and(expires_at < now()) FROM job_leases")).scalar()
        )


def test_an_empty_ledger_is_healthy(engine: Engine) -> None:
    report = health(engine).check()
    assert report.healthy
    assert (report.queue_depth, report.oldest_queued_age_s, report.total_running) == (0, None, 0)


def test_the_queue_depth_and_the_age_of_its_oldest_job_are_reported(
    engine: Engine, job_factory: JobFactory
) -> None:
    job_factory()
    job_factory()
    job_factory(JobStatus.PENDING)
    report = health(engine).check()
    assert report.queue_depth == 2
    assert report.oldest_queued_age_s is not None and report.oldest_queued_age_s >= 0


def test_a_live_local_process_is_alive_and_its_death_is_noticed_on_the_next_check(
    engine: Engine, store: EventStore, job_factory: JobFactory
) -> None:
    job_factory()
    with training_process() as child:
        claim = JobQueue(store).claim(process_identity("trainer", child.pid), actor="trainer")
        assert claim is not None
        alive = health(engine).check()
        assert alive.healthy and (alive.total_running, alive.total_running_alive) == (1, 1)
        child.kill()
        child.wait()
    report = health(engine).check()
    [orphan] = report.orphaned
    assert (orphan.job_id, orphan.attempt, orphan.reason) == (
        claim.job.job_id,
        1,
        OrphanReason.PROCESS_GONE,
    )
    assert orphan.worker.pid == child.pid
    assert (report.total_running, report.total_running_alive) == (1, 0)
    assert not report.healthy


def test_a_pid_now_held_by_another_process_is_recognised_as_reused(
    engine: Engine, store: EventStore, job_factory: JobFactory
) -> None:
    job_factory()
    me = process_identity("trainer", os.getpid())
    impostor = WorkerIdentity(
        worker_id="trainer",
        host=me.host,
        pid=me.pid,
        pid_started_at=(me.pid_started_at or 0) - 3600,
        boot_id=me.boot_id,
    )
    JobQueue(store).claim(impostor, actor="trainer")
    [orphan] = health(engine).check().orphaned
    assert orphan.reason is OrphanReason.PID_REUSED


def test_a_run_from_before_the_host_rebooted_is_orphaned(
    engine: Engine, store: EventStore, job_factory: JobFactory
) -> None:
    job_factory()
    before_reboot = WorkerIdentity(
        worker_id="trainer", host=hostname(), pid=os.getpid(), pid_started_at=1.0, boot_id="old"
    )
    JobQueue(store).claim(before_reboot, actor="trainer")
    [orphan] = health(engine).check().orphaned
    assert orphan.reason is OrphanReason.HOST_REBOOTED
    assert boot_id() != "old"


def test_a_remote_run_is_judged_by_its_lease(
    engine: Engine, store: EventStore, job_factory: JobFactory
) -> None:
    job_factory()
    claim = JobQueue(store, lease_seconds=0.5).claim(REMOTE, actor="remote")
    assert claim is not None
    checker = health(engine, lease_seconds=0.5)
    assert checker.check().healthy
    orphan = poll(lambda: checker.check().orphaned)[0]
    assert orphan.reason is OrphanReason.LEASE_EXPIRED
    assert orphan.last_heartbeat_at is None


def test_heartbeats_keep_a_remote_run_alive_and_the_last_one_is_reported(
    engine: Engine, store: EventStore, job_factory: JobFactory
) -> None:
    job_factory()
    claim = JobQueue(store, lease_seconds=1).claim(REMOTE, actor="remote")
    assert claim is not None
    checker = health(engine, lease_seconds=1)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        renew_lease(store, claim.job.job_id, claim.attempt, claim.run_token, 1)
        assert checker.check().healthy
        time.sleep(0.2)
    orphan = poll(lambda: checker.check().orphaned)[0]
    assert orphan.last_heartbeat_at is not None


def test_a_live_local_run_is_alive_within_its_lease_and_unresponsive_past_it(
    engine: Engine, store: EventStore, job_factory: JobFactory
) -> None:
    job_factory()
    with training_process() as child:
        queue = JobQueue(store, lease_seconds=0.5)
        queue.claim(process_identity("t", child.pid), actor="t")
        assert health(engine, lease_seconds=0.5).check().healthy, "alive within its lease"
        poll(lambda: lease_expired(engine))
        [orphan] = health(engine, lease_seconds=0.5).check().orphaned
        assert orphan.reason is OrphanReason.UNRESPONSIVE
        assert child.poll() is None, "its process still lives"


def test_a_pending_job_becomes_stale_after_the_threshold_on_the_database_clock(
    engine: Engine, job_factory: JobFactory
) -> None:
    pending = job_factory(JobStatus.PENDING)
    assert health(engine, stale_after_s=600).check().stale_pending == []
    [stale] = poll(lambda: health(engine, stale_after_s=0.3).check().stale_pending)
    assert stale.job_id == pending.job_id
    assert stale.pending_since == pending.status_changed_at


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.PAUSED])
def test_jobs_that_are_not_running_or_pending_never_count_as_running(
    engine: Engine, job_factory: JobFactory, status: JobStatus
) -> None:
    job_factory(status)
    assert health(engine).check().total_running == 0
