"""The clients `bench.peers` times: raw SQL, in process and behind the least HTTP service
(`bench.raw_http`), and JobLedger in process and over HTTP.

Every system does the same two workloads, one job per operation:

- enqueue: register one queued job (a small spec, the same in every system);
- lifecycle: enqueue one job, claim the next queued job, complete the job claimed.

Each client is one thread with a connection (or an HTTP keep-alive connection) of its
own, set up before the clock starts; `check` then counts what landed.
"""

import os
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import psycopg
from psycopg.types.json import Jsonb

from bench.threads import BenchError, Client
from ledger.client import Claim, LedgerClient
from ledger.commands import CompleteJob, RegisterJob, WorkerIdentity
from ledger.concurrent_registrations import ConcurrentRegistrations
from ledger.http_transport import KeptAliveTransport, PlainAnswer, PlainRequests
from ledger.queue import JobQueue
from ledger.service import JobService

ACTOR = "bench"
RESULT = {"loss": 0.125}
CLAIM_TRIES = 100
"""A claim that finds nothing is tried again this often: every worker enqueues before it
claims, so there is always a job, but one committed a moment later than the claim read."""

MakeClient = Callable[[int], Client]


def job_spec(job_id: str) -> dict[str, Any]:
    """What every system stores with a job: a small spec, as a sweep's job carries."""
    return {"model": "bench", "lr": 0.001, "job": job_id}


def claimed_or_fail(claim: Callable[[], Any]) -> Any:
    """The first claim that finds a job; `BenchError` when none does."""
    for _ in range(CLAIM_TRIES):
        found = claim()
        if found is not None:
            return found
    raise BenchError(f"no queued job after {CLAIM_TRIES} claims")


# -- raw SQL -----------------------------------------------------------------------

RAW_SCHEMA = """
    CREATE TABLE raw_jobs (
        id text PRIMARY KEY,
        status text NOT NULL,
        priority int NOT NULL DEFAULT 0,
        spec jsonb NOT NULL,
        worker text,
        result jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        started_at timestamptz,
        finished_at timestamptz
    );
    CREATE INDEX raw_jobs_queued ON raw_jobs (priority DESC, created_at) WHERE status = 'queued';
"""
RAW_ENQUEUE = "INSERT INTO raw_jobs (id, status, spec) VALUES (%s, 'queued', %s)"
RAW_CLAIM = """
    UPDATE raw_jobs SET status = 'running', worker = %s, started_at = now()
    WHERE id = (
        SELECT id FROM raw_jobs WHERE status = 'queued'
        ORDER BY priority DESC, created_at LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    RETURNING id
"""
RAW_COMPLETE = """
    UPDATE raw_jobs SET status = 'succeeded', result = %s, finished_at = now()
    WHERE id = %s AND status = 'running'
"""
RAW_BATCH = (
    "INSERT INTO raw_jobs (id, status, spec) "
    "SELECT unnest(%s::text[]), 'queued', unnest(%s::jsonb[])"
)


def create_raw_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RAW_SCHEMA)


class RawClient:
    """Plain psycopg in autocommit: each statement is its own transaction."""

    def __init__(self, url: str, prefix: str, *, lifecycle: bool) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.prefix = prefix
        self.lifecycle = lifecycle
        self.completed = 0

    def op(self, n: int) -> None:
        job_id = f"{self.prefix}-{n}"
        self.conn.execute(RAW_ENQUEUE, (job_id, Jsonb(job_spec(job_id))))
        if not self.lifecycle:
            return
        claimed = claimed_or_fail(lambda: self.conn.execute(RAW_CLAIM, (self.prefix,)).fetchone())
        done = self.conn.execute(RAW_COMPLETE, (Jsonb(RESULT), claimed[0]))
        if done.rowcount != 1:
            raise BenchError(f"{claimed[0]}: not completed")
        self.completed += 1

    def check(self, ops: int) -> None:
        column = "worker" if self.lifecycle else "id"
        query = f"SELECT count(*) FROM raw_jobs WHERE {column} LIKE %s"
        row = self.conn.execute(query, (f"{self.prefix}%",)).fetchone()
        if row is None or row[0] < ops:
            raise BenchError(f"{self.prefix}: {ops} operations, {row} rows")

    def close(self) -> None:
        self.conn.close()


class RawBatchClient:
    """Batches of registrations: one INSERT of many rows per transaction."""

    def __init__(self, url: str, prefix: str, batch: int) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.prefix = prefix
        self.batch = batch

    def op(self, n: int) -> None:
        ids = [f"{self.prefix}-{n}-{i}" for i in range(self.batch)]
        self.conn.execute(RAW_BATCH, (ids, [Jsonb(job_spec(job_id)) for job_id in ids]))

    def check(self, ops: int) -> None:
        row = self.conn.execute(
            "SELECT count(*) FROM raw_jobs WHERE id LIKE %s", (f"{self.prefix}-%",)
        ).fetchone()
        if row is None or row[0] != ops * self.batch:
            raise BenchError(f"{self.prefix}: {ops} batches, {row} rows")

    def close(self) -> None:
        self.conn.close()


class RawHttpClient:
    """Raw SQL's statements behind `bench.raw_http`'s routes, one request each, sent as
    `LedgerClient` sends its own (`PlainRequests`, on a kept-alive connection)."""

    def __init__(self, base_url: str, prefix: str, *, lifecycle: bool) -> None:
        self.transport = KeptAliveTransport()
        self.requests = PlainRequests(
            self.transport, httpx.URL(base_url), {"Content-Type": "application/json"}, 30.0
        )
        self.prefix = prefix
        self.lifecycle = lifecycle

    def _call(self, method: str, path: str, body: Any = None) -> PlainAnswer:
        content = None if body is None else orjson.dumps(body)
        return self.requests.request(method, path, None, {}, content)

    def _answer(self, path: str, body: Any) -> Any:
        answer = self._call("POST", path, body)
        if answer.status_code >= 300:
            raise BenchError(f"POST {path}: {answer.status_code} {answer.text}")
        return answer.json()

    def op(self, n: int) -> None:
        job_id = f"{self.prefix}-{n}"
        self._answer("/jobs", {"job_id": job_id, "spec": job_spec(job_id)})
        if not self.lifecycle:
            return
        claim = claimed_or_fail(self._claimed)
        self._answer(f"/jobs/{claim}/complete", {"result": RESULT})

    def _claimed(self) -> str | None:
        answer = self._call("POST", "/claim", {"worker": self.prefix})
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise BenchError(f"POST /claim: {answer.status_code} {answer.text}")
        job_id: str = answer.json()["job_id"]
        return job_id

    def check(self, ops: int) -> None:
        if ops and self._call("GET", f"/jobs/{self.prefix}-{ops - 1}").status_code != 200:
            raise BenchError(f"{self.prefix}: job {ops - 1} was not registered")

    def close(self) -> None:
        self.transport.close()


# -- JobLedger in process --------------------------------------------------------


class InProcessClient:
    """`JobService` and `JobQueue` in this process, on the ledger's connection pool; jobs
    registered through `ConcurrentRegistrations`, which registers together those of the
    clients' threads that arrive together."""

    def __init__(
        self,
        service: JobService,
        registrations: ConcurrentRegistrations,
        queue: JobQueue,
        prefix: str,
        *,
        lifecycle: bool,
    ) -> None:
        self.service = service
        self.registrations = registrations
        self.queue = queue
        self.prefix = prefix
        self.lifecycle = lifecycle
        self.worker = WorkerIdentity(worker_id=prefix, host="bench-host", pid=os.getpid())

    def op(self, n: int) -> None:
        job_id = f"{self.prefix}-{n}"
        self.registrations.register(job_id, RegisterJob(spec=job_spec(job_id)), actor=ACTOR)
        if not self.lifecycle:
            return
        claim = claimed_or_fail(lambda: self.queue.claim(self.worker, actor=ACTOR))
        complete = CompleteJob(attempt=claim.attempt, run_token=claim.run_token, result=RESULT)
        self.service.execute(claim.job.job_id, complete, actor=ACTOR)

    def check(self, ops: int) -> None:
        last = self.service.store.load(f"{self.prefix}-{ops - 1}") if ops else None
        if ops and last is None:
            raise BenchError(f"{self.prefix}: job {ops - 1} was not registered")

    def close(self) -> None:
        pass


# -- JobLedger over HTTP ---------------------------------------------------------


class HttpClient:
    """`LedgerClient` against a running `jobledger serve`: registrations ask for the minimal
    answer (the caller does not need the queue position, as no other system reports one)."""

    def __init__(self, base_url: str, token: str, prefix: str, *, lifecycle: bool) -> None:
        self.client = LedgerClient(base_url, token, timeout=30.0)
        self.prefix = prefix
        self.lifecycle = lifecycle
        self.worker = WorkerIdentity(worker_id=prefix, host="bench-host", pid=os.getpid())

    def op(self, n: int) -> None:
        job_id = f"{self.prefix}-{n}"
        self.client.register(job_id, spec=job_spec(job_id), minimal=True)
        if not self.lifecycle:
            return
        claim = claimed_or_fail(lambda: self.client.claim(self.worker))
        self.client.report(claim.job_id, "complete", claim.attempt, claim.run_token, result=RESULT)

    def check(self, ops: int) -> None:
        if ops:
            self.client.job(f"{self.prefix}-{ops - 1}")  # raises when it is not there

    def close(self) -> None:
        self.client.close()


class HttpRunsClient:
    """A worker whose completion claims its next job in the same request
    (`LedgerClient.report_and_claim`, the route `ledger.client.work_off_queue` reports
    through, here without a `JobRun` and its heartbeat thread). An operation is
    still one registration, one claim and one completion; it takes two requests, or three
    when the last completion found the queue empty. The job held after the last operation
    is completed on closing."""

    def __init__(self, base_url: str, token: str, prefix: str) -> None:
        self.client = LedgerClient(base_url, token, timeout=30.0)
        self.prefix = prefix
        self.worker = WorkerIdentity(worker_id=prefix, host="bench-host", pid=os.getpid())
        self.held: Claim | None = None
        self.completed = 0

    def op(self, n: int) -> None:
        job_id = f"{self.prefix}-{n}"
        self.client.register(job_id, spec=job_spec(job_id), minimal=True)
        held = self.held or claimed_or_fail(lambda: self.client.claim(self.worker))
        done, self.held = self.client.report_and_claim(
            held.job_id, "complete", held.attempt, held.run_token, self.worker, result=RESULT
        )
        if done["status"] != "completed":
            raise BenchError(f"{held.job_id}: {done['status']}, not completed")
        self.completed += 1

    def check(self, ops: int) -> None:
        if self.completed != ops:
            raise BenchError(f"{self.prefix}: {ops} operations, {self.completed} completed")

    def close(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            self.client.report(held.job_id, "complete", held.attempt, held.run_token)
        self.client.close()


class HttpBatchClient:
    """`LedgerClient.register_many` of a sweep of `batches` batches in one call: batches of
    registrations in one request each, `in_flight` requests at once."""

    def __init__(
        self, base_url: str, token: str, prefix: str, *, batch: int, in_flight: int, batches: int
    ) -> None:
        self.client = LedgerClient(base_url, token, timeout=60.0)
        self.prefix = prefix
        self.batch = batch
        self.in_flight = in_flight
        self.jobs = batch * batches
        """Jobs one operation registers: the sweep."""

    def op(self, n: int) -> None:
        jobs = [
            {"job_id": f"{self.prefix}-{n}-{i}", "spec": job_spec(f"{self.prefix}-{n}-{i}")}
            for i in range(self.jobs)
        ]
        outcomes = self.client.register_many(jobs, in_flight=self.in_flight, per_request=self.batch)
        created = sum(1 for outcome in outcomes if outcome["status"] == 201)
        if created != self.jobs:
            raise BenchError(f"{self.prefix}-{n}: {created} of {self.jobs} registered")

    def check(self, ops: int) -> None:
        if ops:
            self.client.job(f"{self.prefix}-{ops - 1}-{self.jobs - 1}")

    def close(self) -> None:
        self.client.close()
