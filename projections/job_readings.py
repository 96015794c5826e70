"""One read of everything a job's view shows: its state, queue position and health."""

from dataclasses import dataclass, replace

from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.errors import JobNotFound
from ledger.queries import (
    LISTED_STATUS_SELECT,
    QUEUE_FRONT,
    QUEUE_POSITION,
    STATUS_SELECT,
)
from ledger.state import JobState
from ledger.statuses import JobStatus
from ledger.store import state_from_row
from projections.recovery.health import (
    JUDGED_BY_A_READ,
    LEASE_EXPIRED,
    PENDING_TOO_LONG,
    HealthCheck,
    JobHealth,
)

_READINGS = """
    WITH front AS MATERIALIZED ({QUEUE_FRONT})
    SELECT {select}, {QUEUE_POSITION}, l.heartbeat_at, {LEASE_EXPIRED}, {PENDING_TOO_LONG}
    FROM job_status s
    LEFT JOIN front ON front.job_id = s.job_id
    LEFT JOIN job_leases l ON l.job_id = s.job_id AND l.attempt = s.attempt
    WHERE s.job_id = ANY(%(job_ids)s::text[])
"""
_PARTS = {
    "QUEUE_FRONT": QUEUE_FRONT,
    "QUEUE_POSITION": QUEUE_POSITION,
    "LEASE_EXPIRED": LEASE_EXPIRED,
    "PENDING_TOO_LONG": PENDING_TOO_LONG,
}
JOB_READINGS = _READINGS.format(select=STATUS_SELECT, **_PARTS)
"""Each job's row, where it stands in the queue, and what its health is judged from:
one indexed statement, one snapshot, for one job or a page of them."""
POSITIONS_AND_HEALTH = _READINGS.format(select=LISTED_STATUS_SELECT, **_PARTS)
"""`JOB_READINGS` for jobs whose states the caller holds: without the spec and result,
which it does not need again."""


READ_FOR_THE_VIEW = frozenset({JobStatus.QUEUED, *JUDGED_BY_A_READ})
"""The statuses in which a job's view needs a read: for its queue position or its health."""


@dataclass(frozen=True, slots=True)
class JobReading:
    state: JobState
    queue_position: int | None
    """1 for the next job a claim takes; None when the job is not queued, or queued
    behind the first `EXACT_QUEUE_POSITIONS` (then `behind_the_front` says so)."""
    health: JobHealth
    behind_the_front: bool = False
    """Queued, with more than `EXACT_QUEUE_POSITIONS` jobs ahead of it."""


class JobReader:
    def __init__(self, engine: Engine, health: HealthCheck) -> None:
        self.engine = engine
        self.health = health

    def read(self, job_id: str) -> JobReading:
        """The job as it is now; `JobNotFound` when there is no such job."""
        found = self._read([job_id])
        if not found:
            raise JobNotFound(job_id)
        return found[job_id]

    def reading_of(self, state: JobState) -> JobReading:
        """`readings` of one job."""
        return self.readings([state])[0]

    @staticmethod
    def needs_read(state: JobState) -> bool:
        """Whether `reading_of(state)` reads the database: for a queued job's position,
        or the health of a run; a job that has ended is read from its state alone."""
        return state.status in READ_FOR_THE_VIEW

    def just_started(self, state: JobState) -> JobReading:
        """The view of a run the caller has just started: not queued, its lease written a
        moment ago and not yet heartbeated, so nothing a read would find is unknown. Judged
        without a read (a run on this host whose process is gone is still orphaned)."""
        return JobReading(state, None, self.health.judge_job(state, None, False, False))

    def readings(self, states: list[JobState]) -> list[JobReading]:
        """The queue position and health of jobs whose states the caller holds (a page
        just listed, a command's outcome), in one read; the states are kept as given.
        Jobs that are neither queued nor judged by a read (completed, failed, cancelled:
        no position, always healthy) are not read at all."""
        unsettled = [s.job_id for s in states if s.status in READ_FOR_THE_VIEW]
        found = self._read(unsettled, POSITIONS_AND_HEALTH) if unsettled else {}
        return [
            replace(reading, state=state)
            if (reading := found.get(state.job_id))
            else JobReading(state, None, self.health.judge_job(state, None, False, False))
            for state in states
        ]

    def _read(self, job_ids: list[str], query: str = JOB_READINGS) -> dict[str, JobReading]:
        params = {"job_ids": job_ids, **self.health.thresholds()}
        with driver_connection(self.engine) as conn:
            rows = conn.execute(query, params).fetchall()
        readings = {}
        for row in rows:
            state = state_from_row(row)
            position, heartbeat_at, lease_expired, stale = row[-4:]
            health = self.health.judge_job(state, heartbeat_at, bool(lease_expired), bool(stale))
            behind = position == 0  # queued, behind the front
            readings[state.job_id] = JobReading(state, position or None, health, behind)
        return readings
