"""The reconciler: guarded, audited automatic recovery."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from ledger.commands import CompleteJob, WorkerIdentity
from ledger.errors import StaleAttempt
from ledger.host import LocalHost
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.recovery.health import HealthCheck, HealthReport
from projections.recovery.reconciler import Reconciler, ReconcilerPolicy
from tests.conftest import JobFactory
from tests.integration.recovery_helpers import poll

REMOTE = WorkerIdentity(worker_id="remote", host="other-host", pid=99, pid_started_at=1.0)


def checker(engine: Engine, lease_seconds: float = 0.3) -> HealthCheck:
    return HealthCheck(
        engine,
        local=LocalHost.detect(),
        lease_seconds=lease_seconds,
        stale_pending_after=timedelta(minutes=10),
    )


ORPHAN_TOKEN = "orphan-token"
"""The run token the orphan's remote worker was told."""


@pytest.fixture
def orphan(store: EventStore, job_factory: JobFactory, engine: Engine) -> str:
    """A running job whose remote worker's lease has lapsed."""
    job = job_factory(auto_retry=False)
    queue = JobQueue(store, lease_seconds=0.3, run_tokens=lambda: ORPHAN_TOKEN)
    queue.claim(REMOTE, actor="remote")
    poll(lambda: checker(engine).check().orphaned)
    return job.job_id


def test_an_orphaned_run_is_marked_failed_by_the_health_monitor_with_its_reason(
    orphan: str, engine: Engine, service: JobService, store: EventStore
) -> None:
    report = Reconciler(service, checker(engine)).run_once()
    assert report.of("mark_failed") == [orphan]
    last = store.history(orphan)[-1]
    assert (last.type, last.actor) == ("job_marked_failed", "health-monitor")
    assert last.reason == "process terminated unexpectedly (lease_expired)"
    assert Reconciler(service, checker(engine)).run_once().actions == []


def test_a_dry_run_reports_the_plan_and_changes_nothing(
    orphan: str, engine: Engine, service: JobService, store: EventStore
) -> None:
    before = store.history(orphan)
    report = Reconciler(service, checker(engine)).run_once(dry_run=True)
    assert [(a.job_id, a.action, a.applied) for a in report.actions] == [
        (orphan, "mark_failed", False)
    ]
    assert store.history(orphan) == before


def test_an_orphan_that_opted_into_retries_is_requeued_while_attempts_remain(
    store: EventStore, job_factory: JobFactory, engine: Engine, service: JobService
) -> None:
    job = job_factory(auto_retry=True, max_attempts=2)
    queue = JobQueue(store, lease_seconds=0.3, run_tokens=lambda: ORPHAN_TOKEN)
    queue.claim(REMOTE, actor="remote")
    poll(lambda: checker(engine).check().orphaned)

    report = Reconciler(service, checker(engine)).run_once()

    assert report.of("requeue") == [job.job_id]
    types = [e.type for e in store.history(job.job_id)][-2:]
    assert types == ["job_marked_failed", "job_force_started"]
    state = store.load(job.job_id)
    assert state is not None and state.status is JobStatus.QUEUED


def test_stale_pending_jobs_are_failed_with_the_plans_reason(
    engine: Engine, service: JobService, store: EventStore, job_factory: JobFactory
) -> None:
    pending = job_factory(JobStatus.PENDING)
    fresh_enough = Reconciler(service, checker(engine)).run_once()
    assert fresh_enough.actions == []

    poll(lambda: checker(engine).check(stale_pending_after=timedelta(seconds=0.2)).stale_pending)
    report = Reconciler(service, checker(engine)).run_once(
        stale_pending_after=timedelta(seconds=0.2)
    )
    assert report.of("mark_failed") == [pending.job_id]
    last = store.history(pending.job_id)[-1]
    assert (last.reason, last.actor) == ("stuck in pending state", "health-monitor")


def test_a_pass_records_one_correlation_id_on_all_it_writes_the_callers_when_given(
    job_factory: JobFactory, engine: Engine, service: JobService, store: EventStore
) -> None:
    stale = timedelta(seconds=0.2)
    pending = [job_factory(JobStatus.PENDING).job_id for _ in range(2)]
    poll(lambda: len(checker(engine).check(stale_pending_after=stale).stale_pending) == 2)
    Reconciler(service, checker(engine)).run_once(stale_pending_after=stale)
    passes = {store.history(job_id)[-1].correlation_id for job_id in pending}
    assert len(passes) == 1 and len(passes.pop() or "") == 32  # a trace id of the pass's own

    again = job_factory(JobStatus.PENDING).job_id
    poll(lambda: checker(engine).check(stale_pending_after=stale).stale_pending)
    Reconciler(service, checker(engine)).run_once(stale_pending_after=stale, correlation_id="op-1")
    assert store.history(again)[-1].correlation_id == "op-1"


def test_stale_pending_jobs_are_admitted_only_when_that_is_switched_on(
    engine: Engine, service: JobService, store: EventStore, job_factory: JobFactory
) -> None:
    pending = job_factory(JobStatus.PENDING)
    stale = timedelta(seconds=0.2)
    poll(lambda: checker(engine).check(stale_pending_after=stale).stale_pending)
    policy = ReconcilerPolicy(auto_start_pending=True)
    report = Reconciler(service, checker(engine), policy).run_once(stale_pending_after=stale)
    assert report.of("submit") == [pending.job_id]
    state = store.load(pending.job_id)
    assert state is not None and state.status is JobStatus.QUEUED


class SeenEarlier(HealthCheck):
    """A health view taken before the job changed: what a slow reconciler acts on."""

    def __init__(self, report: HealthReport, engine: Engine) -> None:
        super().__init__(engine)
        self.report = report

    def check(self, **_: object) -> HealthReport:
        return self.report


def test_a_completion_that_lands_after_the_health_check_is_never_overwritten(
    orphan: str, engine: Engine, service: JobService, store: EventStore
) -> None:
    seen = checker(engine).check()
    state = store.load(orphan)
    assert state is not None
    service.execute(
        orphan, CompleteJob(attempt=state.attempt, run_token=ORPHAN_TOKEN), actor="remote"
    )

    report = Reconciler(service, SeenEarlier(seen, engine)).run_once()

    [action] = report.actions
    assert not action.applied and action.skipped is not None
    final = store.load(orphan)
    assert final is not None and final.status is JobStatus.COMPLETED


def race_completion_with_reconciler(
    engine: Engine, service: JobService, job_id: str, run_token: str
) -> dict[str, str]:
    """Complete the run and reconcile it at the same moment; say what each side saw."""
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def complete() -> None:
        barrier.wait()
        try:
            service.execute(job_id, CompleteJob(attempt=1, run_token=run_token), actor="remote")
            outcomes["worker"] = "completed"
        except StaleAttempt:
            outcomes["worker"] = "fenced"

    def reconcile() -> None:
        barrier.wait()
        applied = Reconciler(service, checker(engine, 0.2)).run_once().of("mark_failed")
        outcomes["monitor"] = "failed" if job_id in applied else "left"

    threads = [threading.Thread(target=complete), threading.Thread(target=reconcile)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.slow
def test_reconciler_and_completion_racing_leave_exactly_one_outcome(
    engine: Engine, service: JobService, store: EventStore, job_factory: JobFactory
) -> None:
    for _ in range(10):
        job = job_factory()
        claim = JobQueue(store, lease_seconds=0.2).start(job.job_id, REMOTE, actor="remote")
        poll(lambda: checker(engine, 0.2).check().orphaned)

        outcomes = race_completion_with_reconciler(engine, service, job.job_id, claim.run_token)

        assert sorted(outcomes.values()) in (["completed", "left"], ["failed", "fenced"])
        final = store.load(job.job_id)
        expected = JobStatus.COMPLETED if outcomes["worker"] == "completed" else JobStatus.FAILED
        assert final is not None and final.status is expected
        closing = [e.type for e in store.history(job.job_id)][2:]
        assert len(closing) == 1, closing


def test_a_pass_forgets_the_leases_of_closed_attempts(
    orphan: str, engine: Engine, service: JobService
) -> None:
    from sqlalchemy import text

    Reconciler(service, checker(engine)).run_once()
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM job_leases")).scalar_one()
    assert left == 0
