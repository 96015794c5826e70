"""The queue is the ledger: claiming the next queued job starts it, atomically.

A claim locks the job's projection row (`FOR UPDATE SKIP LOCKED`), decides
`StartJob` on it, appends the start and opens the attempt's lease — all in one
transaction. Two workers never get the same job, and a job is never started
twice for one attempt.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime

from ledger.commands import StartJob, WorkerIdentity
from ledger.decide import decide
from ledger.errors import JobNotFound
from ledger.queries import LOCK_JOB, NEXT_QUEUED_JOB, OPEN_LEASE
from ledger.state import JobState
from ledger.store import Connection, EventStore, state_from_row

DEFAULT_LEASE_SECONDS = 90.0
"""How long a run stays alive without a heartbeat; workers heartbeat at a third of it."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A started attempt: what the worker needs to run it and to write about it."""

    job: JobState
    attempt: int
    run_token: str
    resume_from: str | None
    lease_expires_at: datetime


class JobQueue:
    def __init__(self, store: EventStore, *, lease_seconds: float = DEFAULT_LEASE_SECONDS):
        self.store = store
        self.lease_seconds = lease_seconds

    def claim(self, worker: WorkerIdentity, *, actor: str) -> Claim | None:
        """Start the next queued job for `worker`; None at once when the queue is empty."""
        with self.store.transaction() as conn:
            row = conn.execute(NEXT_QUEUED_JOB).fetchone()
            if row is None:
                return None
            return self._start(conn, state_from_row(row), worker, actor)

    def start(self, job_id: str, worker: WorkerIdentity, *, actor: str) -> Claim:
        """Start this queued job for `worker` (the caller chose it): the same path as a claim."""
        with self.store.transaction(job_id) as conn:
            row = conn.execute(LOCK_JOB, {"job_id": job_id}).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            return self._start(conn, state_from_row(row), worker, actor)

    def _start(
        self, conn: Connection, state: JobState, worker: WorkerIdentity, actor: str
    ) -> Claim:
        token = secrets.token_hex(16)
        events = decide(state, StartJob(worker=worker, run_token=token), job_id=state.job_id)
        appended = self.store.append(state.job_id, state, events, actor=actor, connection=conn)
        started = appended.state
        row = conn.execute(
            OPEN_LEASE,
            {
                "job_id": started.job_id,
                "attempt": started.attempt,
                "run_token": token,
                "worker_id": worker.worker_id,
                "host": worker.host,
                "boot_id": worker.boot_id,
                "pid": worker.pid,
                "pid_started_at": worker.pid_started_at,
                "lease_seconds": self.lease_seconds,
            },
        ).fetchone()
        assert row is not None
        return Claim(started, started.attempt, token, started.resume_from, row[0])
