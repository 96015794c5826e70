"""Runs and retries the ledger keeps whole: a run token never leaves the claim's answer,
what the log stores of it cannot act on the run, and old runs keep working."""

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from alembic import command
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from ledger.commands import CompleteJob, MarkFailed, RegisterJob, RequeueJob, WorkerIdentity
from ledger.errors import IdempotencyKeyReused, StaleAttempt
from ledger.leases import renew_lease
from ledger.migrate import alembic_config
from ledger.queue import Claim, JobQueue
from ledger.service import JobService
from ledger.statuses import JobStatus
from ledger.store import Connection, EventStore
from projections.current_status.verify import verify_current_status
from tests.api import conftest as api_fixtures
from tests.api.conftest import auth
from tests.hostile.test_timeouts import sessions_waiting_on_a_lock
from tests.integration.recovery_helpers import poll

# The HTTP API's fixtures, shared with tests/api.
ledger, client_for, client = api_fixtures.ledger, api_fixtures.client_for, api_fixtures.client

WORKER = WorkerIdentity(worker_id="w-1", host="gpu-1", pid=4242)
WORKER_BODY = {"worker_id": "w-1", "host": "gpu-1", "pid": 4242}
LEGACY_TOKEN = "legacy-run-token-0123456789abcdef"


def read_out(client: TestClient, job_id: str) -> str:
    """Everything an auditor reads about the job: its history and the feed's page."""
    history = client.get(f"/v1/jobs/{job_id}/history", headers=auth("audrey"))
    feed = client.get("/v1/events", headers=auth("audrey"))
    assert history.status_code == feed.status_code == 200
    return f"{history.text}{feed.text}"


def stored_tokens(engine: Engine, job_id: str) -> list[str]:
    """Whatever the log, the projection and the lease hold where a token used to be."""
    with engine.connect() as conn:
        return [
            str(value)
            for value in conn.execute(
                text(
                    "SELECT payload->>'run_token_sha256' FROM job_events "
                    "WHERE job_id = :id AND type = 'job_started' "
                    "UNION ALL SELECT run_token_sha256 FROM job_status WHERE job_id = :id "
                    "UNION ALL SELECT run_token_sha256 FROM job_leases WHERE job_id = :id"
                ),
                {"id": job_id},
            ).scalars()
        ]


# -- run tokens out of the log ---------------------------------------------------------


def test_a_claimed_run_token_is_in_no_history_and_no_feed_page(client: TestClient) -> None:
    client.post("/v1/jobs", json={"job_id": "secret-run"}, headers=auth("trainer"))
    claim = client.post("/v1/queue/claim", json=WORKER_BODY, headers=auth("trainer")).json()
    token = claim["run_token"]

    shown = read_out(client, "secret-run")

    assert token not in shown
    assert "run_token" not in shown  # nor its digest, nor the field at all
    [started] = [
        event
        for event in client.get("/v1/jobs/secret-run/history", headers=auth("audrey")).json()[
            "events"
        ]
        if event["type"] == "job_started"
    ]
    assert started["payload"]["worker_id"] == "w-1"


def test_what_the_ledger_stores_of_a_token_cannot_heartbeat_or_complete_the_run(
    service: JobService, store: EventStore, engine: Engine
) -> None:
    service.execute("guarded", RegisterJob(), actor="t")
    claim = JobQueue(store).claim(WORKER, actor="w")
    assert claim is not None
    stored = stored_tokens(engine, "guarded")
    assert len(stored) == 3 and claim.run_token not in stored

    for read in set(stored):
        with pytest.raises(StaleAttempt, match="the run token does not match"):
            renew_lease(store, "guarded", claim.attempt, read, 60)
        with pytest.raises(StaleAttempt, match="the run token does not match"):
            service.execute("guarded", CompleteJob(attempt=1, run_token=read), actor="thief")

    renew_lease(store, "guarded", claim.attempt, claim.run_token, 60)
    done = service.execute("guarded", CompleteJob(attempt=1, run_token=claim.run_token), actor="w")
    assert done.state.status is JobStatus.COMPLETED


def write_legacy_run(engine: Engine, job_id: str) -> None:
    """A running job as the code before migration 0008 wrote it: the token itself in the
    start's payload, in the projected row and in the lease."""
    started = {
        "run_token": LEGACY_TOKEN,
        "worker_id": "w-old",
        "host": "gpu-old",
        "pid": 7,
        "pid_started_at": None,
        "boot_id": None,
        "resume_from": None,
    }
    registered = {
        "initial_status": "queued",
        "spec": {},
        "priority": 0,
        "max_attempts": 1,
        "auto_retry": False,
    }
    with engine.begin() as conn:
        for seq, (type_, payload, attempt) in enumerate(
            [("job_registered", registered, 0), ("job_started", started, 1)], start=1
        ):
            conn.execute(
                text(
                    "INSERT INTO job_events (job_id, seq, type, payload, actor, attempt) "
                    "VALUES (:id, :seq, :type, CAST(:payload AS jsonb), 'old-worker', :attempt)"
                ),
                {
                    "id": job_id,
                    "seq": seq,
                    "type": type_,
                    "payload": json.dumps(payload),
                    "attempt": attempt,
                },
            )
        conn.execute(
            text(
                "INSERT INTO job_status (job_id, status, version, created_at, updated_at, "
                "status_changed_at, priority, max_attempts, auto_retry, spec, attempt, "
                "run_token, queued_at, started_at, worker_id, worker_host, worker_pid) "
                "SELECT :id, 'running', 2, min(recorded_at), max(recorded_at), "
                "max(recorded_at), 0, 1, false, '{}', 1, :token, min(recorded_at), "
                "max(recorded_at), 'w-old', 'gpu-old', 7 FROM job_events WHERE job_id = :id"
            ),
            {"id": job_id, "token": LEGACY_TOKEN},
        )
        conn.execute(
            text(
                "INSERT INTO job_leases (job_id, attempt, run_token, worker_id, host, pid, "
                "expires_at) VALUES (:id, 1, :token, 'w-old', 'gpu-old', 7, "
                "now() + interval '1 hour')"
            ),
            {"id": job_id, "token": LEGACY_TOKEN},
        )


def test_a_run_started_before_the_migration_heartbeats_and_completes_with_its_token(
    database_url: str, engine: Engine, store: EventStore, service: JobService
) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "0007")
    write_legacy_run(engine, "legacy")
    command.upgrade(config, "head")
    engine.dispose()  # the upgrade changed the tables under the pool's prepared statements

    assert LEGACY_TOKEN not in stored_tokens(engine, "legacy")
    assert verify_current_status(engine).clean  # the replay derives the same digest
    renew_lease(store, "legacy", 1, LEGACY_TOKEN, 60)
    with pytest.raises(StaleAttempt):
        renew_lease(store, "legacy", 1, "not-the-token", 60)
    done = service.execute("legacy", CompleteJob(attempt=1, run_token=LEGACY_TOKEN), actor="w")
    assert done.state.status is JobStatus.COMPLETED


def test_a_legacy_start_shows_readers_no_token(client: TestClient, engine: Engine) -> None:
    # Written through SQL, as the code before migration 0008 wrote the log (the log
    # keeps such events forever).
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO job_events (job_id, seq, type, payload, actor) VALUES "
                "('old', 1, 'job_registered', '{\"initial_status\": \"queued\"}', 'x'), "
                "('old', 2, 'job_started', CAST(:started AS jsonb), 'x')"
            ),
            {"started": json.dumps({"run_token": LEGACY_TOKEN, "worker_id": "w", "host": "h"})},
        )

    shown = read_out(client, "old")

    assert '"job_started"' in shown
    assert LEGACY_TOKEN not in shown and "run_token" not in shown


# -- an idempotency key bound to its request -------------------------------------------


def test_a_key_repeated_with_the_same_registration_returns_the_job_and_with_another_is_422(
    client: TestClient,
) -> None:
    headers = auth("trainer") | {"Idempotency-Key": "register-once"}
    body = {"job_id": "keyed", "spec": {"lr": 0.1}, "priority": 1}
    first = client.post("/v1/jobs", json=body, headers=headers)
    again = client.post("/v1/jobs", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["version"] == first.json()["version"]

    for changed in ({"spec": {"lr": 0.2}}, {"priority": 9}):
        refused = client.post("/v1/jobs", json=body | changed, headers=headers)
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"].endswith("/idempotency-key-reused")
        assert (problem["job_id"], problem["idempotency_key"]) == ("keyed", "register-once")

    job = client.get("/v1/jobs/keyed", headers=auth("audrey")).json()
    assert (job["spec"], job["priority"], job["version"]) == ({"lr": 0.1}, 1, 1)


def test_the_key_of_a_mark_failed_reused_on_a_requeue_is_refused(
    service: JobService, store: EventStore
) -> None:
    service.execute("reused", RegisterJob(), actor="t")
    failed = service.execute(
        "reused", MarkFailed(reason="bad data"), actor="op", idempotency_key="op-1"
    )
    repeated = service.execute(
        "reused", MarkFailed(reason="bad data"), actor="op", idempotency_key="op-1"
    )
    assert repeated.replayed and repeated.events == failed.events

    with pytest.raises(IdempotencyKeyReused) as refused:
        service.execute("reused", RequeueJob(reason="retry"), actor="op", idempotency_key="op-1")
    assert refused.value.status_code == 422

    state = store.load("reused")
    assert state is not None and state.status is JobStatus.FAILED
    assert [event.type for event in store.history("reused")] == [
        "job_registered",
        "job_marked_failed",
    ]


def test_a_reused_key_is_a_422_over_http_too(client: TestClient) -> None:
    client.post("/v1/jobs", json={"job_id": "op"}, headers=auth("trainer"))
    headers = auth("alice") | {"Idempotency-Key": "op-key"}
    marked = client.post("/v1/jobs/op/mark-failed", json={"reason": "x"}, headers=headers)
    assert marked.status_code == 200
    requeued = client.post("/v1/jobs/op/requeue", json={}, headers=headers)
    assert requeued.status_code == 422
    assert requeued.json()["type"].endswith("/idempotency-key-reused")
    assert client.get("/v1/jobs/op", headers=auth("audrey")).json()["status"] == "failed"


# -- claims and starts idempotent by key -----------------------------------------------


def queued_jobs(service: JobService, *job_ids: str) -> None:
    for job_id in job_ids:
        service.execute(job_id, RegisterJob(), actor="t")


def test_a_claim_retried_with_its_key_is_the_same_run_and_starts_nothing_else(
    service: JobService, store: EventStore
) -> None:
    queued_jobs(service, "first", "second")
    queue = JobQueue(store)

    claimed = queue.claim(WORKER, actor="trainer", idempotency_key="claim-1")
    retried = queue.claim(WORKER, actor="trainer", idempotency_key="claim-1")

    assert claimed is not None and retried is not None
    assert (retried.job.job_id, retried.attempt, retried.run_token) == (
        claimed.job.job_id,
        claimed.attempt,
        claimed.run_token,
    )
    assert retried.lease_expires_at == claimed.lease_expires_at
    other = "second" if claimed.job.job_id == "first" else "first"
    state = store.load(other)
    assert state is not None and state.status is JobStatus.QUEUED
    assert [event.type for event in store.history(claimed.job.job_id)].count("job_started") == 1
    renew_lease(store, claimed.job.job_id, retried.attempt, retried.run_token, 60)


def test_a_claim_retried_over_http_with_its_key_answers_the_same_run(client: TestClient) -> None:
    for job_id in ("h-1", "h-2"):
        client.post("/v1/jobs", json={"job_id": job_id}, headers=auth("trainer"))
    headers = auth("trainer") | {"Idempotency-Key": "http-claim"}

    first = client.post("/v1/queue/claim", json=WORKER_BODY, headers=headers)
    again = client.post("/v1/queue/claim", json=WORKER_BODY, headers=headers)

    assert first.status_code == again.status_code == 200
    assert again.json()["run_token"] == first.json()["run_token"]
    assert again.json()["job"]["job_id"] == first.json()["job"]["job_id"]
    statuses = client.get("/v1/jobs", headers=auth("audrey")).json()["jobs"]
    assert sorted(job["status"] for job in statuses) == ["queued", "running"]


def test_two_racing_identical_claims_start_one_run(service: JobService, store: EventStore) -> None:
    rounds, racers = 5, 4
    queued_jobs(service, *(f"race-{n}" for n in range(rounds * racers)))
    queue = JobQueue(store)

    def race(key: str) -> list[Claim | None]:
        barrier = threading.Barrier(racers)

        def claim() -> Claim | None:
            barrier.wait()
            return queue.claim(WORKER, actor="trainer", idempotency_key=key)

        with ThreadPoolExecutor(racers) as pool:
            return list(pool.map(lambda _: claim(), range(racers)))

    for round_ in range(rounds):
        claims = race(f"raced-{round_}")
        runs = {(c.job.job_id, c.attempt, c.run_token) for c in claims if c is not None}
        assert len(runs) == 1 and None not in claims

    states = [store.load(f"race-{n}") for n in range(rounds * racers)]
    running = [s for s in states if s is not None and s.status is JobStatus.RUNNING]
    assert len(running) == rounds


class HeldStartStore(EventStore):
    """A store whose statements and transactions (a keyed start's, whichever way it runs)
    commit only once another session waits on a start key's advisory lock: what it wrote
    stays in flight while a rival start with the same key waits for it (not on a job of
    its own choosing, nor on the key's unique index)."""

    def __init__(self, engine: Engine, database_url: str, started: threading.Event) -> None:
        super().__init__(engine)
        self.database_url = database_url
        self.started = started

    @contextmanager
    def transaction(self, job_id: str = "") -> Iterator[Connection]:
        with super().transaction(job_id) as conn:
            yield conn
            self.started.set()
            poll(lambda: sessions_waiting_on_a_lock(self.database_url, kind="advisory"))

    connection = transaction


@pytest.mark.parametrize(
    "queued",
    [("twin-1", "twin-2"), ("last-one",)],
    ids=["another-job-queued", "twin-took-the-last-job"],
)
def test_a_keyed_claim_that_runs_into_its_twin_in_flight_answers_the_twins_run(
    service: JobService,
    store: EventStore,
    engine: Engine,
    database_url: str,
    queued: tuple[str, ...],
) -> None:
    queued_jobs(service, *queued)
    started = threading.Event()
    held = JobQueue(HeldStartStore(engine, database_url, started))

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(held.claim, WORKER, actor="trainer", idempotency_key="twin")
        assert started.wait(10), "the first claim's statement never ran"
        # It has started a run and not committed: this claim waits for it, and answers
        # its run: not another queued job, nor an empty queue when it took the last one.
        second = JobQueue(store).claim(WORKER, actor="trainer", idempotency_key="twin")
        claimed = first.result(10)

    assert claimed is not None and second is not None
    assert second.replayed and not claimed.replayed
    assert (second.job.job_id, second.attempt, second.run_token) == (
        claimed.job.job_id,
        claimed.attempt,
        claimed.run_token,
    )
    for job_id in set(queued) - {claimed.job.job_id}:
        other = store.load(job_id)
        assert other is not None and other.status is JobStatus.QUEUED
        assert [e.type for e in store.history(job_id)] == ["job_registered"]


def test_a_keyed_start_that_waits_on_its_twin_in_flight_answers_the_twins_run(
    service: JobService, store: EventStore, engine: Engine, database_url: str
) -> None:
    queued_jobs(service, "chosen-twice")
    started = threading.Event()
    held = JobQueue(HeldStartStore(engine, database_url, started))

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            held.start, "chosen-twice", WORKER, actor="trainer", idempotency_key="twin"
        )
        assert started.wait(10), "the first start's statement never ran"
        # It has started the job and not committed: this start waits for it, and answers
        # its run rather than refusing a job no longer queued.
        second = JobQueue(store).start(
            "chosen-twice", WORKER, actor="trainer", idempotency_key="twin"
        )
        first_start = first.result(10)

    assert second.replayed and not first_start.replayed
    assert (second.attempt, second.run_token) == (first_start.attempt, first_start.run_token)
    assert [e.type for e in store.history("chosen-twice")] == ["job_registered", "job_started"]


def test_a_key_is_its_callers_own(service: JobService, store: EventStore) -> None:
    queued_jobs(service, "mine", "yours")
    queue = JobQueue(store)
    mine = queue.claim(WORKER, actor="trainer-a", idempotency_key="same-key")
    yours = queue.claim(WORKER, actor="trainer-b", idempotency_key="same-key")
    assert mine is not None and yours is not None
    assert mine.job.job_id != yours.job.job_id


def test_a_claim_key_reused_by_another_worker_or_a_start_is_422(
    service: JobService, store: EventStore
) -> None:
    queued_jobs(service, "one", "two")
    queue = JobQueue(store)
    claimed = queue.claim(WORKER, actor="trainer", idempotency_key="k")
    assert claimed is not None
    other_worker = WorkerIdentity(worker_id="w-2", host="gpu-2")
    with pytest.raises(IdempotencyKeyReused):
        queue.claim(other_worker, actor="trainer", idempotency_key="k")
    with pytest.raises(IdempotencyKeyReused):
        queue.start(claimed.job.job_id, WORKER, actor="trainer", idempotency_key="k")
    # The key of the claim sent with a command on the same job: another command.
    with pytest.raises(IdempotencyKeyReused):
        service.execute(
            claimed.job.job_id,
            CompleteJob(attempt=claimed.attempt, run_token=claimed.run_token),
            actor="trainer",
            idempotency_key="k",
        )
    state = store.load("two" if claimed.job.job_id == "one" else "one")
    assert state is not None and state.status is JobStatus.QUEUED


def test_a_start_retried_with_its_key_is_the_same_run(
    service: JobService, store: EventStore
) -> None:
    queued_jobs(service, "chosen")
    queue = JobQueue(store)
    started = queue.start("chosen", WORKER, actor="trainer", idempotency_key="start-1")
    again = queue.start("chosen", WORKER, actor="trainer", idempotency_key="start-1")
    assert (again.attempt, again.run_token) == (started.attempt, started.run_token)
    assert len(store.history("chosen")) == 2


def test_a_retry_after_its_run_ended_is_fenced_and_starts_nothing(
    service: JobService, store: EventStore
) -> None:
    queued_jobs(service, "ended", "next")
    queue = JobQueue(store)
    claimed = queue.claim(WORKER, actor="trainer", idempotency_key="late")
    assert claimed is not None
    service.execute(
        claimed.job.job_id,
        CompleteJob(attempt=claimed.attempt, run_token=claimed.run_token),
        actor="trainer",
    )

    with pytest.raises(StaleAttempt, match="the run this idempotency key started has ended"):
        queue.claim(WORKER, actor="trainer", idempotency_key="late")

    state = store.load("next" if claimed.job.job_id == "ended" else "ended")
    assert state is not None and state.status is JobStatus.QUEUED
