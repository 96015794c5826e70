"""`decide`: which events a command causes, and why it is refused."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from ledger.commands import (
    COMMAND_NAMES,
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
    RunCommand,
    SaveCheckpoint,
    StartJob,
    SubmitJob,
    WorkerIdentity,
)
from ledger.decide import DEAD_RUN_REASON, decide
from ledger.errors import (
    CommandRefused,
    DuplicateJob,
    IllegalTransition,
    InvalidCommand,
    JobNotFound,
    StaleAttempt,
)
from ledger.events import (
    CheckpointSaved,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobForceStarted,
    JobMarkedFailed,
    JobPaused,
    JobRegistered,
    JobRequeued,
    JobResumed,
    JobStarted,
    JobSubmitted,
    RecordedEvent,
)
from ledger.evolve import evolve
from ledger.run_tokens import run_token_digest
from ledger.state import JobState
from ledger.statuses import ACTIVE_RUN_STATUSES, JobStatus
from ledger.transitions import ALLOWED_COMMANDS, EVENT_TARGET_STATUS

JOB_ID = "job-1"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WORKER = WorkerIdentity(
    worker_id="worker-a", host="host-a", pid=4242, pid_started_at=1_700_000_000.5, boot_id="b"
)


def apply(state: JobState | None, events: list[JobEvent]) -> JobState:
    """Fold `events` into `state` as the store would record them."""
    for event in events:
        seq = 1 if state is None else state.version + 1
        record = RecordedEvent(
            job_id=JOB_ID, seq=seq, data=event, recorded_at=T0 + timedelta(minutes=seq)
        )
        state = evolve(state, record)
    assert state is not None
    return state


def play(*commands: JobCommand) -> JobState:
    """The state of a job that accepted `commands` in order, from nothing."""
    state: JobState | None = None
    for command in commands:
        state = apply(state, decide(state, command, job_id=JOB_ID))
    assert state is not None
    return state


def start(token: str = "t1") -> StartJob:
    return StartJob(worker=WORKER, run_token=token)


def pause(attempt: int = 1, token: str = "t1") -> PauseJob:
    return PauseJob(attempt=attempt, run_token=token)


def resume(attempt: int = 1, token: str = "t1") -> ResumeJob:
    return ResumeJob(attempt=attempt, run_token=token)


def checkpoint(path: str = "/ckpt/1", attempt: int = 1, token: str = "t1") -> SaveCheckpoint:
    return SaveCheckpoint(attempt=attempt, run_token=token, path=path, step=1)


def complete(attempt: int = 1, token: str = "t1") -> CompleteJob:
    return CompleteJob(attempt=attempt, run_token=token, result={"ok": True})


def fail(attempt: int = 1, token: str = "t1", reason: str = "boom") -> FailJob:
    return FailJob(attempt=attempt, run_token=token, reason=reason)


REGISTER = RegisterJob()
REGISTER_PENDING = RegisterJob(initial_status=JobStatus.PENDING)

# Ways to reach each status, folded through real events.
PATHS: dict[str, tuple[JobCommand, ...]] = {
    "pending": (REGISTER_PENDING,),
    "queued_registered": (REGISTER,),
    "queued_submitted": (REGISTER_PENDING, SubmitJob()),
    "queued_force_started": (REGISTER_PENDING, ForceStart()),
    "queued_requeued": (REGISTER, start(), fail(), RequeueJob()),
    "running": (REGISTER, start()),
    "running_resumed": (REGISTER, start(), pause(), resume()),
    "running_second_attempt": (
        REGISTER,
        start(),
        MarkFailed(reason="x"),
        RequeueJob(),
        start("t2"),
    ),
    "paused": (REGISTER, start(), pause()),
    "paused_checkpointed": (REGISTER, start(), pause(), checkpoint()),
    "completed": (REGISTER, start(), complete()),
    "failed_by_worker": (REGISTER, start(), fail()),
    "failed_by_operator": (REGISTER, MarkFailed(reason="x")),
    "failed_dead_run": (
        REGISTER,
        start(),
        ForceStart(run_is_dead=True),
        start("t2"),
        fail(2, "t2"),
    ),
    "cancelled_pending": (REGISTER_PENDING, CancelJob()),
    "cancelled_running": (REGISTER, start(), CancelJob()),
    "cancelled_paused": (REGISTER, start(), pause(), CancelJob()),
}


def commands_for(state: JobState) -> list[JobCommand]:
    """One command of every kind, the worker ones carrying the current attempt and token
    (every path above starts attempt n with the token `tn`)."""
    attempt, token = state.attempt, f"t{state.attempt}" if state.attempt else "no-token"
    return [
        RegisterJob(),
        SubmitJob(),
        start("fresh"),
        pause(attempt, token),
        resume(attempt, token),
        checkpoint("/ckpt/x", attempt, token),
        complete(attempt, token),
        fail(attempt, token),
        CancelJob(reason="asked"),
        ForceStart(reason="stuck"),
        ForceStart(reason="stuck", run_is_dead=True),
        MarkFailed(reason="operator says so"),
        RequeueJob(reason="again"),
    ]


def command_id(command: JobCommand) -> str:
    name = COMMAND_NAMES[type(command)]
    return f"{name}_dead" if isinstance(command, ForceStart) and command.run_is_dead else name


CASES = [
    pytest.param(path, index, id=f"{path}-{command_id(command)}")
    for path, commands in PATHS.items()
    for index, command in enumerate(commands_for(play(*commands)))
]


def test_the_allowed_commands_are_the_designed_table() -> None:
    assert {
        JobStatus.PENDING: {"submit", "cancel", "force_start", "mark_failed"},
        JobStatus.QUEUED: {"start", "cancel", "force_start", "mark_failed"},
        JobStatus.RUNNING: {
            *("pause", "checkpoint", "complete", "fail"),
            *("cancel", "force_start", "mark_failed"),
        },
        JobStatus.PAUSED: {"resume", "checkpoint", "fail", "cancel", "force_start", "mark_failed"},
        JobStatus.COMPLETED: set(),
        JobStatus.FAILED: {"requeue", "force_start"},
        JobStatus.CANCELLED: {"requeue", "force_start"},
    } == ALLOWED_COMMANDS


def test_the_state_paths_reach_every_status() -> None:
    assert {play(*commands).status for commands in PATHS.values()} == set(JobStatus)


def test_the_table_cases_try_every_kind_of_command() -> None:
    kinds = {type(command) for command in commands_for(play(REGISTER))}
    assert kinds == set(COMMAND_NAMES)


@pytest.mark.parametrize(("path", "index"), CASES)
def test_every_command_in_every_status_obeys_the_transition_table(path: str, index: int) -> None:
    state = play(*PATHS[path])
    command = commands_for(state)[index]
    name = COMMAND_NAMES[type(command)]
    allowed = ALLOWED_COMMANDS[state.status]
    if isinstance(command, RegisterJob):
        with pytest.raises(DuplicateJob):
            decide(state, command, job_id=JOB_ID)
        return
    if isinstance(command, RunCommand) and state.status not in ACTIVE_RUN_STATUSES:
        # Fenced before the table is read: a closed attempt is stale, whatever the command.
        assert name not in allowed
        with pytest.raises(StaleAttempt):
            decide(state, command, job_id=JOB_ID)
        return
    alive_run = (
        isinstance(command, ForceStart)
        and state.status is JobStatus.RUNNING
        and not command.run_is_dead
    )
    if name not in allowed or alive_run:
        with pytest.raises(IllegalTransition) as refused:
            decide(state, command, job_id=JOB_ID)
        assert refused.value.command == name
        assert refused.value.status == state.status
        assert set(refused.value.allowed) == allowed
        return
    events = decide(state, command, job_id=JOB_ID)
    if not events:
        assert (name, state.status) == ("force_start", JobStatus.QUEUED)
        return
    current = state
    for event in events:
        current = apply(current, [event])
        target = EVENT_TARGET_STATUS[event.TYPE]
        assert current.status is (target or state.status)
    assert current.version == state.version + len(events)


# Registration


@pytest.mark.parametrize("initial", [JobStatus.PENDING, JobStatus.QUEUED])
def test_registering_records_everything_the_command_says(initial: JobStatus) -> None:
    command = RegisterJob(
        initial_status=initial, spec={"a": 1}, priority=5, max_attempts=3, auto_retry=True
    )
    assert decide(None, command, job_id=JOB_ID) == [
        JobRegistered(
            initial_status=initial, spec={"a": 1}, priority=5, max_attempts=3, auto_retry=True
        )
    ]


def test_a_job_is_registered_queued_by_default() -> None:
    assert play(RegisterJob()).status is JobStatus.QUEUED


@pytest.mark.parametrize(
    "initial",
    [s for s in JobStatus if s not in (JobStatus.PENDING, JobStatus.QUEUED)],
)
def test_registering_in_a_status_other_than_pending_or_queued_is_invalid(
    initial: JobStatus,
) -> None:
    with pytest.raises(InvalidCommand, match=f"pending or queued, not {initial}"):
        decide(None, RegisterJob(initial_status=initial), job_id=JOB_ID)


@pytest.mark.parametrize("max_attempts", [0, -1])
def test_registering_with_fewer_than_one_attempt_is_invalid(max_attempts: int) -> None:
    with pytest.raises(InvalidCommand, match="max_attempts"):
        decide(None, RegisterJob(max_attempts=max_attempts), job_id=JOB_ID)


def test_registering_an_existing_job_is_a_duplicate() -> None:
    with pytest.raises(DuplicateJob, match="'job-1' already exists") as refused:
        decide(play(REGISTER), RegisterJob(), job_id=JOB_ID)
    assert refused.value.job_id == JOB_ID


@pytest.mark.parametrize(
    "command",
    [c for c in commands_for(play(REGISTER)) if not isinstance(c, RegisterJob)],
    ids=command_id,
)
def test_any_other_command_on_a_missing_job_is_not_found(command: JobCommand) -> None:
    with pytest.raises(JobNotFound, match="'ghost' does not exist") as refused:
        decide(None, command, job_id="ghost")
    assert refused.value.job_id == "ghost"


# Ordinary lifecycle


def test_submitting_a_pending_job_queues_it() -> None:
    assert decide(play(REGISTER_PENDING), SubmitJob(), job_id=JOB_ID) == [JobSubmitted()]


def test_starting_records_the_worker_and_its_run_token() -> None:
    events = decide(play(REGISTER), start("tok-9"), job_id=JOB_ID)
    assert events == [
        JobStarted(
            run_token_sha256=run_token_digest("tok-9"),
            worker_id="worker-a",
            host="host-a",
            pid=4242,
            pid_started_at=1_700_000_000.5,
            boot_id="b",
            resume_from=None,
        )
    ]


def test_each_start_opens_a_new_attempt_with_its_own_token() -> None:
    first = play(REGISTER, start("t1"))
    assert (first.attempt, first.run_token_sha256) == (1, run_token_digest("t1"))
    second = apply(first, decide(first, MarkFailed(reason="x"), job_id=JOB_ID))
    second = apply(second, decide(second, RequeueJob(), job_id=JOB_ID))
    second = apply(second, decide(second, start("t2"), job_id=JOB_ID))
    assert (second.attempt, second.run_token_sha256) == (2, run_token_digest("t2"))


def test_a_started_attempt_resumes_from_the_requeued_checkpoint() -> None:
    state = play(REGISTER, start(), checkpoint("/ckpt/3"), fail(), RequeueJob())
    [event] = decide(state, start("t2"), job_id=JOB_ID)
    assert isinstance(event, JobStarted)
    assert event.resume_from == "/ckpt/3"


def test_a_worker_pauses_resumes_checkpoints_and_completes_its_attempt() -> None:
    running = play(REGISTER, start())
    assert decide(running, pause(), job_id=JOB_ID) == [JobPaused()]
    paused = play(REGISTER, start(), pause())
    assert decide(paused, resume(), job_id=JOB_ID) == [JobResumed()]
    assert decide(paused, checkpoint("/c/2"), job_id=JOB_ID) == [
        CheckpointSaved(path="/c/2", step=1)
    ]
    assert decide(running, complete(), job_id=JOB_ID) == [JobCompleted(result={"ok": True})]


def test_a_checkpoint_without_a_path_is_invalid() -> None:
    with pytest.raises(InvalidCommand, match="path"):
        decide(play(REGISTER, start()), checkpoint(""), job_id=JOB_ID)


def test_a_worker_failure_records_its_reason() -> None:
    events = decide(play(REGISTER, start()), fail(reason="out of memory"), job_id=JOB_ID)
    assert events == [JobFailed(reason="out of memory")]


@pytest.mark.parametrize("path", ["pending", "queued_registered", "running", "paused"])
def test_cancelling_an_incomplete_job_records_the_reason(path: str) -> None:
    events = decide(play(*PATHS[path]), CancelJob(reason="not needed"), job_id=JOB_ID)
    assert events == [JobCancelled(reason="not needed")]


# Reasons


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_marking_failed_without_a_reason_is_invalid(reason: str) -> None:
    with pytest.raises(InvalidCommand, match="mark_failed needs a reason"):
        decide(play(REGISTER), MarkFailed(reason=reason), job_id=JOB_ID)


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_failing_without_a_reason_is_invalid(reason: str) -> None:
    with pytest.raises(InvalidCommand, match="fail needs a reason"):
        decide(play(REGISTER, start()), fail(reason=reason), job_id=JOB_ID)


@pytest.mark.parametrize("path", ["pending", "queued_registered", "running", "paused"])
def test_marking_failed_records_the_operators_reason(path: str) -> None:
    events = decide(play(*PATHS[path]), MarkFailed(reason="hung"), job_id=JOB_ID)
    assert events == [JobMarkedFailed(reason="hung")]


# Requeue


def test_requeue_resumes_from_the_last_checkpoint_by_default() -> None:
    state = play(REGISTER, start(), checkpoint("/c/1"), checkpoint("/c/2"), fail())
    events = decide(state, RequeueJob(reason="retry"), job_id=JOB_ID)
    assert events == [JobRequeued(reason="retry", resume_from="/c/2")]
    assert apply(state, events).resume_from == "/c/2"


def test_requeue_resumes_from_an_explicit_path_over_the_checkpoint() -> None:
    state = play(REGISTER, start(), checkpoint("/c/1"), CancelJob())
    events = decide(state, RequeueJob(resume_from="/elsewhere"), job_id=JOB_ID)
    assert events == [JobRequeued(resume_from="/elsewhere")]


def test_requeue_without_a_checkpoint_resumes_from_nothing() -> None:
    state = play(REGISTER, start(), fail())
    assert decide(state, RequeueJob(), job_id=JOB_ID) == [JobRequeued(resume_from=None)]


def test_requeueing_a_completed_job_is_illegal() -> None:
    with pytest.raises(IllegalTransition, match="allowed from completed: none"):
        decide(play(*PATHS["completed"]), RequeueJob(), job_id=JOB_ID)


# Illegal transitions


def test_an_illegal_transition_names_the_job_its_status_and_the_allowed_commands() -> None:
    with pytest.raises(IllegalTransition) as refused:
        decide(play(REGISTER, start()), SubmitJob(), job_id=JOB_ID)
    error = refused.value
    assert (error.job_id, error.status, error.command) == (JOB_ID, JobStatus.RUNNING, "submit")
    assert error.allowed == (
        "cancel",
        "checkpoint",
        "complete",
        "fail",
        "force_start",
        "mark_failed",
        "pause",
    )
    assert str(error) == (
        "cannot submit job 'job-1': it is running; allowed from running: "
        "cancel, checkpoint, complete, fail, force_start, mark_failed, pause"
    )


def test_an_illegal_transition_is_a_refused_command() -> None:
    with pytest.raises(CommandRefused):
        decide(play(REGISTER), SubmitJob(), job_id=JOB_ID)


def test_starting_a_running_job_is_illegal() -> None:
    with pytest.raises(IllegalTransition, match="cannot start job 'job-1': it is running"):
        decide(play(REGISTER, start()), start("t2"), job_id=JOB_ID)


def test_completing_a_paused_attempt_is_illegal_until_it_resumes() -> None:
    paused = play(REGISTER, start(), pause())
    with pytest.raises(IllegalTransition, match="it is paused"):
        decide(paused, complete(), job_id=JOB_ID)
    resumed = apply(paused, decide(paused, resume(), job_id=JOB_ID))
    assert decide(resumed, complete(), job_id=JOB_ID) == [JobCompleted(result={"ok": True})]


# Force start


@pytest.mark.parametrize(
    "path",
    ["pending", "failed_by_worker", "failed_by_operator", "cancelled_pending", "paused"],
)
def test_force_start_queues_a_stuck_job_with_one_event(path: str) -> None:
    state = play(*PATHS[path])
    events = decide(state, ForceStart(reason="stuck"), job_id=JOB_ID)
    assert events == [JobForceStarted(reason="stuck", resume_from=None)]
    assert apply(state, events).status is JobStatus.QUEUED


def test_force_start_resumes_from_the_last_checkpoint() -> None:
    state = play(*PATHS["paused_checkpointed"])
    assert decide(state, ForceStart(), job_id=JOB_ID) == [JobForceStarted(resume_from="/ckpt/1")]


@pytest.mark.parametrize("run_is_dead", [False, True])
def test_force_start_on_a_queued_job_appends_nothing(run_is_dead: bool) -> None:
    for path in ("queued_registered", "queued_submitted", "queued_requeued"):
        state = play(*PATHS[path])
        assert decide(state, ForceStart(run_is_dead=run_is_dead), job_id=JOB_ID) == []


@pytest.mark.parametrize("run_is_dead", [False, True])
def test_force_start_on_a_completed_job_is_refused(run_is_dead: bool) -> None:
    with pytest.raises(IllegalTransition, match="cannot force_start job 'job-1': it is completed"):
        decide(play(*PATHS["completed"]), ForceStart(run_is_dead=run_is_dead), job_id=JOB_ID)


def test_force_start_on_a_live_run_is_refused_until_the_run_is_declared_dead() -> None:
    with pytest.raises(IllegalTransition, match="its run is alive") as refused:
        decide(play(REGISTER, start()), ForceStart(), job_id=JOB_ID)
    assert refused.value.status == JobStatus.RUNNING
    assert "force_start" in refused.value.allowed


def test_force_start_on_a_dead_run_fails_the_attempt_then_queues_the_job() -> None:
    state = play(REGISTER, start(), checkpoint("/c/4"))
    events = decide(state, ForceStart(run_is_dead=True), job_id=JOB_ID)
    assert events == [
        JobMarkedFailed(reason=DEAD_RUN_REASON),
        JobForceStarted(resume_from="/c/4"),
    ]
    after = apply(state, events)
    assert after.status is JobStatus.QUEUED
    assert after.resume_from == "/c/4"
    assert after.version == state.version + 2


def test_force_start_on_a_dead_run_records_the_callers_reason() -> None:
    events = decide(
        play(REGISTER, start()), ForceStart(reason="pid gone", run_is_dead=True), job_id=JOB_ID
    )
    assert events == [
        JobMarkedFailed(reason="pid gone"),
        JobForceStarted(reason="pid gone"),
    ]


@pytest.mark.parametrize("reason", [None, ""])
def test_force_start_on_a_dead_run_without_a_reason_records_the_default_one(
    reason: str | None,
) -> None:
    [closed, _] = decide(
        play(REGISTER, start()), ForceStart(reason=reason, run_is_dead=True), job_id=JOB_ID
    )
    assert closed == JobMarkedFailed(reason=DEAD_RUN_REASON)


def test_force_start_on_a_dead_run_never_records_a_blank_failure_reason() -> None:
    [closed, _] = decide(
        play(REGISTER, start()), ForceStart(reason="   ", run_is_dead=True), job_id=JOB_ID
    )
    assert isinstance(closed, JobMarkedFailed)
    assert closed.reason.strip()


# Fencing


WorkerCommand = PauseJob | ResumeJob | SaveCheckpoint | CompleteJob | FailJob
RUN_COMMANDS: list[Callable[[int, str], WorkerCommand]] = [
    pause,
    resume,
    lambda attempt, token: checkpoint("/c/9", attempt, token),
    complete,
    fail,
]
RUN_COMMAND_IDS = ["pause", "resume", "checkpoint", "complete", "fail"]


@pytest.mark.parametrize("make", RUN_COMMANDS, ids=RUN_COMMAND_IDS)
@pytest.mark.parametrize("path", ["running_second_attempt", "paused"])
def test_a_worker_command_with_a_wrong_token_is_stale(
    make: Callable[[int, str], WorkerCommand], path: str
) -> None:
    state = play(*PATHS[path])
    with pytest.raises(StaleAttempt, match="run token does not match") as refused:
        decide(state, make(state.attempt, "forged"), job_id=JOB_ID)
    assert refused.value.attempt == refused.value.current_attempt == state.attempt


@pytest.mark.parametrize("make", RUN_COMMANDS, ids=RUN_COMMAND_IDS)
def test_a_worker_command_for_an_older_attempt_is_stale(
    make: Callable[[int, str], WorkerCommand],
) -> None:
    state = play(*PATHS["running_second_attempt"])
    with pytest.raises(StaleAttempt, match="a newer attempt has started") as refused:
        decide(state, make(1, "t2"), job_id=JOB_ID)
    assert (refused.value.attempt, refused.value.current_attempt) == (1, 2)
    assert str(refused.value) == (
        "attempt 1 of job 'job-1' is fenced: a newer attempt has started (current attempt: 2)"
    )


@pytest.mark.parametrize("make", RUN_COMMANDS, ids=RUN_COMMAND_IDS)
def test_a_worker_command_for_an_attempt_not_yet_opened_is_stale(
    make: Callable[[int, str], WorkerCommand],
) -> None:
    with pytest.raises(StaleAttempt, match="no such attempt"):
        decide(play(REGISTER, start()), make(2, "t1"), job_id=JOB_ID)


@pytest.mark.parametrize("make", RUN_COMMANDS, ids=RUN_COMMAND_IDS)
@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("failed_by_worker", "failed"),
        ("cancelled_running", "cancelled"),
        ("cancelled_paused", "cancelled"),
        ("completed", "completed"),
        ("queued_requeued", "queued"),
    ],
)
def test_a_worker_command_for_a_closed_attempt_is_stale(
    make: Callable[[int, str], WorkerCommand], path: str, status: str
) -> None:
    state = play(*PATHS[path])
    assert state.attempt == 1
    with pytest.raises(StaleAttempt, match=rf"the attempt was closed \({status}\)"):
        decide(state, make(1, "t1"), job_id=JOB_ID)


def test_a_worker_command_before_any_attempt_is_stale() -> None:
    with pytest.raises(StaleAttempt):
        decide(play(REGISTER), complete(0, "t1"), job_id=JOB_ID)


def test_fencing_is_checked_before_the_transition_table() -> None:
    # `resume` is illegal from running, but a forged token is the first thing wrong.
    with pytest.raises(StaleAttempt):
        decide(play(REGISTER, start()), resume(1, "forged"), job_id=JOB_ID)


def test_a_worker_declared_dead_can_never_complete_the_next_run() -> None:
    state = play(REGISTER, start("old"))
    state = apply(state, decide(state, MarkFailed(reason="no heartbeat"), job_id=JOB_ID))
    state = apply(state, decide(state, RequeueJob(), job_id=JOB_ID))
    state = apply(state, decide(state, start("new"), job_id=JOB_ID))
    assert state.attempt == 2
    with pytest.raises(StaleAttempt):
        decide(state, complete(1, "old"), job_id=JOB_ID)
    with pytest.raises(StaleAttempt):
        decide(state, complete(2, "old"), job_id=JOB_ID)
    assert decide(state, complete(2, "new"), job_id=JOB_ID) == [JobCompleted(result={"ok": True})]


def test_a_run_force_started_as_dead_cannot_complete_before_or_after_the_next_start() -> None:
    state = play(REGISTER, start("old"))
    state = apply(state, decide(state, ForceStart(run_is_dead=True), job_id=JOB_ID))
    with pytest.raises(StaleAttempt, match="closed"):
        decide(state, complete(1, "old"), job_id=JOB_ID)
    state = apply(state, decide(state, start("new"), job_id=JOB_ID))
    with pytest.raises(StaleAttempt, match="newer attempt"):
        decide(state, complete(1, "old"), job_id=JOB_ID)
    assert decide(state, complete(2, "new"), job_id=JOB_ID) == [JobCompleted(result={"ok": True})]


def test_a_start_without_a_run_token_is_refused() -> None:
    from ledger.commands import StartJob, WorkerIdentity
    from ledger.errors import InvalidCommand

    worker = WorkerIdentity(worker_id="w", host="h")
    with pytest.raises(InvalidCommand, match="run token"):
        decide(play(REGISTER), StartJob(worker=worker, run_token=""), job_id=JOB_ID)
