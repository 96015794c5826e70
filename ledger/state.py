"""The state of one job, as folded from its events by `evolve`."""

from datetime import datetime
from operator import attrgetter
from typing import Any, NamedTuple

from ledger.commands import WorkerIdentity
from ledger.events import JobStarted
from ledger.statuses import JobStatus


class JobState(NamedTuple):
    """Everything `decide` needs to know about a job, and what readers show.

    A named tuple rather than a dataclass: replays build one per event, and a
    tuple is several times cheaper to copy. Its field order is the column
    order of the `job_status` projection.

    `version` is the `seq` of the last event applied; `attempt` counts the
    starts so far (0 before the first). Every timestamp is the database clock's
    `recorded_at` of the event that set it. `run_token_sha256` is the digest of the
    latest attempt's run token (`ledger.run_tokens`), never the token.
    """

    job_id: str
    status: JobStatus
    version: int
    created_at: datetime
    updated_at: datetime
    status_changed_at: datetime
    priority: int = 0
    max_attempts: int = 1
    auto_retry: bool = False
    spec: dict[str, Any] | None = None
    attempt: int = 0
    run_token_sha256: str | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker_id: str | None = None
    worker_host: str | None = None
    worker_pid: int | None = None
    worker_pid_started_at: float | None = None
    worker_boot_id: str | None = None
    failure_reason: str | None = None
    checkpoint_path: str | None = None
    checkpoint_step: int | None = None
    resume_from: str | None = None
    result: dict[str, Any] | None = None

    @property
    def worker(self) -> WorkerIdentity | None:
        """The process of the latest attempt; None when no attempt was ever started."""
        if self.worker_id is None:
            return None
        return WorkerIdentity(
            **{field: getattr(self, name) for field, name in WORKER_FIELDS.items()}
        )


TIMESTAMP_FIELDS: tuple[str, ...] = (
    "created_at",
    "updated_at",
    "status_changed_at",
    "queued_at",
    "started_at",
    "finished_at",
)
"""The fields of `JobState` that hold a `recorded_at`."""

WORKER_FIELDS: dict[str, str] = {
    "worker_id": "worker_id",
    "host": "worker_host",
    "pid": "worker_pid",
    "pid_started_at": "worker_pid_started_at",
    "boot_id": "worker_boot_id",
}
"""Each field of `WorkerIdentity` and the field of `JobState` (the `job_status` column)
that holds it for the latest attempt."""


_WORKER_VALUES = attrgetter(*WORKER_FIELDS)
_WORKER_STATE_FIELDS = tuple(WORKER_FIELDS.values())


def worker_fields(worker: "WorkerIdentity | JobStarted") -> dict[str, Any]:
    """`worker` as the fields of `JobState` that hold it. A `JobStarted` names its
    worker's fields as `WorkerIdentity` does, so replays read them straight from it."""
    return dict(zip(_WORKER_STATE_FIELDS, _WORKER_VALUES(worker), strict=True))
