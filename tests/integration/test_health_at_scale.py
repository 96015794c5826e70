"""The health view stays a bounded read in a disaster: a summary with the first page of
each problem, and a reconciler that recovers them a page at a time."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from ledger.host import LocalHost, ProcessFate, boot_id, hostname
from ledger.leases import lease_unleased_runs, prune_leases
from ledger.schema import job_status
from ledger.service import JobService
from ledger.state import JobState
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.recovery.health import (
    EXACT_PROBLEM_COUNT,
    HEALTH_PAGE,
    HEALTH_QUERY,
    LOCAL_CHECKS,
    HealthCheck,
    OrphanReason,
)
from projections.recovery.reconciler import ACTOR, Reconciler
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


def copies_of_a_run(
    engine: Engine, run: JobState, count: int, *, host: str | None = None, live: bool = False
) -> None:
    """`count` open runs like `run` in the projection and the leases (not in the log: the
    health view reads neither), under ids `<run>-<n>`; with `host`, running there, each
    as a process that cannot exist (pids stop short of 2**22); their leases lapsed one
    millisecond apart, the first longest ago, or `live` for an hour."""
    columns = [column.name for column in job_status.columns]
    copied = {
        "job_id": "s.job_id || '-' || n",
        **({"worker_host": ":host", "worker_pid": "4194304 + n"} if host else {}),
    }
    expiry = (
        "now() + interval '1 hour'" if live else "now() - interval '1 hour' + n * interval '1 ms'"
    )
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO job_status ({', '.join(columns)}) "
                f"SELECT {', '.join(copied.get(column, 's.' + column) for column in columns)} "
                "FROM job_status s, generate_series(1, :count) AS n WHERE s.job_id = :job_id"
            ),
            {"count": count, "job_id": run.job_id, "host": host},
        )
        conn.execute(
            text(
                "INSERT INTO job_leases (job_id, attempt, run_token_sha256, worker_id, host, "
                "started_at, heartbeat_at, expires_at) "
                "SELECT s.job_id, s.attempt, s.run_token_sha256, s.worker_id, s.worker_host, "
                f"s.started_at, NULL, {expiry} "
                "FROM job_status s, generate_series(1, :count) AS n "
                "WHERE s.job_id = :job_id || '-' || n"
            ),
            {"count": count, "job_id": run.job_id},
        )
        conn.execute(text("ANALYZE job_status"))
        conn.execute(text("ANALYZE job_leases"))


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def test_the_health_view_reads_a_page_and_a_bounded_count_of_many_dead_runs(
    engine: Engine, job_factory: JobFactory
) -> None:
    run = job_factory(JobStatus.RUNNING)
    copies_of_a_run(engine, run, 3 * EXACT_PROBLEM_COUNT)
    check = HealthCheck(engine)
    params = {**check.thresholds(), "local_host": check.local.name}

    with engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {HEALTH_QUERY}", params)
        nodes = list(plan_nodes(plan.scalar_one()[0]["Plan"]))
    report = check.check()

    lease_reads = [n for n in nodes if n.get("Relation Name") == "job_leases"]
    assert max(n["Actual Rows"] * n["Actual Loops"] for n in lease_reads) == EXACT_PROBLEM_COUNT + 1
    assert not [n for n in nodes if n["Node Type"] == "Sort"], "dead runs are never sorted"
    assert not [n for n in lease_reads if n.get("Rows Removed by Filter")], "no live lease read"
    assert report.orphaned_count == EXACT_PROBLEM_COUNT + 1 and not report.counts_exact
    expected = [f"{run.job_id}-{n}" for n in range(1, HEALTH_PAGE + 1)]
    assert [orphan.job_id for orphan in report.orphaned] == expected, "the longest dead first"


@dataclass(frozen=True)
class WatchedHost(LocalHost):
    """This host, noting every process a health view asks it about."""

    asked: list[int | None] = field(default_factory=list)

    def fate(self, pid: int | None, started_at: float | None, run_boot: str | None) -> ProcessFate:
        self.asked.append(pid)
        return super().fate(pid, started_at, run_boot)


def test_only_the_oldest_runs_on_this_host_have_their_processes_looked_at(
    engine: Engine, job_factory: JobFactory
) -> None:
    here = WatchedHost(hostname(), boot_id())
    copies_of_a_run(
        engine, job_factory(JobStatus.RUNNING), 3 * LOCAL_CHECKS, host=here.name, live=True
    )

    report = HealthCheck(engine, local=here).check()

    assert len(here.asked) == LOCAL_CHECKS
    assert report.orphaned_count == LOCAL_CHECKS
    assert {orphan.reason for orphan in report.orphaned} == {OrphanReason.PROCESS_GONE}


def test_each_recovery_of_a_disaster_commits_on_its_own(
    engine: Engine, service: JobService, job_factory: JobFactory
) -> None:
    runs = [job_factory(JobStatus.RUNNING).job_id for _ in range(HEALTH_PAGE + 30)]
    lapse_every_lease(engine)

    Reconciler(service, HealthCheck(engine)).run_once()

    with engine.connect() as conn:
        written = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT tx_id::text) FROM job_events WHERE actor = :actor"
            ),
            {"actor": ACTOR},
        ).one()
    assert tuple(written) == (len(runs), len(runs)), "one transaction per recovered run"


def test_runs_without_a_lease_get_one_a_batch_per_transaction(
    engine: Engine, store: EventStore, job_factory: JobFactory
) -> None:
    copies_of_a_run(engine, job_factory(JobStatus.RUNNING), 34)
    with engine.begin() as conn:  # as after a restore of the log alone: no lease at all
        conn.execute(text("DELETE FROM job_leases"))

    leased = lease_unleased_runs(store, 60, batch=10)

    with engine.connect() as conn:
        rows, transactions = conn.execute(
            text("SELECT count(*), count(DISTINCT xmin::text) FROM job_leases")
        ).one()
    assert (leased, rows, transactions) == (35, 35, 4)


def test_the_leases_of_closed_runs_are_pruned_a_batch_per_transaction(
    engine: Engine, store: EventStore, job_factory: JobFactory
) -> None:
    live = job_factory(JobStatus.RUNNING)
    copies_of_a_run(engine, job_factory(JobStatus.RUNNING), 24)
    with engine.begin() as conn:  # every run but `live` closed: its lease names an old attempt
        conn.execute(
            text("UPDATE job_leases SET attempt = 0 WHERE job_id <> :live"), {"live": live.job_id}
        )

    pruned = prune_leases(store, batch=10)

    with engine.connect() as conn:
        left = conn.execute(text("SELECT job_id FROM job_leases")).scalars().all()
    assert (pruned, left) == (25, [live.job_id])
