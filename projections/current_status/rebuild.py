"""`projections rebuild`: fold the whole log into a new table and swap it in atomically."""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.queries import EVENT_SELECT
from ledger.state import JobState
from ledger.store import FeedCursor, event_from_row, feed_horizon
from ledger.unreadable import Unreadable, note_unreadable
from projections import current_status
from projections.checkpoints import write_checkpoint
from projections.current_status import bulk
from projections.current_status.fold_in_database import fold_log_into
from projections.current_status.replay import fold_states, stream_event_rows

log = logging.getLogger(__name__)

PYTHON_FOLD_BATCH = 5_000

LATE_EVENTS = f"SELECT {EVENT_SELECT} FROM job_events e WHERE e.tx_id >= %(xmin)s::xid8"
"""The events of transactions that had not ended when the fold's snapshot was taken."""

STAGING_TABLE = "job_status_rebuild"
"""A temporary table of the rebuilding session: it needs no CREATE privilege."""


@dataclass(frozen=True, slots=True)
class RebuildReport:
    events: int
    jobs: int
    late_events: int
    """Events committed while the replay ran, applied under the swap's lock."""
    seconds: float


def rebuild_current_status(engine: Engine) -> RebuildReport:
    """Fold every event into a staging table, then swap it in for `job_status`.

    Readers see the old table until the swap commits, then the new one; never
    a half-built projection. Writers wait only for the swap itself.
    """
    started = time.perf_counter()
    with driver_connection(engine) as conn:
        try:
            snapshot_xmin, events, jobs = _fold_into_staging(conn, engine)
            late = _swap_in(conn, snapshot_xmin)
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {STAGING_TABLE}")
    return RebuildReport(events + late, jobs, late, time.perf_counter() - started)


def _fold_into_staging(conn: psycopg.Connection[Any], engine: Engine) -> tuple[int, int, int]:
    """Fold the log into a fresh staging table; return (snapshot xmin, events, jobs).

    Every transaction below the snapshot's xmin has ended, so the fold sees all
    of their events; the later ones are applied under the swap's lock.
    """
    snapshot_xmin = feed_horizon(conn)
    _create_staging_table(conn)
    try:
        events, jobs = fold_log_into(conn, STAGING_TABLE, snapshot_xmin)
    except (psycopg.DataError, psycopg.IntegrityError) as refused:
        # A row the fold cannot read (a payload written by hand) or a row it folds that
        # the table refuses: fold in Python instead, which notes and steps over each.
        log.warning("folding the log in Python: the in-database fold stopped: %s", refused)
        _create_staging_table(conn)
        events, jobs = _fold_in_python(conn, engine, snapshot_xmin)
    return snapshot_xmin, events, jobs


def _fold_in_python(
    conn: psycopg.Connection[Any], engine: Engine, snapshot_xmin: int
) -> tuple[int, int]:
    """`evolve` every job's events below `snapshot_xmin` into the staging table (on `conn`,
    whose session holds it), reading them on a connection of their own."""
    unreadable: list[Unreadable] = []
    with driver_connection(engine) as reading, reading.transaction(), conn.transaction():
        where = "tx_id < %(xmin)s::xid8"
        batch: list[JobState] = []
        for state in fold_states(
            stream_event_rows(reading, where, {"xmin": str(snapshot_xmin)}), unreadable
        ):
            batch.append(state)
            if len(batch) == PYTHON_FOLD_BATCH:
                bulk.write_refusing(conn, batch, STAGING_TABLE, bulk.insert_states)
                batch = []
        bulk.write_refusing(conn, batch, STAGING_TABLE, bulk.insert_states)
        note_unreadable(conn, unreadable)
        row = conn.execute(f"SELECT coalesce(sum(version), 0), count(*) FROM {STAGING_TABLE}")
        events, jobs = row.fetchone() or (0, 0)
    return int(events), int(jobs)


def _create_staging_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {STAGING_TABLE}")
    conn.execute(
        f"CREATE TEMP TABLE {STAGING_TABLE} "
        "(LIKE job_status INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )


def _swap_in(conn: psycopg.Connection[Any], snapshot_xmin: int) -> int:
    """Apply the events that committed during the replay, then replace `job_status` in one go."""
    with conn.transaction():
        conn.execute("LOCK TABLE job_status IN ACCESS EXCLUSIVE MODE")
        late_events = [
            event_from_row(row)
            for row in conn.execute(LATE_EVENTS, {"xmin": str(snapshot_xmin)}).fetchall()
        ]
        if late_events:
            conn.execute(f"ALTER TABLE {STAGING_TABLE} ADD PRIMARY KEY (job_id)")
            bulk.apply_events(conn, late_events, STAGING_TABLE)
        conn.execute("TRUNCATE job_status")
        with _secondary_indexes_built_after(conn):
            conn.execute(f"INSERT INTO job_status SELECT * FROM {STAGING_TABLE}")
        # Everything below this id is in the new table; catch-up re-reads the rest and
        # skips what it already holds.
        cursor = FeedCursor(feed_horizon(conn), 0)
        write_checkpoint(conn, current_status.checkpoint_at(cursor))
    return len(late_events)


@contextmanager
def _secondary_indexes_built_after(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Drop `job_status`'s secondary indexes, and build them again from their own
    definitions once the block has filled the table: a sorted build of each index
    beats inserting every row into all of them. Inside the swap's transaction."""
    definitions = conn.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = 'job_status'::regclass AND NOT indisprimary"
    ).fetchall()
    for name, _ in definitions:
        conn.execute(f"DROP INDEX {name}")
    yield
    for _, definition in definitions:
        conn.execute(definition)
