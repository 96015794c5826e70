"""The ledger's figures a metrics scrape shows, in one bounded statement.

A scrape costs about the same at any size of the ledger: every figure is a bounded read
of an index, never the health view with its pages of problems and its look at this host's
processes. A run counts as dead here when its lease lapsed; the reconciler, which also
asks this host whether a run's process is alive, acts on the health view.
"""

from dataclasses import dataclass

from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.statuses import JobStatus
from projections.current_status.lag import PROJECTION_LAG
from projections.recovery.health import (
    LAPSED_RUNS,
    OLDEST_QUEUED_AGE,
    STALE_PENDING,
    bounded_count,
    counted_with_running,
    estimated_count,
)
from projections.recovery.leader import RECONCILER_LOCK_KEY

EXACT_PROBLEMS = 100
"""Orphaned runs, stale pending jobs and unreadable events are counted up to this (the
health view's first page); past it a figure is this + 1, "more than". An alert needs to
know there are some; the health view lists them. Each dead run counted is one look-up of
the projection, so the bound is the scrape's cost in a disaster."""

EXACT_JOBS = 10_000
"""Queued and running jobs are counted up to this; past it they are the statistics'
estimates (as in the health view)."""

MONITOR_LEADERS = f"""(SELECT count(*) FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = {(RECONCILER_LOCK_KEY >> 32) & 0xFFFF_FFFF}
      AND objid = {RECONCILER_LOCK_KEY & 0xFFFF_FFFF})"""
"""Sessions holding the monitor's leader lock on this database (0 or 1), whichever process
they belong to: a bigint advisory lock shows its high half as `classid`, its low half as
`objid`. Every process can say whether the ledger has a leader, the workers of
`serve --workers` too, which never lead themselves."""

LEDGER_FIGURES = f"""
    SELECT {estimated_count(JobStatus.QUEUED, EXACT_JOBS)},
        {OLDEST_QUEUED_AGE},
        {estimated_count(JobStatus.RUNNING, EXACT_JOBS)},
        {counted_with_running(LAPSED_RUNS, EXACT_PROBLEMS)},
        {bounded_count(STALE_PENDING, EXACT_PROBLEMS)},
        {bounded_count("SELECT 1 FROM unreadable_events", EXACT_PROBLEMS)},
        {PROJECTION_LAG},
        {MONITOR_LEADERS}
"""


@dataclass(frozen=True, slots=True)
class LedgerFigures:
    queued: int
    oldest_queued_age_s: float | None
    """None when nothing is queued."""
    running: int
    """Running jobs (not paused)."""
    running_alive: int
    """Running jobs whose lease holds."""
    orphaned: int
    """Open runs (running or paused) whose lease lapsed."""
    stale_pending: int
    unreadable_events: int
    projection_lag: int
    monitor_leaders: int
    """Processes holding the health monitor's leadership on this ledger (0 or 1)."""


def read_ledger_figures(engine: Engine, stale_pending_s: float) -> LedgerFigures:
    """The figures, as one snapshot of the database (blocking); `stale_pending_s` is how
    long a job may stay pending."""
    with driver_connection(engine) as conn:
        row = conn.execute(LEDGER_FIGURES, {"stale_seconds": stale_pending_s}).fetchone()
    assert row is not None
    queued, oldest, running, (orphaned, orphaned_running), stale, unreadable, lag, leaders = row
    return LedgerFigures(
        queued=int(queued),
        oldest_queued_age_s=oldest,
        running=int(running),
        running_alive=max(int(running) - int(orphaned_running), 0),
        orphaned=int(orphaned),
        stale_pending=int(stale),
        unreadable_events=int(unreadable),
        projection_lag=int(lag),
        monitor_leaders=int(leaders),
    )
