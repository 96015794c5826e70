"""The command service's guesses and retries: a cached state is only a guess, a lost race
is decided again, and a command repeated with its idempotency key is replayed."""

from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from ledger.commands import ForceStart, MarkFailed, PauseJob, RegisterJob, SaveCheckpoint
from ledger.errors import IdempotencyKeyReused, VersionConflict
from ledger.events import CheckpointSaved
from ledger.queue import JobQueue
from ledger.service import CONFLICT_RETRIES, JobService
from ledger.statuses import JobStatus
from ledger.store import EventStore, IdempotencyKeyTaken, LoadedJob
from tests.conftest import WORKER, JobFactory


class RacedStore(EventStore):
    """A real store where, right after each of the next `races` reads, a rival writes."""

    def __init__(self, engine: Engine, rival: Callable[[str], object]) -> None:
        super().__init__(engine)
        self.rival = rival
        self.races = 0

    def load_for_command(self, job_id: str, idempotency_key: str | None) -> LoadedJob:
        loaded = super().load_for_command(job_id, idempotency_key)
        if self.races:
            self.races -= 1
            self.rival(job_id)
        return loaded


def checkpoint(job_id: str, path: str) -> SaveCheckpoint:
    return SaveCheckpoint(attempt=1, run_token=f"token-{job_id}", path=path)


def checkpoint_paths(store: EventStore, job_id: str) -> list[str]:
    return [e.data.path for e in store.history(job_id) if isinstance(e.data, CheckpointSaved)]


def raced_service(engine: Engine, rival: Callable[[str], object]) -> tuple[JobService, RacedStore]:
    """A service with no cache (every decision is on a fresh read) on a raced store."""
    store = RacedStore(engine, rival)
    return JobService(store, cache_size=0), store


def test_a_stale_cached_state_is_corrected_by_a_fresh_read(
    job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    job_id = job_factory(JobStatus.RUNNING).job_id
    ours = JobService(store)
    ours.execute(job_id, checkpoint(job_id, "/ck/ours-1"), actor="w")
    service.execute(job_id, checkpoint(job_id, "/ck/rival"), actor="rival")
    cached = ours.cache.get(job_id)
    assert cached is not None and cached.version == 3, "the cached guess is one version behind"

    outcome = ours.execute(job_id, checkpoint(job_id, "/ck/ours-2"), actor="w")

    assert [e.seq for e in outcome.events] == [5]
    assert checkpoint_paths(store, job_id) == ["/ck/ours-1", "/ck/rival", "/ck/ours-2"]
    assert ours.cache.get(job_id) == outcome.state == store.load(job_id)


def test_a_refusal_decided_on_a_stale_cache_is_decided_again_on_a_fresh_read(
    service: JobService, store: EventStore
) -> None:
    service.execute("job-r", RegisterJob(), actor="op")  # cached: queued, no attempt yet
    claim = JobQueue(store).start("job-r", WORKER, actor="w")
    cached = service.cache.get("job-r")
    assert cached is not None and cached.status is JobStatus.QUEUED, "the guess says queued"

    outcome = service.execute(
        "job-r", PauseJob(attempt=claim.attempt, run_token=claim.run_token), actor="w"
    )

    assert outcome.state.status is JobStatus.PAUSED


def test_a_no_op_decided_on_a_stale_cache_is_decided_again_on_a_fresh_read(
    service: JobService, store: EventStore
) -> None:
    service.execute("job-n", RegisterJob(), actor="op")  # cached: queued
    JobService(store).execute("job-n", MarkFailed(reason="bad input"), actor="op")
    cached = service.cache.get("job-n")
    assert cached is not None and cached.status is JobStatus.QUEUED, "the guess says queued"

    outcome = service.execute("job-n", ForceStart(reason="try again"), actor="op")

    assert [e.type for e in outcome.events] == ["job_force_started"]
    assert outcome.state.status is JobStatus.QUEUED


def test_a_lost_race_without_an_expected_version_is_decided_again_and_lands(
    engine: Engine, job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    job_id = job_factory(JobStatus.RUNNING).job_id
    ours, raced = raced_service(
        engine, lambda job: service.execute(job, checkpoint(job, "/ck/rival"), actor="rival")
    )
    raced.races = 3

    outcome = ours.execute(job_id, checkpoint(job_id, "/ck/ours"), actor="w")

    assert raced.races == 0
    assert [e.seq for e in outcome.events] == [6]
    assert checkpoint_paths(store, job_id) == ["/ck/rival"] * 3 + ["/ck/ours"]


def test_a_command_decided_again_conflict_retries_times_then_gives_up(
    engine: Engine,
    job_factory: JobFactory,
    service: JobService,
    store: EventStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("ledger.service.BACKOFF_SECONDS", 0)
    job_id = job_factory(JobStatus.RUNNING).job_id
    ours, raced = raced_service(
        engine, lambda job: service.execute(job, checkpoint(job, "/ck/rival"), actor="rival")
    )

    raced.races = CONFLICT_RETRIES
    assert ours.execute(job_id, checkpoint(job_id, "/ck/landed"), actor="w").events

    raced.races = CONFLICT_RETRIES + 1
    with pytest.raises(VersionConflict):
        ours.execute(job_id, checkpoint(job_id, "/ck/lost"), actor="w")
    assert raced.races == 0
    assert "/ck/lost" not in checkpoint_paths(store, job_id)


def test_a_lost_race_with_an_expected_version_is_a_version_conflict(
    engine: Engine, job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    job = job_factory(JobStatus.RUNNING)
    ours, raced = raced_service(
        engine, lambda job: service.execute(job, checkpoint(job, "/ck/rival"), actor="rival")
    )
    raced.races = 2

    with pytest.raises(VersionConflict):
        ours.execute(
            job.job_id, checkpoint(job.job_id, "/ck/ours"), actor="w", expected_version=job.version
        )

    assert raced.races == 1, "decided once, never again"
    assert checkpoint_paths(store, job.job_id) == ["/ck/rival"]


def test_a_command_repeated_with_its_idempotency_key_is_replayed_and_appends_nothing(
    job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    job_id = job_factory(JobStatus.RUNNING).job_id
    command = checkpoint(job_id, "/ck/once")
    first = service.execute(job_id, command, actor="w", idempotency_key="ck-1")

    again = service.execute(job_id, command, actor="w", idempotency_key="ck-1")  # cached guess
    from_elsewhere = JobService(store).execute(job_id, command, actor="w", idempotency_key="ck-1")

    assert not first.replayed
    assert again.replayed and from_elsewhere.replayed
    assert again.events == from_elsewhere.events == first.events
    assert checkpoint_paths(store, job_id) == ["/ck/once"]


def test_a_command_whose_key_lands_between_its_read_and_its_append_returns_that_outcome(
    engine: Engine, job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    job_id = job_factory(JobStatus.RUNNING).job_id
    command = checkpoint(job_id, "/ck/once")
    landed = []
    ours, raced = raced_service(
        engine,
        lambda job: landed.append(service.execute(job, command, actor="w", idempotency_key="ck-1")),
    )
    raced.races = 1

    outcome = ours.execute(job_id, command, actor="w", idempotency_key="ck-1")

    assert outcome.replayed
    assert outcome.events == landed[0].events
    assert checkpoint_paths(store, job_id) == ["/ck/once"]


def test_a_command_that_loses_its_race_to_its_key_used_for_another_command_is_refused(
    engine: Engine, job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    """The rival's append takes the version this command was decided on: a lost race,
    and the read after it finds the key used for another command."""
    job_id = job_factory(JobStatus.RUNNING).job_id
    ours, raced = raced_service(
        engine,
        lambda job: service.execute(
            job, checkpoint(job, "/ck/theirs"), actor="w", idempotency_key="ck-1"
        ),
    )
    raced.races = 1

    with pytest.raises(IdempotencyKeyReused):
        ours.execute(job_id, checkpoint(job_id, "/ck/ours"), actor="w", idempotency_key="ck-1")

    assert raced.races == 0
    assert checkpoint_paths(store, job_id) == ["/ck/theirs"]


class KeyBlindStore(EventStore):
    """A real store whose next `blind_reads` reads do not find an earlier use of an
    idempotency key, as a read would that ran before the key's append was visible."""

    def __init__(self, engine: Engine, blind_reads: int) -> None:
        super().__init__(engine)
        self.blind_reads = blind_reads
        self.reads = 0

    def load_for_command(self, job_id: str, idempotency_key: str | None) -> LoadedJob:
        self.reads += 1
        if self.blind_reads:
            self.blind_reads -= 1
            return super().load_for_command(job_id, None)
        return super().load_for_command(job_id, idempotency_key)


def key_blind_service(engine: Engine, blind_reads: int) -> tuple[JobService, KeyBlindStore]:
    """A service with no cache on a store blind to keys for its next `blind_reads` reads."""
    store = KeyBlindStore(engine, blind_reads)
    return JobService(store, cache_size=0), store


def test_a_command_whose_key_the_log_refuses_is_read_again_and_replayed(
    engine: Engine, job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    job_id = job_factory(JobStatus.RUNNING).job_id
    command = checkpoint(job_id, "/ck/once")
    first = service.execute(job_id, command, actor="w", idempotency_key="ck-1")
    ours, blind = key_blind_service(engine, blind_reads=1)

    again = ours.execute(job_id, command, actor="w", idempotency_key="ck-1")

    assert blind.reads == 2, "the append refused by the key's index, then a read that finds it"
    assert again.replayed and again.events == first.events
    assert checkpoint_paths(store, job_id) == ["/ck/once"]


def test_a_key_the_log_refuses_for_another_command_is_refused_as_reused(
    engine: Engine, job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    job_id = job_factory(JobStatus.RUNNING).job_id
    service.execute(job_id, checkpoint(job_id, "/ck/first"), actor="w", idempotency_key="ck-1")
    ours, blind = key_blind_service(engine, blind_reads=1)

    with pytest.raises(IdempotencyKeyReused):
        ours.execute(job_id, checkpoint(job_id, "/ck/other"), actor="w", idempotency_key="ck-1")

    assert blind.reads == 2
    assert checkpoint_paths(store, job_id) == ["/ck/first"]


def test_a_key_whose_append_stays_unreadable_ends_in_a_version_conflict(
    engine: Engine, job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    job_id = job_factory(JobStatus.RUNNING).job_id
    service.execute(job_id, checkpoint(job_id, "/ck/once"), actor="w", idempotency_key="ck-1")
    ours, blind = key_blind_service(engine, blind_reads=CONFLICT_RETRIES + 5)

    with pytest.raises(VersionConflict) as conflict:
        ours.execute(job_id, checkpoint(job_id, "/ck/once"), actor="w", idempotency_key="ck-1")

    assert isinstance(conflict.value.__cause__, IdempotencyKeyTaken)
    assert conflict.value.expected == 3, "the version its last try was decided on"
    assert blind.reads == CONFLICT_RETRIES + 1, "read and tried again, then given up"
    assert checkpoint_paths(store, job_id) == ["/ck/once"]
