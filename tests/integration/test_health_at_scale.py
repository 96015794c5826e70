"""The health view stays a bounded read in a disaster: a summary with the first page of
each problem, and a reconciler that recovers them a page at a time."""

from sqlalchemy import Engine, text

from ledger.service import JobService
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.recovery.health import HEALTH_PAGE, HealthCheck, OrphanReason
from projections.recovery.reconciler import Reconciler
from tests.conftest import JobFactory


def lapse_every_lease(engine: Engine) -> None:
    """Every open run's lease lapsed, one second apart: the first job's longest ago."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE job_leases l SET expires_at = now() - interval '1 hour' "
                "+ make_interval(secs => n.rank) "
                "FROM (SELECT job_id, row_number() OVER (ORDER BY started_at) AS rank "
                "      FROM job_leases) n WHERE n.job_id = l.job_id"
            )
        )


def test_a_disaster_is_summarised_with_the_longest_dead_first(
    engine: Engine, job_factory: JobFactory
) -> None:
    runs = [job_factory(JobStatus.RUNNING).job_id for _ in range(HEALTH_PAGE + 20)]
    job_factory(JobStatus.RUNNING)  # its lease lapses last: still dead
    lapse_every_lease(engine)

    report = HealthCheck(engine).check()

    assert report.orphaned_count == HEALTH_PAGE + 21
    assert len(report.orphaned) == HEALTH_PAGE
    assert [orphan.job_id for orphan in report.orphaned] == runs[:HEALTH_PAGE]
    assert {orphan.reason for orphan in report.orphaned} == {OrphanReason.LEASE_EXPIRED}
    assert (report.total_running, report.total_running_alive) == (HEALTH_PAGE + 21, 0)
    assert report.counts_exact and not report.healthy


def test_a_reconciler_pass_gives_runs_without_a_lease_one_from_their_start(
    engine: Engine, service: JobService, store: EventStore, job_factory: JobFactory
) -> None:
    started_long_ago = job_factory(JobStatus.RUNNING)
    alive = job_factory(JobStatus.RUNNING)
    with engine.begin() as conn:  # as after a log written before leases: none, one run old
        conn.execute(text("DELETE FROM job_leases"))
        conn.execute(
            text(
                "UPDATE job_status SET started_at = started_at - interval '1 day' "
                "WHERE job_id = :old"
            ),
            {"old": started_long_ago.job_id},
        )
    health = HealthCheck(engine)

    report = Reconciler(service, health).run_once()

    assert report.of("mark_failed") == [started_long_ago.job_id]
    assert health.check().total_running_alive == 1
    with engine.connect() as conn:
        leased = conn.execute(text("SELECT job_id FROM job_leases")).scalars().all()
    assert leased == [alive.job_id], "the live run holds a lease from its start"


def test_the_reconciler_recovers_a_disaster_a_page_at_a_time(
    engine: Engine, service: JobService, store: EventStore, job_factory: JobFactory
) -> None:
    runs = [job_factory(JobStatus.RUNNING).job_id for _ in range(2 * HEALTH_PAGE + 30)]
    lapse_every_lease(engine)
    health = HealthCheck(engine)

    report = Reconciler(service, health).run_once()

    assert sorted(report.of("mark_failed")) == sorted(runs)
    assert health.check().orphaned_count == 0
    assert {store.load(job).status for job in runs} == {JobStatus.FAILED}  # type: ignore[union-attr]


def test_a_dry_run_plans_the_first_page(
    engine: Engine, service: JobService, job_factory: JobFactory
) -> None:
    for _ in range(HEALTH_PAGE + 5):
        job_factory(JobStatus.RUNNING)
    lapse_every_lease(engine)

    report = Reconciler(service, HealthCheck(engine)).run_once(dry_run=True)

    assert len(report.actions) == HEALTH_PAGE
    assert not any(action.applied for action in report.actions)
    assert report.health is not None and report.health.orphaned_count == HEALTH_PAGE + 5


def test_counts_past_the_bound_are_estimates(engine: Engine) -> None:
    from ledger.queries import EXACT_COUNT

    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO job_status (job_id, status, version, created_at, updated_at, "
                "status_changed_at, priority, max_attempts, auto_retry, spec, attempt, queued_at) "
                "SELECT 'q-' || n, 'queued', 1, now(), now(), now(), 0, 1, false, '{}', 0, now() "
                "FROM generate_series(1, :count) AS n"
            ),
            {"count": EXACT_COUNT + 1000},
        )
        conn.execute(text("ANALYZE job_status"))

    report = HealthCheck(engine).check()

    assert not report.counts_exact
    assert abs(report.queue_depth - (EXACT_COUNT + 1000)) < EXACT_COUNT * 0.2


def test_the_start_up_pass_takes_one_page_and_leaves_the_rest_to_the_monitor(
    engine: Engine, database_url: str, job_factory: JobFactory
) -> None:
    from api.bootstrap import wire_ledger
    from api.serve import recover
    from ledger.settings import Settings

    for _ in range(HEALTH_PAGE + 30):
        job_factory(JobStatus.RUNNING)
    lapse_every_lease(engine)
    ledger = wire_ledger(database_url, engine, Settings(database_url=database_url))

    summary = recover(ledger)

    assert f"{HEALTH_PAGE} orphans failed" in summary
    assert summary.endswith(", 30 more left to the monitor")
    assert ledger.health.check().orphaned_count == 30
