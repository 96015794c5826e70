"""The log cannot be changed in place, whoever connects."""

import psycopg
import pytest
from sqlalchemy import Engine

from ledger.database_roles import create_service_role
from ledger.statuses import JobStatus
from tests.conftest import JobFactory


@pytest.fixture
def admin(database_url: str, job_factory: JobFactory) -> psycopg.Connection[tuple[object, ...]]:
    job_factory(JobStatus.RUNNING)
    from ledger.database import libpq_url

    return psycopg.connect(libpq_url(database_url), autocommit=True)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE job_events SET actor = 'mallory'",
        "DELETE FROM job_events",
        "TRUNCATE job_events",
    ],
)
def test_changing_the_log_in_place_is_refused_even_for_a_superuser(
    admin: psycopg.Connection[tuple[object, ...]], statement: str
) -> None:
    with admin, pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        admin.execute(statement)


def test_the_triggers_fire_even_in_replica_mode(
    admin: psycopg.Connection[tuple[object, ...]],
) -> None:
    with admin:
        admin.execute("SET session_replication_role = replica")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            admin.execute("DELETE FROM job_events")


def test_the_events_are_still_there_after_the_attempts(
    admin: psycopg.Connection[tuple[object, ...]],
) -> None:
    with admin:
        for statement in ("UPDATE job_events SET seq = seq + 1", "DELETE FROM job_events"):
            with pytest.raises(psycopg.errors.RaiseException):
                admin.execute(statement)
        row = admin.execute("SELECT count(*), max(actor) FROM job_events").fetchone()
    assert row == (2, "w")


def test_the_service_role_may_read_and_append_but_never_update(
    engine: Engine, database_url: str, admin: psycopg.Connection[tuple[object, ...]]
) -> None:
    create_service_role(engine, "jobledger_service_test")
    from ledger.database import libpq_url

    conninfo = psycopg.conninfo.conninfo_to_dict(libpq_url(database_url))
    conninfo["user"] = "jobledger_service_test"
    try:
        with psycopg.connect(**conninfo, autocommit=True) as service_conn:  # type: ignore[arg-type]
            assert service_conn.execute("SELECT count(*) FROM job_events").fetchone() == (2,)
            service_conn.execute(
                "INSERT INTO job_events (job_id, seq, type, actor) "
                "VALUES ('role-job', 1, 'job_registered', 'svc')"
            )
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                service_conn.execute("UPDATE job_events SET actor = 'x'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                service_conn.execute("DELETE FROM job_events")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                service_conn.execute("TRUNCATE job_events")
    finally:
        with admin:
            admin.execute("REASSIGN OWNED BY jobledger_service_test TO postgres")
            admin.execute("DROP OWNED BY jobledger_service_test")
            admin.execute("DROP ROLE jobledger_service_test")
