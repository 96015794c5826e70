"""Property: for any sequence of commands, the live projection equals the replayed state,
and every refused command appended nothing."""

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

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
    SubmitJob,
)
from ledger.errors import LedgerError
from ledger.evolve import evolve
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.state import JobState
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.current_status.rebuild import rebuild_current_status
from projections.current_status.verify import verify_current_status
from tests.conftest import WORKER

JOBS = 3


def command_for(kind: str, attempt: int, token: str, n: int) -> JobCommand:
    """The command of `kind` (every kind but "start", which goes through the queue)."""
    commands: dict[str, JobCommand] = {
        "register_pending": RegisterJob(initial_status=JobStatus.PENDING, spec={"n": n}),
        "register_queued": RegisterJob(priority=n),
        "submit": SubmitJob(),
        "pause": PauseJob(attempt=attempt, run_token=token),
        "resume": ResumeJob(attempt=attempt, run_token=token),
        "checkpoint": SaveCheckpoint(path=f"/ck/{n}", step=n, attempt=attempt, run_token=token),
        "complete": CompleteJob(result={"n": n}, attempt=attempt, run_token=token),
        "fail": FailJob(reason=f"error {n}", attempt=attempt, run_token=token),
        "cancel": CancelJob(reason="stop"),
        "force_start": ForceStart(reason="stuck"),
        "force_start_dead": ForceStart(reason="dead", run_is_dead=True),
        "mark_failed": MarkFailed(reason="operator"),
        "requeue": RequeueJob(),
    }
    return commands[kind]


steps = st.lists(
    st.tuples(
        st.integers(0, JOBS - 1),
        st.sampled_from(
            [
                "register_pending",
                "register_queued",
                "submit",
                "start",
                "pause",
                "resume",
                "checkpoint",
                "complete",
                "fail",
                "cancel",
                "force_start",
                "force_start_dead",
                "mark_failed",
                "requeue",
            ]
        ),
        st.booleans(),  # use the job's current run token (else a stale one)
    ),
    max_size=30,
)


def start(store: EventStore, job_id: str, token: str) -> None:
    """Start the job as production does, through the queue, with this run token."""
    JobQueue(store, run_tokens=lambda: token).start(job_id, WORKER, actor="p")


def replay(store: EventStore, job_id: str) -> JobState | None:
    state = None
    for event in store.history(job_id):
        state = evolve(state, event)
    return state


def play(steps: list[tuple[int, str, bool]], service: JobService, store: EventStore) -> list[str]:
    """Run the commands on fresh jobs; check each refused one appended nothing."""
    prefix = uuid.uuid4().hex[:8]
    job_ids = [f"{prefix}-{index}" for index in range(JOBS)]
    tokens: dict[str, str] = {}  # each job's latest run token: the ledger keeps only digests
    for n, (index, kind, current_token) in enumerate(steps):
        job_id = job_ids[index]
        state = store.load(job_id)
        attempt = state.attempt if state else 0
        token = tokens.get(job_id, "none") if state and current_token else "stale"
        before = len(store.history(job_id))
        try:
            if kind == "start":
                start(store, job_id, token=f"token-{n}")
                tokens[job_id] = f"token-{n}"
                appended = 1
            else:
                outcome = service.execute(job_id, command_for(kind, attempt, token, n), actor="p")
                appended = len(outcome.events)
        except LedgerError:
            assert len(store.history(job_id)) == before, f"refused {kind} appended events"
            continue
        assert len(store.history(job_id)) == before + appended
    return job_ids


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
def test_the_live_projection_always_equals_the_replay(
    steps: list[tuple[int, str, bool]], service: JobService, store: EventStore, engine: Engine
) -> None:
    for job_id in play(steps, service, store):
        assert store.load(job_id) == replay(store, job_id)
    assert verify_current_status(engine).clean


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
def test_the_set_based_rebuild_always_equals_the_replay(
    steps: list[tuple[int, str, bool]], service: JobService, store: EventStore, engine: Engine
) -> None:
    job_ids = play(steps, service, store)
    report = rebuild_current_status(engine)
    assert report.late_events == 0
    for job_id in job_ids:
        assert store.load(job_id) == replay(store, job_id)
    assert verify_current_status(engine).clean
