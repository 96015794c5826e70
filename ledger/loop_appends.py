"""Appends made on an event loop, without a thread's hop.

A registration that reaches the HTTP server alone, and a run's completion or failure, are
answered on the event loop (`api.gathered_registrations`, `api.routes_runs`). Run through
`JobService.execute`, each went to a thread of the handlers' pool and back: two
hand-overs between threads, which cost a caller that waits for each answer a fifth of its
rate. `LoopAppends` sends the one statement of such an append from the event loop itself,
on an asyncio connection of psycopg, opened as the pool's are
(`ledger.database.connect_args`).

One connection serves one loop: the appends of a loop are made one at a time (a
gathering makes one call at a time), and one that finds the connection busy is told so
(`None`) and goes the way every other command goes. Driver errors leave as the pool's
do: a lost server is `DatabaseUnavailable` and its connection is closed, to be opened
again by the next append; a statement past its timeout or a lock not granted is
`DatabaseBusy`, the connection kept; a refusal of the append is the store's error
(`ledger.store.translate_error`). A job's row found at another version than the append
was decided on (a projection being repaired) is a `VersionConflict` here: `EventStore.append`
writes such a row whole, and only a fresh read tells what the command does then.
"""

import asyncio
import contextlib
from typing import Any

import psycopg

from ledger.database import connect_args, libpq_url, storage_error, use_orjson
from ledger.errors import DatabaseUnavailable, VersionConflict
from ledger.queries import ROW_NOT_AT_VERSION
from ledger.settings import Settings
from ledger.store import Appended, PreparedAppend, translate_error
from ledger.telemetry import LedgerObservers

AsyncConnection = psycopg.AsyncConnection[tuple[Any, ...]]
AsyncCursor = psycopg.AsyncCursor[tuple[Any, ...]]


class LoopAppends:
    """Appends on the event loop that `open` ran on."""

    def __init__(self, url: str, settings: Settings, observers: LedgerObservers) -> None:
        self._url = libpq_url(url)
        self._connect_args = connect_args(settings) | {"autocommit": True}
        self._observers = observers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: AsyncConnection | None = None
        self._cursor: AsyncCursor | None = None
        self._busy = False

    def open(self) -> None:
        """Serve the running loop from now on (the connection opens with the first append)."""
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Serve no loop any more, and close the connection: now, or when the append on
        its way ends."""
        self._loop = None
        if not self._busy:
            await self._discard()

    async def _discard(self) -> None:
        conn, self._conn, self._cursor = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    def ready(self) -> bool:
        """Whether an append made now, on the running loop, would go at once: the loop is
        the one served, and its connection is free."""
        if self._busy or self._loop is None:
            return False
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    async def append(self, prepared: PreparedAppend) -> Appended:
        """Append `prepared` (decided after the job's state it names, or after none), as
        `EventStore.append` does. Only when `ready`."""
        assert self.ready(), "one append at a time, on the loop served"
        self._busy = True
        try:
            rows = await self._rows(prepared)
        finally:
            self._busy = False
            if self._loop is None:  # closed meanwhile
                await self._discard()
        appended = prepared.recorded(rows)
        self._observers.events_appended([event.type for event in appended.events])
        return appended

    async def _rows(self, prepared: PreparedAppend) -> list[tuple[Any, ...]]:
        conn, cursor = await self._connection()
        try:
            await cursor.execute(prepared.statement, prepared.params)
            return await cursor.fetchall()
        except psycopg.Error as exc:
            error = storage_error(exc)
            expected = prepared.expected_version
            if error is None and _row_not_at_version(exc):
                raise VersionConflict(prepared.job_id, expected) from exc
            if error is None:
                raise translate_error(exc, prepared.job_id, expected) from exc
            if isinstance(error, DatabaseUnavailable) or conn.broken or conn.closed:
                await self._discard()
            raise error from exc

    async def _connection(self) -> tuple[AsyncConnection, AsyncCursor]:
        """The loop's connection, opened when there is none, and its cursor: made once and
        used by every append (`ledger.database.PooledConnection.cursor`)."""
        conn, cursor = self._conn, self._cursor
        if conn is not None and cursor is not None and not conn.closed:
            return conn, cursor
        try:
            conn = await psycopg.AsyncConnection.connect(self._url, **self._connect_args)
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"the database cannot be reached: {exc}") from exc
        use_orjson(conn)
        self._conn, self._cursor = conn, conn.cursor()
        return conn, self._cursor


def _row_not_at_version(exc: psycopg.Error) -> bool:
    return (
        isinstance(exc, psycopg.errors.CheckViolation)
        and exc.diag.constraint_name == ROW_NOT_AT_VERSION
    )
