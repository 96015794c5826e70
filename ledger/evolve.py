"""`evolve`: apply one recorded event to a job's state.

The rules themselves: the store's inline projection, catch-up and verify all
call this function. A full rebuild runs the same rules compiled to one SQL
statement (`projections.current_status.fold_in_database`), and verify checks its rows against this.
"""

from ledger.events import (
    CheckpointSaved,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobForceStarted,
    JobMarkedFailed,
    JobPaused,
    JobRegistered,
    JobRequeued,
    JobResumed,
    JobStarted,
    JobSubmitted,
    RecordedEvent,
    UnreadableEvent,
)
from ledger.state import JobState, worker_fields
from ledger.statuses import JobStatus


class EventOutOfOrder(ValueError):
    """An event does not follow the state it is applied to."""


class UnreadableRegistration(EventOutOfOrder):
    """A job's first event cannot be read: there is no job to apply the rest to."""


def evolve(state: JobState | None, event: RecordedEvent) -> JobState:
    """Return the job's state after `event`."""
    data = event.data
    at = event.recorded_at
    if state is None:
        if isinstance(data, UnreadableEvent):
            raise UnreadableRegistration(
                f"job {event.job_id!r} starts with an unreadable event: {data.problem}"
            )
        if not isinstance(data, JobRegistered) or event.seq != 1:
            raise EventOutOfOrder(f"job {event.job_id!r} must start with job_registered at seq 1")
        status = data.initial_status
        return JobState(
            job_id=event.job_id,
            status=status,
            version=event.seq,
            created_at=at,
            updated_at=at,
            status_changed_at=at,
            priority=data.priority,
            max_attempts=data.max_attempts,
            auto_retry=data.auto_retry,
            spec=data.spec,
            queued_at=at if status is JobStatus.QUEUED else None,
        )
    if event.seq != state.version + 1:
        raise EventOutOfOrder(
            f"job {event.job_id!r} is at version {state.version}; "
            f"event seq {event.seq} does not follow"
        )
    match data:
        case UnreadableEvent():
            # What it did is unknown: the job's version moves past it, and nothing else.
            return state._replace(version=event.seq, updated_at=at)
        case JobSubmitted() | JobForceStarted() | JobRequeued():
            resume_from = None if isinstance(data, JobSubmitted) else data.resume_from
            return state._replace(
                status=JobStatus.QUEUED,
                version=event.seq,
                updated_at=at,
                status_changed_at=at,
                queued_at=at,
                finished_at=None,
                failure_reason=None,
                resume_from=resume_from,
            )
        case JobStarted():
            return state._replace(
                status=JobStatus.RUNNING,
                version=event.seq,
                updated_at=at,
                status_changed_at=at,
                attempt=state.attempt + 1,
                run_token_sha256=data.run_token_sha256,
                started_at=at,
                finished_at=None,
                resume_from=data.resume_from,
                **worker_fields(data),
            )
        case JobPaused():
            return _moved(state, event, JobStatus.PAUSED)
        case JobResumed():
            return _moved(state, event, JobStatus.RUNNING)
        case CheckpointSaved():
            return state._replace(
                version=event.seq,
                updated_at=at,
                checkpoint_path=data.path,
                checkpoint_step=data.step,
            )
        case JobCompleted():
            return _moved(state, event, JobStatus.COMPLETED)._replace(
                finished_at=at, result=data.result
            )
        case JobFailed() | JobMarkedFailed():
            return _moved(state, event, JobStatus.FAILED)._replace(
                finished_at=at, failure_reason=data.reason
            )
        case JobCancelled():
            return _moved(state, event, JobStatus.CANCELLED)._replace(finished_at=at)
        case JobRegistered():
            raise EventOutOfOrder(f"job {event.job_id!r} is registered twice")
    raise AssertionError(f"no rule for {type(data).__name__}")  # pragma: no cover


def _moved(state: JobState, event: RecordedEvent, status: JobStatus) -> JobState:
    return state._replace(
        status=status,
        version=event.seq,
        updated_at=event.recorded_at,
        status_changed_at=event.recorded_at,
    )
