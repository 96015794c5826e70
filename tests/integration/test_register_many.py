"""Many registrations in one transaction, each with its own outcome."""

import pytest

from ledger.commands import RegisterJob
from ledger.errors import DuplicateJob, IdempotencyKeyReused, InvalidCommand
from ledger.registrations import MAX_REGISTRATIONS, Registered, Registration
from ledger.service import JobService
from ledger.statuses import JobStatus
from ledger.store import EventStore


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
