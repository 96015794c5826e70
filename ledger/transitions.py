"""The transition table: which commands each status allows."""

from ledger.statuses import JobStatus

ALLOWED_COMMANDS: dict[JobStatus, frozenset[str]] = {
    JobStatus.PENDING: frozenset({"submit", "cancel", "force_start", "mark_failed"}),
    JobStatus.QUEUED: frozenset({"start", "cancel", "force_start", "mark_failed"}),
    JobStatus.RUNNING: frozenset(
        {
            "pause",
            "checkpoint",
            "complete",
            "fail",
            "cancel",
            "mark_failed",
            "force_start",
        }
    ),
    JobStatus.PAUSED: frozenset(
        {"resume", "checkpoint", "fail", "cancel", "force_start", "mark_failed"}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset({"requeue", "force_start"}),
    JobStatus.CANCELLED: frozenset({"requeue", "force_start"}),
}
"""`force_start` on `running` is further limited to runs declared dead."""

EVENT_TARGET_STATUS: dict[str, JobStatus | None] = {
    "job_registered": None,  # the registered status is in the event
    "job_submitted": JobStatus.QUEUED,
    "job_started": JobStatus.RUNNING,
    "job_paused": JobStatus.PAUSED,
    "job_resumed": JobStatus.RUNNING,
    "checkpoint_saved": None,  # no change of status
    "job_completed": JobStatus.COMPLETED,
    "job_failed": JobStatus.FAILED,
    "job_cancelled": JobStatus.CANCELLED,
    "job_force_started": JobStatus.QUEUED,
    "job_marked_failed": JobStatus.FAILED,
    "job_requeued": JobStatus.QUEUED,
}
"""The status each event type moves a job to."""
