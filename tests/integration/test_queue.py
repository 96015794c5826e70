"""Claiming from the queue and heartbeating a run."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger.commands import MarkFailed, RequeueJob, SaveCheckpoint, WorkerIdentity
from ledger.errors import IllegalTransition, JobNotFound, StaleAttempt
from ledger.leases import renew_lease
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.statuses import JobStatus
from ledger.store import EventStore
from tests.conftest import WORKER, JobFactory


@pytest.fixture
def queue(store: EventStore) -> JobQueue:
    return JobQueue(store, lease_seconds=60)


def test_claiming_from_an_empty_queue_returns_nothing(queue: JobQueue) -> None:
    assert queue.claim(WORKER, actor="w") is None


def test_claims_take_higher_priority_first_then_the_longest_waiting(
    queue: JobQueue, job_factory: JobFactory
) -> None:
    first = job_factory(priority=0)
    urgent = job_factory(priority=9)
    second = job_factory(priority=0)
    order = [claim.job.job_id for claim in iter(lambda: queue.claim(WORKER, actor="w"), None)]
    assert order == [urgent.job_id, first.job_id, second.job_id]


def test_a_claim_starts_a_new_attempt_with_a_token_and_a_lease(
    queue: JobQueue, job_factory: JobFactory, store: EventStore
) -> None:
    job = job_factory()
    claim = queue.claim(WORKER, actor="worker-1")
    assert claim is not None
    assert (claim.job.job_id, claim.attempt, claim.job.status) == (job.job_id, 1, "running")
    assert len(claim.run_token) == 32
    assert claim.lease_expires_at > claim.job.started_at  # type: ignore[operator]
    assert store.load(job.job_id) == claim.job
    started = store.history(job.job_id)[-1]
    assert (started.type, started.actor, started.attempt) == ("job_started", "worker-1", 1)


def test_a_requeued_job_is_claimed_with_its_checkpoint_to_resume_from(
    queue: JobQueue, job_factory: JobFactory, service: JobService
) -> None:
    job = job_factory(JobStatus.RUNNING)
    token = f"token-{job.job_id}"
    service.execute(job.job_id, SaveCheckpoint(attempt=1, run_token=token, path="/ck/7"), actor="w")
    service.execute(job.job_id, MarkFailed(reason="node lost"), actor="op")
    service.execute(job.job_id, RequeueJob(), actor="op")
    claim = queue.claim(WORKER, actor="w")
    assert claim is not None
    assert (claim.attempt, claim.resume_from) == (2, "/ck/7")


def test_a_claimed_job_is_what_the_rules_make_of_its_events(
    queue: JobQueue, job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    from ledger.commands import StartJob
    from ledger.decide import decide
    from ledger.evolve import evolve

    job = job_factory(JobStatus.RUNNING)
    token = f"token-{job.job_id}"
    service.execute(job.job_id, SaveCheckpoint(attempt=1, run_token=token, path="/ck/3"), actor="w")
    service.execute(job.job_id, MarkFailed(reason="lost"), actor="op")
    before = service.execute(job.job_id, RequeueJob(), actor="op").state
    worker = WorkerIdentity(
        worker_id="w-9", host="gpu-9", pid=4321, pid_started_at=1764000000.125, boot_id="b"
    )

    claim = queue.claim(worker, actor="w-9")

    assert claim is not None
    replayed = None
    for event in store.history(job.job_id):
        replayed = evolve(replayed, event)
    assert claim.job == replayed == store.load(job.job_id)
    started = store.history(job.job_id)[-1]
    [expected] = decide(
        before, StartJob(worker=worker, run_token=claim.run_token), job_id=job.job_id
    )
    assert started.data == expected
    assert (started.seq, started.attempt, started.actor) == (before.version + 1, 2, "w-9")


def test_starting_a_chosen_job_uses_the_claim_path(
    queue: JobQueue, job_factory: JobFactory
) -> None:
    job_factory()
    chosen = job_factory()
    claim = queue.start(chosen.job_id, WORKER, actor="w")
    assert claim.job.job_id == chosen.job_id and claim.attempt == 1
    with pytest.raises(IllegalTransition, match="running"):
        queue.start(chosen.job_id, WORKER, actor="w")
    with pytest.raises(JobNotFound):
        queue.start("no-such-job", WORKER, actor="w")


def test_sixteen_concurrent_claims_over_ten_jobs_get_ten_distinct_jobs_and_six_empties(
    queue: JobQueue, job_factory: JobFactory, store: EventStore
) -> None:
    jobs = {job_factory().job_id for _ in range(10)}
    barrier = threading.Barrier(16)

    def claim(index: int) -> str | None:
        worker = WorkerIdentity(worker_id=f"w{index}", host="h")
        barrier.wait()
        claimed = queue.claim(worker, actor=f"w{index}")
        return None if claimed is None else claimed.job.job_id

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(claim, range(16)))

    claimed = [job for job in results if job is not None]
    assert sorted(claimed) == sorted(jobs)
    assert results.count(None) == 6
    for job_id in jobs:
        assert [e.type for e in store.history(job_id)].count("job_started") == 1


def test_a_heartbeat_renews_the_lease_of_the_current_attempt(
    queue: JobQueue, job_factory: JobFactory, store: EventStore
) -> None:
    job_factory()
    claim = queue.claim(WORKER, actor="w")
    assert claim is not None
    renewed = renew_lease(store, claim.job.job_id, claim.attempt, claim.run_token, 60)
    assert renewed >= claim.lease_expires_at
    assert len(store.history(claim.job.job_id)) == 2, "heartbeats never enter the log"


def test_a_heartbeat_with_a_wrong_token_or_a_closed_attempt_is_fenced(
    queue: JobQueue, job_factory: JobFactory, store: EventStore, service: JobService
) -> None:
    job_factory()
    claim = queue.claim(WORKER, actor="w")
    assert claim is not None
    job_id = claim.job.job_id
    with pytest.raises(StaleAttempt, match="token"):
        renew_lease(store, job_id, claim.attempt, "forged", 60)
    with pytest.raises(StaleAttempt, match=r"no such attempt|newer"):
        renew_lease(store, job_id, claim.attempt + 1, claim.run_token, 60)
    service.execute(job_id, MarkFailed(reason="declared dead"), actor="op")
    with pytest.raises(StaleAttempt, match="closed"):
        renew_lease(store, job_id, claim.attempt, claim.run_token, 60)


@pytest.mark.parametrize(
    "stale",
    [
        "a wrong token",
        "an attempt not yet opened",
        "a closed attempt",
        "a wrong token for a closed attempt",
        "an older attempt",
    ],
)
def test_a_heartbeat_and_a_report_of_the_same_stale_run_are_fenced_in_the_same_words(
    queue: JobQueue, job_factory: JobFactory, store: EventStore, service: JobService, stale: str
) -> None:
    job_factory()
    claim = queue.claim(WORKER, actor="w")
    assert claim is not None
    job_id, attempt, token = claim.job.job_id, claim.attempt, claim.run_token
    if "wrong token" in stale:
        token = "forged"
    if stale == "an attempt not yet opened":
        attempt += 1
    if "closed" in stale or "older" in stale:
        service.execute(job_id, MarkFailed(reason="declared dead"), actor="op")
    if stale == "an older attempt":
        service.execute(job_id, RequeueJob(), actor="op")
        queue.start(job_id, WORKER, actor="w")

    with pytest.raises(StaleAttempt) as heartbeat:
        renew_lease(store, job_id, attempt, token, 60)
    with pytest.raises(StaleAttempt) as report:
        service.execute(
            job_id, SaveCheckpoint(attempt=attempt, run_token=token, path="/ck"), actor="w"
        )
    assert str(heartbeat.value) == str(report.value)


def test_a_heartbeat_for_an_open_run_without_a_lease_is_fenced(
    queue: JobQueue, job_factory: JobFactory, store: EventStore
) -> None:
    job_factory()
    claim = queue.claim(WORKER, actor="w")
    assert claim is not None
    with store.connection() as conn:
        conn.execute("DELETE FROM job_leases")
    with pytest.raises(StaleAttempt, match="holds no lease"):
        renew_lease(store, claim.job.job_id, claim.attempt, claim.run_token, 60)
