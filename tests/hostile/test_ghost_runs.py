"""A lost answer never leaves a ghost run: a run that stops heartbeating is dead after its
lease whatever its process does, the worker heartbeats by the server's lease, and a run's
final report is delivered (or given up on, loudly) before its worker moves on."""

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from api.app import create_app
from api.auth import TokenBook
from api.bootstrap import Ledger, wire_ledger
from ledger.client import JobRun, LedgerClient, ReportUndelivered
from ledger.commands import WorkerIdentity
from ledger.database import create_ledger_engine, libpq_url
from ledger.errors import DatabaseBusy
from ledger.host import process_identity
from ledger.settings import Settings
from projections.current_status.catchup import catch_up_current_status
from projections.recovery.health import OrphanReason
from tests.api.conftest import TOKENS, auth, token_of
from tests.conftest import JobFactory
from tests.e2e.conftest import free_port
from tests.integration.recovery_helpers import poll, training_process

LEASE_S = 0.6
REMOTE = WorkerIdentity(worker_id="far", host="gpu-far-away", pid=4242, pid_started_at=1.0)

AppFor = Callable[..., TestClient]


@pytest.fixture
def app_for(database_url: str, engine: Engine) -> Iterator[AppFor]:
    """The HTTP API over the test's database, served with the lease it is given (and
    through the pool `on`, if given)."""
    clients: list[TestClient] = []
    spec = ",".join(f"{name}:{role}:{token_of(name)}" for name, role in TOKENS.items())

    def make(lease_seconds: float, on: Engine = engine) -> TestClient:
        settings = Settings(lease_seconds=lease_seconds)
        ledger: Ledger = wire_ledger(database_url, on, settings, catch_up_current_status(on))
        tokens = TokenBook.from_env({"JOBLEDGER_TOKENS": spec})
        client = TestClient(create_app(ledger, tokens), raise_server_exceptions=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def trainer_of(app: TestClient, **options: Any) -> LedgerClient:
    """The training server's client, talking to `app` in process."""
    trainer = LedgerClient("http://testserver", token_of("trainer"), **options)
    trainer.http.close()
    trainer.http = app
    app.headers.update(auth("trainer"))
    return trainer


def health(app: TestClient) -> dict[str, Any]:
    answer: dict[str, Any] = app.get("/v1/health", headers=auth("audrey")).json()
    return answer


def test_a_claim_whose_answer_was_lost_is_dead_after_its_lease_though_its_worker_lives(
    app_for: AppFor, job_factory: JobFactory
) -> None:
    app = app_for(LEASE_S)
    job = job_factory(auto_retry=False)
    with training_process() as worker:
        identity = process_identity("trainer", worker.pid)
        claimed = app.post("/v1/queue/claim", json=worker_body(identity), headers=auth("trainer"))
        assert claimed.status_code == 200  # and the worker never reads it
        fresh = health(app)
        assert (fresh["healthy"], fresh["total_running_alive"]) == (True, 1)

        silent = poll(lambda: (view := health(app))["orphaned_jobs"] and view)
        assert silent["orphaned_jobs"][0]["reason"] == OrphanReason.UNRESPONSIVE
        assert (silent["healthy"], silent["total_running"], silent["total_running_alive"]) == (
            False,
            1,
            0,
        )
        shown = app.get(f"/v1/jobs/{job.job_id}", headers=auth("audrey")).json()
        assert (shown["health"], shown["health_reason"]) == ("orphaned", "unresponsive")

        reconciled = app.post("/v1/admin/reconcile", headers=auth("alice")).json()
        assert [(a["job_id"], a["action"], a["applied"]) for a in reconciled["actions"]] == [
            (job.job_id, "mark_failed", True)
        ]
        assert worker.poll() is None, "its process lived throughout"
    failed = app.get(f"/v1/jobs/{job.job_id}", headers=auth("audrey")).json()
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == "process terminated unexpectedly (unresponsive)"


def test_an_operator_can_force_start_a_run_whose_live_process_stayed_silent(
    app_for: AppFor, job_factory: JobFactory
) -> None:
    app = app_for(LEASE_S)
    job = job_factory()
    with training_process() as worker:
        identity = process_identity("trainer", worker.pid)
        app.post("/v1/queue/claim", json=worker_body(identity), headers=auth("trainer"))
        poll(lambda: health(app)["orphaned_jobs"])
        forced = app.post(
            f"/v1/jobs/{job.job_id}/force-start", json={"reason": "ghost"}, headers=auth("alice")
        )
        assert forced.status_code == 200, forced.text
        assert forced.json()["job"]["status"] == "queued"


def test_a_job_run_heartbeats_at_a_third_of_the_lease_the_server_states_and_follows_it(
    app_for: AppFor, job_factory: JobFactory
) -> None:
    job = job_factory()
    short, long = app_for(LEASE_S), app_for(60)
    trainer = trainer_of(short)
    with JobRun(trainer, worker=REMOTE) as run:  # assumes 90 s until told
        assert run.claim is not None and run.claim.lease_seconds == LEASE_S
        assert run.heartbeat_every == pytest.approx(LEASE_S / 3)
        poll(lambda: trainer.job(job.job_id)["last_heartbeat_at"])
        long.headers.update(auth("trainer"))
        trainer.http = long  # as if the server were restarted with another lease
        poll(lambda: run.heartbeat_every == 20)
    assert trainer.job(job.job_id)["status"] == "completed"


def test_the_runs_of_one_client_are_heartbeaten_together_by_one_thread_in_one_request(
    app_for: AppFor, job_factory: JobFactory
) -> None:
    jobs = [job_factory(), job_factory()]
    trainer = trainer_of(app_for(LEASE_S))
    beats: list[int] = []

    def count_runs(request: httpx.Request) -> None:
        assert not request.url.path.endswith("/heartbeat"), "no run heartbeats alone"
        if request.url.path == "/v1/heartbeats":
            beats.append(len(json.loads(request.content)["runs"]))

    trainer.http.event_hooks["request"].append(count_runs)
    with JobRun(trainer, worker=REMOTE) as first, JobRun(trainer, worker=REMOTE) as second:
        assert {first.job_id, second.job_id} == {job.job_id for job in jobs}
        poll(lambda: 2 in beats)
        poll(lambda: [t.name for t in threading.enumerate()].count("jobledger-heartbeats") == 1)
        assert all(trainer.job(job.job_id)["last_heartbeat_at"] for job in jobs)
    poll(lambda: not trainer.run_heartbeats.beating)
    assert [trainer.job(job.job_id)["status"] for job in jobs] == ["completed", "completed"]


@pytest.mark.parametrize("server", ["current", "without POST /v1/heartbeats"])
def test_a_fenced_run_is_told_to_stop_and_the_others_beat_on(
    app_for: AppFor, job_factory: JobFactory, server: str
) -> None:
    """Also against an older server (a training process upgraded before its ledger): it
    answers `POST /v1/heartbeats` 404, and each run is heartbeaten on its own from then on."""
    taken, kept = job_factory(), job_factory()
    app = app_for(LEASE_S)
    if server != "current":
        router = app.app.router  # type: ignore[attr-defined]
        router.routes = [r for r in router.routes if getattr(r, "path", "") != "/v1/heartbeats"]
    trainer = trainer_of(app)
    with (
        JobRun(trainer, worker=REMOTE, job_id=taken.job_id) as fenced,
        JobRun(trainer, worker=REMOTE, job_id=kept.job_id) as running,
    ):
        poll(lambda: trainer.job(kept.job_id)["last_heartbeat_at"])
        failed = app.post(
            f"/v1/jobs/{taken.job_id}/mark-failed",
            json={"reason": "taken back"},
            headers=auth("alice"),
        )
        assert failed.status_code == 200, failed.text
        poll(lambda: fenced.should_stop)
        beaten = trainer.job(kept.job_id)["last_heartbeat_at"]
        poll(lambda: trainer.job(kept.job_id)["last_heartbeat_at"] != beaten)
        assert not running.should_stop
    assert trainer.job(kept.job_id)["status"] == "completed"
    assert trainer.job(taken.job_id)["status"] == "failed"


def test_claim_and_heartbeat_answers_state_the_lease(
    app_for: AppFor, job_factory: JobFactory
) -> None:
    app = app_for(LEASE_S)
    job = job_factory()
    claim = app.post("/v1/queue/claim", json=worker_body(REMOTE), headers=auth("trainer")).json()
    assert claim["lease_seconds"] == LEASE_S
    run = {"attempt": claim["attempt"], "run_token": claim["run_token"]}
    beat = app.post(f"/v1/jobs/{job.job_id}/heartbeat", json=run, headers=auth("trainer"))
    assert beat.json()["lease_seconds"] == LEASE_S
    renewed = datetime.fromisoformat(beat.json()["lease_expires_at"])
    assert renewed > datetime.fromisoformat(claim["lease_expires_at"])


def test_a_final_report_that_cannot_be_delivered_in_time_says_so_when_the_time_is_up(
    app_for: AppFor, job_factory: JobFactory
) -> None:
    job = job_factory()
    app = app_for(60)
    trainer = trainer_of(app, retries=1, backoff=0.05)  # one request: 0.05 s at most
    run = JobRun(trainer, worker=REMOTE, report_within=1.0)
    undelivered = pytest.raises(ReportUndelivered, match="the complete report was not acknowledged")
    with undelivered, run:
        trainer.http = httpx.Client(base_url=f"http://127.0.0.1:{free_port()}")  # gone
        started = time.monotonic()
    assert 1.0 <= time.monotonic() - started < 1.0 + 2  # the deadline, not `retries` tries
    trainer.http.close()
    left = app.get(f"/v1/jobs/{job.job_id}", headers=auth("audrey")).json()
    assert left["status"] == "running", "judged by its lease from now on"


def worker_body(worker: WorkerIdentity) -> dict[str, Any]:
    return {
        "worker_id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "pid_started_at": worker.pid_started_at,
        "boot_id": worker.boot_id,
    }


def test_a_final_report_that_finds_the_database_busy_until_its_deadline_says_so(
    app_for: AppFor, database_url: str, job_factory: JobFactory
) -> None:
    job = job_factory()
    impatient = create_ledger_engine(database_url, Settings(lock_timeout_ms=100))
    app = app_for(60, impatient)
    trainer = trainer_of(app, retries=1, backoff=0.05)
    undelivered = pytest.raises(ReportUndelivered, match="the fail report was not acknowledged")
    try:
        run = JobRun(trainer, worker=REMOTE, report_within=1)
        with ExitStack() as held, undelivered as caught, run:
            held.enter_context(row_locked(database_url, job.job_id))
            raise RuntimeError("out of memory")
    finally:
        impatient.dispose()
    assert isinstance(caught.value.__cause__, DatabaseBusy)


@contextmanager
def row_locked(database_url: str, job_id: str) -> Iterator[None]:
    """The job's row locked by another session, as a stuck maintenance transaction would."""
    with psycopg.connect(libpq_url(database_url)) as holder:
        holder.execute("SELECT 1 FROM job_status WHERE job_id = %s FOR UPDATE", [job_id])
        try:
            yield
        finally:
            holder.rollback()
