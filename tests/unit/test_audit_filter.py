"""The audit log's filters, cursors and times, before any database is asked."""

from datetime import UTC, datetime

import pytest

from api.audit_export import CSV_COLUMNS
from api.models import AuditEventView
from ledger.audit_events import AuditCursor, AuditFilter, Clock, parse_moment
from ledger.errors import InvalidAuditFilter
from ledger.events import EVENT_CLASSES
from ledger.statuses import JobStatus


def test_a_status_is_read_as_the_types_that_reach_it_and_the_registrations_in_it() -> None:
    question = AuditFilter(statuses=(JobStatus.QUEUED,))
    assert question.branches() == [
        ("job_registered", JobStatus.QUEUED),
        ("job_submitted", None),
        ("job_force_started", None),
        ("job_requeued", None),
    ]


def test_types_and_statuses_together_keep_only_the_types_reaching_those_statuses() -> None:
    question = AuditFilter(types=("job_marked_failed", "job_started"), statuses=(JobStatus.FAILED,))
    assert question.branches() == [("job_marked_failed", None)]


def test_one_actors_events_are_read_a_type_at_a_time_and_merged() -> None:
    assert AuditFilter(actor="alice").branches() == [(type_, None) for type_ in EVENT_CLASSES]


def test_every_actors_events_a_jobs_or_the_emitters_clocks_are_read_in_one_branch() -> None:
    assert AuditFilter().branches() == [(None, None)]
    assert AuditFilter(actor="alice", job_id="job-1").branches() == [(None, None)]
    assert AuditFilter(actor="alice", job_id_prefix="job-").branches() == [(None, None)]
    assert AuditFilter(actor="alice", clock=Clock.OCCURRED).branches() == [(None, None)]


def test_an_unknown_type_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(InvalidAuditFilter, match=r"job_exploded.*job_registered") as refused:
        AuditFilter(types=("job_exploded",))
    assert refused.value.field == "type"


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(InvalidAuditFilter, match="until"):
        AuditFilter(since=moment, until=moment)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T00:00:00Z", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T01:00:00+01:00", datetime(2026, 11, 1, tzinfo=UTC)),
    ],
)
def test_a_moment_is_an_rfc_3339_time_or_a_date_at_midnight_utc(
    text: str, expected: datetime
) -> None:
    assert parse_moment("since", text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-11-01T00:00:00", "2026-13-01", ""])
def test_a_moment_without_an_offset_or_not_a_time_is_refused(text: str) -> None:
    with pytest.raises(InvalidAuditFilter) as refused:
        parse_moment("since", text)
    assert refused.value.field == "since"


def test_a_cursor_reads_back_as_itself_on_its_own_clock_only() -> None:
    cursor = AuditCursor(Clock.RECORDED, datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=UTC), 42)
    assert AuditCursor.parse(str(cursor), Clock.RECORDED) == cursor
    with pytest.raises(InvalidAuditFilter):
        AuditCursor.parse(str(cursor), Clock.OCCURRED)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x",
        "cjE",  # r1: no position
        "cjEyMy0x",  # r123-1
        "cjk5OTk5OTk5OTk5OTk5OTk5OTkuMQ",  # a time past any calendar
        "cjEuOTk5OTk5OTk5OTk5OTk5OTk5OTk",  # a position past 64 bits
    ],
)
def test_text_no_page_returned_is_not_a_cursor(text: str) -> None:
    with pytest.raises(InvalidAuditFilter) as refused:
        AuditCursor.parse(text, Clock.RECORDED)
    assert refused.value.field == "cursor"


def test_a_csv_export_has_a_column_for_every_field_of_the_json_view() -> None:
    assert sorted(CSV_COLUMNS) == sorted(AuditEventView.model_fields)
