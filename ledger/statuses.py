"""The job statuses: one source of truth for every layer and language."""

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life."""

    PENDING = "pending"  # registered, not yet admitted to the queue
    QUEUED = "queued"  # waiting for a worker to claim it
    RUNNING = "running"  # a worker holds the current attempt
    PAUSED = "paused"  # the current attempt is suspended by its worker
    COMPLETED = "completed"  # finished successfully; final
    FAILED = "failed"  # finished unsuccessfully; an operator may re-queue it
    CANCELLED = "cancelled"  # stopped on request; an operator may re-queue it


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)
"""No worker acts on a job in these; only `completed` is final for operators too."""

INCOMPLETE_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.PENDING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED}
)
"""The job still has work ahead of it."""

RECOVERABLE_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.PENDING, JobStatus.QUEUED, JobStatus.FAILED, JobStatus.CANCELLED}
)
"""An operator can (re)start the job from here without touching a live run."""

ACTIVE_RUN_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.RUNNING, JobStatus.PAUSED})

REGISTERED_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.PENDING, JobStatus.QUEUED})
"""The statuses a job can be registered in."""
"""A worker holds the current attempt and may write events for it."""
