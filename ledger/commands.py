"""Commands: what a caller asks of a job, in the imperative.

A command is a request that `decide` may refuse. Commands that a worker sends
for a run carry its `attempt` and `run_token`, so a worker whose run was
closed can never write over the next one.
"""

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ledger.statuses import JobStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerIdentity:
    """The process that runs an attempt. A pid alone is never an identity."""

    worker_id: str
    host: str
    pid: int | None = None
    pid_started_at: float | None = None  # seconds since the epoch, as psutil reports
    boot_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterJob:
    """Record a new job, either `pending` (not yet admitted) or `queued`."""

    initial_status: JobStatus = JobStatus.QUEUED
    spec: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int = 1
    auto_retry: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitJob:
    """Admit a pending job to the queue."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartJob:
    """Hand a queued job to a worker; opens a new attempt fenced by `run_token`."""

    worker: WorkerIdentity
    run_token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCommand:
    """Base of the commands a worker sends about the attempt it holds."""

    attempt: int
    run_token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseJob(RunCommand):
    """Suspend the running attempt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeJob(RunCommand):
    """Continue a paused attempt."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SaveCheckpoint(RunCommand):
    """Record that the attempt wrote a checkpoint the job can resume from."""

    path: str
    step: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompleteJob(RunCommand):
    """Finish the attempt successfully."""

    result: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FailJob(RunCommand):
    """Finish the attempt unsuccessfully, as its worker saw it."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelJob:
    """Stop the job on request."""

    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ForceStart:
    """Operator command: put a stuck job back in the queue.

    `run_is_dead` is set only by the caller that consulted the health view and
    found the running attempt orphaned; then the attempt is closed as failed
    and the job queued, in one decision.
    """

    reason: str | None = None
    run_is_dead: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkFailed:
    """Operator command: declare the job failed, with the reason recorded."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RequeueJob:
    """Operator command: send a failed or cancelled job back to the queue."""

    reason: str | None = None
    resume_from: str | None = None


JobCommand = (
    RegisterJob
    | SubmitJob
    | StartJob
    | PauseJob
    | ResumeJob
    | SaveCheckpoint
    | CompleteJob
    | FailJob
    | CancelJob
    | ForceStart
    | MarkFailed
    | RequeueJob
)

COMMAND_NAMES: dict[type[JobCommand], str] = {
    RegisterJob: "register",
    SubmitJob: "submit",
    StartJob: "start",
    PauseJob: "pause",
    ResumeJob: "resume",
    SaveCheckpoint: "checkpoint",
    CompleteJob: "complete",
    FailJob: "fail",
    CancelJob: "cancel",
    ForceStart: "force_start",
    MarkFailed: "mark_failed",
    RequeueJob: "requeue",
}
"""The name each command goes by in errors, metrics and the API."""

_FIELD_NAMES = {
    kind: tuple(field.name for field in dataclasses.fields(kind)) for kind in COMMAND_NAMES
}


def request_digest(name: str, fields: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of a request as canonical JSON: its name and its fields, keys
    sorted. An idempotency key is bound to the digest of the request it was first used
    with, and answers again only a request with the same digest."""
    canonical = orjson.dumps({"request": name, **fields}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def next_claim_key(key: str, job_id: str) -> str:
    """The idempotency key of the claim a report-and-claim makes after its report (keyed
    `key`): the request's key with the reported job's id. A retry replays the report (by
    its key on the job) and the claim (by this on the caller's starts); the same key sent
    with a report on another job claims anew instead of replaying this claim; and the
    claim's key differs from the report's even should it start the reported job (a failed
    job an operator queued again in between)."""
    return f"{key}/next/{job_id}"


def command_digest(command: JobCommand) -> str:
    """`request_digest` of `command`: its name and every field it carries."""
    kind = type(command)
    fields = {name: _plain(getattr(command, name)) for name in _FIELD_NAMES[kind]}
    return request_digest(COMMAND_NAMES[kind], fields)


_READ_ALIKE = (str, int, float, dict, list, type(None))
"""A tuple, not a union: `isinstance` checks it several times faster."""


def _plain(value: Any) -> Any:
    """A field's value as `dataclasses.asdict` gives it, without copying what JSON reads
    alike (a spec's dicts and lists)."""
    if isinstance(value, _READ_ALIKE):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value
