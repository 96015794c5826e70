"""`jobledger audit events`: the audit log's question exported from the command line."""

import csv
import io
import json

import pytest

from api.cli import EXIT_OK, main
from ledger.commands import MarkFailed
from ledger.service import JobService
from ledger.statuses import JobStatus
from tests.conftest import JobFactory


@pytest.fixture
def marked(
    database_url: str, monkeypatch: pytest.MonkeyPatch, job_factory: JobFactory, service: JobService
) -> str:
    """A job an operator `op` marked failed, beside another job's events by others."""
    monkeypatch.setenv("JOBLEDGER_DATABASE_URL", database_url)
    job_factory(JobStatus.COMPLETED)
    job = job_factory(JobStatus.RUNNING)
    service.execute(job.job_id, MarkFailed(reason="stuck"), actor="op")
    return job.job_id


def test_an_actors_events_since_a_date_export_as_csv(
    marked: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["audit", "events", "--actor", "op", "--since", "2026-11-01", "--format", "csv"])
        == EXIT_OK
    )
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["job_id"], r["type"], r["actor"], r["reason"]) for r in rows] == [
        (marked, "job_marked_failed", "op", "stuck")
    ]


def test_the_same_question_exports_as_json_lines(
    marked: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "events", "--status", "failed", "--format", "jsonl"]) == EXIT_OK
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["job_id"], line["status"], line["actor"]) for line in lines] == [
        (marked, "failed", "op")
    ]


def test_a_time_that_is_not_one_exits_with_the_filters_problem(
    marked: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "events", "--since", "last tuesday"]) == 1
    assert "since" in capsys.readouterr().err
