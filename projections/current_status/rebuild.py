"""`projections rebuild`: fold the whole log into a new table and swap it in atomically."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import psycopg
from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.store import FeedCursor, feed_horizon
from projections import current_status
from projections.checkpoints import write_checkpoint
from projections.current_status import bulk
from projections.current_status.fold_in_database import fold_log_into
from projections.current_status.replay import EVENT_ROW_COLUMNS, EventRow, apply_rows

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
            snapshot_xmin, events, jobs = _fold_into_staging(conn)
            late = _swap_in(conn, snapshot_xmin)
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {STAGING_TABLE}")
    return RebuildReport(events + late, jobs, late, time.perf_counter() - started)


def _fold_into_staging(conn: psycopg.Connection[Any]) -> tuple[int, int, int]:
    """Fold the log into a fresh staging table; return (snapshot xmin, events, jobs).

    Every transaction below the snapshot's xmin has ended, so the fold sees all
    of their events; the later ones are applied under the swap's lock.
    """
    snapshot_xmin = feed_horizon(conn)
    _create_staging_table(conn)
    events, jobs = fold_log_into(conn, STAGING_TABLE, snapshot_xmin)
    return snapshot_xmin, events, jobs


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
        late_rows = conn.execute(
            f"SELECT {EVENT_ROW_COLUMNS} FROM job_events "
            "WHERE tx_id >= CAST(%s AS xid8) ORDER BY job_id, seq",
            (str(snapshot_xmin),),
        ).fetchall()
        _apply_late_rows(conn, late_rows)
        conn.execute("TRUNCATE job_status")
        with _secondary_indexes_built_after(conn):
            conn.execute(f"INSERT INTO job_status SELECT * FROM {STAGING_TABLE}")
        # Everything below this id is in the new table; catch-up re-reads the rest and
        # skips what it already holds.
        cursor = FeedCursor(feed_horizon(conn), 0)
        write_checkpoint(conn, current_status.checkpoint_at(cursor))
    return len(late_rows)


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


def _apply_late_rows(conn: psycopg.Connection[Any], rows: list[EventRow]) -> None:
    if not rows:
        return
    conn.execute(f"ALTER TABLE {STAGING_TABLE} ADD PRIMARY KEY (job_id)")
    by_job = {job_id: list(group) for job_id, group in groupby(rows, key=lambda row: row[0])}
    stored = bulk.load_states(conn, list(by_job), STAGING_TABLE)
    changed = [apply_rows(stored.get(job_id), job_rows) for job_id, job_rows in by_job.items()]
    bulk.upsert_states(conn, [state for state in changed if state], STAGING_TABLE)
