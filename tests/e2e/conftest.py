"""A real `jobledger serve` on loopback, started and killed like in production."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from ledger.client import LedgerClient

TOKENS = ",".join(
    f"{name}:{role}:t-{name}-0123456789abcdef"
    for name, role in (("trainer", "emitter"), ("alice", "operator"), ("audrey", "auditor"))
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One `jobledger serve` process; `restart` runs a fresh one on the same port."""

    def __init__(
        self,
        database_url: str,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "JOBLEDGER_DATABASE_URL": database_url,
            "JOBLEDGER_TOKENS": TOKENS,
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[str] | None = None
        self.recovery_line = ""
        self.clients: list[LedgerClient] = []

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port), *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.recovery_line = self.process.stdout.readline().strip()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("the server did not become ready")

    def kill(self, signum: int = signal.SIGKILL) -> int:
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
        return code

    def client(self, name: str) -> LedgerClient:
        client = LedgerClient(self.url, f"t-{name}-0123456789abcdef")
        self.clients.append(client)
        return client

    def close_clients(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def server(database_url: str) -> Iterator[Server]:
    served = Server(
        database_url,
        {"JOBLEDGER_STALE_PENDING_MINUTES": "0.005", "JOBLEDGER_LEASE_SECONDS": "1.5"},
    )
    served.start()
    yield served
    served.close_clients()
    if served.process is not None:
        served.kill(signal.SIGTERM)
