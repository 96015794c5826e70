"""The pool of a process opens connections as a burst needs them and keeps them: the next
burst finds them open instead of starting new server processes on the database."""

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import Engine

from ledger.database import create_ledger_engine, driver_connection, pool_usage
from ledger.settings import Settings

SETTINGS = Settings(pool_size=2)  # four connections at most


@pytest.fixture
def pool(database_url: str) -> Iterator[Engine]:
    engine = create_ledger_engine(database_url, SETTINGS)
    yield engine
    engine.dispose()


def burst(pool: Engine, size: int) -> set[int]:
    """The backend process ids of `size` connections held at once."""
    with ExitStack() as stack:
        connections = [stack.enter_context(driver_connection(pool)) for _ in range(size)]
        assert pool_usage(pool) == (size, 0)
        return {conn.info.backend_pid for conn in connections}


def test_connections_open_only_as_callers_need_them(pool: Engine) -> None:
    assert pool.pool.checkedin() == 0  # type: ignore[attr-defined]
    burst(pool, 1)
    assert pool.pool.checkedin() == 1  # type: ignore[attr-defined]


def test_a_burst_past_the_pool_size_leaves_its_connections_open_for_the_next(
    pool: Engine,
) -> None:
    size = 2 * SETTINGS.pool_size
    first = burst(pool, size)
    assert len(first) == size
    assert pool.pool.checkedin() == size  # type: ignore[attr-defined]
    assert burst(pool, size) == first, "the same server processes, none started again"


def test_a_light_load_reuses_the_connection_returned_last(pool: Engine) -> None:
    burst(pool, 2 * SETTINGS.pool_size)
    with driver_connection(pool) as conn:
        last = conn.info.backend_pid
    for _ in range(3):
        with driver_connection(pool) as conn:
            assert conn.info.backend_pid == last
