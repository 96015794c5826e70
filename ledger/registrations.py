"""Registering many jobs in one transaction, each with an outcome of its own.

A sweep submits hundreds of jobs at once. They are registered by one statement
(`REGISTER_MANY`): every new job's first event and its projected row. The log's unique
`(job_id, seq)` leaves out a job that already exists, and only those are read back, by a
second statement, to say what each one is: a replay of the same registration with
the same idempotency key (answered as before, nothing appended), or a refusal
(`DuplicateJob`; `IdempotencyKeyReused` when the key was first used otherwise). A job
named twice in one call is registered once; its second mention is judged like a replay.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ledger.commands import RegisterJob, command_digest
from ledger.decide import decide
from ledger.errors import (
    IdempotencyKeyReused,
    InvalidCommand,
    LedgerError,
    StorageError,
    error_like,
)
from ledger.loop_appends import LoopAppends
from ledger.queries import REGISTER_MANY, REGISTRATIONS_FOUND
from ledger.schema import JOB_STATUS_COLUMNS
from ledger.state import JobState
from ledger.store import (
    APPEND_TIME,
    Connection,
    EventStore,
    Projection,
    project,
    row_document,
    stamped,
    state_from_row,
)

MAX_REGISTRATIONS = 1000
"""The most jobs one call registers: one transaction of a bounded size."""

_STATUS_COLUMN_COUNT = len(JOB_STATUS_COLUMNS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """One job to register: its id, the registration, and the caller's idempotency key;
    who asked and the correlation id, when they are not the whole call's (registrations of
    many callers gathered into one statement)."""

    job_id: str
    command: RegisterJob
    idempotency_key: str | None = None
    actor: str | None = None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Registered:
    """A registration's outcome: the job as it is, and whether this call registered it
    (`replayed` when an earlier one with the same key and the same registration did)."""

    state: JobState
    replayed: bool = False


RegistrationOutcome = Registered | LedgerError
"""What became of one registration: registered (or replayed), or refused and why."""


def register_many(
    store: EventStore,
    registrations: Sequence[Registration],
    *,
    actor: str,
    correlation_id: str | None = None,
    occurred_at: datetime | None = None,
) -> list[RegistrationOutcome]:
    """Register every job of `registrations` that is new, in one transaction; return an
    outcome for each, in order. `InvalidCommand` when there are more than
    `MAX_REGISTRATIONS`."""
    prepared = _Prepared.of(registrations, actor, correlation_id, occurred_at)
    if prepared.params is not None:
        with store.connection() as conn:  # one statement: one transaction
            prepared.record(conn.execute(REGISTER_MANY, prepared.params), store)
    left_out = [i for i, outcome in enumerate(prepared.outcomes) if outcome is None]
    outcomes = prepared.outcomes
    if left_out:
        try:
            judged = _told(
                store,
                [registrations[i] for i in left_out],
                [prepared.digests[i] for i in left_out],
            )
        except StorageError as failure:  # those registered above are recorded
            judged = [error_like(failure) for _ in left_out]
        for index, outcome in zip(left_out, judged, strict=True):
            outcomes[index] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


def told(store: EventStore, registrations: Sequence[Registration]) -> list[RegistrationOutcome]:
    """What became of registrations the log left out (their jobs were there): each judged
    on a fresh read of what is there, as `register_many` judges those it leaves out, with
    no statement that appends. Raises the read's `StorageError`."""
    return _told(store, registrations, [_digest(item) for item in registrations])


def _told(
    store: EventStore, registrations: Sequence[Registration], digests: Sequence[str | None]
) -> list[RegistrationOutcome]:
    with store.connection() as conn:
        found = _found(conn, registrations)
    return [
        _judged(item, digest, found.get((item.job_id, item.idempotency_key)))
        for item, digest in zip(registrations, digests, strict=True)
    ]


def _digest(item: Registration) -> str | None:
    """The digest of the registration an idempotency key is used for (None without a key)."""
    return None if item.idempotency_key is None else command_digest(item.command)


async def register_many_on_loop(
    store: EventStore, registrations: Sequence[Registration], appends: LoopAppends
) -> list[RegistrationOutcome | None] | None:
    """`register_many` of registrations that each name their actor, its statement sent
    from the event loop by `appends`; None for each job the log left out (one that was
    there already: only `register_many` tells what such a registration is, on a thread),
    and None for all when `appends` is not ready or there are too many for one call."""
    if len(registrations) > MAX_REGISTRATIONS or not appends.ready():
        return None
    prepared = _Prepared.of(registrations, "", None, None)
    if prepared.params is not None:
        prepared.record(await appends.rows(REGISTER_MANY, prepared.params), store)
    return prepared.outcomes


@dataclass(frozen=True, slots=True)
class _Prepared:
    """Registrations decided and projected, ready for `REGISTER_MANY` (`params`, None when
    none is new), with the outcome of each so far: refused as decided, or, once
    `record`ed, registered; None for those the log leaves out."""

    digests: list[str | None]
    outcomes: list[RegistrationOutcome | None]
    projected: dict[str, tuple[int, Projection]]
    params: dict[str, Any] | None

    @classmethod
    def of(
        cls,
        registrations: Sequence[Registration],
        actor: str,
        correlation_id: str | None,
        occurred_at: datetime | None,
    ) -> "_Prepared":
        if len(registrations) > MAX_REGISTRATIONS:
            raise InvalidCommand(
                f"at most {MAX_REGISTRATIONS} jobs are registered at once, not {len(registrations)}"
            )
        digests = [_digest(item) for item in registrations]
        outcomes: list[RegistrationOutcome | None] = [None] * len(registrations)
        projected: dict[str, tuple[int, Projection]] = {}
        for index, (item, digest) in enumerate(zip(registrations, digests, strict=True)):
            if item.job_id in projected:
                continue  # judged once the first mention is registered
            try:
                events = decide(None, item.command, job_id=item.job_id)
            except LedgerError as refused:
                outcomes[index] = refused
                continue
            projected[item.job_id] = (
                index,
                project(
                    item.job_id,
                    None,
                    events,
                    idempotency_key=item.idempotency_key,
                    command_sha256=digest,
                ),
            )
        params = (
            _params(registrations, projected, actor, correlation_id, occurred_at)
            if projected
            else None
        )
        return cls(digests, outcomes, projected, params)

    def record(self, rows: Iterable[Sequence[Any]], store: EventStore) -> None:
        """The rows `REGISTER_MANY` returned: each a job it registered."""
        appended: list[str] = []
        for job_id, *recorded in rows:
            index, (_, _, projected_state, event_rows) = self.projected[job_id]
            self.outcomes[index] = Registered(stamped(projected_state, recorded[2]))
            appended.extend(row["type"] for row in event_rows)
        store.observers.events_appended(appended)


def _params(
    registrations: Sequence[Registration],
    projected: dict[str, tuple[int, Projection]],
    actor: str,
    correlation_id: str | None,
    occurred_at: datetime | None,
) -> dict[str, Any]:
    """`REGISTER_MANY`'s parameters: every job's events and row, each list as one document;
    each event names who asked, and the correlation id."""
    events: list[dict[str, Any]] = []
    for job_id, (index, (_, _, _, event_rows)) in projected.items():
        item = registrations[index]
        asked = {
            "job_id": job_id,
            "actor": item.actor or actor,
            "correlation_id": item.correlation_id or correlation_id,
        }
        events.extend(row | asked for row in event_rows)
    return {
        "occurred_at": occurred_at,
        "append_time": APPEND_TIME,
        "events": orjson.dumps(events).decode(),
        "states": orjson.dumps(
            [row_document(state) for _, (_, _, state, _) in projected.values()]
        ).decode(),
    }


_Found = tuple[JobState, str | None, int | None]
"""A job that was there: its state, and its key's first event's command digest and seq."""


def _found(conn: Connection, items: Sequence[Registration]) -> dict[tuple[str, str | None], _Found]:
    """The jobs of `items` as they are now, each with the first use of its item's key."""
    params: dict[str, Any] = {
        "job_ids": [item.job_id for item in items],
        "keys": [item.idempotency_key for item in items],
    }
    found = {}
    for row in conn.execute(REGISTRATIONS_FOUND, params):
        state = state_from_row(row)
        key, key_digest, key_seq = row[_STATUS_COLUMN_COUNT:]
        found[(state.job_id, key)] = (state, key_digest, key_seq)
    return found


def _judged(item: Registration, digest: str | None, found: _Found | None) -> RegistrationOutcome:
    """The outcome of a registration the log left out, given what is there."""
    if found is None:
        return StorageError(f"job {item.job_id!r} was neither registered nor found")
    state, key_digest, key_seq = found
    if item.idempotency_key is not None and key_seq is not None:
        if key_seq == 1 and key_digest == digest:
            return Registered(state, replayed=True)
        return IdempotencyKeyReused(item.job_id, item.idempotency_key)
    try:
        decide(state, item.command, job_id=item.job_id)
    except LedgerError as refused:
        return refused
    return StorageError(f"job {item.job_id!r} exists, yet its registration was not refused")
