"""The event store and the command service on a real PostgreSQL."""

import pytest
from sqlalchemy import Engine, create_engine, text

from ledger.commands import (
    CompleteJob,
    ForceStart,
    MarkFailed,
    RegisterJob,
    SaveCheckpoint,
    StartJob,
    SubmitJob,
)
from ledger.database import create_ledger_engine, driver_connection
from ledger.errors import (
    DatabaseUnavailable,
    DuplicateJob,
    IllegalTransition,
    InvalidCommand,
    JobNotFound,
    StaleAttempt,
    VersionConflict,
)
from ledger.events import JobRegistered
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.settings import Settings
from ledger.statuses import JobStatus
from ledger.store import EventStore
from tests.conftest import WORKER, JobFactory


def count_events(engine: Engine, job_id: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM job_events WHERE job_id = :j"), {"j": job_id}
            ).scalar_one()
        )


def test_registering_a_job_records_one_event_and_its_state(
    service: JobService, store: EventStore
) -> None:
    outcome = service.execute("job-a", RegisterJob(spec={"lr": 0.1}, priority=3), actor="alice")

    [event] = store.history("job-a")
    assert isinstance(event.data, JobRegistered)
    assert (event.seq, event.actor, event.attempt) == (1, "alice", 0)
    assert event.data.spec == {"lr": 0.1}
    assert store.load("job-a") == outcome.state
    assert outcome.state.status is JobStatus.QUEUED
    assert outcome.state.created_at == event.recorded_at


def test_the_inline_projection_equals_the_state_returned_after_each_command(
    service: JobService, store: EventStore
) -> None:
    service.execute("job-b", RegisterJob(initial_status=JobStatus.PENDING), actor="a")
    service.execute("job-b", SubmitJob(), actor="a")
    started = JobQueue(store, run_tokens=lambda: "t1").start("job-b", WORKER, actor="w")
    saved = service.execute(
        "job-b", SaveCheckpoint(attempt=1, run_token="t1", path="/ck/1", step=10), actor="w"
    )

    assert started.job.started_at is not None
    assert store.load("job-b") == saved.state
    assert saved.state.checkpoint_path == "/ck/1"
    assert [e.seq for e in store.history("job-b")] == [1, 2, 3, 4]


def test_a_job_is_started_only_by_the_queue_which_opens_its_lease(
    job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    job = job_factory(JobStatus.QUEUED)
    with pytest.raises(InvalidCommand, match="started through the queue"):
        service.execute(job.job_id, StartJob(worker=WORKER, run_token="t1"), actor="w")
    assert store.load(job.job_id) == job
    assert len(store.history(job.job_id)) == 1


def test_history_records_actor_reason_attempt_and_database_time_of_each_event(
    job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    job = job_factory(JobStatus.RUNNING)
    service.execute(job.job_id, MarkFailed(reason="GPU fell off the bus"), actor="operator-bob")

    last = store.history(job.job_id)[-1]
    assert last.type == "job_marked_failed"
    assert last.actor == "operator-bob"
    assert last.reason == "GPU fell off the bus"
    assert last.attempt == 1
    assert last.position is not None and last.tx_id is not None
    assert last.recorded_at >= store.history(job.job_id)[0].recorded_at


def test_registering_an_existing_job_is_a_duplicate_and_appends_nothing(
    job_factory: JobFactory, service: JobService, engine: Engine
) -> None:
    job = job_factory()
    with pytest.raises(DuplicateJob):
        service.execute(job.job_id, RegisterJob(), actor="a")
    assert count_events(engine, job.job_id) == 1


def test_a_command_on_an_unknown_job_says_so(service: JobService) -> None:
    with pytest.raises(JobNotFound, match="nope"):
        service.execute("nope", SubmitJob(), actor="a")


def test_an_illegal_transition_names_status_and_allowed_commands_and_appends_nothing(
    job_factory: JobFactory, service: JobService, engine: Engine
) -> None:
    job = job_factory(JobStatus.COMPLETED)
    with pytest.raises(IllegalTransition) as refused:
        service.execute(job.job_id, ForceStart(reason="again"), actor="op")
    assert refused.value.status == "completed"
    assert refused.value.allowed == ()
    assert "completed" in str(refused.value)
    assert count_events(engine, job.job_id) == job.version


def test_a_stale_expected_version_is_a_conflict(
    job_factory: JobFactory, service: JobService
) -> None:
    job = job_factory(JobStatus.PENDING)
    with pytest.raises(VersionConflict) as conflict:
        service.execute(job.job_id, SubmitJob(), actor="a", expected_version=job.version + 1)
    assert conflict.value.actual == job.version
    assert service.execute(job.job_id, SubmitJob(), actor="a", expected_version=job.version)


def test_appending_on_an_outdated_state_raises_version_conflict(
    job_factory: JobFactory, store: EventStore
) -> None:
    job = job_factory(JobStatus.PENDING)
    from ledger.events import JobSubmitted

    store.append(job.job_id, job, [JobSubmitted()], actor="first")
    with pytest.raises(VersionConflict):
        store.append(job.job_id, job, [JobSubmitted()], actor="second")
    assert [e.actor for e in store.history(job.job_id)] == ["test", "first"]


def test_an_append_updates_the_row_in_the_columns_it_changes_and_no_other(
    job_factory: JobFactory, service: JobService, store: EventStore, engine: Engine
) -> None:
    job = job_factory(JobStatus.PENDING)
    with engine.begin() as conn:  # a column no submission changes, altered behind its back
        conn.execute(
            text("UPDATE job_status SET priority = 99 WHERE job_id = :j"), {"j": job.job_id}
        )

    submitted = service.execute(job.job_id, SubmitJob(), actor="a")

    loaded = store.load(job.job_id)
    assert loaded is not None
    assert loaded.priority == 99
    assert loaded._replace(priority=0) == submitted.state


@pytest.mark.parametrize(
    "damage",
    [
        "DELETE FROM job_status WHERE job_id = :j",
        "UPDATE job_status SET version = 7, priority = 42 WHERE job_id = :j",
    ],
    ids=["row gone", "row at another version"],
)
def test_an_append_writes_the_row_whole_when_it_is_not_at_the_decided_version(
    damage: str, job_factory: JobFactory, store: EventStore, engine: Engine
) -> None:
    job = job_factory(JobStatus.PENDING)
    from ledger.events import JobSubmitted

    with engine.begin() as conn:  # as while a projection is repaired
        conn.execute(text(damage), {"j": job.job_id})
    appended = store.append(job.job_id, job, [JobSubmitted()], actor="a")

    assert store.load(job.job_id) == appended.state
    assert (appended.state.status, appended.state.version) == (JobStatus.QUEUED, 2)
    assert count_events(engine, job.job_id) == 2


def test_a_command_repeated_with_its_idempotency_key_returns_the_first_outcome(
    job_factory: JobFactory, service: JobService, engine: Engine
) -> None:
    job = job_factory(JobStatus.RUNNING)
    first = service.execute(
        job.job_id, MarkFailed(reason="stuck"), actor="op", idempotency_key="key-1"
    )
    again = service.execute(
        job.job_id, MarkFailed(reason="stuck"), actor="op", idempotency_key="key-1"
    )

    assert again.replayed and not first.replayed
    assert again.events == first.events
    assert count_events(engine, job.job_id) == job.version + 1


def test_a_registration_retried_with_its_key_is_not_a_duplicate(
    service: JobService, engine: Engine
) -> None:
    first = service.execute("job-k", RegisterJob(), actor="a", idempotency_key="create-1")
    again = service.execute("job-k", RegisterJob(), actor="a", idempotency_key="create-1")
    assert again.replayed
    assert again.events == first.events
    assert count_events(engine, "job-k") == 1


def test_a_force_start_with_both_attempts_fenced_returns_two_events_in_one_transaction(
    job_factory: JobFactory, service: JobService, store: EventStore
) -> None:
    job = job_factory(JobStatus.RUNNING)
    outcome = service.execute(job.job_id, ForceStart(reason="dead", run_is_dead=True), actor="op")

    assert [e.type for e in outcome.events] == ["job_marked_failed", "job_force_started"]
    assert len({e.tx_id for e in outcome.events}) == 1
    assert outcome.state.status is JobStatus.QUEUED
    assert store.load(job.job_id) == outcome.state
    with pytest.raises(StaleAttempt):
        service.execute(
            job.job_id,
            CompleteJob(attempt=job.attempt, run_token=f"token-{job.job_id}"),
            actor="dead-worker",
        )


def test_sessions_cannot_sit_idle_in_a_transaction(engine: Engine) -> None:
    with engine.connect() as conn:
        value = conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar_one()
    assert value == "30s"


def test_an_unreachable_database_is_a_typed_error() -> None:
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailable):
        EventStore(engine).load("job")
    engine.dispose()


def test_an_append_reuses_its_connections_cursor_and_a_lost_connection_takes_it_along(
    database_url: str, engine: Engine
) -> None:
    """Appends on one pooled connection share its cursor; when the server ends that
    connection, the append on it is `DatabaseUnavailable` and the next one lands on a new
    connection with a cursor of its own, not the dead connection's."""
    one_connection = create_ledger_engine(database_url, Settings(pool_size=1))
    try:
        service = JobService(EventStore(one_connection), cache_size=0)

        def connection_and_cursor() -> tuple[int, object]:
            pooled = driver_connection(one_connection)
            with pooled as conn:
                return conn.info.backend_pid, pooled.cursor()

        service.execute("reused-1", RegisterJob(), actor="alice")
        backend, cursor = connection_and_cursor()
        service.execute("reused-2", RegisterJob(), actor="alice")
        assert connection_and_cursor() == (backend, cursor)

        with engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        with pytest.raises(DatabaseUnavailable):
            service.execute("reused-3", RegisterJob(), actor="alice")
        assert service.execute("reused-3", RegisterJob(), actor="alice").state.version == 1
        new_backend, new_cursor = connection_and_cursor()
        assert new_backend != backend and new_cursor is not cursor
    finally:
        one_connection.dispose()
