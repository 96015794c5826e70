"""The register of events the reading side could not read or apply.

An unreadable event (see `ledger.events.UnreadableEvent`) stays in the log and in
the feed. The first reader to meet one logs it and records it here, so the health
view, `/metrics` and `projections verify` can say how many there are and where.
"""

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from ledger.events import RecordedEvent, UnreadableEvent

log = logging.getLogger("jobledger.unreadable")

RECORD = """
    INSERT INTO unreadable_events (job_id, seq, type, problem)
    SELECT * FROM unnest(%(job_ids)s::text[], %(seqs)s::int[], %(types)s::text[],
                         %(problems)s::text[])
    ON CONFLICT (job_id, seq) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Where an unreadable event is, and why it could not be read or applied."""

    job_id: str
    seq: int
    type: str
    problem: str

    def describe(self) -> str:
        return f"{self.job_id} seq {self.seq} ({self.type}): {self.problem}"


def unreadable_in(events: Iterable[RecordedEvent]) -> list[Unreadable]:
    return [
        Unreadable(event.job_id, event.seq, event.data.TYPE, event.data.problem)
        for event in events
        if isinstance(event.data, UnreadableEvent)
    ]


class _Noted:
    """The events this process has already logged and recorded: each is noted once."""

    LIMIT = 10_000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: set[tuple[str, str, int]] = set()

    def new(self, database: str, found: list[Unreadable]) -> list[Unreadable]:
        with self.lock:
            fresh = [item for item in found if (database, item.job_id, item.seq) not in self.seen]
            if len(self.seen) + len(fresh) > self.LIMIT:
                self.seen.clear()
            self.seen.update((database, item.job_id, item.seq) for item in fresh)
        return fresh


_noted = _Noted()


def note_unreadable(conn: psycopg.Connection[Any], found: list[Unreadable]) -> None:
    """Log and record `found` (the events already noted by this process are skipped)."""
    info = conn.info
    fresh = _noted.new(f"{info.host}:{info.port}/{info.dbname}", found)
    if not fresh:
        return
    for item in fresh:
        log.warning("unreadable event: %s", item.describe())
    params = {
        "job_ids": [item.job_id for item in fresh],
        "seqs": [item.seq for item in fresh],
        "types": [item.type for item in fresh],
        "problems": [item.problem for item in fresh],
    }
    try:
        with conn.transaction():
            conn.execute(RECORD, params)
    except psycopg.Error as exc:  # the register is a report: never fail the read for it
        log.warning("could not record unreadable events: %s", exc)
