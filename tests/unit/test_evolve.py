"""`evolve`: folding recorded events into a job's state."""

from datetime import UTC, datetime, timedelta

import pytest

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
from ledger.evolve import EventOutOfOrder, evolve
from ledger.run_tokens import run_token_digest
from ledger.state import TIMESTAMP_FIELDS, JobState
from ledger.statuses import JobStatus
from ledger.transitions import EVENT_TARGET_STATUS

JOB_ID = "job-1"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def at(seq: int) -> datetime:
    """The clock of the helpers: event `seq` is recorded `seq` minutes after T0."""
    return T0 + timedelta(minutes=seq)


def recorded(event: JobEvent, seq: int, recorded_at: datetime | None = None) -> RecordedEvent:
    return RecordedEvent(
        job_id=JOB_ID,
        seq=seq,
        data=event,
        recorded_at=at(seq) if recorded_at is None else recorded_at,
    )


def fold(*events: JobEvent) -> JobState:
    """The state after `events`, recorded at seq 1, 2, ... and the helper clock."""
    state: JobState | None = None
    for seq, event in enumerate(events, start=1):
        state = evolve(state, recorded(event, seq))
    assert state is not None
    return state


def then(state: JobState, event: JobEvent) -> JobState:
    """Apply the next event to `state`, recorded at the helper clock."""
    return evolve(state, recorded(event, state.version + 1))


def started(token: str = "t1", resume_from: str | None = None) -> JobStarted:
    return JobStarted(
        run_token_sha256=run_token_digest(token),
        worker_id="worker-a",
        host="host-a",
        pid=4242,
        pid_started_at=1_700_000_000.5,
        boot_id="boot-a",
        resume_from=resume_from,
    )


def event_name(event: JobEvent) -> str:
    return event.TYPE


QUEUED = JobRegistered(initial_status=JobStatus.QUEUED)
PENDING = JobRegistered(initial_status=JobStatus.PENDING)


# Registration


def test_registering_queued_sets_every_registration_field() -> None:
    event = JobRegistered(
        initial_status=JobStatus.QUEUED,
        spec={"model": "tiny", "epochs": 3},
        priority=7,
        max_attempts=4,
        auto_retry=True,
    )
    state = evolve(None, recorded(event, 1))
    assert state == JobState(
        job_id=JOB_ID,
        status=JobStatus.QUEUED,
        version=1,
        created_at=at(1),
        updated_at=at(1),
        status_changed_at=at(1),
        priority=7,
        max_attempts=4,
        auto_retry=True,
        spec={"model": "tiny", "epochs": 3},
        queued_at=at(1),
    )


def test_registering_pending_leaves_queued_at_unset() -> None:
    state = fold(PENDING)
    assert state.status is JobStatus.PENDING
    assert state.queued_at is None
    assert state.created_at == at(1)


def test_a_registered_status_read_back_as_a_string_becomes_a_job_status() -> None:
    state = fold(JobRegistered(initial_status="pending"))  # type: ignore[arg-type]
    assert state.status is JobStatus.PENDING


def test_a_new_job_has_no_attempt_no_run_and_no_checkpoint() -> None:
    state = fold(QUEUED)
    assert state.attempt == 0
    assert state.run_token_sha256 is None
    assert state.started_at is None
    assert state.finished_at is None
    assert state.checkpoint_path is None


# Ordering


def test_a_first_event_that_is_not_job_registered_is_out_of_order() -> None:
    with pytest.raises(EventOutOfOrder, match="must start with job_registered"):
        evolve(None, recorded(JobSubmitted(), 1))


def test_a_registration_that_is_not_at_seq_1_is_out_of_order() -> None:
    with pytest.raises(EventOutOfOrder, match="seq 1"):
        evolve(None, recorded(QUEUED, 2))


@pytest.mark.parametrize("seq", [1, 2, 4, 0, -1])
def test_an_event_whose_seq_does_not_follow_the_version_is_out_of_order(seq: int) -> None:
    state = fold(PENDING, JobSubmitted())  # version 2
    with pytest.raises(EventOutOfOrder, match=f"is at version 2; event seq {seq}"):
        evolve(state, recorded(JobPaused(), seq))


def test_a_second_registration_is_out_of_order() -> None:
    state = fold(QUEUED)
    with pytest.raises(EventOutOfOrder, match="registered twice"):
        evolve(state, recorded(QUEUED, 2))


def test_out_of_order_is_a_value_error() -> None:
    assert issubclass(EventOutOfOrder, ValueError)


def test_the_version_is_the_seq_of_the_last_event() -> None:
    state = fold(QUEUED, started(), CheckpointSaved(path="/c/1"), JobPaused())
    assert state.version == 4


# Status targets: every event type moves the job where the table says.

PRECEDING: dict[str, tuple[JobEvent, ...]] = {
    "job_submitted": (PENDING,),
    "job_started": (QUEUED,),
    "job_paused": (QUEUED, started()),
    "job_resumed": (QUEUED, started(), JobPaused()),
    "checkpoint_saved": (QUEUED, started()),
    "job_completed": (QUEUED, started()),
    "job_failed": (QUEUED, started()),
    "job_cancelled": (QUEUED, started()),
    "job_force_started": (PENDING,),
    "job_marked_failed": (QUEUED, started()),
    "job_requeued": (QUEUED, started(), JobFailed(reason="boom")),
}
NEXT: dict[str, JobEvent] = {
    "job_submitted": JobSubmitted(),
    "job_started": started(),
    "job_paused": JobPaused(),
    "job_resumed": JobResumed(),
    "checkpoint_saved": CheckpointSaved(path="/c/1", step=1),
    "job_completed": JobCompleted(result={"ok": True}),
    "job_failed": JobFailed(reason="boom"),
    "job_cancelled": JobCancelled(reason="asked to"),
    "job_force_started": JobForceStarted(reason="stuck"),
    "job_marked_failed": JobMarkedFailed(reason="gone"),
    "job_requeued": JobRequeued(reason="again"),
}


@pytest.mark.parametrize("event_type", sorted(NEXT))
def test_each_event_moves_the_job_to_its_target_status(event_type: str) -> None:
    before = fold(*PRECEDING[event_type])
    after = then(before, NEXT[event_type])
    target = EVENT_TARGET_STATUS[event_type]
    assert after.status is (before.status if target is None else target)
    assert after.version == before.version + 1
    assert after.updated_at == at(after.version)
    if target is None:
        assert after.status_changed_at == before.status_changed_at
    else:
        assert after.status_changed_at == at(after.version)


def test_the_event_table_of_this_test_covers_every_event_but_registration() -> None:
    assert set(NEXT) | {"job_registered"} == set(EVENT_TARGET_STATUS)


# Timestamps and run fields


def test_timestamps_come_from_recorded_at_not_from_the_emitter_clock() -> None:
    emitter_clock = datetime(1999, 1, 1, tzinfo=UTC)
    event = recorded(QUEUED, 1, recorded_at=at(30))._replace(occurred_at=emitter_clock)
    state = evolve(None, event)
    for name in ("created_at", "updated_at", "status_changed_at", "queued_at"):
        assert getattr(state, name) == at(30)


def test_every_timestamp_field_of_a_finished_job_is_a_recorded_at() -> None:
    state = fold(PENDING, JobSubmitted(), started(), JobCompleted())
    recorded_ats = {at(seq) for seq in range(1, state.version + 1)}
    for name in TIMESTAMP_FIELDS:
        assert getattr(state, name) in recorded_ats, name
    assert state.created_at == at(1)
    assert state.queued_at == at(2)
    assert state.started_at == at(3)
    assert state.finished_at == at(4)


def test_submitting_queues_the_job_and_stamps_queued_at() -> None:
    state = fold(PENDING, JobSubmitted())
    assert state.status is JobStatus.QUEUED
    assert state.queued_at == at(2)
    assert state.created_at == at(1)
    assert state.resume_from is None


def test_starting_opens_an_attempt_with_the_workers_identity() -> None:
    state = fold(QUEUED, started(token="tok", resume_from="/c/0"))
    assert state.status is JobStatus.RUNNING
    assert state.attempt == 1
    assert state.run_token_sha256 == run_token_digest("tok")
    assert state.started_at == at(2)
    assert state.finished_at is None
    assert (
        state.worker_id,
        state.worker_host,
        state.worker_pid,
        state.worker_pid_started_at,
        state.worker_boot_id,
    ) == ("worker-a", "host-a", 4242, 1_700_000_000.5, "boot-a")
    assert state.resume_from == "/c/0"


def test_a_requeue_clears_the_last_finish_and_each_start_opens_the_next_attempt() -> None:
    failed = fold(QUEUED, started("t1"), JobFailed(reason="x"))
    assert failed.finished_at == at(3)
    first = then(failed, JobRequeued())
    assert first.finished_at is None
    second = then(first, started("t2"))
    assert second.attempt == 2
    assert second.run_token_sha256 == run_token_digest("t2")
    assert second.started_at == at(5)
    assert second.finished_at is None


def test_pausing_and_resuming_change_status_but_not_started_at() -> None:
    paused = fold(QUEUED, started(), JobPaused())
    assert paused.status is JobStatus.PAUSED
    assert paused.status_changed_at == at(3)
    resumed = then(paused, JobResumed())
    assert resumed.status is JobStatus.RUNNING
    assert resumed.status_changed_at == at(4)
    assert resumed.started_at == at(2)
    assert resumed.attempt == 1


def test_a_checkpoint_changes_neither_status_nor_status_changed_at() -> None:
    before = fold(QUEUED, started(), JobPaused())
    after = then(before, CheckpointSaved(path="/ckpt/7", step=7))
    assert after.status is JobStatus.PAUSED
    assert after.status_changed_at == before.status_changed_at == at(3)
    assert after.updated_at == at(4)
    assert (after.checkpoint_path, after.checkpoint_step) == ("/ckpt/7", 7)


def test_the_latest_checkpoint_wins() -> None:
    state = fold(
        QUEUED,
        started(),
        CheckpointSaved(path="/c/1", step=1),
        CheckpointSaved(path="/c/2"),
    )
    assert (state.checkpoint_path, state.checkpoint_step) == ("/c/2", None)


def test_completing_records_the_result_and_finish_time() -> None:
    state = fold(QUEUED, started(), JobCompleted(result={"loss": 0.1}))
    assert state.status is JobStatus.COMPLETED
    assert state.result == {"loss": 0.1}
    assert state.finished_at == at(3)


@pytest.mark.parametrize(
    "failure", [JobFailed(reason="oom"), JobMarkedFailed(reason="oom")], ids=event_name
)
def test_failing_records_the_reason_and_finish_time(failure: JobEvent) -> None:
    state = fold(QUEUED, started(), failure)
    assert state.status is JobStatus.FAILED
    assert state.failure_reason == "oom"
    assert state.finished_at == at(3)
    assert state.status_changed_at == at(3)


def test_cancelling_records_the_finish_time() -> None:
    state = fold(PENDING, JobCancelled(reason="no longer needed"))
    assert state.status is JobStatus.CANCELLED
    assert state.finished_at == at(2)


@pytest.mark.parametrize(
    "requeue",
    [JobRequeued(resume_from="/c/3"), JobForceStarted(resume_from="/c/3")],
    ids=event_name,
)
def test_requeueing_a_failed_job_clears_the_reason_and_keeps_its_resume_point(
    requeue: JobEvent,
) -> None:
    state = fold(QUEUED, started(), JobFailed(reason="boom"), requeue)
    assert state.status is JobStatus.QUEUED
    assert state.failure_reason is None
    assert state.queued_at == at(4)
    assert state.status_changed_at == at(4)
    assert state.resume_from == "/c/3"


def test_checkpoints_survive_a_failure_and_a_requeue() -> None:
    state = fold(
        QUEUED,
        started("t1"),
        CheckpointSaved(path="/c/5", step=5),
        JobMarkedFailed(reason="gone"),
        JobRequeued(resume_from="/c/5"),
        started("t2", resume_from="/c/5"),
    )
    assert (state.checkpoint_path, state.checkpoint_step) == ("/c/5", 5)
    assert state.resume_from == "/c/5"
    assert state.attempt == 2
