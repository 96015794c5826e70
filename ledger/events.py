"""Events: what happened to a job, in the past tense.

An event is a fact the log records forever. `JobEvent` classes carry only the
domain data; `RecordedEvent` wraps one with what the store knows of it: its
place in the job's stream, who caused it and when the database recorded it.
"""

import types
import typing
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar, NamedTuple

from ledger.commands import WorkerIdentity
from ledger.run_tokens import run_token_digest
from ledger.statuses import REGISTERED_STATUSES, JobStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRegistered:
    TYPE: ClassVar[str] = "job_registered"
    initial_status: JobStatus
    spec: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int = 1
    auto_retry: bool = False

    def __post_init__(self) -> None:
        # Read back from JSON, the status is a plain string.
        if type(self.initial_status) is not JobStatus:
            object.__setattr__(self, "initial_status", JobStatus(self.initial_status))


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSubmitted:
    TYPE: ClassVar[str] = "job_submitted"


_WORKER_FIELD_NAMES = tuple(field.name for field in fields(WorkerIdentity))


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStarted:
    """A worker started a new attempt, fenced by the run token whose digest it records.

    The token itself is never recorded (`ledger.run_tokens`): only its worker
    was told it. The worker's fields are `WorkerIdentity`'s, by the same names,
    flat in the payload: `of` and `worker` convert between the two.
    """

    TYPE: ClassVar[str] = "job_started"
    run_token_sha256: str
    worker_id: str
    host: str
    pid: int | None = None
    pid_started_at: float | None = None
    boot_id: str | None = None
    resume_from: str | None = None

    @classmethod
    def of(cls, worker: WorkerIdentity, *, run_token: str, resume_from: str | None) -> "JobStarted":
        """The start of an attempt by `worker`, fenced by `run_token`."""
        named = {name: getattr(worker, name) for name in _WORKER_FIELD_NAMES}
        return cls(run_token_sha256=run_token_digest(run_token), resume_from=resume_from, **named)

    @property
    def worker(self) -> WorkerIdentity:
        """The process that started the attempt."""
        return WorkerIdentity(**{name: getattr(self, name) for name in _WORKER_FIELD_NAMES})


@dataclass(frozen=True, slots=True, kw_only=True)
class JobPaused:
    TYPE: ClassVar[str] = "job_paused"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobResumed:
    TYPE: ClassVar[str] = "job_resumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointSaved:
    TYPE: ClassVar[str] = "checkpoint_saved"
    path: str
    step: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCompleted:
    TYPE: ClassVar[str] = "job_completed"
    result: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailed:
    """The worker running the attempt reported failure."""

    TYPE: ClassVar[str] = "job_failed"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobCancelled:
    TYPE: ClassVar[str] = "job_cancelled"
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobForceStarted:
    """An operator (or the health monitor) put the job back in the queue."""

    TYPE: ClassVar[str] = "job_force_started"
    reason: str | None = None
    resume_from: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobMarkedFailed:
    """An operator (or the health monitor) declared the job failed."""

    TYPE: ClassVar[str] = "job_marked_failed"
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRequeued:
    TYPE: ClassVar[str] = "job_requeued"
    reason: str | None = None
    resume_from: str | None = None


JobEvent = (
    JobRegistered
    | JobSubmitted
    | JobStarted
    | JobPaused
    | JobResumed
    | CheckpointSaved
    | JobCompleted
    | JobFailed
    | JobCancelled
    | JobForceStarted
    | JobMarkedFailed
    | JobRequeued
)

EVENT_CLASSES: dict[str, type[JobEvent]] = {
    cls.TYPE: cls
    for cls in (
        JobRegistered,
        JobSubmitted,
        JobStarted,
        JobPaused,
        JobResumed,
        CheckpointSaved,
        JobCompleted,
        JobFailed,
        JobCancelled,
        JobForceStarted,
        JobMarkedFailed,
        JobRequeued,
    )
}


_PAYLOAD_FIELDS: dict[str, tuple[str, ...]] = {
    type_: tuple(f.name for f in fields(cls) if f.name != "reason")
    for type_, cls in EVENT_CLASSES.items()
}
_HAS_REASON: frozenset[str] = frozenset(
    type_ for type_, cls in EVENT_CLASSES.items() if any(f.name == "reason" for f in fields(cls))
)


_PRIVATE_FIELDS: dict[str, tuple[str, ...]] = {JobStarted.TYPE: ("run_token_sha256",)}
"""What the log keeps of an event but never shows its readers: a run token's digest (a
token from a guessable factory could be found from it, and no reader needs it)."""

_PUBLIC_FIELDS: dict[str, tuple[str, ...]] = {
    type_: tuple(name for name in names if name not in _PRIVATE_FIELDS.get(type_, ()))
    for type_, names in _PAYLOAD_FIELDS.items()
}

LEGACY_RUN_TOKEN = "run_token"
"""The payload field of a `job_started` recorded before the log kept only digests
(migration 0008): the token itself."""


def event_to_record(event: JobEvent) -> tuple[str, dict[str, Any], str | None]:
    """Split an event into its type, its JSON payload and its reason column."""
    type_ = event.TYPE
    payload = {name: getattr(event, name) for name in _PAYLOAD_FIELDS[type_]}
    reason: str | None = getattr(event, "reason", None)
    return type_, payload, reason


def event_from_record(type_: str, payload: dict[str, Any], reason: str | None) -> JobEvent:
    """Rebuild an event from its stored type, payload and reason."""
    cls = EVENT_CLASSES[type_]
    if LEGACY_RUN_TOKEN in payload:
        payload = _digest_of_legacy_token(payload)
    if type_ in _HAS_REASON:
        payload = {**payload, "reason": reason}
    return cls(**payload)


def _digest_of_legacy_token(payload: dict[str, Any]) -> dict[str, Any]:
    """A legacy start's payload with its token replaced by the token's digest, as a start
    records it now: old runs keep their fence, and the token goes no further."""
    kept = {name: value for name, value in payload.items() if name != LEGACY_RUN_TOKEN}
    return {"run_token_sha256": run_token_digest(payload[LEGACY_RUN_TOKEN]), **kept}


def public_payload(event: JobEvent) -> dict[str, Any]:
    """The payload of `event` as readers (history, feed, stream) are shown it: no field that
    bears on a run token, of a new start or of a legacy one."""
    return {name: getattr(event, name) for name in _PUBLIC_FIELDS[event.TYPE]}


@dataclass(frozen=True, slots=True)
class UnreadableEvent:
    """A stored row this code cannot read as an event: an unknown type (written by a
    newer version, or by hand), or a payload that does not fit its type.

    It is carried like any event, so the feed, the stream and a job's history show
    it and nothing skips it; folded, it moves the job's version and nothing else.
    """

    TYPE: str
    payload: Any
    problem: str


def read_event(type_: str, payload: Any, reason: str | None) -> "JobEvent | UnreadableEvent":
    """The event a stored row holds, or an `UnreadableEvent` saying why it is not one."""
    cls = EVENT_CLASSES.get(type_)
    if cls is None:
        return UnreadableEvent(type_, payload, f"unknown event type {type_!r}")
    if not isinstance(payload, dict):
        return UnreadableEvent(type_, payload, "the payload is not a JSON object")
    if isinstance(payload.get(LEGACY_RUN_TOKEN), str):
        payload = _digest_of_legacy_token(payload)
    problem = _payload_problem(type_, payload, reason)
    if problem is None:
        try:
            return event_from_record(type_, payload, reason)
        except (TypeError, ValueError) as exc:
            problem = str(exc)
    return UnreadableEvent(type_, payload, problem)


def shown_payload(data: "JobEvent | UnreadableEvent") -> dict[str, Any]:
    """The payload readers (history, feed, stream) are shown: `public_payload`, or an
    unreadable event's as it was found, less any field that bears on a run token."""
    if not isinstance(data, UnreadableEvent):
        return public_payload(data)
    if not isinstance(data.payload, dict):
        return {"stored": data.payload}
    hidden = {LEGACY_RUN_TOKEN, *_PRIVATE_FIELDS[JobStarted.TYPE]}
    return {name: value for name, value in data.payload.items() if name not in hidden}


def _accepted_types(annotation: Any) -> tuple[type, ...]:
    """The JSON-decoded Python types a field annotated `annotation` accepts."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(t for arg in typing.get_args(annotation) for t in _accepted_types(arg))
    origin = typing.get_origin(annotation) or annotation
    if origin is type(None):
        return (type(None),)
    if origin is float:
        return (float, int)
    if isinstance(origin, type) and issubclass(origin, str):
        return (str,)  # a str enum (a status) is stored as its value
    if origin is Any:
        return (object,)
    return (origin,)


_FIELD_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    type_: {
        name: _accepted_types(hint)
        for name, hint in typing.get_type_hints(cls).items()
        if name not in {"TYPE", "reason"}
    }
    for type_, cls in EVENT_CLASSES.items()
}


_REASON_REQUIRED: frozenset[str] = frozenset(
    type_ for type_, cls in EVENT_CLASSES.items() if typing.get_type_hints(cls).get("reason") is str
)

_INT_BITS = {"step": 63}
"""The bits of an integer field's column; the others are 32-bit."""


def _payload_problem(type_: str, payload: dict[str, Any], reason: str | None) -> str | None:
    """What in the row does not fit the event type's fields, if anything."""
    if reason is None and type_ in _REASON_REQUIRED:
        return f"{type_} has no reason"
    if type_ == JobRegistered.TYPE and payload.get("initial_status") not in REGISTERED_STATUSES:
        return f"a job is not registered as {payload.get('initial_status')!r}"
    accepted = _FIELD_TYPES[type_]
    for name, value in payload.items():
        kinds = accepted.get(name)
        if kinds is None:
            return f"{type_} has no field {name!r}"
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            return f"{type_}.{name} cannot be {value!r}"
        if isinstance(value, int) and not -(
            2 ** _INT_BITS.get(name, 31)
        ) <= value < 2 ** _INT_BITS.get(name, 31):
            return f"{type_}.{name} is out of range: {value}"
    return None


class RecordedEvent(NamedTuple):
    """An event as the log holds it (a named tuple: replays build millions)."""

    job_id: str
    seq: int
    data: JobEvent | UnreadableEvent
    recorded_at: datetime  # the database clock: every age is measured on it
    attempt: int = 0
    actor: str = "system"
    reason: str | None = None
    position: int | None = None
    tx_id: int | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    occurred_at: datetime | None = None  # the emitter's clock, for reference only

    @property
    def type(self) -> str:
        return self.data.TYPE
