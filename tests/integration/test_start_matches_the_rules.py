"""Property: the claim statement is `decide` and `evolve` for `StartJob`, written in SQL.

A job is driven through a random legal history into each status, then started by
the queue. Where `decide` refuses the start, the queue refuses it with the same
error and writes nothing; where `decide` allows it, the appended event and the
projected row are what `decide` and `evolve` make of the state before it.
"""

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.commands import (
    CancelJob,
    CompleteJob,
    FailJob,
    ForceStart,
    JobCommand,
    MarkFailed,
    PauseJob,
    RegisterJob,
    RequeueJob,
    ResumeJob,
    SaveCheckpoint,
    StartJob,
    SubmitJob,
    WorkerIdentity,
)
from ledger.decide import decide
from ledger.errors import LedgerError
from ledger.events import RecordedEvent
from ledger.evolve import evolve
from ledger.queue import Claim, JobQueue
from ledger.run_tokens import run_token_digest
from ledger.service import JobService
from ledger.state import JobState
from ledger.statuses import JobStatus
from ledger.store import EventStore
from ledger.transitions import ALLOWED_COMMANDS
from projections.job_readings import JobReader
from projections.recovery import health

PENDING, QUEUED, RUNNING, PAUSED = (
    JobStatus.PENDING,
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.PAUSED,
)
COMPLETED, FAILED, CANCELLED = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
workers = st.builds(
    WorkerIdentity,
    worker_id=texts,
    host=texts,
    pid=st.none() | st.integers(1, 2**31 - 1),
    pid_started_at=st.none() | st.floats(0, 2e9, allow_nan=False),
    boot_id=st.none() | texts,
)
paths = st.sampled_from(["/ck/1", "/ck/2", "s3://bucket/ck/3"])


_TO_THE_QUEUE: dict[JobStatus, tuple[str, ...]] = {
    PENDING: ("submit", "force_start"),
    FAILED: ("requeue", "force_start"),
    CANCELLED: ("requeue", "force_start"),
}

ROUTES: dict[JobStatus, dict[JobStatus, tuple[str, ...]]] = {
    PENDING: {},  # only a registration makes a pending job
    QUEUED: {
        **_TO_THE_QUEUE,
        RUNNING: ("force_start_dead", "mark_failed"),
        PAUSED: ("force_start", "mark_failed"),
    },
    RUNNING: {**_TO_THE_QUEUE, QUEUED: ("start",), PAUSED: ("resume",)},
    PAUSED: {**_TO_THE_QUEUE, QUEUED: ("start",), RUNNING: ("pause",)},
    COMPLETED: {**_TO_THE_QUEUE, QUEUED: ("start",), RUNNING: ("complete",), PAUSED: ("resume",)},
    FAILED: {
        PENDING: ("mark_failed",),
        QUEUED: ("mark_failed",),
        RUNNING: ("fail", "mark_failed"),
        PAUSED: ("fail", "mark_failed"),
        CANCELLED: ("requeue", "force_start"),
    },
    CANCELLED: {
        PENDING: ("cancel",),
        QUEUED: ("cancel",),
        RUNNING: ("cancel",),
        PAUSED: ("cancel",),
        FAILED: ("requeue", "force_start"),
    },
}
"""For each target status, the commands that bring a job in a status closer to it
(none when it is there)."""


class Driver:
    """Sends a job the commands a history draws, each through its production path."""

    def __init__(self, service: JobService, queue: JobQueue, data: st.DataObject) -> None:
        self.service, self.queue, self.data = service, queue, data
        self.run_tokens: dict[str, str] = {}
        """The token of each job's latest run, as its claim answered (the ledger keeps none)."""

    def send(self, state: JobState, kind: str) -> JobState:
        if kind == "start":
            worker = self.data.draw(workers)
            claim = self.queue.start(state.job_id, worker, actor="worker")
            self.run_tokens[state.job_id] = claim.run_token
            return claim.job
        draw = self.data.draw
        attempt, token = state.attempt, self.run_tokens.get(state.job_id, "")
        command: JobCommand
        match kind:
            case "submit":
                command = SubmitJob()
            case "pause":
                command = PauseJob(attempt=attempt, run_token=token)
            case "resume":
                command = ResumeJob(attempt=attempt, run_token=token)
            case "checkpoint":
                step = draw(st.none() | st.integers(0, 10**6))
                command = SaveCheckpoint(
                    attempt=attempt, run_token=token, path=draw(paths), step=step
                )
            case "complete":
                command = CompleteJob(attempt=attempt, run_token=token, result={"loss": 0.1})
            case "fail":
                command = FailJob(attempt=attempt, run_token=token, reason="exit code 1")
            case "cancel":
                command = CancelJob(reason=draw(st.none() | texts))
            case "force_start":
                command = ForceStart(reason="stuck")
            case "force_start_dead":
                command = ForceStart(reason="dead", run_is_dead=True)
            case "mark_failed":
                command = MarkFailed(reason="operator")
            case "requeue":
                command = RequeueJob(resume_from=draw(st.none() | paths))
            case _:  # pragma: no cover
                raise AssertionError(kind)
        return self.service.execute(state.job_id, command, actor="op").state


def legal_moves(state: JobState) -> list[str]:
    """The commands the job's status allows, but the final `complete` (it ends the history)."""
    allowed = ALLOWED_COMMANDS[state.status] - {"complete"}
    if state.status is RUNNING:
        allowed = (allowed - {"force_start"}) | {"force_start_dead"}
    return sorted(allowed)


def drive(driver: Driver, target: JobStatus, data: st.DataObject) -> JobState:
    """Register a job and send it a random legal history that ends in `target`."""
    job_id = f"job-{uuid.uuid4().hex[:12]}"
    initial = PENDING if target is PENDING else data.draw(st.sampled_from([PENDING, QUEUED]))
    register = RegisterJob(
        initial_status=initial,
        priority=data.draw(st.integers(-5, 5)),
        max_attempts=data.draw(st.integers(1, 3)),
        auto_retry=data.draw(st.booleans()),
    )
    state = driver.service.execute(job_id, register, actor="op").state
    if target is not PENDING:
        for _ in range(data.draw(st.integers(0, 8))):
            state = driver.send(state, data.draw(st.sampled_from(legal_moves(state))))
    while moves := ROUTES[target].get(state.status, ()):
        state = driver.send(state, data.draw(st.sampled_from(moves)))
    assert state.status is target
    return state


def queue_position(store: EventStore, job_id: str) -> int | None:
    return JobReader(store.engine, health.HealthCheck(store.engine)).read(job_id).queue_position


def lease_of(store: EventStore, job_id: str) -> tuple[Any, ...] | None:
    with store.connection(job_id) as conn:
        return conn.execute(
            "SELECT attempt, run_token_sha256, run_token, worker_id, host, pid, pid_started_at, "
            "boot_id, heartbeat_at, expires_at FROM job_leases WHERE job_id = %s",
            (job_id,),
        ).fetchone()


@pytest.mark.parametrize("target", list(JobStatus), ids=str)
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_the_queue_starts_a_job_exactly_as_decide_and_evolve_do(
    target: JobStatus, data: st.DataObject, service: JobService, store: EventStore
) -> None:
    queue = JobQueue(store, lease_seconds=60)
    before = drive(Driver(service, queue, data), target, data)
    assert store.load(before.job_id) == before
    history, lease = store.history(before.job_id), lease_of(store, before.job_id)
    worker = data.draw(workers, label="worker")
    # A claim takes the first job in the queue: ours, unless an example that hypothesis
    # cut short left one ahead of it. The choice is drawn either way, so what is drawn
    # does not depend on what earlier examples left in the database.
    wants_claim = data.draw(st.booleans(), label="by claim")
    by_claim = wants_claim and queue_position(store, before.job_id) == 1

    try:
        decide(before, StartJob(worker=worker, run_token="t"), job_id=before.job_id)
    except LedgerError as refusal:
        with pytest.raises(type(refusal)) as refused:
            queue.start(before.job_id, worker, actor="worker")
        assert str(refused.value) == str(refusal)
        assert store.load(before.job_id) == before
        assert store.history(before.job_id) == history
        assert lease_of(store, before.job_id) == lease
        return

    claim: Claim | None
    if by_claim:
        claim = queue.claim(worker, actor="worker")
        assert claim is not None
    else:
        claim = queue.start(before.job_id, worker, actor="worker")
    [started] = store.history(before.job_id)[len(history) :]
    [expected] = decide(
        before, StartJob(worker=worker, run_token=claim.run_token), job_id=before.job_id
    )
    assert started.data == expected
    assert (started.seq, started.attempt, started.actor, started.reason) == (
        before.version + 1,
        before.attempt + 1,
        "worker",
        None,
    )
    recorded = RecordedEvent(before.job_id, started.seq, expected, started.recorded_at)
    after = evolve(before, recorded)
    assert claim.job == after
    assert store.load(before.job_id) == after
    assert (claim.attempt, claim.resume_from) == (after.attempt, after.resume_from)
    assert lease_of(store, before.job_id) == (
        after.attempt,
        run_token_digest(claim.run_token),
        None,  # no idempotency key: the lease keeps no token
        worker.worker_id,
        worker.host,
        worker.pid,
        worker.pid_started_at,
        worker.boot_id,
        None,
        claim.lease_expires_at,
    )
