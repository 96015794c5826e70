from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from api.app import create_app
from api.auth import TokenBook
from api.bootstrap import Ledger, wire_ledger
from ledger.client import LedgerClient
from ledger.settings import Settings
from projections.current_status.catchup import catch_up_current_status

TOKENS = {"trainer": "emitter", "alice": "operator", "audrey": "auditor"}


def token_of(name: str) -> str:
    return f"secret-token-of-{name}"


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(name)}"}


def client_through(app: TestClient, name: str = "trainer") -> LedgerClient:
    """`name`'s `LedgerClient`, talking to `app` in process."""
    client = LedgerClient("http://testserver", token_of(name))
    client.http.close()
    client.http = app
    app.headers.update(auth(name))
    return client


@pytest.fixture
def ledger(database_url: str, engine: Engine) -> Ledger:
    """The ledger as `jobledger serve` opens it: projections caught up first."""
    return wire_ledger(
        database_url, engine, Settings(lease_seconds=60), catch_up_current_status(engine)
    )


@pytest.fixture
def client_for(ledger: Ledger) -> Iterator[Callable[[bool], TestClient]]:
    """A test client of the app, with the three tokens configured or none."""
    clients: list[TestClient] = []

    def make(with_tokens: bool = True) -> TestClient:
        spec = ",".join(f"{name}:{role}:{token_of(name)}" for name, role in TOKENS.items())
        tokens = TokenBook.from_env({"JOBLEDGER_TOKENS": spec} if with_tokens else {})
        client = TestClient(create_app(ledger, tokens), raise_server_exceptions=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(client_for: Callable[[bool], TestClient]) -> TestClient:
    return client_for(True)
