"""`jobledger jobs --as-of` and `jobledger history --until`: the past from the command line."""

import json
from datetime import timedelta

import pytest

from api.cli import EXIT_NOT_FOUND, EXIT_OK, EXIT_USAGE, main
from ledger.statuses import JobStatus
from ledger.store import EventStore
from tests.conftest import JobFactory


@pytest.fixture(autouse=True)
def configured(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBLEDGER_DATABASE_URL", database_url)


def test_jobs_as_of_a_moment_lists_them_in_the_status_they_had_then(
    job_factory: JobFactory, store: EventStore, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_factory(JobStatus.COMPLETED)
    started = store.history(job.job_id)[1].recorded_at.isoformat()
    job_factory(JobStatus.QUEUED)  # registered later

    assert main(["jobs", "--as-of", started, "--json"]) == EXIT_OK
    printed = capsys.readouterr()
    assert [(j["job_id"], j["status"]) for j in json.loads(printed.out)] == [
        (job.job_id, "running")
    ]
    assert f"as of {started}" in printed.err
    assert main(["jobs", "--as-of", started, "--status", "completed", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == []


def test_history_until_a_moment_ends_with_the_last_event_recorded_by_then(
    job_factory: JobFactory, store: EventStore, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_factory(JobStatus.FAILED)
    registered, started, _ = (event.recorded_at for event in store.history(job.job_id))
    assert main(["history", job.job_id, "--until", started.isoformat(), "--json"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert [row["to_status"] for row in rows] == ["queued", "running"]
    before = (registered - timedelta(microseconds=1)).isoformat()
    assert main(["history", job.job_id, "--until", before]) == EXIT_NOT_FOUND


@pytest.mark.parametrize("command", [["jobs", "--as-of"], ["history", "job", "--until"]])
def test_a_moment_without_its_time_zone_is_a_usage_error(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "2026-11-30T14:00:00"])
    assert exited.value.code == EXIT_USAGE
    assert "time zone" in capsys.readouterr().err
