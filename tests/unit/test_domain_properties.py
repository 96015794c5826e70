"""Properties of `decide` and `evolve` over random command sequences on one job."""

import copy
import json
from collections import deque
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

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
from ledger.decide import decide
from ledger.errors import LedgerError
from ledger.events import (
    EVENT_CLASSES,
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
    event_from_record,
    event_to_record,
)
from ledger.evolve import evolve
from ledger.run_tokens import run_token_digest, run_token_matches
from ledger.state import JobState
from ledger.statuses import ACTIVE_RUN_STATUSES, TERMINAL_STATUSES, JobStatus
from ledger.transitions import ALLOWED_COMMANDS, EVENT_TARGET_STATUS

JOB_ID = "job-1"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

# The event types each command may cause: used to walk the table for reachable statuses.
COMMAND_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "submit": ("job_submitted",),
    "start": ("job_started",),
    "pause": ("job_paused",),
    "resume": ("job_resumed",),
    "checkpoint": ("checkpoint_saved",),
    "complete": ("job_completed",),
    "fail": ("job_failed",),
    "cancel": ("job_cancelled",),
    "force_start": ("job_force_started", "job_marked_failed"),
    "mark_failed": ("job_marked_failed",),
    "requeue": ("job_requeued",),
}


def reachable_statuses() -> frozenset[JobStatus]:
    """Every status the transition table reaches from a registration."""
    seen = {JobStatus.PENDING, JobStatus.QUEUED}
    todo = deque(seen)
    while todo:
        status = todo.popleft()
        for name in ALLOWED_COMMANDS[status]:
            for event_type in COMMAND_EVENT_TYPES[name]:
                target = EVENT_TARGET_STATUS[event_type] or status
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
    return frozenset(seen)


REACHABLE = reachable_statuses()
TOKENS = st.sampled_from(["t1", "t2", "t3", ""])
# How a worker command names its run: mostly as the current one, else stale or forged.
FENCES = st.sampled_from(
    ["current", "current", "current", "older", "newer", "zero", "forged", "empty"]
)
REASONS = st.sampled_from(["oom", "operator says so", None, "", "  "])
PATHS = st.sampled_from(["", "/ckpt/1", "/ckpt/2"])
STATUSES = st.sampled_from(list(JobStatus))
# Every command, the ones that move a run along more often than the ones that end it.
KINDS = st.sampled_from(
    [
        *("start", "start", "start", "pause", "pause", "resume", "resume"),
        *("checkpoint", "checkpoint", "complete", "fail", "requeue", "requeue"),
        *("submit", "cancel", "force_start", "mark_failed", "register"),
    ]
)


class OneJob(RuleBasedStateMachine):
    """Sends random commands to one job, folding every accepted event."""

    def __init__(self) -> None:
        super().__init__()
        self.state: JobState | None = None
        self.produced = 0
        self.starts = 0
        self.last_token: str | None = None
        self.clock = T0

    def send(self, command: JobCommand) -> None:
        before = self.state
        snapshot = copy.deepcopy(before)
        try:
            events = decide(before, command, job_id=JOB_ID)
        except LedgerError as refused:
            note_event(f"refused: {type(refused).__name__}")
            assert self.state is before
            assert before == snapshot
            return
        name = COMMAND_NAMES[type(command)]
        note_event(f"accepted: {name}")
        if before is not None:
            assert name in ALLOWED_COMMANDS[before.status]
        if isinstance(command, RunCommand):
            assert before is not None
            assert before.status in ACTIVE_RUN_STATUSES
            assert command.attempt == before.attempt
            assert run_token_matches(command.run_token, before.run_token_sha256)
        if not events:
            assert before is not None
            assert (name, before.status) == ("force_start", JobStatus.QUEUED)
        state = before
        for event in events:
            assert event_from_record(*event_to_record(event)) == event
            self.clock += timedelta(seconds=1)
            seq = 1 if state is None else state.version + 1
            previous = None if state is None else state.status
            state = evolve(
                state, RecordedEvent(job_id=JOB_ID, seq=seq, data=event, recorded_at=self.clock)
            )
            target = EVENT_TARGET_STATUS[event.TYPE]
            if target is not None:
                assert state.status is target
            elif previous is not None:
                assert state.status is previous
            assert state.updated_at == self.clock
            if isinstance(event, JobStarted):
                self.starts += 1
                assert isinstance(command, StartJob)
                assert event.run_token_sha256 == run_token_digest(command.run_token)
                self.last_token = command.run_token
        self.produced += len(events)
        self.state = state

    def fence(self, kind: str) -> tuple[int, str]:
        """The `attempt` and `run_token` a worker command carries."""
        attempt = 0 if self.state is None else self.state.attempt
        token = "t0" if self.last_token is None else self.last_token
        match kind:
            case "older":
                attempt -= 1
            case "newer":
                attempt += 1
            case "zero":
                attempt = 0
            case "forged":
                token = "forged"
            case "empty":
                token = ""
        return attempt, token

    @initialize(
        initial=st.sampled_from([JobStatus.PENDING, JobStatus.QUEUED]),
        max_attempts=st.integers(1, 3),
        auto_retry=st.booleans(),
    )
    def register_the_job(self, initial: JobStatus, max_attempts: int, auto_retry: bool) -> None:
        self.send(
            RegisterJob(initial_status=initial, max_attempts=max_attempts, auto_retry=auto_retry)
        )
        assert self.state is not None

    @rule(
        kind=KINDS,
        fence=FENCES,
        token=TOKENS,
        reason=REASONS,
        path=PATHS,
        flag=st.booleans(),
        initial=STATUSES,
        number=st.integers(-1, 3),
    )
    def send_a_command(
        self,
        *,
        kind: str,
        fence: str,
        token: str,
        reason: str | None,
        path: str,
        flag: bool,
        initial: JobStatus,
        number: int,
    ) -> None:
        attempt, run_token = self.fence(fence)
        command: JobCommand
        match kind:
            case "register":
                command = RegisterJob(initial_status=initial, max_attempts=number)
            case "submit":
                command = SubmitJob()
            case "start":
                worker = WorkerIdentity(worker_id="w", host="h", pid=number)
                command = StartJob(worker=worker, run_token=token)
            case "pause":
                command = PauseJob(attempt=attempt, run_token=run_token)
            case "resume":
                command = ResumeJob(attempt=attempt, run_token=run_token)
            case "checkpoint":
                step = number if flag else None
                command = SaveCheckpoint(attempt=attempt, run_token=run_token, path=path, step=step)
            case "complete":
                result = {"steps": number} if flag else None
                command = CompleteJob(attempt=attempt, run_token=run_token, result=result)
            case "fail":
                command = FailJob(attempt=attempt, run_token=run_token, reason=reason or "")
            case "cancel":
                command = CancelJob(reason=reason)
            case "force_start":
                command = ForceStart(reason=reason, run_is_dead=flag)
            case "mark_failed":
                command = MarkFailed(reason=reason or "")
            case "requeue":
                command = RequeueJob(reason=reason, resume_from=path if flag else None)
            case _:  # pragma: no cover
                raise AssertionError(kind)
        self.send(command)

    @invariant()
    def the_version_counts_the_events_produced(self) -> None:
        if self.state is None:
            assert self.produced == 0
        else:
            assert self.state.version == self.produced

    @invariant()
    def the_status_is_one_the_table_reaches(self) -> None:
        if self.state is not None:
            assert self.state.status in REACHABLE

    @invariant()
    def the_attempt_counts_the_starts_and_holds_the_last_token(self) -> None:
        if self.state is not None:
            assert self.state.attempt == self.starts
            last = None if self.last_token is None else run_token_digest(self.last_token)
            assert self.state.run_token_sha256 == last

    @invariant()
    def timestamps_are_consistent_with_the_status(self) -> None:
        state = self.state
        if state is None:
            return
        assert state.created_at <= state.status_changed_at <= state.updated_at
        if state.status in TERMINAL_STATUSES:
            assert state.finished_at is not None
        if state.status in ACTIVE_RUN_STATUSES:
            assert state.started_at is not None
            assert state.finished_at is None
        if state.status is JobStatus.QUEUED:
            assert state.queued_at == state.status_changed_at
        if state.status is JobStatus.FAILED:
            assert state.failure_reason
            assert state.failure_reason.strip()


OneJob.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestOneJob = OneJob.TestCase


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
JSON_OBJECTS = st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4)
TEXT = st.text(max_size=12)
EVENT_STRATEGIES: dict[type[JobEvent], st.SearchStrategy[JobEvent]] = {
    JobRegistered: st.builds(
        JobRegistered,
        initial_status=STATUSES,
        spec=JSON_OBJECTS,
        priority=st.integers(),
        max_attempts=st.integers(1, 10),
        auto_retry=st.booleans(),
    ),
    JobSubmitted: st.builds(JobSubmitted),
    JobStarted: st.builds(
        JobStarted,
        run_token_sha256=TEXT,
        worker_id=TEXT,
        host=TEXT,
        pid=st.none() | st.integers(0, 2**22),
        pid_started_at=st.none() | st.floats(0, 2e9, allow_nan=False),
        boot_id=st.none() | TEXT,
        resume_from=st.none() | TEXT,
    ),
    JobPaused: st.builds(JobPaused),
    JobResumed: st.builds(JobResumed),
    CheckpointSaved: st.builds(CheckpointSaved, path=TEXT, step=st.none() | st.integers(0, 10**6)),
    JobCompleted: st.builds(JobCompleted, result=st.none() | JSON_OBJECTS),
    JobFailed: st.builds(JobFailed, reason=TEXT),
    JobCancelled: st.builds(JobCancelled, reason=st.none() | TEXT),
    JobForceStarted: st.builds(
        JobForceStarted, reason=st.none() | TEXT, resume_from=st.none() | TEXT
    ),
    JobMarkedFailed: st.builds(JobMarkedFailed, reason=TEXT),
    JobRequeued: st.builds(JobRequeued, reason=st.none() | TEXT, resume_from=st.none() | TEXT),
}
ANY_EVENT = st.one_of(*EVENT_STRATEGIES.values())


@settings(max_examples=200, deadline=None)
@given(ANY_EVENT)
def test_every_event_survives_a_trip_through_its_json_record(event: JobEvent) -> None:
    type_, payload, reason = event_to_record(event)
    assert type_ == event.TYPE
    stored = json.loads(json.dumps(payload))
    assert event_from_record(type_, stored, reason) == event


def test_a_reason_is_stored_in_its_own_column_not_in_the_payload() -> None:
    assert event_to_record(JobFailed(reason="oom")) == ("job_failed", {}, "oom")
    assert event_to_record(JobRequeued(reason="again", resume_from="/c/1")) == (
        "job_requeued",
        {"resume_from": "/c/1"},
        "again",
    )
    assert event_to_record(JobSubmitted()) == ("job_submitted", {}, None)


def test_a_registered_status_stored_as_json_reads_back_as_a_job_status() -> None:
    type_, payload, reason = event_to_record(JobRegistered(initial_status=JobStatus.PENDING))
    event = event_from_record(type_, json.loads(json.dumps(payload)), reason)
    assert isinstance(event, JobRegistered)
    assert event.initial_status is JobStatus.PENDING


def test_the_event_strategy_of_this_test_builds_every_event_type() -> None:
    assert set(EVENT_STRATEGIES) == set(EVENT_CLASSES.values())


def test_the_table_walk_reaches_every_status() -> None:
    assert frozenset(JobStatus) == REACHABLE


def test_the_command_event_map_of_this_test_names_every_command_but_register() -> None:
    assert set(COMMAND_EVENT_TYPES) | {"register"} == set(COMMAND_NAMES.values())
