"""Force start: the operator's command that needs the health view to decide."""

from ledger.commands import ForceStart
from ledger.errors import JobNotFound
from ledger.service import JobService
from ledger.statuses import JobStatus
from projections.job_readings import JobReader, JobReading


class ForceStarter:
    def __init__(self, service: JobService, reader: JobReader) -> None:
        self.service = service
        self.reader = reader

    def force_start(
        self,
        job_id: str,
        *,
        actor: str,
        reason: str | None = None,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> JobReading:
        """Queue a stuck job, and read it back with its queue position.

        A running job is re-queued only when the health view calls its run orphaned:
        the dead attempt is closed as failed and the job queued in one append, guarded
        by the version that read saw. One read decides, one write acts, one read answers
        (a job already queued takes one more: the service believes that a command changes
        nothing only from a read of its own).
        """
        command = ForceStart(reason=reason)
        try:
            seen = self.reader.read(job_id)
        except JobNotFound:
            seen = None  # an idempotent retry may still name it; the service says what is so
        if seen is not None:
            self.service.cache.put(seen.state)
            if seen.state.status is JobStatus.RUNNING and seen.health.label == "orphaned":
                command = ForceStart(reason=reason, run_is_dead=True)
                if expected_version is None:
                    expected_version = seen.state.version
        outcome = self.service.execute(
            job_id,
            command,
            actor=actor,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
        )
        return self.reader.readings([outcome.state])[0]
