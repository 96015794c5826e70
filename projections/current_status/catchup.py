"""Start-up: bring each projection up to the end of the log before serving."""

import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.evolve import EventOutOfOrder
from ledger.store import EventStore, FeedCursor
from projections import current_status
from projections.checkpoints import read_checkpoint, write_checkpoint
from projections.current_status import bulk
from projections.current_status.lag import LAG_SCAN
from projections.current_status.rebuild import rebuild_current_status

log = logging.getLogger(__name__)

BATCH_SIZE = 5_000
CATCH_UP_LOCK_KEY = 0x4A4C_4341_5443_4855  # "JLCATCHU"
"""The advisory lock a catch-up holds: replicas starting together catch up one after the
other, and each after the first finds the projection current."""


@dataclass(frozen=True, slots=True)
class CatchUpReport:
    events_read: int
    jobs_repaired: int
    rebuilt: bool


def catch_up_current_status(engine: Engine) -> CatchUpReport:
    """Read the feed from the projection's checkpoint and apply what it lacks.

    A projection without a checkpoint, or built by another version of the
    code, is rebuilt from scratch instead. One process catches up at a time.
    """
    with driver_connection(engine) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (CATCH_UP_LOCK_KEY,))
        try:
            return _catch_up(engine)
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s)", (CATCH_UP_LOCK_KEY,))


def _catch_up(engine: Engine) -> CatchUpReport:
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
    progress = _Progress()
    try:
        _apply_feed(engine, checkpoint.cursor, progress, BATCH_SIZE)
    except EventOutOfOrder as gap:
        # A row is missing or behind by more than the feed holds: the projection
        # drifted beyond repair by catching up. Replay everything instead.
        log.warning("rebuilding %s: %s", current_status.NAME, gap)
        report = rebuild_current_status(engine)
        return CatchUpReport(progress.events_read + report.events, report.jobs, rebuilt=True)
    return CatchUpReport(progress.events_read, progress.repaired, rebuilt=False)


def follow_log(engine: Engine) -> CatchUpReport:
    """While serving: apply what the projection's rows lack of the events after its
    checkpoint (the inline projection has applied them all, unless the log was written
    some other way) and move the checkpoint past them, a page of `LAG_SCAN` events at a
    time, so the lag is read from a few events. It never rebuilds: a projection built by
    another version of the code is left to that code, and one that drifted beyond repair
    to `jobledger projections rebuild` (the lag gauge shows it)."""
    with driver_connection(engine) as conn:
        checkpoint = read_checkpoint(conn, current_status.NAME)
    if not current_status.built_by_this_code(checkpoint):
        return CatchUpReport(0, 0, rebuilt=False)
    progress = _Progress()
    try:
        _apply_feed(engine, checkpoint.cursor, progress, LAG_SCAN)
    except EventOutOfOrder as gap:
        log.warning("%s cannot catch up: %s", current_status.NAME, gap)
    return CatchUpReport(progress.events_read, progress.repaired, rebuilt=False)


@dataclass(slots=True)
class _Progress:
    events_read: int = 0
    repaired: int = 0


def _apply_feed(engine: Engine, cursor: FeedCursor, progress: _Progress, page_size: int) -> None:
    """Apply the feed after `cursor` a page at a time, each page with its checkpoint in
    one transaction, locking only the rows that lack an event; raises `EventOutOfOrder`
    where a page cannot be applied."""
    store = EventStore(engine)
    while True:
        page = store.read_feed(cursor, page_size)
        if not page.events:
            return
        progress.events_read += len(page.events)
        with driver_connection(engine) as conn, conn.transaction():
            lacking = bulk.lacking_events(conn, page.events)
            if lacking:
                progress.repaired += bulk.apply_events(conn, lacking)
            write_checkpoint(conn, current_status.checkpoint_at(page.next_cursor))
        cursor = page.next_cursor
