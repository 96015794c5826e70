"""Browsing jobs: newest first, by status, by a piece of the id, keyset-paged, counted."""

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, text

from ledger.database import create_ledger_engine
from ledger.job_listing import JobListing, JobsCursor
from ledger.queries import EXACT_COUNT, EXACT_SEARCH_COUNT, FEW_MATCHES_PER_ROW, SEARCH_WINDOW
from ledger.settings import Settings
from ledger.statuses import JobStatus
from ledger.store import EventStore
from tests.conftest import JobFactory


@pytest.fixture
def listing(store: EventStore) -> JobListing:
    return JobListing(store)


def test_jobs_come_newest_first_and_pages_meet_without_gap_or_overlap(
    job_factory: JobFactory, listing: JobListing
) -> None:
    made = [job_factory(JobStatus.QUEUED, f"page-{n}").job_id for n in range(7)]

    seen: list[str] = []
    cursor = None
    while True:
        page = listing.page(after=cursor, limit=3)
        seen += [job.job_id for job in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(made))


def test_jobs_created_at_the_same_instant_are_paged_by_id(
    job_factory: JobFactory, listing: JobListing, engine: Engine
) -> None:
    for n in range(5):
        job_factory(JobStatus.QUEUED, f"tie-{n}")
    with engine.begin() as conn:  # the projection only; the log is never touched
        conn.execute(text("UPDATE job_status SET created_at = '2026-01-01T00:00:00Z'"))

    first = listing.page(limit=2)
    second = listing.page(after=first.next_cursor, limit=2)
    third = listing.page(after=second.next_cursor, limit=2)
    ids = [job.job_id for job in first.jobs + second.jobs + third.jobs]
    assert ids == ["tie-4", "tie-3", "tie-2", "tie-1", "tie-0"]
    assert third.next_cursor is None


def test_a_status_filter_and_a_search_narrow_the_page_but_counts_ignore_the_status(
    job_factory: JobFactory, listing: JobListing
) -> None:
    job_factory(JobStatus.QUEUED, "resnet-a")
    job_factory(JobStatus.PENDING, "resnet-b")
    job_factory(JobStatus.FAILED, "bert-a")
    job_factory(JobStatus.QUEUED, "bert-b")

    page = listing.page(JobStatus.QUEUED, search="resnet")
    assert [job.job_id for job in page.jobs] == ["resnet-a"]
    assert page.counts[JobStatus.QUEUED] == 1
    assert page.counts[JobStatus.PENDING] == 1
    assert page.counts[JobStatus.FAILED] == 0
    everything = listing.page()
    assert everything.counts[JobStatus.QUEUED] == 2
    assert sum(everything.counts.values()) == 4
    assert set(everything.counts) == set(JobStatus)


def test_a_search_of_three_characters_or_more_matches_any_part_and_wildcards_are_plain(
    job_factory: JobFactory, listing: JobListing
) -> None:
    job_factory(JobStatus.QUEUED, "exp_1-run")
    job_factory(JobStatus.QUEUED, "expX1-run")

    assert [job.job_id for job in listing.page(search="p_1").jobs] == ["exp_1-run"]
    assert [job.job_id for job in listing.page(search="%").jobs] == []
    assert len(listing.page(search="1-RUN").jobs) == 0  # ids are case-sensitive


def test_the_page_tells_the_database_clock(listing: JobListing, engine: Engine) -> None:
    with engine.connect() as conn:
        before = conn.execute(text("SELECT now()")).scalar_one()
    assert listing.page().as_of >= before


@pytest.mark.parametrize(
    "text_", ["", "1764", "x~job", "2026-01-01T00:00:00Z~job", "~", "12~", "9" * 30 + "~job"]
)
def test_a_cursor_no_page_returned_is_refused(text_: str) -> None:
    with pytest.raises(ValueError):
        JobsCursor.parse(text_)


def test_a_cursor_survives_its_round_trip(job_factory: JobFactory, listing: JobListing) -> None:
    job_factory(JobStatus.QUEUED, "one")
    job_factory(JobStatus.QUEUED, "two")
    cursor = listing.page(limit=1).next_cursor
    assert cursor is not None
    assert JobsCursor.parse(str(cursor)) == cursor


def test_a_search_of_one_or_two_characters_matches_the_start_of_ids(
    job_factory: JobFactory, listing: JobListing
) -> None:
    job_factory(JobStatus.QUEUED, "ab-1")
    job_factory(JobStatus.QUEUED, "x-ab")

    assert [job.job_id for job in listing.page(search="ab").jobs] == ["ab-1"]
    assert [job.job_id for job in listing.page(search="-ab").jobs] == ["x-ab"]


def _many_completed(engine: Engine, count: int, prefix: str = "done-") -> None:
    """`count` completed jobs straight into the projection (what the counts read), each
    with its registration in the log (what a search reads), in one transaction: their ids
    are `prefix` and a number."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO job_events (job_id, seq, type, actor, payload) "
                "SELECT :prefix || n, 1, 'job_registered', 't', "
                '\'{"initial_status": "queued"}\' FROM generate_series(1, :count) AS n'
            ),
            {"count": count, "prefix": prefix},
        )
        conn.execute(
            text(
                "INSERT INTO job_status (job_id, status, version, created_at, updated_at, "
                "status_changed_at, priority, max_attempts, auto_retry, spec, attempt, "
                "finished_at) "
                "SELECT :prefix || n, 'completed', 2, e.recorded_at, now(), now(), 0, 1, false, "
                "'{}', 0, now() FROM generate_series(1, :count) AS n "
                "JOIN job_events e ON e.job_id = :prefix || n AND e.seq = 1"
            ),
            {"count": count, "prefix": prefix},
        )
        conn.execute(text("ANALYZE job_status"))


def test_counts_are_exact_up_to_the_bound_and_estimated_past_it(
    engine: Engine, job_factory: JobFactory, listing: JobListing
) -> None:
    job_factory(JobStatus.QUEUED)
    _many_completed(engine, EXACT_COUNT + 500)

    page = listing.page()

    assert page.counts[JobStatus.QUEUED] == 1
    assert page.estimated == {JobStatus.COMPLETED}
    assert abs(page.counts[JobStatus.COMPLETED] - (EXACT_COUNT + 500)) < EXACT_COUNT * 0.2
    searched = listing.page(search="done-")
    assert searched.counts[JobStatus.COMPLETED] == EXACT_SEARCH_COUNT + 1, "more than the bound"
    assert searched.estimated == set(JobStatus), "past the bound no count of a search is exact"
    narrow = listing.page(search="done-1000")  # done-1000 and done-10000 to done-10009
    assert (narrow.counts[JobStatus.COMPLETED], narrow.estimated) == (11, frozenset())


def _newest_ids(engine: Engine, prefix: str, count: int) -> list[str]:
    """The truth a search's page must show: the newest `count` ids starting with `prefix`."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT job_id FROM job_status WHERE starts_with(job_id, :prefix) "
                "ORDER BY created_at DESC, job_id DESC LIMIT :count"
            ),
            {"prefix": prefix, "count": count},
        )
        return [row[0] for row in rows]


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan] + [node for child in plan.get("Plans", []) for node in _plan_nodes(child)]


class Explained:
    """A listing whose every statement's plan, as the database executed it, is kept:
    `auto_explain` on its connections, its messages sent to the client."""

    def __init__(self, engine: Engine) -> None:
        self.listing = JobListing(EventStore(engine))
        self.plans: list[dict[str, Any]] = []

    def keep(self, diagnostic: psycopg.errors.Diagnostic) -> None:
        message = diagnostic.message_primary or ""
        if "plan:" in message:
            self.plans.append(json.loads(message.partition("plan:")[2]))

    def log_reads(self, statement_holding: str) -> list[tuple[str, int, int]]:
        """(index, times run, rows) of each read of the log in the last plan kept whose
        statement holds `statement_holding`."""
        plan = next(p for p in reversed(self.plans) if statement_holding in p["Query Text"])
        reads = [n for n in _plan_nodes(plan["Plan"]) if n.get("Relation Name") == "job_events"]
        return [(n.get("Index Name", ""), n["Actual Loops"], n["Actual Rows"]) for n in reads]


@pytest.fixture
def explained(database_url: str) -> Iterator[Explained]:
    engine = create_ledger_engine(database_url, Settings(pool_size=1))
    kept = Explained(engine)

    @event.listens_for(engine, "connect")
    def explain_all(dbapi_connection: psycopg.Connection[Any], _record: object) -> None:
        dbapi_connection.add_notice_handler(kept.keep)
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_format = json",
            "SET auto_explain.log_level = notice",
        ):
            dbapi_connection.execute(setting)
        dbapi_connection.commit()

    yield kept
    engine.dispose()


PAGE = 50
FEW = FEW_MATCHES_PER_ROW * (PAGE + 1)
"""The matches a search reads through the trigram index before it turns to the window."""


def test_a_search_matching_more_ids_than_it_counts_but_few_reads_them_all_not_the_window(
    engine: Engine, explained: Explained
) -> None:
    matches = (EXACT_SEARCH_COUNT + FEW) // 2
    assert EXACT_SEARCH_COUNT < matches < FEW
    _many_completed(engine, matches, prefix="few-")

    page = explained.listing.page(search="ew-", limit=PAGE)

    assert [job.job_id for job in page.jobs] == _newest_ids(engine, "few-", PAGE)
    assert page.estimated == set(JobStatus), "more matches than counted"
    reads = explained.log_reads("in_window")
    assert [(rows, loops) for _, loops, rows in reads if loops > 0] == [(matches, 1)], (
        "every match read once; the window and the reading again never run"
    )
    assert len(reads) == 3


def test_a_search_matching_many_ids_reads_its_page_from_the_newest_registrations_alone(
    engine: Engine, explained: Explained
) -> None:
    _many_completed(engine, 2 * FEW, prefix="many-")

    first = explained.listing.page(search="any-", limit=PAGE)
    first_reads = explained.log_reads("in_window")
    second = explained.listing.page(search="any-", after=first.next_cursor, limit=PAGE)
    second_reads = explained.log_reads("in_window")

    newest = _newest_ids(engine, "many-", 2 * PAGE)
    assert [job.job_id for job in first.jobs + second.jobs] == newest
    assert first.estimated == set(JobStatus), "more matches than counted"
    for reads in (first_reads, second_reads):
        done = [(index, rows) for index, loops, rows in reads if loops > 0]
        assert len(reads) == 3, "the first matches, the newest registrations, every match"
        assert done[0][1] == FEW, "the first matches: as many as a search reads, no more"
        assert done[1:] == [("ix_job_events_registered_at", PAGE + 1)], "the newest, a page"


def test_a_search_matching_many_ids_registered_before_the_newest_finds_them_all_the_same(
    engine: Engine, listing: JobListing
) -> None:
    _many_completed(engine, 2 * EXACT_SEARCH_COUNT, prefix="old-")
    _many_completed(engine, SEARCH_WINDOW, prefix="new-")

    page = listing.page(search="old-", limit=50)

    assert [job.job_id for job in page.jobs] == _newest_ids(engine, "old-", 50)
    assert page.counts[JobStatus.COMPLETED] == EXACT_SEARCH_COUNT + 1


def test_a_search_for_one_sampled_id_is_estimated_at_a_few_rows_not_one_in_a_hundred(
    engine: Engine,
) -> None:
    """ANALYZE reads every row of a log this small, so the values it keeps are known: the
    planner takes a pattern found in one of them to match one id in as many values as are
    kept, and chooses how a search reads its matches by that estimate."""
    jobs = 3_000
    _many_completed(engine, jobs, prefix="rare-")
    with engine.begin() as conn:
        conn.execute(text("ANALYZE job_events"))
        bounds = conn.execute(
            text(
                "SELECT histogram_bounds::text::text[] FROM pg_stats "
                "WHERE tablename = 'job_events' AND attname = 'job_id'"
            )
        ).scalar_one()
        sampled = next(b for b in bounds if len(b) == len("rare-1000"))  # no other id holds it
        plan = conn.execute(
            text("EXPLAIN (FORMAT JSON) SELECT 1 FROM job_events e WHERE e.job_id LIKE :p"),
            {"p": f"%{sampled}%"},
        ).scalar_one()

    assert plan[0]["Plan"]["Plan Rows"] <= jobs / 300 + 1, "one id in 300 at most"
    assert len(bounds) > 300, "300 values kept, not 100"
