"""A writer with INSERT on the log cannot break what readers of the log rely on: the
database sets `recorded_at` and the transaction id, knows every event type, and keeps
each job's sequence without a gap."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import Engine

from ledger.database import libpq_url
from ledger.database_roles import create_service_role

Connection = psycopg.Connection[tuple[object, ...]]
ROLE = "jobledger_hostile_writer"


@pytest.fixture
def writer(engine: Engine, database_url: str) -> Iterator[Connection]:
    """A connection as the service's least-privilege role, the one `create-role` makes."""
    create_service_role(engine, ROLE)
    conninfo = psycopg.conninfo.conninfo_to_dict(libpq_url(database_url))
    conninfo["user"] = ROLE
    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:  # type: ignore[arg-type]
            yield conn
    finally:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
            admin.execute(f"REASSIGN OWNED BY {ROLE} TO postgres")
            admin.execute(f"DROP OWNED BY {ROLE}")
            admin.execute(f"DROP ROLE {ROLE}")


def insert(conn: Connection, job_id: str, seq: int, type_: str = "job_registered") -> None:
    conn.execute(
        "INSERT INTO job_events (job_id, seq, type, actor, payload) VALUES (%s, %s, %s, 'x', %s)",
        (job_id, seq, type_, '{"initial_status": "queued"}' if seq == 1 else "{}"),
    )


def test_an_unknown_event_type_is_refused(writer: Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="known_type"):
        insert(writer, "poison-1", 1, "totally_bogus_type")
    assert writer.execute("SELECT count(*) FROM job_events").fetchone() == (0,)


def test_a_gap_in_a_jobs_sequence_is_refused(writer: Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match="no event 1 for event 2"):
        insert(writer, "poison-1", 2, "job_submitted")
    insert(writer, "job", 1)
    with pytest.raises(psycopg.errors.CheckViolation, match="no event 2 for event 3"):
        insert(writer, "job", 3, "job_cancelled")
    insert(writer, "job", 2, "job_cancelled")  # the next one in the sequence is accepted
    rows = writer.execute("SELECT seq FROM job_events WHERE job_id = 'job' ORDER BY seq")
    assert rows.fetchall() == [(1,), (2,)]


def test_the_database_sets_the_time_and_transaction_whatever_the_writer_sends(
    writer: Connection,
) -> None:
    with writer.transaction():
        writer.execute(
            "INSERT INTO job_events (job_id, seq, type, actor, payload, recorded_at, tx_id) "
            "VALUES ('forged', 1, 'job_registered', 'x', '{\"initial_status\": \"queued\"}', "
            "'2001-01-01T00:00:00Z', '1')"
        )
        row = writer.execute(
            "SELECT recorded_at, tx_id::text = pg_current_xact_id()::text, now() "
            "FROM job_events WHERE job_id = 'forged'"
        ).fetchone()
    assert row is not None
    recorded_at, own_transaction, now = row
    assert isinstance(recorded_at, datetime) and isinstance(now, datetime)
    assert recorded_at == now, "the transaction's clock, not the writer's 2001"
    assert recorded_at > datetime(2020, 1, 1, tzinfo=UTC) - timedelta(days=1)
    assert own_transaction is True


def test_the_guards_hold_in_replica_mode_too(database_url: str) -> None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as admin:
        admin.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.CheckViolation):
            insert(admin, "replica-job", 5, "job_submitted")
