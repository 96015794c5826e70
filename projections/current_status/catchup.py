"""Start-up: bring each projection up to the end of the log before serving."""

import logging
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import psycopg
from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.events import RecordedEvent
from ledger.evolve import EventOutOfOrder, evolve
from ledger.state import JobState
from ledger.store import EventStore
from projections import current_status
from projections.checkpoints import read_checkpoint, write_checkpoint
from projections.current_status import bulk
from projections.current_status.rebuild import rebuild_current_status

log = logging.getLogger(__name__)

BATCH_SIZE = 5_000


@dataclass(frozen=True, slots=True)
class CatchUpReport:
    events_read: int
    jobs_repaired: int
    rebuilt: bool


def catch_up_current_status(engine: Engine) -> CatchUpReport:
    """Read the feed from the projection's checkpoint and apply what it lacks.

    A projection without a checkpoint, or built by another version of the
    code, is rebuilt from scratch instead.
    """
    with driver_connection(engine) as conn:
        checkpoint = read_checkpoint(conn, current_status.NAME)
    if not current_status.built_by_this_code(checkpoint):
        found = "none" if checkpoint is None else f"version {checkpoint.version}"
        log.info(
            "rebuilding %s: checkpoint %s, code version %d",
            current_status.NAME,
            found,
            current_status.VERSION,
        )
        report = rebuild_current_status(engine)
        return CatchUpReport(report.events, report.jobs, rebuilt=True)
    store = EventStore(engine)
    cursor = checkpoint.cursor
    events_read = repaired = 0
    while True:
        page = store.read_feed(cursor, BATCH_SIZE)
        if not page.events:
            break
        events_read += len(page.events)
        try:
            with driver_connection(engine) as conn, conn.transaction():
                repaired += _apply(conn, page.events)
                write_checkpoint(conn, current_status.checkpoint_at(page.next_cursor))
        except EventOutOfOrder as gap:
            # A row is missing or behind by more than the feed holds: the projection
            # drifted beyond repair by catching up. Replay everything instead.
            log.warning("rebuilding %s: %s", current_status.NAME, gap)
            report = rebuild_current_status(engine)
            return CatchUpReport(events_read + report.events, report.jobs, rebuilt=True)
        cursor = page.next_cursor
    return CatchUpReport(events_read, repaired, rebuilt=False)


def _apply(conn: psycopg.Connection[Any], events: list[RecordedEvent]) -> int:
    """Apply the events each stored row lacks; return how many rows changed."""
    ordered = sorted(events, key=lambda event: (event.job_id, event.seq))
    by_job = {job_id: list(group) for job_id, group in groupby(ordered, key=lambda e: e.job_id)}
    stored = bulk.load_states(conn, list(by_job))
    changed: list[JobState] = []
    for job_id, job_events in by_job.items():
        state = stored.get(job_id)
        before = state
        for event in job_events:
            if state is None or event.seq > state.version:
                state = evolve(state, event)
        if state is not None and state != before:
            changed.append(state)
    if changed:
        bulk.upsert_states(conn, changed, "job_status")
    return len(changed)
