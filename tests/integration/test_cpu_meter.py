"""`bench.cpu_share.CpuMeter` on a real PostgreSQL server: what a backend spends counts
once, whether its client closed the connection just before the meter was read or the
backend had been working before the measurement began."""

import time

import psutil
import psycopg
import pytest

from bench.cpu_share import POSTGRES, CpuMeter, local_postmaster
from ledger.database import libpq_url

WORK = "SELECT count(*) FROM generate_series(1, 2000000) AS g(n) WHERE n % 7 = 3"
"""A statement that keeps its backend busy on a core for a good part of a second."""


@pytest.fixture
def url(database_url: str) -> str:
    return libpq_url(database_url)


@pytest.fixture
def meter(url: str) -> CpuMeter:
    postmaster = local_postmaster(url)
    if postmaster is None:
        pytest.skip("the PostgreSQL server's processes cannot be read from here")
    return CpuMeter(postmaster)


def busy_seconds(conn: psycopg.Connection[tuple[object, ...]]) -> float:
    """`WORK` on `conn`: its wall time less this process's CPU, about its backend's CPU."""
    wall, own = time.perf_counter(), time.process_time()
    conn.execute(WORK).fetchone()
    return time.perf_counter() - wall - (time.process_time() - own)


def test_a_backend_whose_client_closed_as_the_measurement_ended_is_counted(
    url: str, meter: CpuMeter
) -> None:
    for _ in range(3):
        before = meter.start()
        with psycopg.connect(url) as conn:
            busy = busy_seconds(conn)
        spent = meter.spent_since(before).seconds[POSTGRES]
        assert spent >= 0.5 * busy, f"{spent:.3f} s of PostgreSQL's CPU for a {busy:.3f} s query"


def test_a_backend_that_ended_meanwhile_counts_only_what_it_spent_meanwhile(
    url: str, meter: CpuMeter
) -> None:
    with psycopg.connect(url) as conn:
        busy = busy_seconds(conn)
        backend = psutil.Process(conn.info.backend_pid)
        before = meter.start()
    backend.wait(timeout=10)  # ended, and reaped: its time is the postmaster's children's now
    spent = meter.spent_since(before).seconds[POSTGRES]
    assert spent < 0.5 * busy, f"{spent:.3f} s counted for a backend that was idle meanwhile"
