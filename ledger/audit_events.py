"""Questions across jobs: the log's events filtered by who, what, which job, which status
reached and when, in time order, keyset-paged, or read to the end in batches.

Each filter is served by an index of the log (migration 0013): in time order on the
database's clock, all events, by type, and by actor and type; by job id; on the emitter's
clock. A page is one statement whatever the log's size: a question of several types, of
a status several types reach, or of one actor's every type, reads each type's events in
order on its index and merges them, so no filter sorts more rows than a page.
"""

import base64
import binascii
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from ledger.errors import InvalidAuditFilter
from ledger.events import EVENT_CLASSES, JobRegistered, RecordedEvent, UnreadableEvent
from ledger.queries import EVENT_SELECT_WITHOUT_SPECS
from ledger.statuses import REGISTERED_STATUSES, JobStatus
from ledger.store import EventStore, event_from_row
from ledger.transitions import EVENT_TARGET_STATUS
from ledger.unreadable import note_unreadable, unreadable_in

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
MAX_PAGE = 1_000
EXPORT_BATCH = 1_000
"""An export reads this many events at a time: its memory does not grow with its length."""


class Clock(StrEnum):
    """The time an event is filtered and ordered by."""

    RECORDED = "recorded_at"  # the database's clock when the event was appended
    OCCURRED = "occurred_at"  # the emitter's clock, when it gave one (events without are left out)


def status_reached(event: RecordedEvent) -> JobStatus | None:
    """The status `event` moved its job to (`EVENT_TARGET_STATUS`, or the status a
    registration names); None for an event that changes no status, or one this code
    cannot read."""
    if isinstance(event.data, UnreadableEvent):
        return None  # it moved only the job's version
    if isinstance(event.data, JobRegistered):
        return event.data.initial_status
    return EVENT_TARGET_STATUS[event.type]


def parse_moment(field: str, text: str) -> datetime:
    """An RFC 3339 time (`2026-11-01T00:00:00Z`, any offset) or a date, meaning its
    midnight in UTC (`2026-11-01`)."""
    try:
        if len(text) == len("2026-11-01"):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidAuditFilter(
            field, f"{text!r} is not an RFC 3339 time (2026-11-01T00:00:00Z) nor a date"
        ) from None
    if moment.tzinfo is None:
        raise InvalidAuditFilter(field, f"{text!r} has no UTC offset: add Z or +hh:mm (RFC 3339)")
    return moment


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditFilter:
    """Which events a question is about: every condition given must hold."""

    actor: str | None = None
    not_actors: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    statuses: tuple[JobStatus, ...] = ()  # the status the event moved its job to
    job_id: str | None = None
    job_id_prefix: str | None = None
    clock: Clock = Clock.RECORDED
    since: datetime | None = None  # included
    until: datetime | None = None  # left out

    def __post_init__(self) -> None:
        unknown = [type_ for type_ in self.types if type_ not in EVENT_CLASSES]
        if unknown:
            known = ", ".join(EVENT_CLASSES)
            raise InvalidAuditFilter("type", f"unknown event type {unknown[0]!r} (one of {known})")
        if self.since and self.until and self.since >= self.until:
            raise InvalidAuditFilter("until", "must be later than since")
        if self.job_id_prefix == "":
            raise InvalidAuditFilter("job_id_prefix", "must not be empty")

    def branches(self) -> list[tuple[str | None, JobStatus | None]]:
        """What the filter reads, each in time order on an index of its own: (event type,
        registered status), None for any; a registration in a status the filter asks for
        is read on the index of registrations by status."""
        if not self.types and not self.statuses and not self._one_actors_in_time_order():
            return [(None, None)]
        # One actor's events of every type: each type's read in time order on the index by
        # actor and type, merged (the log's CHECK `known_type` holds every type there is
        # to `EVENT_CLASSES`).
        chosen = dict.fromkeys(self.types or EVENT_CLASSES)
        if not self.statuses:
            return [(type_, None) for type_ in chosen]
        wanted = set(self.statuses)
        branches: list[tuple[str | None, JobStatus | None]] = []
        for type_ in chosen:
            if type_ == JobRegistered.TYPE:
                registered = wanted & REGISTERED_STATUSES
                branches += [(type_, status) for status in JobStatus if status in registered]
            elif EVENT_TARGET_STATUS[type_] in wanted:
                branches.append((type_, None))
        return branches

    def _one_actors_in_time_order(self) -> bool:
        """One actor's events on the database's clock, not narrowed to jobs: those the
        index by actor and type holds in order, a type at a time."""
        return (
            self.actor is not None
            and self.clock is Clock.RECORDED
            and self.job_id is None
            and self.job_id_prefix is None
        )


@dataclass(frozen=True, slots=True)
class AuditCursor:
    """Where a page ended: the clock and place of its last event. Opaque to clients."""

    clock: Clock
    at: datetime
    position: int

    def __str__(self) -> str:
        micros = (self.at - EPOCH) // MICROSECOND
        text = f"{_CLOCK_LETTER[self.clock]}{micros}.{self.position}"
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def parse(cls, text: str, clock: Clock) -> "AuditCursor":
        """The cursor a page of a question on `clock` returned; `InvalidAuditFilter` for
        any other text."""
        try:
            decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            letter, (micros, position) = decoded[:1], decoded[1:].split(".")
            if _CLOCK_LETTER[clock] != letter:
                raise ValueError("a cursor of the other clock")
            at = EPOCH + int(micros) * MICROSECOND
            cursor = cls(clock, at, int(position))
        except (ValueError, binascii.Error, OverflowError, UnicodeDecodeError):
            raise InvalidAuditFilter("cursor", "not a cursor this question returned") from None
        if not 0 <= cursor.position < 2**63:
            raise InvalidAuditFilter("cursor", "not a cursor this question returned")
        return cursor

    @classmethod
    def after(cls, event: RecordedEvent, clock: Clock) -> "AuditCursor":
        at = event.recorded_at if clock is Clock.RECORDED else event.occurred_at
        assert at is not None and event.position is not None, "an event read on its clock"
        return cls(clock, at, event.position)


_CLOCK_LETTER = {Clock.RECORDED: "r", Clock.OCCURRED: "o"}


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """An event as the audit log shows it: a registration's spec left out (its size
    instead), with the status the event moved its job to."""

    event: RecordedEvent
    status: JobStatus | None
    spec_bytes: int | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    events: list[AuditEvent]
    next_cursor: AuditCursor | None  # None on the last page


def audit_events_query(question: AuditFilter, *, after_cursor: bool) -> str:
    """One page of `question` in (clock, position) order: a branch per type it reads,
    each an ordered read of its own index, merged."""
    clock = f"e.{question.clock.value}"
    common = _common_conditions(question, clock, after_cursor)
    selects = []
    for type_, registered in question.branches():
        where = list(common)
        if type_ is not None:
            where.append(f"e.type = '{type_}'")  # a known type: checked by AuditFilter
        if registered is not None:
            where.append(f"e.seq = 1 AND (e.payload->>'initial_status') = '{registered.value}'")
        selects.append(
            f"SELECT {EVENT_SELECT_WITHOUT_SPECS} FROM job_events e "
            f"WHERE {' AND '.join(where)} ORDER BY {clock}, e.position LIMIT %(limit)s"
        )
    if not selects:
        return "SELECT NULL WHERE FALSE"
    if len(selects) == 1:
        return selects[0]
    merged = " UNION ALL ".join(f"({select})" for select in selects)
    order = f"chosen.{question.clock.value}, chosen.position"
    return f"SELECT * FROM ({merged}) AS chosen ORDER BY {order} LIMIT %(limit)s"


def _common_conditions(question: AuditFilter, clock: str, after_cursor: bool) -> list[str]:
    where = ["TRUE"]
    if question.clock is Clock.OCCURRED:
        where.append(f"{clock} IS NOT NULL")
    if question.actor is not None:
        where.append("e.actor = %(actor)s")
    if question.not_actors:
        where.append("e.actor <> ALL(%(not_actors)s)")
    if question.job_id is not None:
        where.append("e.job_id = %(job_id)s")
    if question.job_id_prefix is not None:
        # ids in bytewise order (collation C): those starting with the prefix are a range
        where.append("e.job_id >= %(prefix)s")
        if _after_prefix(question.job_id_prefix) is not None:
            where.append("e.job_id < %(after_prefix)s")
    if question.since is not None:
        where.append(f"{clock} >= %(since)s")
    if question.until is not None:
        where.append(f"{clock} < %(until)s")
    if after_cursor:
        where.append(f"({clock}, e.position) > (%(after_at)s, %(after_position)s)")
    return where


def _after_prefix(prefix: str) -> str | None:
    """The first text after every text that starts with `prefix`, in code point order (the
    order of UTF-8 bytes); None when there is none."""
    stem = prefix.rstrip(chr(0x10FFFF))
    if not stem:
        return None
    following = ord(stem[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are no characters of stored text
        following = 0xE000
    return stem[:-1] + chr(following)


def _params(question: AuditFilter, after: AuditCursor | None, limit: int) -> dict[str, Any]:
    prefix = question.job_id_prefix
    return {
        "actor": question.actor,
        "not_actors": list(question.not_actors),
        "job_id": question.job_id,
        "prefix": prefix,
        "after_prefix": _after_prefix(prefix) if prefix else None,
        "since": question.since,
        "until": question.until,
        "after_at": after.at if after else None,
        "after_position": after.position if after else None,
        "limit": limit,
    }


class AuditLog:
    """Reads the log's events across jobs, for auditors."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def page(
        self, question: AuditFilter, after: AuditCursor | None = None, limit: int = 100
    ) -> AuditPage:
        """The first `limit` events of `question` after `after`, and the cursor after the
        last of them when more may follow."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidAuditFilter("limit", f"must be from 1 to {MAX_PAGE}")
        query = audit_events_query(question, after_cursor=after is not None)
        with self.store.connection() as conn:
            rows = conn.execute(query, _params(question, after, limit + 1)).fetchall()
            events = [_audit_event(row) for row in rows[:limit]]
            found = unreadable_in(shown.event for shown in events)
            if found:
                note_unreadable(conn, found)
        more = len(rows) > limit
        last = AuditCursor.after(events[-1].event, question.clock) if more else None
        return AuditPage(events, last)

    def batches(
        self, question: AuditFilter, after: AuditCursor | None = None, batch: int = EXPORT_BATCH
    ) -> Iterator[list[AuditEvent]]:
        """Every event of `question` after `after`, `batch` at a time, each batch read by a
        statement of its own: memory stays that of one batch, and no connection or
        transaction is held between batches, however slowly they are consumed."""
        cursor = after
        while True:
            page = self.page(question, cursor, batch)
            if page.events:
                yield page.events
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


def _audit_event(row: Sequence[Any]) -> AuditEvent:
    event = event_from_row(row[:-1])
    return AuditEvent(event, status_reached(event), row[-1])
