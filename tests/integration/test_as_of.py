"""The ledger as of a moment equals the fold of the events recorded by then."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy import Engine, text

from ledger.commands import CompleteJob, RegisterJob, SaveCheckpoint, SubmitJob
from ledger.errors import JobNotFound
from ledger.events import RecordedEvent
from ledger.evolve import evolve
from ledger.job_listing import JobsCursor
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.state import JobState
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.current_status.as_of import PastLedger, parse_moment, state_at
from tests.conftest import WORKER
from tests.integration.test_live_projection_property import play, replay, steps

MICROSECOND = timedelta(microseconds=1)


@pytest.fixture
def past(store: EventStore) -> PastLedger:
    return PastLedger(store)


def folded(events: list[RecordedEvent], at: datetime) -> JobState | None:
    """`evolve` over the events recorded by `at`, written here without the module's help."""
    return replay_of([event for event in events if event.recorded_at <= at])


def replay_of(events: list[RecordedEvent]) -> JobState | None:
    state = None
    for event in events:
        state = evolve(state, event)
    return state


def listed(state: JobState) -> JobState:
    """A job as lists show it: without its spec and result."""
    return state._replace(spec=None, result=None)


def every_page(
    past: PastLedger, at: datetime, status: JobStatus | None, limit: int
) -> list[JobState]:
    jobs: list[JobState] = []
    after: JobsCursor | None = None
    while True:
        page = past.page(at, status, after=after, limit=limit)
        assert len(page.jobs) <= limit
        jobs.extend(page.jobs)
        if page.next_cursor is None:
            return jobs
        after = page.next_cursor


def a_run(service: JobService, store: EventStore) -> list[RecordedEvent]:
    service.execute("job", RegisterJob(initial_status=JobStatus.PENDING, spec={"a": 1}), actor="t")
    service.execute("job", SubmitJob(), actor="t")
    claim = JobQueue(store).start("job", WORKER, actor="w")
    checkpoint = SaveCheckpoint(attempt=1, run_token=claim.run_token, path="/ck/1", step=5)
    service.execute("job", checkpoint, actor="w")
    done = CompleteJob(attempt=1, run_token=claim.run_token, result={"loss": 0.5})
    service.execute("job", done, actor="w")
    return store.history("job")


def test_a_job_as_of_each_moment_is_the_fold_of_its_events_recorded_by_then(
    service: JobService, store: EventStore, past: PastLedger
) -> None:
    events = a_run(service, store)
    assert len({event.recorded_at for event in events}) == len(events) == 5
    for index, event in enumerate(events):
        expected = replay_of(events[: index + 1])
        assert expected is not None
        assert past.job("job", event.recorded_at) == expected
        if index + 1 < len(events):  # between this event and the next: still this state
            assert past.job("job", events[index + 1].recorded_at - MICROSECOND) == expected
        assert past.page(event.recorded_at).jobs == [listed(expected)]
    statuses = [past.job("job", event.recorded_at).status for event in events]
    assert statuses == ["pending", "queued", "running", "running", "completed"]


def test_a_moment_before_the_job_was_registered_finds_no_job(
    service: JobService, store: EventStore, past: PastLedger
) -> None:
    registered = a_run(service, store)[0].recorded_at
    with pytest.raises(JobNotFound):
        past.job("job", registered - MICROSECOND)
    with pytest.raises(JobNotFound):
        past.job("no-such-job", registered + timedelta(days=1))
    page = past.page(registered - MICROSECOND)
    assert (page.jobs, page.next_cursor) == ([], None)
    for status in JobStatus:
        assert past.page(registered - MICROSECOND, status).jobs == []


def test_a_job_is_listed_in_the_status_it_had_then_not_the_one_it_has_now(
    service: JobService, store: EventStore, past: PastLedger
) -> None:
    events = a_run(service, store)
    started = events[2].recorded_at
    assert [job.job_id for job in past.page(started, JobStatus.RUNNING).jobs] == ["job"]
    assert past.page(started, JobStatus.COMPLETED).jobs == []
    assert past.page(events[-1].recorded_at, JobStatus.RUNNING).jobs == []
    assert [job.job_id for job in past.page(events[-1].recorded_at, JobStatus.COMPLETED).jobs] == [
        "job"
    ]


def test_a_past_page_pages_newest_first_with_its_cursor(
    service: JobService, past: PastLedger
) -> None:
    for n in range(5):
        service.execute(f"job-{n}", RegisterJob(), actor="t")
    at = service.store.history("job-3")[0].recorded_at  # jobs 0 to 3 existed then
    first = past.page(at, limit=3)
    assert [job.job_id for job in first.jobs] == ["job-3", "job-2", "job-1"]
    assert first.next_cursor is not None
    rest = past.page(at, after=first.next_cursor, limit=3)
    assert ([job.job_id for job in rest.jobs], rest.next_cursor) == (["job-0"], None)
    searched = past.page(at, search="job-2")
    assert [job.job_id for job in searched.jobs] == ["job-2"]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
def test_the_ledger_as_of_any_moment_equals_the_fold_of_the_events_recorded_by_then(
    steps: list[tuple[int, str, bool]], service: JobService, store: EventStore, engine: Engine
) -> None:
    past, reading_one = PastLedger(store), PastLedger(store, newest_read=1)
    played = play(steps, service, store)
    with engine.connect() as conn:  # with the jobs of the examples before, on this database
        job_ids = conn.execute(text("SELECT DISTINCT job_id FROM job_events")).scalars().all()
    histories = {job_id: store.history(job_id) for job_id in job_ids}
    moments = sorted({e.recorded_at for job_id in played for e in histories.get(job_id, [])})
    for moment in [m - MICROSECOND for m in moments[:1]] + moments:
        expected = {
            job_id: state
            for job_id, events in histories.items()
            if (state := folded(events, moment)) is not None
        }
        newest_first = sorted(
            expected.values(), key=lambda state: (state.created_at, state.job_id), reverse=True
        )
        for job_id, state in expected.items():
            assert past.job(job_id, moment) == state
        assert every_page(past, moment, None, limit=2) == [listed(s) for s in newest_first]
        for status in JobStatus:
            in_status = [listed(s) for s in newest_first if s.status is status]
            assert every_page(past, moment, status, limit=1) == in_status, (moment, status)
            # reading the newest jobs one at a time, then past them
            assert every_page(reading_one, moment, status, limit=1) == in_status, status
    for job_id in played:  # the last moment shows the ledger as it is
        now = moments[-1] if moments else datetime.now(UTC)
        assert folded(histories.get(job_id, []), now) == replay(store, job_id)


def test_state_at_ends_a_history_at_an_event_that_does_not_follow(
    service: JobService, store: EventStore
) -> None:
    events = a_run(service, store)
    assert state_at(events[:2] + events[3:]) == replay_of(events[:2])
    assert state_at([]) is None


@pytest.mark.parametrize(
    "text", ["yesterday", "2026-11-30T14:00:00", "2026-11-30", "2026-11-30T14:00:00 01:00", ""]
)
def test_a_moment_needs_a_date_a_time_and_a_time_zone(text: str) -> None:
    with pytest.raises(ValueError):
        parse_moment(text)


def test_a_moment_in_any_time_zone_is_the_same_moment() -> None:
    assert parse_moment("2026-11-30T14:00:00Z") == parse_moment("2026-11-30T15:00:00+01:00")
