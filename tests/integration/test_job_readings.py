"""One read of a job's view: its state, queue position and health."""

import pytest
from sqlalchemy import Engine

from ledger.commands import RegisterJob
from ledger.database import create_ledger_engine
from ledger.errors import DatabaseUnavailable, JobNotFound
from ledger.queries import EXACT_QUEUE_POSITIONS
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.settings import Settings
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.job_readings import JobReader
from projections.recovery.health import HealthCheck
from tests.conftest import WORKER, JobFactory


@pytest.fixture
def reader(engine: Engine) -> JobReader:
    return JobReader(engine, HealthCheck(engine))


def test_queue_position_orders_by_priority_then_by_time_queued(
    job_factory: JobFactory, reader: JobReader
) -> None:
    low_first = job_factory(priority=0)
    high = job_factory(priority=5)
    low_second = job_factory(priority=0)
    running = job_factory(JobStatus.RUNNING)

    assert reader.read(high.job_id).queue_position == 1
    assert reader.read(low_first.job_id).queue_position == 2
    assert reader.read(low_second.job_id).queue_position == 3
    assert reader.read(running.job_id).queue_position is None


def test_readings_of_many_jobs_come_in_one_answer_keeping_the_states_given(
    job_factory: JobFactory, reader: JobReader
) -> None:
    low = job_factory(JobStatus.QUEUED, priority=0)
    high = job_factory(JobStatus.QUEUED, priority=5)
    running = job_factory(JobStatus.RUNNING)

    readings = reader.readings([low, high, running])

    assert [reading.state for reading in readings] == [low, high, running]
    assert [reading.queue_position for reading in readings] == [2, 1, None]
    assert reader.readings([]) == []


def test_a_settled_jobs_view_is_answered_without_a_read_and_others_are_read(
    job_factory: JobFactory,
) -> None:
    unreachable = create_ledger_engine(
        "postgresql://nobody@127.0.0.1:1/none", Settings(pool_timeout_s=1)
    )
    reader = JobReader(unreachable, HealthCheck(unreachable))
    done = job_factory(JobStatus.COMPLETED)

    (reading,) = reader.readings([done])

    assert (reading.state, reading.queue_position, reading.health.label) == (done, None, "ok")
    with pytest.raises(DatabaseUnavailable):
        reader.readings([done, job_factory(JobStatus.QUEUED)])


def test_an_unknown_job_is_not_found(reader: JobReader) -> None:
    with pytest.raises(JobNotFound):
        reader.read("no-such-job")


def test_claims_take_the_queue_in_the_order_of_its_positions(
    job_factory: JobFactory, reader: JobReader, store: EventStore
) -> None:
    jobs = [job_factory(priority=priority) for priority in (0, 3, 0, -1, 3, 7, 0)]
    by_position = sorted(jobs, key=lambda job: reader.read(job.job_id).queue_position or 0)
    assert [reader.read(job.job_id).queue_position for job in by_position] == list(range(1, 8))

    queue = JobQueue(store)
    claimed = [queue.claim(WORKER, actor="w") for _ in jobs]

    assert [claim.job.job_id for claim in claimed if claim] == [job.job_id for job in by_position]


def test_positions_are_exact_at_the_front_and_more_than_the_bound_behind_it(
    service: JobService, reader: JobReader
) -> None:
    for n in range(EXACT_QUEUE_POSITIONS + 2):
        service.execute(f"q-{n:05d}", RegisterJob(), actor="t")

    readings = reader.readings(
        [reader.read(job_id).state for job_id in ("q-00000", "q-00999", "q-01000", "q-01001")]
    )

    assert [r.queue_position for r in readings] == [1, EXACT_QUEUE_POSITIONS, None, None]
    assert [r.behind_the_front for r in readings] == [False, False, True, True]


def test_a_run_just_started_is_viewed_without_a_read_and_a_replayed_start_is_read(
    engine: Engine, store: EventStore, job_factory: JobFactory
) -> None:
    queue = JobQueue(store)
    job_factory(JobStatus.QUEUED)
    job_factory(JobStatus.QUEUED)
    started = queue.claim(WORKER, actor="w")
    first = queue.claim(WORKER, actor="w", idempotency_key="claim-1")
    replayed = queue.claim(WORKER, actor="w", idempotency_key="claim-1")
    assert started is not None and first is not None and replayed is not None
    assert (started.replayed, first.replayed, replayed.replayed) == (False, False, True)
    unreachable = create_ledger_engine(
        "postgresql://nobody@127.0.0.1:1/none", Settings(pool_timeout_s=1)
    )
    offline = JobReader(unreachable, HealthCheck(unreachable))

    reading = offline.just_started(started.job)

    read = JobReader(engine, HealthCheck(engine)).read(started.job.job_id)
    assert (reading.state, reading.queue_position, reading.health) == (
        started.job,
        None,
        read.health,
    )
    assert reading.health.label == "ok"
