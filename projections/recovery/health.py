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
from ledger.queries import LEASE_PERIOD
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
    orphaned: list[OrphanedRun]
    stale_pending: list[StalePending]
    queue_depth: int
    oldest_queued_age_s: float | None
    total_running: int
    total_running_alive: int
    checked_at: datetime
    unreadable_events: int = 0
    """Events of the log this code could not read or apply (`unreadable_events`)."""

    @property
    def healthy(self) -> bool:
        return not self.orphaned and not self.stale_pending


LEASE_EXPIRED = f"COALESCE(l.expires_at, s.started_at + {LEASE_PERIOD}) < now()"
"""The run of job `s` has outlived its lease `l` (or, before its first heartbeat opened one,
its start by a lease period)."""

PENDING_TOO_LONG = "s.status_changed_at < now() - make_interval(secs => %(stale_seconds)s)"
"""Job `s` has been in its status (pending, where it is asked) longer than the threshold."""

_WORKER_COLUMNS = tuple(WORKER_FIELDS.values())

HEALTH_QUERY = f"""
    WITH runs AS (
        SELECT s.job_id, s.status, s.version, s.attempt, s.auto_retry, s.max_attempts,
               {", ".join(f"s.{column}" for column in _WORKER_COLUMNS)}, l.heartbeat_at,
               {LEASE_EXPIRED} AS lease_expired
        FROM job_status s
        LEFT JOIN job_leases l ON l.job_id = s.job_id AND l.attempt = s.attempt
        WHERE s.status IN ({ACTIVE_RUN_IN})
    )
    SELECT q.depth, q.oldest_age, now(),
        (SELECT count(*) FROM runs WHERE status = '{JobStatus.RUNNING}'),
        (SELECT coalesce(json_agg(json_build_array(
                    job_id, status, version, attempt, auto_retry, max_attempts,
                    {", ".join(_WORKER_COLUMNS)}, heartbeat_at, lease_expired)), '[]')::text
         FROM runs WHERE lease_expired OR worker_host = %(local_host)s),
        (SELECT coalesce(json_agg(json_build_array(s.job_id, s.status_changed_at, s.version)
                                  ORDER BY s.status_changed_at), '[]')::text
         FROM job_status s
         WHERE s.status = '{JobStatus.PENDING}' AND {PENDING_TOO_LONG}),
        (SELECT count(*) FROM unreadable_events)
    FROM (SELECT count(*) AS depth, EXTRACT(EPOCH FROM now() - min(queued_at))::float8 AS oldest_age
          FROM job_status WHERE status = '{JobStatus.QUEUED}') AS q
"""
"""The whole view in one statement: one round trip and one snapshot, so the numbers
agree with each other. Each part reads an indexed slice of the projection, and only
the runs that may be dead (lease lapsed, or a process on this host to look at) are
sent in full; the others are only counted."""


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


@dataclass(frozen=True, slots=True)
class JobHealth:
    label: str  # "ok", "orphaned" or "stale_pending"
    last_heartbeat_at: datetime | None
    reason: OrphanReason | None = None  # why an orphaned run is judged dead


HEALTHY = JobHealth("ok", None)


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
        depth, oldest_age, checked_at, running, runs_json, pending_json, unreadable = row
        runs = [_run(values) for values in orjson.loads(runs_json)]
        pending = [
            StalePending(job, datetime.fromisoformat(since), version)
            for job, since, version in orjson.loads(pending_json)
        ]
        judged = [(row, self._judge(row)) for row in runs]
        orphaned = [orphan for _, orphan in judged if orphan is not None]
        dead_running = sum(1 for row, orphan in judged if orphan and row.status == "running")
        return HealthReport(
            orphaned=orphaned,
            stale_pending=pending,
            queue_depth=int(depth),
            oldest_queued_age_s=oldest_age,
            total_running=int(running),
            total_running_alive=int(running) - dead_running,
            checked_at=checked_at,
            unreadable_events=int(unreadable),
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
        if state.status is JobStatus.PENDING:
            return JobHealth("stale_pending" if stale else "ok", None)
        if state.status not in ACTIVE_RUN_STATUSES:
            return HEALTHY
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


def _run(values: list[Any]) -> _Run:
    """A run as `HEALTH_QUERY` sends it: its fields, the worker's flat, in `_WORKER_COLUMNS`."""
    job_id, status, version, attempt, auto_retry, max_attempts = values[:6]
    worker_values = values[6 : 6 + len(WORKER_FIELDS)]
    heartbeat_at, lease_expired = values[6 + len(WORKER_FIELDS) :]
    worker = WorkerIdentity(**dict(zip(WORKER_FIELDS, worker_values, strict=True)))
    heartbeat = None if heartbeat_at is None else datetime.fromisoformat(str(heartbeat_at))
    return _Run(
        job_id, status, version, attempt, auto_retry, max_attempts, worker, heartbeat, lease_expired
    )
