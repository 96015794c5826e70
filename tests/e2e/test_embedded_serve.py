"""The README's first command: `jobledger serve` on the embedded PostgreSQL, and SIGTERM."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port
from tests.integration.recovery_helpers import poll


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
def test_serve_runs_on_the_embedded_default_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
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
        created = httpx.post(f"{url}/v1/jobs", json={"job_id": "embedded-1"}, timeout=5)
        assert created.status_code == 201
        assert httpx.get(f"{url}/v1/jobs/embedded-1", timeout=5).json()["queue_position"] == 1
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        if server.stdout is not None:
            server.stdout.close()
    assert code == 0
    assert (tmp_path / "pgdata" / "PG_VERSION").read_text().strip() == "18"
