"""The event store: appends a job's events with its projected state, and reads the log.

Driver errors are translated into `ledger.errors` here and nowhere else.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson
import psycopg
import psycopg.errors
from psycopg.types.json import Jsonb
from sqlalchemy import Engine

from ledger.database import PooledConnection
from ledger.errors import (
    DatabaseUnavailable,
    DuplicateJob,
    InvalidCommand,
    LedgerError,
    SchemaOutOfDate,
    StorageError,
    VersionConflict,
)
from ledger.events import JobEvent, RecordedEvent, event_to_record, read_event
from ledger.evolve import evolve
from ledger.queries import (
    EVENTS_OF_TRANSACTION,
    FEED_HORIZON,
    JOB_HISTORY,
    JOB_HISTORY_UNTIL,
    LOAD_STATE,
    LOAD_STATE_AND_KEY,
    READ_FEED,
    READ_FEED_WITHOUT_SPECS,
    ROW_NOT_AT_VERSION,
    append_events,
    append_to_row,
)
from ledger.schema import JOB_STATUS_COLUMNS
from ledger.state import TIMESTAMP_FIELDS, JobState
from ledger.statuses import JobStatus
from ledger.telemetry import LedgerObservers
from ledger.unreadable import note_unreadable, unreadable_in

APPEND_TIME = datetime(1, 1, 1, tzinfo=UTC)
"""Stands for "the time of this append" until the database says what it was."""

Connection = psycopg.Connection[tuple[Any, ...]]

_STATUS_COLUMN_COUNT = len(JOB_STATUS_COLUMNS)


class IdempotencyKeyTaken(LedgerError):
    """Another append with the same idempotency key committed first."""

    def __init__(self, decided_on: int) -> None:
        super().__init__()
        self.decided_on = decided_on
        """The job's version the refused append was decided on."""


KEY_CONSTRAINTS = frozenset(
    {"uq_job_events_job_id_idempotency_key", "uq_job_events_actor_idempotency_key"}
)
"""The unique indexes an idempotency key is checked by: per job, and per caller's start."""


@dataclass(frozen=True, slots=True)
class FeedCursor:
    """A place in the global feed: the (transaction id, position) of the last event read."""

    tx_id: int = 0
    position: int = 0

    def __str__(self) -> str:
        return f"{self.tx_id}-{self.position}"

    @classmethod
    def after(cls, event: RecordedEvent) -> "FeedCursor":
        """The place just after `event`, a recorded event of the feed."""
        assert event.tx_id is not None and event.position is not None, "a recorded event"
        return cls(event.tx_id, event.position)

    @classmethod
    def parse(cls, text: str) -> "FeedCursor":
        tx_id, _, position = text.partition("-")
        return cls(int(tx_id), int(position))


@dataclass(frozen=True, slots=True)
class FeedPage:
    events: list[RecordedEvent]
    next_cursor: FeedCursor
    spec_bytes: dict[tuple[str, int], int] = field(default_factory=dict)
    """When read without specs: the size of each left-out spec, by (job_id, seq)."""


@dataclass(frozen=True, slots=True)
class Appended:
    events: list[RecordedEvent]
    state: JobState


@dataclass(frozen=True, slots=True)
class LoadedJob:
    state: JobState | None
    earlier_outcome: list[RecordedEvent] | None
    """The events an earlier append with the same idempotency key recorded."""
    earlier_command_sha256: str | None = None
    """The digest of the command the key was first used with (None when recorded before
    keys were bound to their commands)."""


class EventStore:
    """The append-only job log in PostgreSQL, with its inline current-status projection."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.observers = LedgerObservers()
        """Told of every append, and of the commands, claims and heartbeats of the
        services built on this store."""

    # -- writing -----------------------------------------------------------------

    def append(
        self,
        job_id: str,
        state: JobState | None,
        events: Sequence[JobEvent],
        *,
        actor: str,
        idempotency_key: str | None = None,
        command_sha256: str | None = None,
        correlation_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Appended:
        """Append `events` after `state` (the version the decision was made on), in a
        transaction of its own. The first event carries the idempotency key and the
        digest of the command it was used with (`ledger.commands.command_digest`).

        Raises `VersionConflict` (or `DuplicateJob` for a new job) when another
        writer appended first; nothing is written then.
        """
        prepared = prepare_append(
            job_id,
            state,
            events,
            actor=actor,
            idempotency_key=idempotency_key,
            command_sha256=command_sha256,
            correlation_id=correlation_id,
            occurred_at=occurred_at,
        )
        connection = self._connection(job_id, prepared.expected_version)
        with connection:
            cursor = connection.cursor()
            try:
                rows = cursor.execute(prepared.statement, prepared.params).fetchall()
            except psycopg.Error as refused:
                if not row_not_at_version(refused):
                    raise
                rows = cursor.execute(*prepared.writing_row_whole()).fetchall()
        appended = prepared.recorded(rows)
        self.observers.events_appended([event.type for event in appended.events])
        return appended

    # -- reading -----------------------------------------------------------------

    def load(self, job_id: str) -> JobState | None:
        """The job's current state, or None when it does not exist."""
        with self._connection(job_id) as conn:
            row = conn.execute(LOAD_STATE, {"job_id": job_id}).fetchone()
        return None if row is None else state_from_row(row)

    def load_for_command(self, job_id: str, idempotency_key: str | None) -> LoadedJob:
        """The job's state, and the outcome of an earlier use of `idempotency_key` with the
        digest of the command it was used with."""
        if idempotency_key is None:
            return LoadedJob(self.load(job_id), None)
        params = {"job_id": job_id, "idempotency_key": idempotency_key}
        with self._connection(job_id) as conn:
            row = conn.execute(LOAD_STATE_AND_KEY, params).fetchone()
            assert row is not None
            state = None if row[0] is None else state_from_row(row)
            key_tx_id, key_command_sha256 = row[_STATUS_COLUMN_COUNT:]
            if key_tx_id is None:
                return LoadedJob(state, None)
            found = conn.execute(EVENTS_OF_TRANSACTION, {"job_id": job_id, "tx_id": key_tx_id})
            earlier = [event_from_row(event) for event in found]
            return LoadedJob(state, earlier, key_command_sha256)

    def history(self, job_id: str, until: datetime | None = None) -> list[RecordedEvent]:
        """Every event of the job, in order; with `until`, those recorded by then."""
        query, params = JOB_HISTORY, {"job_id": job_id, "until": until}
        if until is not None:
            query = JOB_HISTORY_UNTIL
        with self._connection(job_id) as conn:
            rows = conn.execute(query, params).fetchall()
            return self._noting_unreadable(conn, [event_from_row(row) for row in rows])

    def feed_head(self) -> FeedCursor:
        """A cursor after every event the feed can show now: a reader starting here
        gets exactly the events that become readable later."""
        with self._connection() as conn:
            return FeedCursor(feed_horizon(conn), 0)

    def read_feed(
        self, after: FeedCursor | None = None, limit: int = 1000, *, specs: bool = True
    ) -> FeedPage:
        """Events after `after` in the safe global order (see `READ_FEED`). Without
        `specs`, a registration's spec is left out (its event has the empty spec) and
        its size is in the page's `spec_bytes`."""
        after = after or FeedCursor()
        params = {"tx_id": str(after.tx_id), "position": after.position, "limit": limit}
        with self._connection() as conn:
            if specs:
                rows = conn.execute(READ_FEED, params).fetchall()
                sizes = {}
            else:
                sized = conn.execute(READ_FEED_WITHOUT_SPECS, params).fetchall()
                rows = [row[:-1] for row in sized]
                sizes = {(row[1], row[2]): row[-1] for row in sized if row[-1] is not None}
            events = self._noting_unreadable(conn, [event_from_row(row) for row in rows])
        if not events:
            return FeedPage([], after)
        return FeedPage(events, FeedCursor.after(events[-1]), sizes)

    @staticmethod
    def _noting_unreadable(conn: Connection, events: list[RecordedEvent]) -> list[RecordedEvent]:
        """`events`, after logging and recording any this code cannot read."""
        found = unreadable_in(events)
        if found:
            note_unreadable(conn, found)
        return events

    # -- connections -------------------------------------------------------------

    @contextmanager
    def connection(self, job_id: str = "") -> Iterator[Connection]:
        """A connection where each statement is its own transaction; driver errors translated."""
        with self._connection(job_id) as conn:
            yield conn

    @contextmanager
    def transaction(self, job_id: str = "") -> Iterator[Connection]:
        """A connection inside a transaction, with driver errors translated."""
        with self._connection(job_id) as conn, conn.transaction():
            yield conn

    def _connection(self, job_id: str = "", expected_version: int = 0) -> "_StoreConnection":
        return _StoreConnection(self.engine, job_id, expected_version)


class _StoreConnection(PooledConnection):
    """A connection from the pool whose driver errors leave as ledger errors: those about
    the database as `driver_connection` translates them, the rest as `translate_error`
    does for this job."""

    __slots__ = ("_expected_version", "_job_id")

    def __init__(self, engine: Engine, job_id: str, expected_version: int) -> None:
        super().__init__(engine)
        self._job_id = job_id
        self._expected_version = expected_version

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        super().__exit__(exc_type, exc, traceback)  # raises what the database's trouble is
        if isinstance(exc, psycopg.Error):
            raise translate_error(exc, self._job_id, self._expected_version) from exc


@dataclass(frozen=True, slots=True)
class PreparedAppend:
    """An append decided and projected, ready to send as `statement` with `params`."""

    job_id: str
    expected_version: int
    pending: list[RecordedEvent]
    reasons: list[str | None]
    state: JobState
    params: dict[str, Any]
    event_rows: list[dict[str, Any]]
    """The events as rows (`params["events"]` holds them as JSON when they are more than
    one; a single one is a parameter per column)."""
    statement: str
    """`append_events` for a new job; for one that exists, the statement that updates its
    row in place, in the columns the append changes (`append_to_row`)."""

    def writing_row_whole(self) -> tuple[str, dict[str, Any]]:
        """The append as `append_events` makes it, writing the job's row whole, and its
        parameters: for a row that is not at the version the append was decided on."""
        return append_events(len(self.pending) == 1), self.params | _whole_row(self.state)

    def stamped(self, recorded_at: datetime) -> JobState:
        """The projected state, with the time the database recorded the append."""
        return stamped(self.state, recorded_at)

    def recorded(self, rows: Sequence[Sequence[Any]]) -> Appended:
        """The events and state as recorded, from the rows the append returned."""
        recorded_at = rows[0][2]
        params = self.params
        actor = params["actor"]
        key = params["idempotency_key"]
        correlation_id = params["correlation_id"]
        occurred_at = params["occurred_at"]
        recorded = [
            RecordedEvent(
                job_id=event.job_id,
                seq=event.seq,
                data=event.data,
                recorded_at=recorded_at,
                attempt=event.attempt,
                actor=actor,
                reason=reason,
                position=row[0],
                tx_id=int(row[3]),
                idempotency_key=key if index == 0 else None,
                correlation_id=correlation_id,
                occurred_at=occurred_at,
            )
            for index, (event, row, reason) in enumerate(
                zip(self.pending, rows, self.reasons, strict=True)
            )
        ]
        return Appended(recorded, self.stamped(recorded_at))


Projection = tuple[list[RecordedEvent], list[str | None], JobState, list[dict[str, Any]]]
"""Events numbered after a job's state, their reasons, the state they project, and the
events as rows of the log (`APPEND_TIME` standing for the time the database records
them). A plain tuple: every command makes one, and a named tuple costs it more to build."""


def project(
    job_id: str,
    state: JobState | None,
    events: Sequence[JobEvent],
    *,
    idempotency_key: str | None = None,
    command_sha256: str | None = None,
) -> Projection:
    """Number the events after `state` and evolve the projected state; the key and the
    command's digest go on the first event."""
    if not events:
        raise ValueError("nothing to append")
    pending: list[RecordedEvent] = []
    reasons: list[str | None] = []
    rows_json: list[dict[str, Any]] = []
    new_state = state
    seq = state.version if state else 0
    key, digest = idempotency_key, command_sha256  # on the first event only
    for data in events:
        seq += 1
        # Events are built positionally: (job_id, seq, data, recorded_at, attempt).
        new_state = evolve(new_state, RecordedEvent(job_id, seq, data, APPEND_TIME))
        attempt = new_state.attempt
        pending.append(RecordedEvent(job_id, seq, data, APPEND_TIME, attempt))
        type_, payload, reason = event_to_record(data)
        reasons.append(reason)
        rows_json.append(
            {
                "seq": seq,
                "type": type_,
                "payload": payload,
                "reason": reason,
                "attempt": attempt,
                "idempotency_key": key,
                "command_sha256": digest,
            }
        )
        key = digest = None
    assert new_state is not None
    return pending, reasons, new_state, rows_json


def stamped(state: JobState, recorded_at: datetime) -> JobState:
    """`state` with the time the database recorded its append in place of `APPEND_TIME`."""
    values = list(state)
    for index in _TIMESTAMP_INDEXES:
        if values[index] is APPEND_TIME:
            values[index] = recorded_at
    return JobState._make(values)


def prepare_append(
    job_id: str,
    state: JobState | None,
    events: Sequence[JobEvent],
    *,
    actor: str,
    idempotency_key: str | None = None,
    command_sha256: str | None = None,
    correlation_id: str | None = None,
    occurred_at: datetime | None = None,
) -> PreparedAppend:
    """Number the events after `state`, evolve the projected state, build the parameters."""
    pending, reasons, new_state, rows_json = project(
        job_id, state, events, idempotency_key=idempotency_key, command_sha256=command_sha256
    )
    params = {
        "job_id": job_id,
        "actor": actor,
        "idempotency_key": idempotency_key,
        "correlation_id": correlation_id,
        "occurred_at": occurred_at,
    }
    one_event = len(rows_json) == 1
    if one_event:  # a parameter per column of its row, the payload as JSON
        (row,) = rows_json
        params |= row
        params["payload"] = orjson.dumps(row["payload"]).decode()
    else:  # one JSON document instead of dozens of parameters: far less to adapt
        params["events"] = orjson.dumps(rows_json).decode()
    if state is None:
        params |= _whole_row(new_state)
        return PreparedAppend(
            job_id, 0, pending, reasons, new_state, params, rows_json, append_events(one_event)
        )
    statement = _row_changes(state, new_state, params, one_event)
    return PreparedAppend(
        job_id, state.version, pending, reasons, new_state, params, rows_json, statement
    )


_TIMESTAMP_INDEXES = tuple(JobState._fields.index(name) for name in TIMESTAMP_FIELDS)
"""Where `JobState` holds its timestamps: an append's own time is the `APPEND_TIME` marker
there (the very object: `evolve` copies an event's `recorded_at`) until it is stamped."""


def _whole_row(state: JobState) -> dict[str, Any]:
    """The parameters `append_events` writes the job's row whole from."""
    return {"append_time": APPEND_TIME, "state": orjson.dumps(row_document(state)).decode()}


_STATE_FIELDS = JobState._fields


def row_document(state: JobState) -> dict[str, Any]:
    """The job's row as the JSON document `jsonb_populate_record(set)` reads it from: the
    columns that hold a value. A column left out is read as NULL, and a new job's row has
    most of them NULL, so its document is about half the size for the server to parse."""
    return {
        name: value for name, value in zip(_STATE_FIELDS, state, strict=True) if value is not None
    }


def _row_changes(
    state: JobState, new_state: JobState, params: dict[str, Any], one_event: bool
) -> str:
    """The statement that appends and updates the job's row from `state` to `new_state`
    in the columns that differ; their values are added to `params`."""
    set_columns: list[str] = []
    now_columns: list[str] = []
    for column, old, new in zip(JOB_STATUS_COLUMNS, state, new_state, strict=True):
        if new is old or new == old:
            continue
        if new is APPEND_TIME:
            now_columns.append(column)
            continue
        set_columns.append(column)
        params[f"new_{column}"] = _column_value(new)
    params["expected_version"] = state.version
    return append_to_row(tuple(set_columns), tuple(now_columns), one_event)


def _column_value(value: Any) -> Any:
    """A field of `JobState` as the driver sends it to its `job_status` column."""
    if isinstance(value, dict):
        return Jsonb(value)
    if isinstance(value, JobStatus):
        return value.value
    return value


def row_not_at_version(exc: psycopg.Error) -> bool:
    """Whether an append was refused only because the job's row is at another version than
    the append was decided on (a projection being repaired): then it is written again with
    the row whole (`PreparedAppend.writing_row_whole`)."""
    return (
        isinstance(exc, psycopg.errors.CheckViolation)
        and exc.diag.constraint_name == ROW_NOT_AT_VERSION
    )


def translate_error(exc: psycopg.Error, job_id: str, expected_version: int) -> LedgerError:
    """The ledger error a driver error means."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        constraint = exc.diag.constraint_name
        if constraint in KEY_CONSTRAINTS:
            return IdempotencyKeyTaken(expected_version)
        if constraint == "uq_job_events_job_id_seq":
            if expected_version == 0:
                return DuplicateJob(job_id)
            return VersionConflict(job_id, expected_version)
    if isinstance(exc, psycopg.DataError):
        return InvalidCommand(f"the database cannot store this input: {exc.diag.message_primary}")
    if isinstance(
        exc,
        psycopg.errors.UndefinedTable
        | psycopg.errors.UndefinedColumn
        | psycopg.errors.UndefinedFunction,
    ):
        return SchemaOutOfDate(f"{SchemaOutOfDate.__doc__} Run `jobledger migrate`. ({exc})")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return DatabaseUnavailable(f"the database cannot be reached: {exc}".strip())
    return StorageError(f"the event store failed: {exc}")


def feed_horizon(conn: Connection) -> int:
    """Every transaction below this id has ended (`pg_snapshot_xmin`): the feed reads below it."""
    row = conn.execute(FEED_HORIZON).fetchone()
    assert row is not None
    return int(row[0])


def state_from_row(row: Sequence[Any]) -> JobState:
    """The state held in a `job_status` row (its first columns, in `JobState` order)."""
    state = JobState._make(row[:_STATUS_COLUMN_COUNT])
    return state._replace(status=JobStatus(state.status))


def event_from_row(row: Sequence[Any]) -> RecordedEvent:
    (
        position,
        job_id,
        seq,
        type_,
        payload,
        actor,
        reason,
        attempt,
        idempotency_key,
        correlation_id,
        occurred_at,
        recorded_at,
        tx_id,
    ) = row
    return RecordedEvent(
        job_id=job_id,
        seq=seq,
        data=read_event(type_, payload, reason),
        recorded_at=recorded_at,
        attempt=attempt,
        actor=actor,
        reason=reason,
        position=position,
        tx_id=int(tx_id),
        idempotency_key=idempotency_key,
        correlation_id=correlation_id,
        occurred_at=occurred_at,
    )
