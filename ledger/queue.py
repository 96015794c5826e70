"""The queue is the ledger: claiming the next queued job starts it, atomically.

A job is started here and nowhere else, so every run has a lease from its
first moment. A claim is one statement: it locks the next queued job's
projection row (`FOR UPDATE SKIP LOCKED`), appends its `job_started`, projects
the start and opens the attempt's lease. Two workers never get the same job,
and a job is never started twice for one attempt. A direct start of a chosen
job is the same statement; when it starts nothing, `decide` says why.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ledger.commands import StartJob, WorkerIdentity
from ledger.decide import decide
from ledger.errors import VersionConflict
from ledger.events import JobStarted, event_to_record
from ledger.queries import CLAIM_NEXT_QUEUED_JOB, START_QUEUED_JOB
from ledger.run_tokens import new_run_token
from ledger.settings import DEFAULT_LEASE_SECONDS
from ledger.state import JobState, worker_fields
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
    """Starts queued jobs. `run_tokens` makes the run token of each start."""

    def __init__(
        self,
        store: EventStore,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        run_tokens: Callable[[], str] = new_run_token,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.run_tokens = run_tokens

    def claim(self, worker: WorkerIdentity, *, actor: str) -> Claim | None:
        """Start the next queued job for `worker`; None at once when the queue is empty."""
        command = StartJob(worker=worker, run_token=self.run_tokens())
        return self._start(CLAIM_NEXT_QUEUED_JOB, {}, command, actor)

    def start(self, job_id: str, worker: WorkerIdentity, *, actor: str) -> Claim:
        """Start this queued job for `worker` (the caller chose it): the same path as a claim."""
        command = StartJob(worker=worker, run_token=self.run_tokens())
        claim = self._start(START_QUEUED_JOB, {"job_id": job_id}, command, actor, job_id)
        if claim is not None:
            return claim
        # Not queued when the statement ran: the rules say why (no such job, or its status).
        state = self.store.load(job_id)
        decide(state, command, job_id=job_id)
        # Queued again by now: it changed under the caller, who may simply retry.
        assert state is not None
        raise VersionConflict(job_id, state.version)

    def _start(
        self,
        statement: str,
        params: dict[str, Any],
        command: StartJob,
        actor: str,
        job_id: str = "",
    ) -> Claim | None:
        # The event's payload as `decide` makes it; the statement fills in `resume_from`
        # from the row it locks.
        started = JobStarted.of(command.worker, run_token=command.run_token, resume_from=None)
        _, payload, _ = event_to_record(started)
        values = (
            params
            | worker_fields(command.worker)
            | {
                "run_token_sha256": started.run_token_sha256,
                "keyed_run_token": None,
                "payload": orjson.dumps(payload).decode(),
                "actor": actor,
                "lease_seconds": self.lease_seconds,
            }
        )
        with self.store.connection(job_id) as conn:
            row = conn.execute(statement, values).fetchone()
        if row is None:
            return None
        job = state_from_row(row[:-1])
        return Claim(job, job.attempt, command.run_token, job.resume_from, row[-1])
