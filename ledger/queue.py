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
from ledger.queries import APPEND_START_AND_OPEN_LEASE, LOCK_JOB, NEXT_QUEUED_JOB
from ledger.state import JobState
from ledger.store import EventStore, prepare_append, state_from_row

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
        return self._claim(NEXT_QUEUED_JOB, {}, worker, actor)

    def start(self, job_id: str, worker: WorkerIdentity, *, actor: str) -> Claim:
        """Start this queued job for `worker` (the caller chose it): the same path as a claim."""
        claim = self._claim(LOCK_JOB, {"job_id": job_id}, worker, actor, job_id)
        if claim is None:
            raise JobNotFound(job_id)
        return claim

    def _claim(
        self,
        select: str,
        params: dict[str, str],
        worker: WorkerIdentity,
        actor: str,
        job_id: str = "",
    ) -> Claim | None:
        with self.store.transaction(job_id) as conn:
            row = conn.execute(select, params).fetchone()
            if row is None:
                return None
            state = state_from_row(row)
            token = secrets.token_hex(16)
            start = StartJob(worker=worker, run_token=token)
            prepared = prepare_append(
                state.job_id, state, decide(state, start, job_id=state.job_id), actor=actor
            )
            lease = {
                "lease_attempt": prepared.state.attempt,
                "run_token": token,
                "worker_id": worker.worker_id,
                "host": worker.host,
                "boot_id": worker.boot_id,
                "pid": worker.pid,
                "pid_started_at": worker.pid_started_at,
                "lease_seconds": self.lease_seconds,
            }
            rows = conn.execute(APPEND_START_AND_OPEN_LEASE, prepared.params | lease).fetchall()
        started = prepared.recorded(rows).state
        return Claim(started, started.attempt, token, started.resume_from, rows[0][4])
