"""`bench.raw_http`, the floor `bench.peers` measures JobLedger over HTTP against: raw
SQL's statements behind FastAPI under uvicorn, served for real and called as the
benchmark calls them."""

from collections.abc import Iterator

import psycopg
import pytest

from bench.http import free_port
from bench.peer_clients import RawHttpClient, create_raw_schema
from bench.raw_http import running_raw_http
from bench.threads import BenchError
from ledger.database import libpq_url


@pytest.fixture
def raw_url(database_url: str) -> str:
    url = libpq_url(database_url)
    create_raw_schema(url)
    return url


@pytest.fixture
def base_url(raw_url: str) -> Iterator[str]:
    with running_raw_http(raw_url, free_port()) as (base, _):
        yield base


def test_a_lifecycle_registers_claims_and_completes_each_job(raw_url: str, base_url: str) -> None:
    client = RawHttpClient(base_url, "w", lifecycle=True)
    try:
        client.op(0)
        client.op(1)
        client.check(2)
    finally:
        client.close()
    with psycopg.connect(raw_url) as conn:
        rows = conn.execute("SELECT id, status, worker FROM raw_jobs ORDER BY id").fetchall()
    assert rows == [("w-0", "succeeded", "w"), ("w-1", "succeeded", "w")]


def test_an_empty_queue_claims_nothing_and_a_job_not_running_is_not_completed(
    base_url: str,
) -> None:
    client = RawHttpClient(base_url, "w", lifecycle=False)
    try:
        client.op(0)
        assert client._claimed() == "w-0"
        assert client._claimed() is None
        with pytest.raises(BenchError, match="409"):
            client._answer("/jobs/w-1/complete", {"result": {}})
        with pytest.raises(BenchError, match="job 1 was not registered"):
            client.check(2)
    finally:
        client.close()
