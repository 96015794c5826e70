"""Replaying the log: stream every job's events from PostgreSQL and fold them with `evolve`."""

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

from ledger.events import RecordedEvent, read_event
from ledger.evolve import UnreadableRegistration, evolve
from ledger.state import JobState
from ledger.unreadable import Unreadable, unreadable_in

JOBS_PER_BATCH = 2_000

EventRow = tuple[str, int, str, dict[str, Any], str | None, int, datetime]
"""job_id, seq, type, payload, reason, attempt, recorded_at"""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

JOB_HISTORIES = """
    SELECT job_id,
           json_agg(
               json_build_array(
                   seq, type, payload, reason, attempt,
                   (extract(epoch FROM recorded_at) * 1000000)::bigint
               ) ORDER BY seq
           )::text
    FROM job_events WHERE {where}
    GROUP BY job_id ORDER BY job_id
"""
"""One row per job holding its whole history as JSON: a replay pays the driver's
per-row cost once per job, not once per event, and orjson parses the rest.
Times travel as exact integer microseconds."""


def stream_event_rows(
    conn: psycopg.Connection[Any], where: str = "TRUE", params: dict[str, Any] | None = None
) -> Iterator[EventRow]:
    """Events in (job_id, seq) order through a server-side cursor, a batch of jobs at a time.

    Call inside a transaction: the cursor lives as long as it does.
    """
    with _Prefetcher(conn, JOB_HISTORIES.format(where=where), params or {}) as batches:
        for rows in batches:
            for job_id, history in rows:
                for seq, type_, payload, reason, attempt, micros in orjson.loads(history):
                    recorded_at = EPOCH + timedelta(microseconds=micros)
                    yield job_id, seq, type_, payload, reason, attempt, recorded_at


class _Prefetcher:
    """Fetches the next batch on a thread of its own while the caller folds this one.

    The server builds a batch while Python folds the previous: the two run on
    different cores instead of taking turns. Only the thread touches the
    connection until it is done.
    """

    def __init__(self, conn: psycopg.Connection[Any], query: str, params: dict[str, Any]):
        self.conn = conn
        self.query = query
        self.params = params
        self.batches: queue.Queue[list[Any] | BaseException | None] = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._fetch, name="jobledger-replay", daemon=True)

    def __enter__(self) -> Iterator[list[Any]]:
        self.thread.start()
        return self._drain()

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self.batches.get(timeout=0.1)  # unblock a thread waiting to put
        self.thread.join()

    def _drain(self) -> Iterator[list[Any]]:
        while True:
            item = self.batches.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _fetch(self) -> None:
        try:
            with self.conn.cursor(name="jobledger_replay") as cursor:
                cursor.itersize = JOBS_PER_BATCH
                cursor.execute(self.query, self.params)
                while not self.stop.is_set() and (rows := cursor.fetchmany(JOBS_PER_BATCH)):
                    self._put(rows)
            self._put(None)
        except BaseException as exc:  # handed to the consuming thread
            self._put(exc)

    def _put(self, item: list[Any] | BaseException | None) -> None:
        while not self.stop.is_set():
            try:
                self.batches.put(item, timeout=0.1)
                return
            except queue.Full:
                continue


def fold_states(
    rows: Iterable[EventRow], unreadable: list[Unreadable] | None = None
) -> Iterator[JobState]:
    """Fold rows sorted by (job_id, seq) into each job's final state, one job at a time.

    An event this code cannot read moves its job's version only; a job whose first
    event cannot be read has no state. Each is appended to `unreadable` when given.
    """
    state: JobState | None = None
    skipped: str | None = None  # a job whose registration cannot be read
    for job_id, seq, type_, payload, reason, attempt, recorded_at in rows:
        if state is not None and state.job_id != job_id:
            yield state
            state = None
        if job_id == skipped:
            continue
        event = RecordedEvent(job_id, seq, read_event(type_, payload, reason), recorded_at, attempt)
        if unreadable is not None and (found := unreadable_in([event])):
            unreadable.extend(found)
        try:
            state = evolve(state, event)
        except UnreadableRegistration:
            skipped = job_id
    if state is not None:
        yield state
