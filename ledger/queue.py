"""The queue is the ledger: claiming the next queued job starts it, atomically.

A claim is one statement: it locks the next queued job's projection row
(`FOR UPDATE SKIP LOCKED`), appends its `job_started`, projects the start and
opens the attempt's lease. Two workers never get the same job, and a job is
never started twice for one attempt. A direct start of a chosen job is the same
statement; when it starts nothing, `decide` says why.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.commands import StartJob, WorkerIdentity
from ledger.decide import decide
from ledger.errors import JobNotFound, VersionConflict
from ledger.queries import CLAIM_NEXT_QUEUED_JOB, START_QUEUED_JOB
from ledger.settings import DEFAULT_LEASE_SECONDS
from ledger.state import JobState
from ledger.store import EventStore, state_from_row


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
        return self._start(CLAIM_NEXT_QUEUED_JOB, {}, worker, actor)

    def start(self, job_id: str, worker: WorkerIdentity, *, actor: str) -> Claim:
        """Start this queued job for `worker` (the caller chose it): the same path as a claim."""
        claim = self._start(START_QUEUED_JOB, {"job_id": job_id}, worker, actor, job_id)
        if claim is not None:
            return claim
        # Not queued when the statement ran: the rules name the status and what it allows.
        state = self.store.load(job_id)
        if state is None:
            raise JobNotFound(job_id)
        decide(state, StartJob(worker=worker, run_token="-"), job_id=job_id)
        # Queued again by now: it changed under the caller, who may simply retry.
        raise VersionConflict(job_id, state.version)

    def _start(
        self,
        statement: str,
        params: dict[str, Any],
        worker: WorkerIdentity,
        actor: str,
        job_id: str = "",
    ) -> Claim | None:
        token = secrets.token_hex(16)
        values = params | {
            "run_token": token,
            "worker_id": worker.worker_id,
            "host": worker.host,
            "pid": worker.pid,
            "pid_started_at": worker.pid_started_at,
            "boot_id": worker.boot_id,
            "actor": actor,
            "lease_seconds": self.lease_seconds,
        }
        with self.store.connection(job_id) as conn:
            row = conn.execute(statement, values).fetchone()
        if row is None:
            return None
        started = state_from_row(row[:-1])
        return Claim(started, started.attempt, token, started.resume_from, row[-1])
