"""Reading and writing `job_status` rows in bulk, for the catch-up, the rebuild and verify."""

from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ledger.events import RecordedEvent
from ledger.evolve import UnreadableRegistration, evolve
from ledger.schema import JOB_STATUS_COLUMNS
from ledger.state import JobState
from ledger.store import state_from_row
from ledger.unreadable import Unreadable, note_unreadable

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
                yield state_from_row(row)


def load_states(
    conn: psycopg.Connection[Any], job_ids: list[str], table: str = "job_status"
) -> dict[str, JobState]:
    rows = conn.execute(
        f"SELECT {COLUMN_LIST} FROM {table} WHERE job_id = ANY(%s) FOR UPDATE", (job_ids,)
    ).fetchall()
    states = (state_from_row(row) for row in rows)
    return {state.job_id: state for state in states}


_PLACEHOLDERS = ", ".join(["%s"] * len(JOB_STATUS_COLUMNS))
_UPDATES = ", ".join(f"{column} = EXCLUDED.{column}" for column in JOB_STATUS_COLUMNS[1:])


def upsert_states(conn: psycopg.Connection[Any], states: list[JobState], table: str) -> None:
    _write(conn, states, table, f"ON CONFLICT (job_id) DO UPDATE SET {_UPDATES}")


def insert_states(conn: psycopg.Connection[Any], states: list[JobState], table: str) -> None:
    _write(conn, states, table, "")


def _write(conn: psycopg.Connection[Any], states: list[JobState], table: str, tail: str) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({COLUMN_LIST}) VALUES ({_PLACEHOLDERS}) {tail}",
            [_adapted(state) for state in states],
        )


Writer = Callable[[psycopg.Connection[Any], list[JobState], str], None]


def write_refusing(
    conn: psycopg.Connection[Any], states: list[JobState], table: str, write: Writer
) -> list[Unreadable]:
    """`write` the states, inside the caller's transaction; a state the table's
    constraints refuse (events written by hand can lead to one no command would) is
    left out, noted and returned, and the others are written. The rows of a refused
    job stay as they were."""
    try:
        with conn.transaction():
            write(conn, states, table)
        return []
    except (psycopg.IntegrityError, psycopg.DataError):
        pass
    refused = []
    for state in states:
        try:
            with conn.transaction():
                write(conn, [state], table)
        except (psycopg.IntegrityError, psycopg.DataError) as exc:
            problem = f"the state its events lead to is refused: {exc.diag.message_primary}"
            refused.append(Unreadable(state.job_id, state.version, "job_status", problem))
    note_unreadable(conn, refused)
    return refused


def _adapted(state: JobState) -> list[Any]:
    row: list[Any] = list(state)
    if row[_SPEC] is not None:
        row[_SPEC] = Jsonb(row[_SPEC])
    if row[_RESULT] is not None:
        row[_RESULT] = Jsonb(row[_RESULT])
    return row


def lacking_events(
    conn: psycopg.Connection[Any], events: list[RecordedEvent], table: str = "job_status"
) -> list[RecordedEvent]:
    """The events whose job's row has not reached them, read without locking any row (a
    row only moves forward): applying only these leaves the rows that are current free
    for the commands and claims of the moment."""
    job_ids = list({event.job_id for event in events})
    rows = conn.execute(
        f"SELECT job_id, version FROM {table} WHERE job_id = ANY(%s)", (job_ids,)
    ).fetchall()
    versions: dict[str, int] = dict(rows)
    return [event for event in events if event.seq > versions.get(event.job_id, 0)]


def apply_events(
    conn: psycopg.Connection[Any], events: Iterable[RecordedEvent], table: str = "job_status"
) -> int:
    """Apply to `table` the events its rows lack (those after each row's version), locking
    the rows first; return how many rows changed. Raises `EventOutOfOrder` when an event
    does not follow its row: the table drifted beyond what applying events can repair."""
    ordered = sorted(events, key=lambda event: (event.job_id, event.seq))
    by_job = {job_id: list(group) for job_id, group in groupby(ordered, key=lambda e: e.job_id)}
    stored = load_states(conn, list(by_job), table)
    changed: list[JobState] = []
    for job_id, job_events in by_job.items():
        before = state = stored.get(job_id)
        for event in job_events:
            if state is None or event.seq > state.version:
                try:
                    state = evolve(state, event)
                except UnreadableRegistration:
                    break  # no job to apply the rest to: the feed reader noted the event
        if state is not None and state != before:
            changed.append(state)
    if changed:
        refused = write_refusing(conn, changed, table, upsert_states)
        return len(changed) - len(refused)
    return 0
