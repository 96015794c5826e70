"""Reading and writing `job_status` rows in bulk, for the catch-up, the rebuild and verify."""

from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ledger.schema import JOB_STATUS_COLUMNS
from ledger.state import JobState
from ledger.statuses import JobStatus

COLUMN_LIST = ", ".join(JOB_STATUS_COLUMNS)
_SPEC = JOB_STATUS_COLUMNS.index("spec")
_RESULT = JOB_STATUS_COLUMNS.index("result")


def stream_stored_states(
    conn: psycopg.Connection[Any], table: str = "job_status"
) -> Iterator[JobState]:
    """The stored rows in job_id order, through a server-side cursor."""
    with conn.cursor(name="jobledger_stored") as cursor:
        cursor.itersize = 10_000
        cursor.execute(f"SELECT {COLUMN_LIST} FROM {table} ORDER BY job_id")
        while rows := cursor.fetchmany(10_000):
            for row in rows:
                state = JobState._make(row)
                yield state._replace(status=JobStatus(state.status))


def load_states(
    conn: psycopg.Connection[Any], job_ids: list[str], table: str = "job_status"
) -> dict[str, JobState]:
    rows = conn.execute(
        f"SELECT {COLUMN_LIST} FROM {table} WHERE job_id = ANY(%s) FOR UPDATE", (job_ids,)
    ).fetchall()
    states = (JobState._make(row) for row in rows)
    return {state.job_id: state._replace(status=JobStatus(state.status)) for state in states}


def upsert_states(conn: psycopg.Connection[Any], states: list[JobState], table: str) -> None:
    placeholders = ", ".join(["%s"] * len(JOB_STATUS_COLUMNS))
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in JOB_STATUS_COLUMNS[1:])
    with conn.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({COLUMN_LIST}) VALUES ({placeholders}) "
            f"ON CONFLICT (job_id) DO UPDATE SET {updates}",
            [_adapted(state) for state in states],
        )


def _adapted(state: JobState) -> list[Any]:
    row: list[Any] = list(state)
    if row[_SPEC] is not None:
        row[_SPEC] = Jsonb(row[_SPEC])
    if row[_RESULT] is not None:
        row[_RESULT] = Jsonb(row[_RESULT])
    return row
