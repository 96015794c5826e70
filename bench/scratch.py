"""A database of the benchmark's own: created and migrated, dropped afterwards even on error."""

import argparse
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from ledger.database import libpq_url
from ledger.migrate import upgrade_database

URL_ENV = "JOBLEDGER_BENCH_DATABASE_URL"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def benchmark_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's arguments, starting with the server its scratch database goes on."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get(URL_ENV) or DEFAULT_SERVER_URL,
        help=f"admin URL of the server (default: ${URL_ENV} or {DEFAULT_SERVER_URL})",
    )
    return parser


def server_address(server_url: str) -> str:
    """Where the server of `server_url` listens, for a benchmark's first line: host and
    port, or the directory of its Unix socket (a `host` in the query, as the embedded
    server's URL has)."""
    url = make_url(server_url)
    if url.host:
        return f"{url.host}:{url.port or 5432}"
    socket_dir = url.query.get("host")
    if isinstance(socket_dir, tuple):
        socket_dir = socket_dir[0]
    return f"the socket in {socket_dir}" if socket_dir else "the default socket"


def with_database(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url`."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def scratch_database(server_url: str, *, migrate: bool = True) -> Iterator[str]:
    """Create (and unless told otherwise, migrate) a database of a unique name; drop it on
    the way out, even on error."""
    name = f"jobledger_bench_{uuid.uuid4().hex[:12]}"
    admin_url = libpq_url(server_url)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = with_database(server_url, name)
        if migrate:
            upgrade_database(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
