"""The least-privilege database role the service runs as."""

from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine

from ledger.database import driver_connection

DERIVED_TABLES = ("job_status", "projection_checkpoints", "job_leases", "unreadable_events")
"""Projections, leases and the register of unreadable events: derived or liveness
data the service rewrites freely."""

APPEND_ONLY_TABLES = ("audit_chain",)
"""The log's hash chain: the service adds blocks to it, never changes one."""


def create_service_role(engine: Engine, name: str, password: str | None = None) -> None:
    """Create (or re-grant) a login role that can read and append to the log, never change it.

    On `job_events` and the hash chain it gets SELECT and INSERT only. The projection
    tables are derived data it rebuilds, and leases are updated in place, so it may
    write those.
    """
    role = sql.Identifier(name)
    with driver_connection(engine) as conn, conn.transaction():
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        if password is not None:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(password)))
        database = sql.Identifier(_current_database(conn))
        statements = [
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(database, role),
            sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role),
            sql.SQL("REVOKE ALL ON job_events FROM {}").format(role),
            sql.SQL("GRANT SELECT, INSERT ON job_events TO {}").format(role),
            sql.SQL("GRANT SELECT ON alembic_version TO {}").format(role),
        ]
        for table in DERIVED_TABLES:
            statements.append(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {} TO {}").format(
                    sql.Identifier(table), role
                )
            )
        for table in APPEND_ONLY_TABLES:
            statements.append(
                sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(sql.Identifier(table), role)
            )
        for statement in statements:
            conn.execute(statement)


def _current_database(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])
