"""Appends made on an event loop, without a thread's hop.

A registration that reaches the HTTP server alone or with others, a claim, and a run's
completion or failure are answered on the event loop (`api.gathered_registrations`,
`api.routes_runs`), and heartbeats that arrive together are renewed from it
(`api.lease_renewals`).
Run through `JobService.execute` or `JobQueue.claim`, each went to a thread of the
handlers' pool and back: two hand-overs between threads, which cost a caller that waits
for each answer a fifth of its rate. `LoopAppends` sends the one statement of such an
append from the event loop itself, on an asyncio connection of psycopg, opened as the
pool's are (`ledger.database.connect_args`).

A few connections serve one loop (`Settings.loop_connections` in the server): each
carries one statement at a time, and an append that finds them all in use is told so
(`ready`) and goes the way every other command goes. Driver errors leave as the pool's
do: a lost server is `DatabaseUnavailable` and its connection is closed, to be opened
again by the next append; a statement past its timeout or a lock not granted is
`DatabaseBusy`, the connection kept; a refusal of the append is the store's error
(`ledger.store.translate_error`). A job's row found at another version than the append
was decided on (a projection being repaired) is written whole, as `EventStore.append`
writes it.
"""

import asyncio
import contextlib
from typing import Any

import psycopg

from ledger.database import connect_args, libpq_url, storage_error, use_orjson
from ledger.errors import DatabaseUnavailable, VersionConflict
from ledger.settings import Settings
from ledger.store import Appended, PreparedAppend, row_not_at_version, translate_error
from ledger.telemetry import LedgerObservers

AsyncConnection = psycopg.AsyncConnection[tuple[Any, ...]]
AsyncCursor = psycopg.AsyncCursor[tuple[Any, ...]]


_Open = tuple[AsyncConnection, AsyncCursor]


class LoopAppends:
    """Appends on the event loop that `open` ran on, on up to `connections` connections
    at once (opened as statements need them, then kept)."""

    def __init__(
        self, url: str, settings: Settings, observers: LedgerObservers, connections: int = 1
    ) -> None:
        self._url = libpq_url(url)
        self._connect_args = connect_args(settings) | {"autocommit": True}
        self._observers = observers
        self._most = connections
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[_Open] = []
        self._in_use = 0

    def open(self) -> None:
        """Serve the running loop from now on (a connection opens with the first append)."""
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        """Serve no loop any more, and close the connections: the idle ones now, each one
        in use when its statement ends."""
        self._loop = None
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await _close(conn)

    def ready(self) -> bool:
        """Whether an append made now, on the running loop, would go at once: the loop is
        the one served, and a connection is free (or may be opened)."""
        if self._in_use >= self._most or self._loop is None:
            return False
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def backend_pids(self) -> list[int]:
        """The PostgreSQL server processes of the idle connections, the most recently
        used last."""
        return [conn.info.backend_pid for conn, _ in self._idle]

    async def append(self, prepared: PreparedAppend) -> Appended:
        """Append `prepared` (decided after the job's state it names, or after none), as
        `EventStore.append` does. Only when `ready`."""
        job_id, expected = prepared.job_id, prepared.expected_version
        try:
            rows = await self.rows(prepared.statement, prepared.params, job_id, expected)
        except _RowNotAtVersion as refused:
            # A projection being repaired: its row is written whole, as `EventStore.append`
            # writes it (the connection just came free, unless the loop closed meanwhile).
            if not self.ready():
                raise VersionConflict(job_id, expected) from refused
            statement, params = prepared.writing_row_whole()
            rows = await self.rows(statement, params, job_id, expected)
        appended = prepared.recorded(rows)
        self._observers.events_appended([event.type for event in appended.events])
        return appended

    async def rows(
        self, statement: str, params: dict[str, Any], job_id: str = "", expected_version: int = 0
    ) -> list[tuple[Any, ...]]:
        """The rows of one statement: one that appends to `job_id`'s log (a start of a job:
        `job_id` is the one chosen, or "" for a claim), decided after `expected_version`,
        or one that renews leases. Only when `ready`."""
        assert self.ready(), "no more statements at once than connections, on the loop served"
        self._in_use += 1
        kept: _Open | None = None
        try:
            kept = await self._connection()
            conn, cursor = kept
            try:
                await cursor.execute(statement, params)
                return await cursor.fetchall()
            except psycopg.Error as exc:
                error = storage_error(exc)
                if error is None and row_not_at_version(exc):
                    raise _RowNotAtVersion(job_id, expected_version) from exc
                if error is None:
                    raise translate_error(exc, job_id, expected_version) from exc
                if isinstance(error, DatabaseUnavailable) or conn.broken or conn.closed:
                    kept = None
                    await _close(conn)
                raise error from exc
            except BaseException:
                # Cancelled (the server stopping) with the statement perhaps still on its
                # way: the connection is not one to send the next statement on.
                kept = None
                await _close(conn)
                raise
        finally:
            self._in_use -= 1
            if kept is not None:
                if self._loop is None:  # closed meanwhile
                    await _close(kept[0])
                else:
                    self._idle.append(kept)

    async def _connection(self) -> _Open:
        """An idle connection (the one used last: its server process is the warmest), or
        a new one, and its cursor: made once and used by every statement on it
        (`ledger.database.PooledConnection.cursor`)."""
        while self._idle:
            conn, cursor = self._idle.pop()
            if not conn.closed:
                return conn, cursor
        try:
            conn = await psycopg.AsyncConnection.connect(self._url, **self._connect_args)
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"the database cannot be reached: {exc}") from exc
        use_orjson(conn)
        return conn, conn.cursor()


async def _close(conn: AsyncConnection) -> None:
    with contextlib.suppress(psycopg.Error):
        await conn.close()


class _RowNotAtVersion(VersionConflict):
    """The job's row is not at the version the append was decided on."""
