"""When every database connection is taken, a caller is told so at once (503, retry
shortly), never left waiting for the server's own timeouts nor answered with a 500."""

import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from api.app import create_app
from api.auth import TokenBook
from api.bootstrap import wire_ledger
from ledger.database import create_ledger_engine, driver_connection
from ledger.errors import DatabaseUnavailable
from ledger.settings import Settings
from ledger.store import EventStore

SETTINGS = Settings(pool_size=1, pool_timeout_s=0.2)  # two connections at most


@pytest.fixture
def small_pool(database_url: str, engine: Engine) -> Iterator[Engine]:
    pool = create_ledger_engine(database_url, SETTINGS)
    yield pool
    pool.dispose()


def every_connection_taken(pool: Engine, stack: ExitStack) -> None:
    for _ in range(2 * SETTINGS.pool_size):
        stack.enter_context(driver_connection(pool))


def test_a_caller_that_finds_no_free_connection_gets_database_unavailable(
    small_pool: Engine,
) -> None:
    with ExitStack() as stack:
        every_connection_taken(small_pool, stack)
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="no database connection came free"):
            EventStore(small_pool).load("any")
        assert time.monotonic() - started < 5, "the pool's wait, not a hang"
    assert EventStore(small_pool).load("any") is None  # connections given back: served again


def test_over_http_it_is_a_503_problem_that_says_when_to_retry(
    database_url: str, small_pool: Engine
) -> None:
    ledger = wire_ledger(database_url, small_pool, SETTINGS)
    with TestClient(create_app(ledger, TokenBook([])), raise_server_exceptions=False) as client:
        with ExitStack() as stack:
            every_connection_taken(small_pool, stack)
            response = client.get("/v1/jobs/any")
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert response.json()["type"].endswith("/database-unavailable")
        assert client.get("/v1/jobs/any").status_code == 404  # and served again after
