"""A served ledger and a training server's `JobRun`: a claim whose answer was lost is the
same run when retried, the run heartbeats by the server's lease, and its final report
outlives an outage of the server before the worker moves on."""

import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from ledger.client import JobRun, LedgerClient, QueueEmpty
from ledger.commands import WorkerIdentity
from ledger.errors import LedgerError
from tests.e2e.conftest import Server
from tests.integration.recovery_helpers import poll

REMOTE = WorkerIdentity(worker_id="far", host="gpu-far-away", pid=4242, pid_started_at=1.0)


def served(database_url: str, lease_seconds: float) -> Iterator[Server]:
    server = Server(
        database_url,
        {"JOBLEDGER_LEASE_SECONDS": str(lease_seconds), "JOBLEDGER_RECONCILE_INTERVAL_S": "0.5"},
    )
    server.start()
    yield server
    server.close_clients()
    if server.process is not None:
        server.kill(signal.SIGTERM)


@pytest.fixture
def short_lease(database_url: str) -> Iterator[Server]:
    """A server whose lease is 3 s, reconciling every half second."""
    yield from served(database_url, 3)


@pytest.fixture
def long_lease(database_url: str) -> Iterator[Server]:
    """A server whose lease is long enough to outlast a restart of it."""
    yield from served(database_url, 60)


def test_a_job_run_learns_the_servers_lease_and_keeps_a_remote_run_alive_past_it(
    short_lease: Server,
) -> None:
    trainer = short_lease.client("trainer")
    trainer.register("long-training")
    with JobRun(trainer, worker=REMOTE) as run:  # its own guess: 90 s, a beat every 30 s
        assert run.heartbeat_every == 1.0
        until = time.monotonic() + 3 * 3  # three leases, many reconciler passes
        while time.monotonic() < until:
            job = trainer.job("long-training")
            assert (job["status"], job["health"]) == ("running", "ok"), job
            time.sleep(0.25)
    assert trainer.job("long-training")["status"] == "completed"


def test_a_final_report_sent_during_an_outage_is_delivered_after_it_before_the_next_claim(
    long_lease: Server,
) -> None:
    server = long_lease
    operator = server.client("alice")
    operator.register("first", priority=1)
    operator.register("second")
    # Few tries for one request: the outage outlasts them, so only the report's deadline
    # can carry the final report across it.
    trainer = LedgerClient(server.url, "t-trainer-0123456789abcdef", retries=1, backoff=0.05)
    in_first, server_down = threading.Event(), threading.Event()
    ran: list[str] = []
    errors: list[BaseException] = []

    def worker_loop() -> None:
        deadline = time.monotonic() + 60
        while len(ran) < 2 and time.monotonic() < deadline:
            try:
                with JobRun(trainer, worker=REMOTE) as run:
                    assert run.job_id is not None
                    ran.append(run.job_id)
                    if run.job_id == "first":
                        in_first.set()
                        server_down.wait(30)
            except QueueEmpty:
                return
            except LedgerError as exc:  # a worker that carries on, as training servers do
                errors.append(exc)

    worker = threading.Thread(target=worker_loop)
    worker.start()
    try:
        assert in_first.wait(30)
        server.kill()
        server_down.set()  # the run ends, its report finds no server
        server.start()
        worker.join(60)
        assert not worker.is_alive()
    finally:
        trainer.close()
    assert errors == []
    assert ran == ["first", "second"]
    audrey = server.client("audrey")
    first, second = (audrey.history(job)["events"] for job in ("first", "second"))
    assert [e["type"] for e in first][-1] == "job_completed"
    assert [e["type"] for e in first].count("job_completed") == 1
    completed = datetime.fromisoformat(first[-1]["recorded_at"])
    started = datetime.fromisoformat(
        next(e for e in second if e["type"] == "job_started")["recorded_at"]
    )
    assert completed < started, "the next claim came only after the report was acknowledged"
    poll(lambda: audrey.job("second")["status"] == "completed")


class LosesTheFirstAnswer(httpx.BaseTransport):
    """A network that carries the first request to `path` to the server, and loses its answer."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.inner = httpx.HTTPTransport()
        self.lost: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path == self.path and not self.lost:
            response.read()
            self.lost.append(response.json())
            response.close()
            raise httpx.ReadError("the connection was reset before the answer", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(
    ("path", "chosen"), [("/v1/queue/claim", None), ("/v1/jobs/first/start", "first")]
)
def test_a_run_whose_start_answer_was_lost_is_the_same_run_on_retry_and_nothing_else_starts(
    long_lease: Server, path: str, chosen: str | None
) -> None:
    server = long_lease
    operator = server.client("alice")
    operator.register("first", priority=1)
    operator.register("second")
    network = LosesTheFirstAnswer(path)
    trainer = LedgerClient(server.url, "t-trainer-0123456789abcdef", transport=network)
    try:
        with JobRun(trainer, worker=REMOTE, job_id=chosen) as run:
            assert run.claim is not None
            [lost] = network.lost
            assert (lost["job"]["job_id"], lost["attempt"], lost["run_token"]) == (
                run.claim.job_id,
                run.claim.attempt,
                run.claim.run_token,
            )
            assert operator.job("second")["status"] == "queued", "the retry started no other job"
    finally:
        trainer.close()
    assert operator.job("first")["status"] == "completed", "the token the retry got is the run's"
    events = server.client("audrey").history("first")["events"]
    assert [e["type"] for e in events].count("job_started") == 1
    assert operator.job("second")["status"] == "queued"
