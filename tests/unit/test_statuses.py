"""The job statuses and their categories, and how they agree with the transition table."""

from ledger.commands import COMMAND_NAMES, PauseJob, RunCommand
from ledger.events import EVENT_CLASSES
from ledger.statuses import (
    ACTIVE_RUN_STATUSES,
    INCOMPLETE_STATUSES,
    RECOVERABLE_STATUSES,
    TERMINAL_STATUSES,
    JobStatus,
)
from ledger.transitions import ALLOWED_COMMANDS, EVENT_TARGET_STATUS

ALL_STATUSES = frozenset(JobStatus)
RUN_COMMAND_NAMES = frozenset(
    name for cls, name in COMMAND_NAMES.items() if issubclass(cls, RunCommand)
)


def test_there_are_exactly_the_seven_planned_statuses() -> None:
    assert {status.value for status in JobStatus} == {
        "pending",
        "queued",
        "running",
        "paused",
        "completed",
        "failed",
        "cancelled",
    }


def test_every_status_value_is_its_lowercase_name() -> None:
    for status in JobStatus:
        assert status.value == status.name.lower()
        assert status.value.islower()


def test_status_values_are_unique() -> None:
    values = [status.value for status in JobStatus]
    assert len(values) == len(set(values))


def test_a_status_is_a_plain_string_that_reads_back_as_itself() -> None:
    for status in JobStatus:
        assert isinstance(status, str)
        assert str(status) == status.value
        assert f"{status}" == status.value
        assert JobStatus(status.value) is status


def test_terminal_statuses_are_completed_failed_and_cancelled() -> None:
    assert (
        frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}) == TERMINAL_STATUSES
    )


def test_incomplete_statuses_are_queued_pending_running_and_paused() -> None:
    assert (
        frozenset({JobStatus.QUEUED, JobStatus.PENDING, JobStatus.RUNNING, JobStatus.PAUSED})
        == INCOMPLETE_STATUSES
    )


def test_recoverable_statuses_are_queued_pending_failed_and_cancelled() -> None:
    assert (
        frozenset({JobStatus.QUEUED, JobStatus.PENDING, JobStatus.FAILED, JobStatus.CANCELLED})
        == RECOVERABLE_STATUSES
    )


def test_active_run_statuses_are_running_and_paused() -> None:
    assert frozenset({JobStatus.RUNNING, JobStatus.PAUSED}) == ACTIVE_RUN_STATUSES


def test_terminal_and_incomplete_statuses_partition_all_statuses() -> None:
    assert TERMINAL_STATUSES.isdisjoint(INCOMPLETE_STATUSES)
    assert TERMINAL_STATUSES | INCOMPLETE_STATUSES == ALL_STATUSES


def test_recoverable_statuses_span_both_incomplete_and_terminal_ones() -> None:
    assert {JobStatus.PENDING, JobStatus.QUEUED} == RECOVERABLE_STATUSES & INCOMPLETE_STATUSES
    assert {JobStatus.FAILED, JobStatus.CANCELLED} == RECOVERABLE_STATUSES & TERMINAL_STATUSES


def test_no_recoverable_status_has_a_live_run() -> None:
    assert RECOVERABLE_STATUSES.isdisjoint(ACTIVE_RUN_STATUSES)


def test_completed_is_the_one_status_neither_recoverable_nor_active() -> None:
    assert {JobStatus.COMPLETED} == ALL_STATUSES - RECOVERABLE_STATUSES - ACTIVE_RUN_STATUSES


def test_active_run_statuses_are_incomplete() -> None:
    assert ACTIVE_RUN_STATUSES <= INCOMPLETE_STATUSES


def test_the_transition_table_has_a_row_for_every_status() -> None:
    assert set(ALLOWED_COMMANDS) == ALL_STATUSES


def test_the_transition_table_names_only_known_commands() -> None:
    known = set(COMMAND_NAMES.values())
    for status, allowed in ALLOWED_COMMANDS.items():
        assert allowed <= known, status


def test_register_is_allowed_from_no_status() -> None:
    for allowed in ALLOWED_COMMANDS.values():
        assert "register" not in allowed


def test_worker_commands_are_allowed_exactly_in_the_active_run_statuses() -> None:
    with_run_commands = {
        status for status, allowed in ALLOWED_COMMANDS.items() if allowed & RUN_COMMAND_NAMES
    }
    assert with_run_commands == ACTIVE_RUN_STATUSES


def test_completed_allows_no_command_at_all() -> None:
    assert ALLOWED_COMMANDS[JobStatus.COMPLETED] == frozenset()


def test_every_status_but_completed_can_be_force_started() -> None:
    force_startable = {
        status for status, allowed in ALLOWED_COMMANDS.items() if "force_start" in allowed
    }
    assert force_startable == ALL_STATUSES - {JobStatus.COMPLETED}


def test_only_failed_and_cancelled_jobs_can_be_requeued() -> None:
    requeueable = {status for status, allowed in ALLOWED_COMMANDS.items() if "requeue" in allowed}
    assert requeueable == {JobStatus.FAILED, JobStatus.CANCELLED}


def test_every_event_type_has_a_target_status_entry() -> None:
    assert set(EVENT_TARGET_STATUS) == set(EVENT_CLASSES)


def test_every_status_but_pending_is_the_target_of_some_event() -> None:
    targets = {status for status in EVENT_TARGET_STATUS.values() if status is not None}
    # `pending` is reached only by registering, whose status is in the event.
    assert targets == ALL_STATUSES - {JobStatus.PENDING}


def test_every_command_class_has_a_distinct_name() -> None:
    names = list(COMMAND_NAMES.values())
    assert len(names) == len(set(names)) == 12
    assert COMMAND_NAMES[PauseJob] == "pause"
