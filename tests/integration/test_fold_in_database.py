"""The rebuild's set-based fold gives the rows `evolve` gives, on every path a job can take."""

import functools
import json
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

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
)
from ledger.events import EVENT_CLASSES
from ledger.evolve import evolve
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.state import JobState
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.current_status.fold_in_database import FOLDED_EVENT_TYPES
from projections.current_status.rebuild import rebuild_current_status
from tests.conftest import WORKER

Step = Callable[[JobState], JobCommand]


def run(state: JobState, command: str, **fields: object) -> JobCommand:
    kinds: dict[str, type] = {
        "pause": PauseJob,
        "resume": ResumeJob,
        "checkpoint": SaveCheckpoint,
        "complete": CompleteJob,
        "fail": FailJob,
    }
    token = f"token-{state.attempt}"  # the token `start` gave this attempt
    return kinds[command](attempt=state.attempt, run_token=token, **fields)  # type: ignore[no-any-return]


def start(n: int) -> Step:
    """Start attempt `n`, fenced by the token `token-n`."""
    return lambda s: StartJob(worker=WORKER, run_token=f"token-{n}")


PATHS: dict[str, tuple[JobCommand, list[Step]]] = {
    "pending, submitted, run with checkpoints, paused, resumed, completed": (
        RegisterJob(initial_status=JobStatus.PENDING, spec={"lr": 0.1}, priority=3),
        [
            lambda s: SubmitJob(),
            start(1),
            lambda s: run(s, "checkpoint", path="/ck/1", step=100),
            lambda s: run(s, "pause"),
            lambda s: run(s, "resume"),
            lambda s: run(s, "checkpoint", path="/ck/2", step=None),
            lambda s: run(s, "complete", result={"loss": 0.25}),
        ],
    ),
    "failed, re-queued from its checkpoint, started again, still running": (
        RegisterJob(max_attempts=3, auto_retry=True),
        [
            start(1),
            lambda s: run(s, "checkpoint", path="/ck/a", step=7),
            lambda s: run(s, "fail", reason="OOM"),
            lambda s: RequeueJob(reason="retry"),
            start(2),
        ],
    ),
    "failed, then completed on a later attempt": (
        RegisterJob(),
        [
            start(1),
            lambda s: run(s, "fail", reason="flaky"),
            lambda s: RequeueJob(resume_from="/elsewhere"),
            start(2),
            lambda s: run(s, "complete", result=None),
        ],
    ),
    "a dead run force-started: marked failed and queued in one decision": (
        RegisterJob(),
        [start(1), lambda s: ForceStart(reason="dead", run_is_dead=True)],
    ),
    "marked failed by an operator, then cancelled after a re-queue": (
        RegisterJob(),
        [
            start(1),
            lambda s: MarkFailed(reason="lost"),
            lambda s: RequeueJob(),
            lambda s: CancelJob(reason="not needed"),
        ],
    ),
    "pending, force-started, completed": (
        RegisterJob(initial_status=JobStatus.PENDING),
        [
            lambda s: ForceStart(reason="stuck"),
            start(1),
            lambda s: run(s, "complete", result={"ok": True}),
        ],
    ),
    "cancelled while pending": (
        RegisterJob(initial_status=JobStatus.PENDING),
        [lambda s: CancelJob()],
    ),
    "only registered": (RegisterJob(spec={}), []),
}


@pytest.mark.parametrize("path", PATHS, ids=list(PATHS))
def test_a_rebuilt_row_equals_the_live_one(
    path: str, service: JobService, store: EventStore, engine: Engine
) -> None:
    register, steps = PATHS[path]
    state = service.execute("job", register, actor="t").state
    for step in steps:
        command = step(state)
        if isinstance(command, StartJob):  # a job is started by the queue, as in production
            queue = JobQueue(store, run_tokens=functools.partial(str, command.run_token))
            state = queue.start("job", command.worker, actor="t").job
        else:
            state = service.execute("job", command, actor="t").state
    assert store.load("job") == state

    report = rebuild_current_status(engine)

    assert (report.jobs, report.events) == (1, state.version)
    assert store.load("job") == state


def test_every_kind_of_event_is_folded() -> None:
    assert set(EVENT_CLASSES) == FOLDED_EVENT_TYPES


def test_an_empty_log_rebuilds_to_no_rows(engine: Engine, store: EventStore) -> None:
    report = rebuild_current_status(engine)
    assert (report.jobs, report.events) == (0, 0)


def test_a_job_queued_again_before_any_start_keeps_where_it_resumes_from(
    service: JobService, store: EventStore, engine: Engine
) -> None:
    service.execute("job", RegisterJob(initial_status=JobStatus.PENDING), actor="t")
    service.execute("job", ForceStart(reason="stuck"), actor="t")
    service.execute("job", CancelJob(), actor="t")
    service.execute("job", RequeueJob(resume_from="/ck/imported"), actor="t")
    live = service.execute("job", CancelJob(reason="later"), actor="t").state
    assert live.resume_from == "/ck/imported"

    rebuild_current_status(engine)

    assert store.load("job") == live


def test_a_rebuild_leaves_every_index_of_the_projection_as_it_was(
    service: JobService, engine: Engine
) -> None:
    service.execute("job", RegisterJob(), actor="t")
    query = text(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = 'job_status'::regclass ORDER BY 1"
    )
    with engine.connect() as conn:
        before = conn.execute(query).all()
    rebuild_current_status(engine)
    with engine.connect() as conn:
        after = conn.execute(query).all()
    assert len(before) >= 5
    assert after == before


def test_payloads_without_their_optional_keys_fold_to_the_classes_defaults(
    engine: Engine, store: EventStore
) -> None:
    # Written by an older producer: only the keys it knew.
    events = [
        ("job_registered", {"initial_status": "queued"}),
        ("job_started", {"run_token": "t", "worker_id": "w", "host": "h"}),
        ("checkpoint_saved", {"path": "/ck"}),
        ("job_completed", {}),
    ]
    with engine.begin() as conn:
        for seq, (type_, payload) in enumerate(events, start=1):
            conn.execute(
                text(
                    "INSERT INTO job_events (job_id, seq, type, payload, actor) "
                    "VALUES ('old', :seq, :type, CAST(:payload AS jsonb), 'x')"
                ),
                {"seq": seq, "type": type_, "payload": json.dumps(payload)},
            )
    replayed = None
    for event in store.history("old"):
        replayed = evolve(replayed, event)
    assert replayed is not None and replayed.auto_retry is False and replayed.spec == {}

    rebuild_current_status(engine)

    assert store.load("old") == replayed
