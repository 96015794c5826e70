"""Request and response bodies of the HTTP API; the OpenAPI document is generated from them."""

import math
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from api.auth import Role
from api.limits import MAX_SPEC_BYTES
from ledger.commands import RegisterJob, WorkerIdentity
from ledger.leases import MAX_HEARTBEATS
from ledger.statuses import JobStatus
from projections.recovery.health import OrphanReason

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"


class Body(BaseModel):
    """A request body: unknown fields, NUL characters and numbers PostgreSQL's JSON
    cannot hold are refused with a 422 naming the field."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="after")
    def storable(self, info: ValidationInfo) -> "Body":
        if info.context is STORABLE_CHECKED:
            return self
        values = self.__dict__  # the fields' values (no extras are kept)
        if _plainly_storable(values):
            return self
        for name, value in values.items():
            problem = _unstorable(value)
            if problem:
                raise ValueError(f"{name}: {problem}")
        return self


STORABLE_CHECKED: dict[str, Any] = {"storable": "checked"}
"""The validation context of bodies whose input was told storable as a whole
(`plainly_storable`) before they were validated: each need not look again."""

INT64 = (-(2**63), 2**64 - 1)


def plainly_storable(document: Any) -> bool:
    """True when everything in `document` is storable, as told by orjson at once: it
    refuses an integer beyond 64 bits, and writes a NUL character as an escape and a
    number that is not finite as `null`. False when it cannot tell (a `null` of the
    document's own included): each value must then be looked at (`_unstorable`)."""
    try:
        written = orjson.dumps(document)
    except orjson.JSONEncodeError:
        return False
    return b"null" not in written and b"\\u0000" not in written


def _plainly_storable(values: dict[str, Any]) -> bool:
    """`plainly_storable` of a body's values; a body within is left out: it checked itself."""
    return plainly_storable(
        {
            name: value
            for name, value in values.items()
            if value is not None and not isinstance(value, Body)
        }
    )


def _unstorable(value: Any) -> str | None:
    """Why `value` cannot be stored as given (PostgreSQL text and JSON), or None."""
    if isinstance(value, str):
        return "must not contain a NUL character" if "\x00" in value else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if INT64[0] <= value <= INT64[1] else "integers must fit in 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else "numbers must be finite"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _unstorable(key) or _unstorable(item)
            if problem:
                return problem
    if isinstance(value, list | tuple):
        for item in value:
            problem = _unstorable(item)
            if problem:
                return problem
    return None


class CreateJob(Body):
    job_id: str | None = Field(default=None, pattern=JOB_ID_PATTERN)
    status: Literal["queued", "pending"] = "queued"
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    spec: dict[str, Any] = Field(default_factory=dict)
    max_attempts: int = Field(default=1, ge=1, le=1000)
    auto_retry: bool = False

    @field_validator("spec")
    @classmethod
    def small_spec(cls, spec: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(orjson.dumps(spec))
        except orjson.JSONEncodeError:
            return spec  # a number JSON cannot hold: `storable` names it
        if size > MAX_SPEC_BYTES:
            raise ValueError(f"must be at most {MAX_SPEC_BYTES} bytes as JSON, not {size}")
        return spec

    def command(self) -> RegisterJob:
        """The registration this body asks for."""
        return RegisterJob(
            initial_status=JobStatus(self.status),
            spec=self.spec,
            priority=self.priority,
            max_attempts=self.max_attempts,
            auto_retry=self.auto_retry,
        )


class Guarded(Body):
    expected_version: int | None = Field(default=None, ge=0)


class ForceStartBody(Guarded):
    reason: str | None = Field(default=None, max_length=2000)


class MarkFailedBody(Guarded):
    reason: str = Field(min_length=1, max_length=2000)


class CancelBody(Guarded):
    reason: str | None = Field(default=None, max_length=2000)


class RequeueBody(Guarded):
    reason: str | None = Field(default=None, max_length=2000)
    resume_from: str | None = Field(default=None, max_length=4000)


class WorkerBody(Body):
    worker_id: str = Field(min_length=1, max_length=200)
    host: str = Field(min_length=1, max_length=255)
    pid: int | None = Field(default=None, ge=1, le=2**31 - 1)
    pid_started_at: float | None = Field(default=None, ge=0, le=1e11)
    boot_id: str | None = Field(default=None, max_length=100)

    def identity(self) -> WorkerIdentity:
        return WorkerIdentity(**self.model_dump())


class RunBody(Body):
    attempt: int = Field(ge=0, le=2**31 - 1)
    run_token: str = Field(min_length=1, max_length=200)


class CheckpointBody(RunBody):
    path: str = Field(min_length=1, max_length=4000)
    step: int | None = Field(default=None, ge=0, le=2**62)


class CompleteBody(RunBody):
    result: dict[str, Any] | None = None


class FailBody(RunBody):
    reason: str = Field(min_length=1, max_length=2000)


NEXT_WORKER_DESCRIPTION = (
    "the worker that takes the next queued job once the report is recorded: a claim as "
    "`POST /v1/queue/claim` makes, answered in `next`"
)


class CompleteAndClaimBody(CompleteBody):
    worker: WorkerBody = Field(description=NEXT_WORKER_DESCRIPTION)


class FailAndClaimBody(FailBody):
    worker: WorkerBody = Field(description=NEXT_WORKER_DESCRIPTION)


class WorkerView(BaseModel):
    """The worker of an attempt as clients see it: which process on which host (read from
    a `WorkerIdentity`'s attributes)."""

    model_config = ConfigDict(from_attributes=True)

    worker_id: str
    host: str | None
    pid: int | None


class CheckpointView(BaseModel):
    path: str
    step: int | None


class JobFields(BaseModel):
    """What a job's events say of it: the fields of every view of a job."""

    job_id: str
    status: JobStatus
    version: int
    attempt: int
    priority: int
    spec: dict[str, Any] | None = Field(description="null in lists: the job's own view has it")
    created_at: str
    updated_at: str
    status_changed_at: str
    worker: WorkerView | None
    failure_reason: str | None
    checkpoint: CheckpointView | None


class JobView(JobFields):
    queue_position: int | None = Field(
        description="1 = the next job a claim takes; null when not queued, or when queued "
        "behind the front (`queued_behind_more_than`)"
    )
    queued_behind_more_than: int | None = Field(
        default=None,
        description="set when the job is queued with more than this many jobs ahead of it: "
        "positions are exact up to there",
    )
    last_heartbeat_at: str | None
    health: Literal["ok", "orphaned", "stale_pending"]
    health_reason: OrphanReason | None = Field(
        default=None, description="why an orphaned run is judged dead"
    )


AS_OF_DESCRIPTION = (
    "a past view: the job as its events recorded at or before this moment left it "
    "(queue positions, leases and health are not in the log: a past view has none)"
)


class PastJobView(JobFields):
    as_of: str = Field(description=AS_OF_DESCRIPTION)


class JobList(BaseModel):
    jobs: list[JobView] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next, older page")
    counts: dict[JobStatus, int] = Field(
        description="jobs in each status, of those matching the search (not the status "
        "filter): exact up to 10,000; past that, see `estimated`"
    )
    estimated: list[JobStatus] = Field(
        default_factory=list,
        description="statuses whose count is not exact: past 10,000, an estimate from the "
        "database's statistics; with a search matching more than 100 jobs, every status, "
        "counted among the first 101 matches ('at least')",
    )
    total: int
    as_of: str = Field(description="the database clock when the page was read")


class PastJobList(BaseModel):
    jobs: list[PastJobView] = Field(
        description="the jobs registered by `as_of`, newest first, as they were then"
    )
    next_cursor: str | None = Field(description="pass as `cursor` for the next, older page")
    as_of: str = Field(description=AS_OF_DESCRIPTION)


class CallerView(BaseModel):
    name: str
    role: Role | None = Field(
        description="null when not signed in, or when the server runs without tokens"
    )
    tokens_required: bool
    signed_in: bool = Field(description="false: a token is required and none was sent")
    can_operate: bool = Field(description="may force-start, mark failed, cancel and re-queue")


class ForceStartView(BaseModel):
    job: JobView
    queue_position: int | None


LEASE_SECONDS_DESCRIPTION = (
    "the server's lease: a run with no heartbeat for this long is dead; heartbeat at a third of it"
)


class ClaimView(BaseModel):
    job: JobView
    attempt: int
    run_token: str
    resume_from: str | None
    lease_expires_at: str
    lease_seconds: float = Field(description=LEASE_SECONDS_DESCRIPTION)


class ReportAndClaimView(BaseModel):
    job: JobView = Field(
        description="the job the report was on, after it (on a retry, as it is now)"
    )
    next: ClaimView | None = Field(
        description="the next job, claimed for the body's `worker`; null when none was "
        "claimed: the queue was empty (or, on a retry, the run the first try claimed has "
        "ended since)"
    )


class HeartbeatView(BaseModel):
    job_id: str
    attempt: int
    lease_expires_at: str
    lease_seconds: float = Field(description=LEASE_SECONDS_DESCRIPTION)


class RunHeartbeatBody(RunBody):
    job_id: str = Field(min_length=1, max_length=200)


class HeartbeatsBody(Body):
    runs: list[RunHeartbeatBody] = Field(
        min_length=1,
        max_length=MAX_HEARTBEATS,
        description=f"up to {MAX_HEARTBEATS} runs, each as its own heartbeat takes it plus its"
        " job's id; a job may appear more than once",
    )


class HeartbeatOutcome(BaseModel):
    job_id: str
    attempt: int
    status: int = Field(
        description="200 renewed; 409 the run is not the job's current open one (stop it);"
        " 404 no such job"
    )
    lease_expires_at: str | None = None
    lease_seconds: float | None = Field(default=None, description=LEASE_SECONDS_DESCRIPTION)
    kind: str | None = Field(default=None, description="why it was refused (a problem kind)")
    detail: str | None = None
    current_attempt: int | None = Field(
        default=None, description="a fenced run's job's current attempt, as a 409 names it"
    )


class HeartbeatsView(BaseModel):
    results: list[HeartbeatOutcome] = Field(description="one per run, in the order sent")
    renewed: int
    refused: int
    lease_seconds: float = Field(description=LEASE_SECONDS_DESCRIPTION)


CORRELATION_ID_DESCRIPTION = (
    "the correlation id of the request that appended the event: its traceparent's trace id,"
    " else its X-Request-ID, else one the server made (none on events appended otherwise)"
)


class HistoryEvent(BaseModel):
    seq: int
    type: str
    from_status: JobStatus | None
    to_status: JobStatus
    attempt: int
    actor: str
    reason: str | None
    payload: dict[str, Any]
    unreadable: str | None = Field(
        default=None, description="why this code cannot read the event (it moved only the version)"
    )
    occurred_at: str | None
    recorded_at: str
    correlation_id: str | None = Field(default=None, description=CORRELATION_ID_DESCRIPTION)


class HistoryView(BaseModel):
    job_id: str
    events: list[HistoryEvent]


class AuditDigestView(BaseModel):
    """The log's hash chain at a feed cursor: keep it off the database, and
    `jobledger audit verify --digest FILE` proves nothing before the cursor changed since."""

    chain: str = Field(description="the rules the chain is computed by")
    cursor: str = Field(description="the feed cursor of the last event chained")
    events: int = Field(description="events chained up to the cursor, in feed order")
    head: str = Field(description="the chain's last link: SHA-256, 64 hex digits")
    taken_at: str


class FeedEvent(BaseModel):
    cursor: str
    job_id: str
    seq: int
    type: str
    attempt: int
    actor: str
    reason: str | None
    payload: dict[str, Any] = Field(
        description="a registration's spec is replaced by `spec_bytes`; the job's view has it"
    )
    unreadable: str | None = Field(
        default=None, description="why this code cannot read the event (it moved only the version)"
    )
    recorded_at: str
    correlation_id: str | None = Field(default=None, description=CORRELATION_ID_DESCRIPTION)


class FeedView(BaseModel):
    events: list[FeedEvent]
    next: str


class AuditEventView(BaseModel):
    position: int = Field(description="the event's place in the log")
    job_id: str
    seq: int
    type: str
    status: JobStatus | None = Field(
        description="the status the event moved its job to (none for a checkpoint)"
    )
    attempt: int
    actor: str = Field(description="who caused it: a token's name, or health-monitor")
    reason: str | None
    payload: dict[str, Any] = Field(
        description="a registration's spec is replaced by `spec_bytes`; the job's view has it"
    )
    unreadable: str | None = Field(
        default=None, description="why this code cannot read the event (it moved only the version)"
    )
    correlation_id: str | None
    occurred_at: str | None = Field(description="the emitter's clock, when it gave one")
    recorded_at: str = Field(description="the database's clock when the event was appended")


class AuditEventsView(BaseModel):
    events: list[AuditEventView]
    next_cursor: str | None = Field(description="the cursor of the next page; none on the last")
    next: str | None = Field(description="the next page's link; none on the last")


class OrphanView(BaseModel):
    job_id: str
    attempt: int
    worker: WorkerView
    last_heartbeat_at: str | None
    reason: str


class StalePendingView(BaseModel):
    job_id: str
    pending_since: str


class HealthView(BaseModel):
    healthy: bool
    orphaned_jobs: list[OrphanView] = Field(description="the first 100, dead longest first")
    orphaned_count: int = Field(description="all of them: exact up to 1,000, then 1,001")
    stale_pending_jobs: list[StalePendingView] = Field(
        description="the first 100, pending longest first"
    )
    stale_pending_count: int = Field(description="all of them: exact up to 1,000, then 1,001")
    oldest_stale_pending_age_s: float | None
    queue_depth: int
    oldest_queued_age_s: float | None
    total_running: int
    total_running_alive: int
    counts_exact: bool = Field(
        description="false when a count passed its bound: a count of problems past 1,000 "
        "is 1,001 ('more than 1,000'); queue depth and running jobs past 10,000 are "
        "estimates, and so is the running jobs alive while orphans are past their bound"
    )
    checked_at: str
    unreadable_events: int = Field(
        description="events of the log this code could not read or apply; "
        "`jobledger projections verify` names them"
    )


class ActionView(BaseModel):
    job_id: str
    action: str
    reason: str
    applied: bool
    skipped: str | None = None


class ReconcileView(BaseModel):
    dry_run: bool
    actions: list[ActionView]


class ProbeView(BaseModel):
    status: Literal["alive", "ready", "unavailable"]


class LegacyHealthView(BaseModel):
    healthy: bool
    orphaned_jobs: list[str]
    total_running_db: int
    total_running_memory: int


class LegacyForceStartView(BaseModel):
    success: bool
    job_id: str
    queue_position: int | None


class LegacyCleanupView(BaseModel):
    orphaned_marked_failed: list[str]
    old_pending_marked_failed: list[str]
    old_queued_requeued: list[str]
