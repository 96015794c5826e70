"""`decide`: turn a command into the events it causes, or refuse it."""

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
)
from ledger.errors import (
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
)
from ledger.run_tokens import run_token_matches
from ledger.state import JobState
from ledger.statuses import ACTIVE_RUN_STATUSES, REGISTERED_STATUSES, JobStatus
from ledger.transitions import ALLOWED_COMMANDS

DEAD_RUN_REASON = "process terminated unexpectedly"


def decide(state: JobState | None, command: JobCommand, *, job_id: str) -> list[JobEvent]:
    """Return the events `command` causes on the job, or raise why it is refused.

    An empty list means the command is already satisfied (a force start of a
    queued job): nothing needs appending.
    """
    if isinstance(command, RegisterJob):
        if state is not None:
            raise DuplicateJob(job_id)
        return [_register(command)]
    if state is None:
        raise JobNotFound(job_id)
    name = COMMAND_NAMES[type(command)]
    if isinstance(command, RunCommand):
        check_fence(state, command.attempt, command.run_token)
    if name not in ALLOWED_COMMANDS[state.status]:
        raise _illegal(state, name)
    return _decide_allowed(state, command, name)


def _decide_allowed(state: JobState, command: JobCommand, name: str) -> list[JobEvent]:
    match command:
        case SubmitJob():
            return [JobSubmitted()]
        case StartJob(worker=worker, run_token=run_token):
            if not run_token:
                raise InvalidCommand("a start needs a run token")
            return [JobStarted.of(worker, run_token=run_token, resume_from=state.resume_from)]
        case PauseJob():
            return [JobPaused()]
        case ResumeJob():
            return [JobResumed()]
        case SaveCheckpoint(path=path, step=step):
            if not path:
                raise InvalidCommand("a checkpoint needs a path")
            return [CheckpointSaved(path=path, step=step)]
        case CompleteJob(result=result):
            return [JobCompleted(result=result)]
        case FailJob(reason=reason):
            return [JobFailed(reason=_required_reason(reason, name))]
        case CancelJob(reason=reason):
            return [JobCancelled(reason=reason)]
        case MarkFailed(reason=reason):
            return [JobMarkedFailed(reason=_required_reason(reason, name))]
        case RequeueJob(reason=reason, resume_from=resume_from):
            return [JobRequeued(reason=reason, resume_from=resume_from or state.checkpoint_path)]
        case ForceStart():
            return _force_start(state, command)
    raise AssertionError(f"no decision for {name}")  # pragma: no cover


def _force_start(state: JobState, command: ForceStart) -> list[JobEvent]:
    queued = JobForceStarted(reason=command.reason, resume_from=state.checkpoint_path)
    if state.status is JobStatus.QUEUED:
        return []
    if state.status is JobStatus.RUNNING:
        if not command.run_is_dead:
            raise _illegal(
                state,
                "force_start",
                "its run is alive; force start needs the health view to declare it orphaned",
            )
        given = (command.reason or "").strip()
        closed = JobMarkedFailed(reason=given or DEAD_RUN_REASON)
        return [closed, queued]
    return [queued]


def _register(command: RegisterJob) -> JobRegistered:
    if command.initial_status not in REGISTERED_STATUSES:
        raise InvalidCommand(
            f"a job is registered as pending or queued, not {command.initial_status}"
        )
    if command.max_attempts < 1:
        raise InvalidCommand("max_attempts must be at least 1")
    return JobRegistered(
        initial_status=command.initial_status,
        spec=command.spec,
        priority=command.priority,
        max_attempts=command.max_attempts,
        auto_retry=command.auto_retry,
    )


def check_fence(state: JobState, attempt: int, run_token: str) -> None:
    """Raise `StaleAttempt` unless (`attempt`, `run_token`) is the job's current, open run.

    The fence's one statement: a worker's command and its heartbeat
    (`ledger.leases`) for the same stale run are refused in the same words. The
    token is checked against the digest the job keeps of it, never stored itself.
    """
    if attempt != state.attempt:
        detail = "a newer attempt has started" if attempt < state.attempt else "no such attempt"
    elif state.status not in ACTIVE_RUN_STATUSES:
        detail = f"the attempt was closed ({state.status})"
    elif not run_token_matches(run_token, state.run_token_sha256):
        detail = "the run token does not match"
    else:
        return
    raise StaleAttempt(state.job_id, attempt, state.attempt, detail)


def _required_reason(reason: str, name: str) -> str:
    if not reason or not reason.strip():
        raise InvalidCommand(f"{name} needs a reason")
    return reason


def _illegal(state: JobState, name: str, detail: str = "") -> IllegalTransition:
    return IllegalTransition(
        state.job_id, state.status, name, ALLOWED_COMMANDS[state.status], detail
    )
