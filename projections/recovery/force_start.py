"""Operator commands that need the health view to decide."""

from dataclasses import dataclass

from ledger.commands import ForceStart
from ledger.service import JobService, Outcome
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.recovery.health import HealthCheck


@dataclass(frozen=True, slots=True)
class ForceStarted:
    outcome: Outcome
    queue_position: int | None


class Operations:
    def __init__(self, service: JobService, store: EventStore, health: HealthCheck) -> None:
        self.service = service
        self.store = store
        self.health = health

    def force_start(
        self,
        job_id: str,
        *,
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
    ) -> ForceStarted:
        """Queue a stuck job. A running job is re-queued only when the health view calls it
        orphaned: its dead attempt is closed as failed and the job queued in one append,
        guarded by the version the health view saw."""
        state = self.store.load(job_id)
        command = ForceStart(reason=reason)
        if state is not None and state.status in (JobStatus.RUNNING, JobStatus.PAUSED):
            orphans = self.health.check(job_id=job_id).orphaned
            if orphans and state.status is JobStatus.RUNNING:
                command = ForceStart(reason=reason, run_is_dead=True)
                seen = orphans[0].version
                if expected_version is None or expected_version == seen:
                    expected_version = seen
        outcome = self.service.execute(
            job_id,
            command,
            actor=actor,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
        )
        return ForceStarted(outcome, self.store.queue_position(job_id))
