"""`bench.cpu_share.CpuMeter` on a real PostgreSQL server: what a backend spends counts
once, whether its client closed the connection while the meter was being read or the
backend had been working before the measurement began."""

import time
from collections.abc import Callable

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


class ReapedWhileRead(psutil.Process):
    """The postmaster, where `between` (once) runs after its own times are read and before
    its children are listed: a backend that ends there is in neither."""

    between: Callable[[], None] | None = None

    def children(self, recursive: bool = False) -> list[psutil.Process]:
        between, self.between = self.between, None
        if between is not None:
            between()
        return super().children(recursive)


def test_a_backend_reaped_between_the_postmasters_times_and_its_children_is_counted(
    url: str, meter: CpuMeter
) -> None:
    assert meter.postmaster is not None
    postmaster = ReapedWhileRead(meter.postmaster.pid)
    reading = CpuMeter(postmaster)
    conn = psycopg.connect(url)
    backend = psutil.Process(conn.info.backend_pid)
    before = reading.start()
    busy = busy_seconds(conn)

    def client_closes() -> None:
        conn.close()
        backend.wait(timeout=10)  # reaped: its time is the postmaster's children's now

    postmaster.between = client_closes
    spent = reading.spent_since(before).seconds[POSTGRES]

    assert postmaster.between is None, "the backend ended while the server was read"
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
