"""`projections rebuild`: replay the whole log into a new table and swap it in atomically."""

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import psycopg
from sqlalchemy import Engine
from tqdm import tqdm

from ledger.database import driver_connection
from ledger.store import FeedCursor
from projections import current_status
from projections.checkpoints import Checkpoint, oldest_running_xid, write_checkpoint
from projections.replay import (
    EVENT_ROW_COLUMNS,
    EventRow,
    apply_rows,
    fold_states,
    stream_event_rows,
)

STAGING_TABLE = "job_status_rebuild"
"""A temporary table of the rebuilding session: it needs no CREATE privilege."""


@dataclass(frozen=True, slots=True)
class RebuildReport:
    events: int
    jobs: int
    late_events: int
    """Events committed while the replay ran, applied under the swap's lock."""
    seconds: float


def rebuild_current_status(engine: Engine, *, progress: bool = False) -> RebuildReport:
    """Replay every event into a staging table, then swap it in for `job_status`.

    Readers see the old table until the swap commits, then the new one; never
    a half-built projection. Writers wait only for the swap itself.
    """
    started = time.perf_counter()
    with driver_connection(engine) as reader, driver_connection(engine) as writer:
        try:
            snapshot_xmin, events, jobs = _replay_into_staging(reader, writer, progress)
            late = _swap_in(writer, snapshot_xmin)
        finally:
            writer.execute(f"DROP TABLE IF EXISTS {STAGING_TABLE}")
    return RebuildReport(events + late, jobs, late, time.perf_counter() - started)


def _replay_into_staging(
    reader: psycopg.Connection[Any], writer: psycopg.Connection[Any], progress: bool
) -> tuple[int, int, int]:
    """Fold every event committed before the snapshot into the staging table.

    Returns the snapshot's xmin, the events read and the jobs written.
    """
    with reader.transaction():
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot_xmin = oldest_running_xid(reader)
        total = _estimated_event_count(reader) if progress else None
        _create_staging_table(writer)
        where = "tx_id < CAST(%(xmin)s AS xid8)"
        counted = _Counter(stream_event_rows(reader, where, {"xmin": str(snapshot_xmin)}), total)
        with writer.transaction():
            jobs = current_status.write_states(writer, STAGING_TABLE, fold_states(counted))
    return snapshot_xmin, counted.count, jobs


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
        conn.execute(f"INSERT INTO job_status SELECT * FROM {STAGING_TABLE}")
        # Everything below this id is in the new table; catch-up re-reads the rest and
        # skips what it already holds.
        cursor = FeedCursor(oldest_running_xid(conn), 0)
        write_checkpoint(conn, Checkpoint(current_status.NAME, current_status.VERSION, cursor))
    return len(late_rows)


def _apply_late_rows(conn: psycopg.Connection[Any], rows: list[EventRow]) -> None:
    if not rows:
        return
    conn.execute(f"ALTER TABLE {STAGING_TABLE} ADD PRIMARY KEY (job_id)")
    by_job = {job_id: list(group) for job_id, group in groupby(rows, key=lambda row: row[0])}
    stored = current_status.load_states(conn, list(by_job), STAGING_TABLE)
    changed = [apply_rows(stored.get(job_id), job_rows) for job_id, job_rows in by_job.items()]
    current_status.upsert_states(conn, [state for state in changed if state], STAGING_TABLE)


def _estimated_event_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT reltuples::bigint FROM pg_class WHERE relname = 'job_events'"
    ).fetchone()
    return max(int(row[0]), 0) if row else 0


class _Counter:
    """Counts rows as they stream by, drawing a progress bar when given a total."""

    def __init__(self, rows: Iterable[EventRow], total: int | None) -> None:
        self.rows = rows
        self.total = total
        self.count = 0

    def __iter__(self) -> Iterator[EventRow]:
        bar = tqdm(total=self.total or None, unit="ev", unit_scale=True, disable=self.total is None)
        with bar:
            for row in self.rows:
                self.count += 1
                if self.count % 10_000 == 0:
                    bar.update(10_000)
                yield row
            bar.update(self.count % 10_000)
