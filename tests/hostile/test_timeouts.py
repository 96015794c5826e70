"""A database that does not answer in time: every request ends at the statement or lock
timeout as a 503 that says when to retry, never a 500 and never a hang; and what needs no
database (`/livez`, `/v1/me`) answers meanwhile, whatever the worker threads are doing."""

import argparse
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import psycopg
import pytest
from sqlalchemy import Engine

from api.bootstrap import open_ledger
from api.cli import run_rebuild
from ledger.database import create_ledger_engine, driver_connection, libpq_url
from ledger.errors import DatabaseBusy
from ledger.settings import Settings
from tests.e2e.conftest import Server
from tests.integration.recovery_helpers import poll

LOCK_TIMEOUT_S = 2.0
MARGIN_S = 3.0
"""The pool's wait (1 s below) plus room for a loaded machine."""

AUDITOR = {"Authorization": "Bearer t-audrey-0123456789abcdef"}
OPERATOR = {"Authorization": "Bearer t-alice-0123456789abcdef"}

READS = [
    "/v1/jobs/held",
    "/v1/jobs",
    "/v1/jobs/held/history",
    "/v1/health",
    "/api/training/health",
    "/v1/events",
]


@contextmanager
def tables_locked(database_url: str) -> Iterator[None]:
    """`job_status` and `job_events` locked by another session, as a long migration or a
    stuck maintenance transaction would hold them."""
    with psycopg.connect(libpq_url(database_url)) as holder:
        holder.execute("LOCK TABLE job_status, job_events IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            holder.rollback()


def sessions_waiting_on_a_lock(
    database_url: str, for_s: float = 0.0, kind: str | None = None
) -> int:
    """How many of the service's sessions wait on a lock (of `kind` when given, such as
    'advisory' or 'transactionid'), and have for `for_s` at least."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'jobledger' "
            "AND wait_event_type = 'Lock' AND wait_event = coalesce(%s, wait_event) "
            "AND query_start < clock_timestamp() - make_interval(secs => %s)",
            (kind, for_s),
        ).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def serving(database_url: str, lock_timeout_s: float, pool_timeout_s: float) -> Iterator[Server]:
    """`jobledger serve` with these timeouts, and a job "held" registered."""
    server = Server(
        database_url,
        {
            "JOBLEDGER_LOCK_TIMEOUT_MS": str(int(lock_timeout_s * 1000)),
            "JOBLEDGER_POOL_TIMEOUT_S": str(pool_timeout_s),
        },
    )
    server.start()
    try:
        server.client("trainer").register("held")
        yield server
    finally:
        server.close_clients()
        server.kill(signal.SIGTERM)


@pytest.fixture
def served(database_url: str) -> Iterator[Server]:
    with serving(database_url, LOCK_TIMEOUT_S, pool_timeout_s=1) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client for every timed request, made before any timing starts: a client made
    per request spends its own time (its TLS context) inside the measured time, seconds
    on a busy machine. Its timeout only keeps a hanging server from hanging the test."""
    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=100)) as client:
        yield client


def timed_get(
    http: httpx.Client, url: str, headers: dict[str, str]
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = http.get(url, headers=headers)
    return response, time.monotonic() - started


@pytest.mark.slow
def test_sixty_reads_behind_a_held_lock_all_answer_503_in_bounded_time(
    served: Server, database_url: str, http: httpx.Client
) -> None:
    urls = [served.url + READS[n % len(READS)] for n in range(60)]
    with tables_locked(database_url), ThreadPoolExecutor(60) as pool:
        started = time.monotonic()
        answers = list(pool.map(lambda url: timed_get(http, url, AUDITOR), urls))
        elapsed = time.monotonic() - started
    print(f"60 reads behind a lock: all answered in {elapsed:.2f} s")
    statuses = sorted({response.status_code for response, _ in answers})
    assert statuses == [503], [(r.status_code, r.text) for r, _ in answers if r.status_code != 503]
    for response, seconds in answers:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "1"
        assert response.json()["type"].rsplit("/", 1)[1] in (
            "database-busy",
            "database-unavailable",
        )
        assert seconds < 2 * LOCK_TIMEOUT_S + MARGIN_S, "bounded by the timeouts, not a hang"
    kinds = [response.json()["type"].rsplit("/", 1)[1] for response, _ in answers]
    for kind in sorted(set(kinds)):
        pairs = zip(answers, kinds, strict=True)
        times = sorted(seconds for (_, seconds), named in pairs if named == kind)
        print(f"  {kind}: {len(times)} answers in {times[0]:.2f}-{times[-1]:.2f} s")
    assert kinds.count("database-busy") >= 10, "the requests that had a connection gave up"
    assert httpx.get(served.url + "/v1/jobs/held", headers=AUDITOR).status_code == 200


@pytest.mark.slow
def test_commands_and_the_reconciler_behind_a_held_lock_answer_503(
    served: Server, database_url: str
) -> None:
    with tables_locked(database_url):
        answers = [
            httpx.post(
                served.url + "/v1/jobs/held/cancel",
                headers=OPERATOR,
                json={"expected_version": 1},
                timeout=30,
            ),
            httpx.post(served.url + "/v1/admin/reconcile", headers=OPERATOR, timeout=30),
            httpx.post(
                served.url + "/v1/jobs", headers=OPERATOR, json={"job_id": "new"}, timeout=30
            ),
        ]
    for response in answers:
        assert response.status_code == 503, response.text
        assert response.json()["type"].endswith("/database-busy")
        assert response.headers["retry-after"] == "1"


@pytest.mark.slow
def test_livez_and_me_answer_at_once_while_every_worker_thread_waits_on_the_database(
    database_url: str, http: httpx.Client
) -> None:
    # Every request keeps its worker thread for 3 s at least: the lock timeout, and the
    # wait for a connection that one of them frees (within the pool's 5 s).
    with (
        serving(database_url, lock_timeout_s=3, pool_timeout_s=5) as served,
        tables_locked(database_url),
        ThreadPoolExecutor(60) as pool,
    ):
        held = served.url + "/v1/jobs/held"
        waiting = [pool.submit(timed_get, http, held, AUDITOR) for _ in range(60)]
        # Every connection of the pool (10 + 10 overflow) waits on the lock, and the
        # other requests hold the remaining worker threads (40) waiting for a connection.
        poll(lambda: sessions_waiting_on_a_lock(database_url) >= 20, timeout=10)
        for path, headers in (("/livez", {}), ("/v1/me", AUDITOR), ("/v1/me", {})):
            response, seconds = timed_get(http, served.url + path, headers)
            assert response.status_code == 200, response.text
            assert seconds < 1.0, f"{path} took {seconds:.2f} s"
        readyz, seconds = timed_get(http, served.url + "/readyz", {})
        assert seconds < Settings().probe_timeout_s + 1.0, "readyz waits its own timeout at most"
        assert readyz.json() in ({"status": "ready"}, {"status": "unavailable"})
        scraped, seconds = timed_get(http, served.url + "/metrics", AUDITOR)
        assert scraped.status_code == 200
        assert seconds < Settings().probe_timeout_s + 1.0, "a scrape waits the probe timeout"
        assert "jobledger_database_up" in scraped.text
        for future in waiting:
            assert future.result()[0].status_code == 503


def test_a_statement_that_outlasts_the_statement_timeout_is_database_busy(
    database_url: str, engine: Engine
) -> None:
    bounded = create_ledger_engine(database_url, Settings(statement_timeout_ms=200))
    try:
        started = time.monotonic()
        with (
            pytest.raises(DatabaseBusy, match="did not answer in time"),
            driver_connection(bounded) as conn,
        ):
            conn.execute("SELECT pg_sleep(5)")
        assert time.monotonic() - started < 2
        with driver_connection(bounded) as conn:  # the connection is still good
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        bounded.dispose()


def test_every_connection_carries_the_default_timeouts(database_url: str) -> None:
    defaults = create_ledger_engine(database_url, Settings())
    try:
        with driver_connection(defaults) as conn:
            shown = [conn.execute(f"SHOW {name}").fetchone() for name in TIMEOUTS]
        assert shown == [("10s",), ("3s",)]
    finally:
        defaults.dispose()


TIMEOUTS = ("statement_timeout", "lock_timeout")


def rebuilt_while_a_reader_holds_job_status(
    database_url: str, rebuild: Callable[[], object]
) -> None:
    """`rebuild` runs while another session reads `job_status` (its swap must wait for the
    reader); the reader ends once the rebuild has waited on it for a whole second."""
    with psycopg.connect(libpq_url(database_url)) as reader, ThreadPoolExecutor(1) as pool:
        reader.execute("SELECT count(*) FROM job_status")  # a lock held until it ends
        rebuilt = pool.submit(rebuild)
        poll(lambda: rebuilt.done() or sessions_waiting_on_a_lock(database_url, for_s=1.0))
        reader.rollback()
        rebuilt.result(timeout=30)  # its error, if it gave up waiting


def test_a_rebuild_waits_for_its_lock_longer_than_a_request_would(database_url: str) -> None:
    settings = Settings(database_url=database_url, lock_timeout_ms=100)
    rebuilt_while_a_reader_holds_job_status(
        database_url, lambda: run_rebuild(settings, argparse.Namespace())
    )


def test_the_start_up_rebuild_waits_for_its_lock_longer_than_a_request_would(
    database_url: str, engine: Engine
) -> None:
    with driver_connection(engine) as conn:  # as if built by another version of the code
        conn.execute("DELETE FROM projection_checkpoints")

    def start_up() -> None:
        with open_ledger(Settings(database_url=database_url, lock_timeout_ms=100)) as ledger:
            assert ledger.catch_up is not None and ledger.catch_up.rebuilt

    rebuilt_while_a_reader_holds_job_status(database_url, start_up)
