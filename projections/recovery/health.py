"""The health view: a pure, derived read of running, pending and queued jobs.

It reads only indexed slices of the current-status projection (active runs,
pending jobs older than the threshold, the queue) and the leases; never the
whole job table or the log. Ages use the database clock.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Engine

from ledger.commands import WorkerIdentity
from ledger.database import driver_connection
from ledger.host import LocalHost, ProcessFate
from ledger.queries import EXACT_COUNT, LEASE_PERIOD, status_estimate
from ledger.schema import ACTIVE_RUN_IN
from ledger.settings import DEFAULT_LEASE_SECONDS, DEFAULT_STALE_PENDING_MINUTES
from ledger.state import WORKER_FIELDS, JobState
from ledger.statuses import ACTIVE_RUN_STATUSES, JobStatus

DEFAULT_STALE_PENDING_AFTER = timedelta(minutes=DEFAULT_STALE_PENDING_MINUTES)


class OrphanReason(StrEnum):
    LEASE_EXPIRED = "lease_expired"
    UNRESPONSIVE = "unresponsive"  # no heartbeat within the lease, though its process is alive
    PROCESS_GONE = "process_gone"
    PID_REUSED = "pid_reused"
    HOST_REBOOTED = "host_rebooted"


@dataclass(frozen=True, slots=True)
class OrphanedRun:
    job_id: str
    attempt: int
    version: int
    worker: WorkerIdentity
    last_heartbeat_at: datetime | None
    reason: OrphanReason
    auto_retry: bool
    max_attempts: int


@dataclass(frozen=True, slots=True)
class StalePending:
    job_id: str
    pending_since: datetime
    version: int


@dataclass(frozen=True, slots=True)
class HealthReport:
    """A summary of the ledger's health, with the first page of each problem.

    `orphaned` and `stale_pending` are the oldest `HEALTH_PAGE` of each, and their
    `_count`s how many there are: exact up to `EXACT_PROBLEM_COUNT`, past it
    `EXACT_PROBLEM_COUNT` + 1, "more than"; `queue_depth` and `total_running` are exact up
    to `EXACT_COUNT`, past it estimates. `counts_exact` is false when any count passed its
    bound.
    """

    orphaned: list[OrphanedRun]
    stale_pending: list[StalePending]
    queue_depth: int
    oldest_queued_age_s: float | None
    total_running: int
    total_running_alive: int
    checked_at: datetime
    unreadable_events: int = 0
    """Events of the log this code could not read or apply (`unreadable_events`)."""
    orphaned_count: int = 0
    stale_pending_count: int = 0
    oldest_stale_pending_age_s: float | None = None
    counts_exact: bool = True

    @property
    def healthy(self) -> bool:
        return not self.orphaned_count and not self.stale_pending_count


HEALTH_PAGE = 100
"""How many orphaned runs and stale pending jobs a health view lists (oldest first); the
reconciler acts on them a page at a time."""

EXACT_PROBLEM_COUNT = 1_000
"""Orphaned runs and stale pending jobs are counted up to this; past it a count is this + 1,
"more than". Each dead run counted is a look-up of the projection (some 10 µs), so the bound
is what counting costs in a disaster; an operator needs the first page and to know there
are more than a thousand, not how many thousands."""

LEASE_EXPIRED = f"COALESCE(l.expires_at, s.started_at + {LEASE_PERIOD}) < now()"
"""The run of job `s` has outlived its lease `l` (or, before its first heartbeat opened one,
its start by a lease period)."""

PENDING_TOO_LONG = "s.status_changed_at < now() - make_interval(secs => %(stale_seconds)s)"
"""Job `s` has been in its status (pending, where it is asked) longer than the threshold."""

_WORKER_COLUMNS = tuple(WORKER_FIELDS.values())
_RUN_COLUMNS = (
    "s.job_id, s.status, s.version, s.attempt, s.auto_retry, s.max_attempts, "
    + ", ".join(f"s.{column}" for column in _WORKER_COLUMNS)
)
_ACTIVE = f"s.status IN ({ACTIVE_RUN_IN})"
_PROBLEMS_BOUND = EXACT_PROBLEM_COUNT + 1


def bounded_count(query: str, exact_up_to: int = EXACT_COUNT) -> str:
    """How many rows `query` gives, counted up to `exact_up_to` + 1 ("more than")."""
    return f"(SELECT count(*) FROM ({query} LIMIT {exact_up_to + 1}) bounded)"


def estimated_count(status: JobStatus, exact_up_to: int = EXACT_COUNT) -> str:
    """The jobs in `status`: counted up to `exact_up_to`, else the statistics' estimate."""
    counted = bounded_count(f"SELECT 1 FROM job_status s WHERE s.status = '{status}'", exact_up_to)
    estimate = f"greatest({exact_up_to + 1}, coalesce({status_estimate(status)}, 0))"
    # OFFSET 0 keeps the count a subquery of its own: inlined, it would be counted twice.
    return f"""(SELECT CASE WHEN b.n <= {exact_up_to} THEN b.n ELSE {estimate} END
        FROM (SELECT {counted} AS n OFFSET 0) b)"""


OLDEST_QUEUED_AGE = f"""EXTRACT(EPOCH FROM now() - (SELECT min(s.status_changed_at)
    FROM job_status s WHERE s.status = '{JobStatus.QUEUED}'))::float8"""
"""The seconds the longest-queued job has waited (NULL for an empty queue): one read of
`ix_job_status_status_status_changed_at`. (A queued job's `status_changed_at` is the time
it was queued.)"""

_OPEN_RUN_OF_LEASE = f"""
    CROSS JOIN LATERAL (
        SELECT {_RUN_COLUMNS} FROM job_status s
        WHERE s.job_id = l.job_id AND s.attempt = l.attempt AND {_ACTIVE}
        OFFSET 0
    ) s"""
"""The open run a lease `l` is of, if it is still open: one look-up of the projection's key
per lease (OFFSET 0 keeps it from being planned as a join of every open run, which would
read and sort every dead one), so a read of lapsed leases costs what it returns."""

LAPSED_LEASES = f"""
    SELECT {_RUN_COLUMNS}, l.heartbeat_at, true AS lease_expired, l.expires_at AS dead_since
    FROM job_leases l {_OPEN_RUN_OF_LEASE}
    WHERE l.expires_at < now()
    ORDER BY l.expires_at"""
"""Open runs whose lease lapsed, the longest dead first: `ix_job_leases_expires_at` read in
its order, so a page of them reads a page of leases (and the leases of closed runs among
them, until a reconciler pass prunes those)."""

LAPSED_RUNS = f"""
    SELECT s.status FROM job_leases l {_OPEN_RUN_OF_LEASE}
    WHERE l.expires_at < now()
    ORDER BY l.expires_at"""
"""The statuses of the open runs whose lease lapsed, for counting: a bounded count stops at
its bound however many runs are dead. The order is the index's, so the count reads only
the leases it counts: unordered, a scan of the whole table may look cheaper to the planner,
and it reads every live lease before the lapsed ones, which an update put last."""

LOCAL_CHECKS = HEALTH_PAGE
"""How many open runs on this host whose lease holds (or who never had one) a health view
asks the host about, those started longest ago first: each is a look at a process. A
process that died without closing its run stops heartbeating, so the runs past these are
found all the same, by their lease, within a lease period."""

_LOCAL_RUNS = f"""
    SELECT {_RUN_COLUMNS}, l.heartbeat_at, {LEASE_EXPIRED} AS lease_expired,
           s.started_at AS dead_since
    FROM job_status s
    LEFT JOIN job_leases l ON l.job_id = s.job_id AND l.attempt = s.attempt
    WHERE {_ACTIVE} AND s.worker_host = %(local_host)s
      AND (l.expires_at IS NULL OR l.expires_at >= now())
    ORDER BY s.started_at"""
"""Open runs on this host, whose processes can be looked at, but for those whose lease
lapsed (`LAPSED_LEASES` has them): `ix_job_status_active_host`."""

STALE_PENDING = f"""
    SELECT s.job_id, s.status_changed_at, s.version FROM job_status s
    WHERE s.status = '{JobStatus.PENDING}' AND {PENDING_TOO_LONG}
    ORDER BY s.status_changed_at"""


def counted_with_running(query: str, exact_up_to: int = EXACT_COUNT) -> str:
    """`[runs, running]`: `query`'s runs up to `exact_up_to` + 1, and how many of them are
    running (not paused), in one read."""
    return f"""(SELECT ARRAY[count(*), count(*) FILTER (WHERE r.status = '{JobStatus.RUNNING}')]
        FROM ({query} LIMIT {exact_up_to + 1}) r)"""


def _page(query: str, limit: str = str(HEALTH_PAGE)) -> str:
    return f"(SELECT coalesce(json_agg(p), '[]')::text FROM ({query} LIMIT {limit}) p)"


HEALTH_QUERY = f"""
    SELECT now(),
        {estimated_count(JobStatus.QUEUED)},
        {OLDEST_QUEUED_AGE},
        {estimated_count(JobStatus.RUNNING)},
        {counted_with_running(LAPSED_RUNS, EXACT_PROBLEM_COUNT)},
        {_page(LAPSED_LEASES)},
        {_page(_LOCAL_RUNS, str(LOCAL_CHECKS))},
        {bounded_count(STALE_PENDING, EXACT_PROBLEM_COUNT)},
        {_page(STALE_PENDING)},
        (SELECT count(*) FROM unreadable_events)
"""
"""The whole view in one statement: one round trip and one snapshot, so the numbers
agree with each other. Every part is a bounded read of an index, whatever the size of
the ledger or of a disaster: counts of problems stop at `EXACT_PROBLEM_COUNT` + 1, of
queued and running jobs at `EXACT_COUNT` + 1 (past it they are the statistics' estimates);
only the first `HEALTH_PAGE` of each kind of problem is sent in full, the longest-standing
first (read in an index's order, never sorted), and only `LOCAL_CHECKS` runs on this host,
besides that page, have their processes looked at."""


class _Run(NamedTuple):
    job_id: str
    status: str
    version: int
    attempt: int
    auto_retry: bool
    max_attempts: int
    worker: WorkerIdentity
    heartbeat_at: datetime | None
    lease_expired: bool
    dead_since: datetime | None = None
    """When the lease lapsed (or the run started, for a run on this host): oldest first."""


@dataclass(frozen=True, slots=True)
class JobHealth:
    label: str  # "ok", "orphaned" or "stale_pending"
    last_heartbeat_at: datetime | None
    reason: OrphanReason | None = None  # why an orphaned run is judged dead


HEALTHY = JobHealth("ok", None)

JUDGED_BY_A_READ = frozenset({JobStatus.PENDING, *ACTIVE_RUN_STATUSES})
"""The statuses whose health depends on what a read of the job finds (how long it has
been pending, its lease); a job in any other status is healthy, whatever a read says."""


class HealthCheck:
    """Computes the health view, and judges one job's health from a read of it."""

    def __init__(
        self,
        engine: Engine,
        *,
        local: LocalHost | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        stale_pending_after: timedelta = DEFAULT_STALE_PENDING_AFTER,
    ) -> None:
        self.engine = engine
        self.local = local or LocalHost.detect()
        self.lease_seconds = lease_seconds
        self.stale_pending_after = stale_pending_after

    def check(self, *, stale_pending_after: timedelta | None = None) -> HealthReport:
        stale_after = (
            self.stale_pending_after if stale_pending_after is None else stale_pending_after
        )
        params = {
            **self.thresholds(),
            "stale_seconds": stale_after.total_seconds(),
            "local_host": self.local.name,
        }
        with driver_connection(self.engine) as conn:
            row = conn.execute(HEALTH_QUERY, params).fetchone()
        assert row is not None
        checked_at, depth, oldest_age, running, (lapsed, lapsed_running) = row[:5]
        lapsed_json, local_json, stale_count, pending_json, unreadable = row[5:]
        lapsed_runs = [_run(values) for values in orjson.loads(lapsed_json)]
        local = [_run(values) for values in orjson.loads(local_json)]
        # A lapsed run is dead wherever it runs; a run on this host whose lease holds is
        # dead too when its process is gone: those are the orphans the counts lack.
        seen = {run.job_id for run in lapsed_runs}
        candidates = lapsed_runs + [run for run in local if run.job_id not in seen]
        judged = [(run, orphan) for run in candidates if (orphan := self._judge(run))]
        judged.sort(key=lambda pair: pair[0].dead_since or checked_at)
        gone = [run for run, _ in judged if run.job_id not in seen]
        gone_running = sum(1 for run in gone if run.status == JobStatus.RUNNING)
        orphaned_count = min(lapsed + len(gone), _PROBLEMS_BOUND)
        dead_running = lapsed_running + gone_running
        pending = [
            StalePending(
                job["job_id"], datetime.fromisoformat(job["status_changed_at"]), job["version"]
            )
            for job in orjson.loads(pending_json)
        ]
        exact = (
            max(int(depth), int(running)) <= EXACT_COUNT
            and max(orphaned_count, int(stale_count)) <= EXACT_PROBLEM_COUNT
        )
        return HealthReport(
            orphaned=[orphan for _, orphan in judged[:HEALTH_PAGE]],
            stale_pending=pending,
            queue_depth=int(depth),
            oldest_queued_age_s=oldest_age,
            total_running=int(running),
            total_running_alive=max(int(running) - dead_running, 0),
            checked_at=checked_at,
            unreadable_events=int(unreadable),
            orphaned_count=orphaned_count,
            stale_pending_count=int(stale_count),
            oldest_stale_pending_age_s=(checked_at - pending[0].pending_since).total_seconds()
            if pending
            else None,
            counts_exact=exact,
        )

    def thresholds(self) -> dict[str, float]:
        """The parameters `LEASE_EXPIRED` and `PENDING_TOO_LONG` are written with."""
        return {
            "lease_seconds": self.lease_seconds,
            "stale_seconds": self.stale_pending_after.total_seconds(),
        }

    def judge_job(
        self, state: JobState, heartbeat_at: datetime | None, lease_expired: bool, stale: bool
    ) -> JobHealth:
        """One job's health, from what one read of it said (`LEASE_EXPIRED` and
        `PENDING_TOO_LONG` with `thresholds()`)."""
        if state.status not in JUDGED_BY_A_READ:
            return HEALTHY
        if state.status is JobStatus.PENDING:
            return JobHealth("stale_pending" if stale else "ok", None)
        assert state.worker is not None, "a running or paused job has a worker (a CHECK says so)"
        run = _Run(
            state.job_id,
            str(state.status),
            state.version,
            state.attempt,
            state.auto_retry,
            state.max_attempts,
            state.worker,
            heartbeat_at,
            bool(lease_expired),
        )
        orphan = self._judge(run)
        if orphan is None:
            return JobHealth("ok", heartbeat_at)
        return JobHealth("orphaned", heartbeat_at, orphan.reason)

    def _judge(self, row: _Run) -> OrphanedRun | None:
        """Orphaned when the process is gone (for a run on this host), or the lease expired.

        A lease outlived is death whatever the process does: a live process that has not
        heartbeated within its lease (it never received its claim, or it moved on) is not
        running the job, so its run is `UNRESPONSIVE`. A run on this host whose process
        is gone is dead at once, lease or not.
        """
        reason: OrphanReason | None = None
        worker = row.worker
        if self.local.runs_here(worker.host):
            fate = self.local.fate(worker.pid, worker.pid_started_at, worker.boot_id)
            if fate is not ProcessFate.ALIVE:
                reason = OrphanReason(fate.value)
            elif row.lease_expired:
                reason = OrphanReason.UNRESPONSIVE
        elif row.lease_expired:
            reason = OrphanReason.LEASE_EXPIRED
        if reason is None:
            return None
        return OrphanedRun(
            job_id=row.job_id,
            attempt=row.attempt,
            version=row.version,
            worker=worker,
            last_heartbeat_at=row.heartbeat_at,
            reason=reason,
            auto_retry=row.auto_retry,
            max_attempts=row.max_attempts,
        )


def _run(values: dict[str, Any]) -> _Run:
    """A run as `HEALTH_QUERY` sends it (a JSON object of its columns)."""
    worker = WorkerIdentity(**{name: values[column] for name, column in WORKER_FIELDS.items()})
    return _Run(
        values["job_id"],
        values["status"],
        values["version"],
        values["attempt"],
        values["auto_retry"],
        values["max_attempts"],
        worker,
        _moment(values["heartbeat_at"]),
        bool(values["lease_expired"]),
        _moment(values["dead_since"]),
    )


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _since(text: str) -> datetime:
    return datetime.fromisoformat(text)
