"""Many registrations in one transaction, each with its own outcome."""

import logging
from collections.abc import Sequence

import psycopg
import pytest

from ledger.command_log import LOGGER as COMMAND_LOG
from ledger.commands import RegisterJob
from ledger.database import create_ledger_engine, libpq_url
from ledger.errors import (
    DuplicateJob,
    IdempotencyKeyReused,
    InvalidCommand,
    LockNotGranted,
    StorageError,
)
from ledger.registrations import MAX_REGISTRATIONS, Registered, Registration, told
from ledger.service import JobService
from ledger.settings import Settings
from ledger.statuses import JobStatus
from ledger.store import EventStore
from ledger.telemetry import LedgerObserver


def registration(job_id: str, key: str | None = None, **fields: object) -> Registration:
    return Registration(job_id=job_id, command=RegisterJob(**fields), idempotency_key=key)  # type: ignore[arg-type]


def test_new_jobs_are_registered_with_their_events_and_rows(
    service: JobService, store: EventStore
) -> None:
    outcomes = service.register_many(
        [registration(f"sweep-{i}", spec={"lr": i}, priority=i) for i in range(5)], actor="sweeper"
    )

    assert all(isinstance(o, Registered) and not o.replayed for o in outcomes)
    for i, outcome in enumerate(outcomes):
        assert isinstance(outcome, Registered)
        assert outcome.state == store.load(f"sweep-{i}")
        assert outcome.state.spec == {"lr": i} and outcome.state.status is JobStatus.QUEUED
        [event] = store.history(f"sweep-{i}")
        assert event.actor == "sweeper" and event.seq == 1
    assert service.cache.get("sweep-0") == outcomes[0].state  # type: ignore[union-attr]


def test_each_item_gets_its_own_outcome(service: JobService, store: EventStore) -> None:
    service.execute("old-plain", RegisterJob(), actor="test")
    service.register_many([registration("old-keyed", "key-a")], actor="test")

    outcomes = JobService(store).register_many(
        [
            registration("fresh", "key-f"),
            registration("old-keyed", "key-a"),  # the same registration again: a replay
            registration("old-plain"),  # exists, no key: a duplicate
            registration("old-keyed", "key-a", priority=7),  # the key with another request
            registration("fresh", "key-f"),  # named twice in one call: its replay
        ],
        actor="test",
    )

    created, replayed, duplicate, reused, twice = outcomes
    assert isinstance(created, Registered) and not created.replayed
    assert isinstance(replayed, Registered) and replayed.replayed
    assert replayed.state == store.load("old-keyed")
    assert isinstance(duplicate, DuplicateJob) and duplicate.status_code == 409
    assert isinstance(reused, IdempotencyKeyReused) and reused.status_code == 422
    assert isinstance(twice, Registered) and twice.replayed
    assert len(store.history("fresh")) == 1 and len(store.history("old-keyed")) == 1


def test_registrations_left_out_are_told_on_a_fresh_read_without_appending(
    service: JobService, store: EventStore
) -> None:
    service.execute("old-plain", RegisterJob(), actor="test")
    service.register_many([registration("old-keyed", "key-a")], actor="test")

    replayed, reused, duplicate, absent = told(
        store,
        [
            registration("old-keyed", "key-a"),
            registration("old-keyed", "key-a", priority=7),
            registration("old-plain"),
            registration("never-registered"),  # not one the log left out: not appended
        ],
    )

    assert isinstance(replayed, Registered) and replayed.replayed
    assert replayed.state == store.load("old-keyed")
    assert isinstance(reused, IdempotencyKeyReused)
    assert isinstance(duplicate, DuplicateJob)
    assert isinstance(absent, StorageError)
    assert store.load("never-registered") is None
    assert store.history("never-registered") == []


def test_a_refused_item_leaves_the_others_registered(
    service: JobService, store: EventStore
) -> None:
    service.execute("taken", RegisterJob(), actor="test")

    outcomes = service.register_many(
        [registration("before"), registration("taken"), registration("after")], actor="test"
    )

    assert [type(o) for o in outcomes] == [Registered, DuplicateJob, Registered]
    assert store.load("before") is not None and store.load("after") is not None


def test_more_than_the_most_at_once_is_refused_whole(
    service: JobService, store: EventStore
) -> None:
    too_many = [registration(f"many-{i}") for i in range(MAX_REGISTRATIONS + 1)]

    with pytest.raises(InvalidCommand):
        service.register_many(too_many, actor="test")

    assert store.load("many-0") is None


def batch_lines(log: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, object]]]:
    """The batch lines of the command log: each message with the record's fields."""
    return [
        (record.getMessage(), vars(record))
        for record in log.records
        if record.name == COMMAND_LOG and getattr(record, "outcome", None) == "batch"
    ]


def test_a_batch_refused_whole_still_logs_its_line_with_the_kind(
    service: JobService, caplog: pytest.LogCaptureFixture
) -> None:
    too_many = [registration(f"many-{i}") for i in range(MAX_REGISTRATIONS + 1)]

    with caplog.at_level(logging.INFO, logger=COMMAND_LOG), pytest.raises(InvalidCommand):
        service.register_many(too_many, actor="sweeper", correlation_id="c-1")

    [(message, fields)] = batch_lines(caplog)
    assert message == (
        f"register {MAX_REGISTRATIONS + 1} jobs by 'sweeper': "
        f"{MAX_REGISTRATIONS + 1} refused invalid-command, correlation c-1"
    )
    assert (fields["refused"], fields["failed"], fields["kind"]) == (
        MAX_REGISTRATIONS + 1,
        0,
        "invalid-command",
    )


def test_the_batch_line_counts_the_items_its_caller_refused_before(
    service: JobService, caplog: pytest.LogCaptureFixture
) -> None:
    service.execute("taken", RegisterJob(), actor="test")

    with caplog.at_level(logging.INFO, logger=COMMAND_LOG):
        service.register_many(
            [registration("fresh"), registration("taken")], actor="sweeper", refused_before=3
        )

    [(message, fields)] = batch_lines(caplog)
    assert message == "register 5 jobs by 'sweeper': 1 accepted, 4 refused, correlation none"
    assert (fields["accepted"], fields["refused"]) == (1, 4)
    refused_lines = [r for r in caplog.records if getattr(r, "job_id", None) == "taken"]
    assert [(r.levelno, vars(r)["kind"]) for r in refused_lines] == [
        (logging.INFO, "duplicate-job")
    ]


class LockStatusAfterAppend(LedgerObserver):
    """Once the batch's statement has committed, another transaction locks `job_status`
    whole, so the batch's read-back of the jobs it left out waits for the lock."""

    def __init__(self, holder: psycopg.Connection[tuple[object, ...]]) -> None:
        self.holder = holder

    def events_appended(self, event_types: Sequence[str]) -> None:
        self.holder.execute("LOCK TABLE job_status IN ACCESS EXCLUSIVE MODE")


def test_a_failed_read_back_fails_only_the_items_left_out(database_url: str) -> None:
    engine = create_ledger_engine(database_url, Settings(lock_timeout_ms=200))
    try:
        store = EventStore(engine)
        JobService(store).execute("there", RegisterJob(), actor="test")
        with psycopg.connect(libpq_url(database_url)) as holder:  # its lock held until it ends
            store.observers.add(LockStatusAfterAppend(holder))
            new, there = JobService(store).register_many(
                [registration("new"), registration("there")], actor="test"
            )
            holder.rollback()
        assert isinstance(new, Registered) and new.state.version == 1
        assert isinstance(there, LockNotGranted) and there.status_code == 503
        assert isinstance(there.__cause__, LockNotGranted), "the read-back's own failure"
        assert [event.seq for event in store.history("new")] == [1]
        assert [event.seq for event in store.history("there")] == [1]
    finally:
        engine.dispose()
