"""Start-up: bring each projection up to the end of the log before serving."""

import logging
from dataclasses import dataclass

from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.evolve import EventOutOfOrder
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
                repaired += bulk.apply_events(conn, page.events)
                write_checkpoint(conn, current_status.checkpoint_at(page.next_cursor))
        except EventOutOfOrder as gap:
            # A row is missing or behind by more than the feed holds: the projection
            # drifted beyond repair by catching up. Replay everything instead.
            log.warning("rebuilding %s: %s", current_status.NAME, gap)
            report = rebuild_current_status(engine)
            return CatchUpReport(events_read + report.events, report.jobs, rebuilt=True)
        cursor = page.next_cursor
    return CatchUpReport(events_read, repaired, rebuilt=False)
