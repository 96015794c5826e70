"""The command line, on the configured database and on the embedded default."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from api.cli import EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_OK, main
from ledger.commands import RegisterJob
from ledger.database import create_ledger_engine
from ledger.service import JobService
from ledger.statuses import JobStatus
from tests.conftest import JobFactory


@pytest.fixture
def configured(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("JOBLEDGER_DATABASE_URL", database_url)
    return database_url


def test_history_prints_each_transition_with_actor_and_reason(
    configured: str, job_factory: JobFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_factory(JobStatus.FAILED)
    assert main(["history", job.job_id]) == EXIT_OK
    out = capsys.readouterr().out
    assert "queued -> running" in out
    assert "running -> failed" in out
    assert "boom" in out


def test_history_as_json_lists_the_transitions_in_order(
    configured: str, job_factory: JobFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_factory(JobStatus.CANCELLED)
    assert main(["history", job.job_id, "--json"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert [(r["from_status"], r["to_status"]) for r in rows] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "cancelled"),
    ]


def test_history_as_json_names_each_events_correlation_id(
    configured: str, service: JobService, capsys: pytest.CaptureFixture[str]
) -> None:
    service.execute("traced", RegisterJob(), actor="alice", correlation_id="step-7")
    assert main(["history", "traced", "--json"]) == EXIT_OK
    assert [row["correlation_id"] for row in json.loads(capsys.readouterr().out)] == ["step-7"]


def test_history_of_an_unknown_job_exits_not_found(
    configured: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "missing-job"]) == EXIT_NOT_FOUND
    assert "missing-job" in capsys.readouterr().err


def test_jobs_filters_by_status(
    configured: str, job_factory: JobFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    running = job_factory(JobStatus.RUNNING)
    job_factory(JobStatus.PENDING)
    assert main(["jobs", "--status", "running", "--json"]) == EXIT_OK
    assert [j["job_id"] for j in json.loads(capsys.readouterr().out)] == [running.job_id]


def test_jobs_are_listed_newest_first_and_found_by_part_of_their_id(
    configured: str, job_factory: JobFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    for job_id in ("sweep-lr-1", "other", "sweep-lr-2"):
        job_factory(JobStatus.QUEUED, job_id)
    assert main(["jobs", "--search", "lr-", "--json"]) == EXIT_OK
    assert [j["job_id"] for j in json.loads(capsys.readouterr().out)] == [
        "sweep-lr-2",
        "sweep-lr-1",
    ]


def test_verify_exits_one_and_prints_the_row_on_drift(
    configured: str, job_factory: JobFactory, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    job = job_factory(JobStatus.RUNNING)
    assert main(["projections", "verify"]) == EXIT_OK
    with engine.begin() as conn:
        conn.execute(text("UPDATE job_status SET status = 'queued'"))
    assert main(["projections", "verify"]) == EXIT_FAILURE
    assert f"{job.job_id}: status stored=" in capsys.readouterr().out

    assert main(["projections", "rebuild"]) == EXIT_OK
    assert main(["projections", "verify"]) == EXIT_OK


def test_a_schema_behind_the_code_is_refused_with_the_command_to_run(
    configured: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from alembic import command

    from ledger.migrate import alembic_config

    command.downgrade(alembic_config(configured), "base")
    assert main(["jobs"]) == EXIT_FAILURE
    assert "jobledger migrate" in capsys.readouterr().err
    assert main(["migrate"]) == EXIT_OK


@pytest.mark.slow
def test_demo_runs_on_the_embedded_default_with_no_database_configured(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBLEDGER_")}
    env["JOBLEDGER_DATA_DIR"] = str(tmp_path / "pgdata")
    first = subprocess.run(
        [sys.executable, "-m", "api.cli", "demo"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert first.returncode == 0, first.stderr
    assert "running -> completed" in first.stdout
    assert (tmp_path / "pgdata" / "PG_VERSION").read_text().strip() == "18"

    job_id = first.stdout.split()[1].rstrip(":")
    second = subprocess.run(
        [sys.executable, "-m", "api.cli", "history", job_id],
        check=False,
        env=env,
        capture_output=True,
        text=True,
    )
    assert second.returncode == 0, second.stderr
    assert "paused -> running" in second.stdout, "the second run reads the same ledger"


def test_health_exits_one_and_names_the_orphan_when_a_run_died(
    configured: str, job_factory: JobFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.host import process_identity
    from ledger.queue import JobQueue
    from ledger.store import EventStore
    from tests.integration.recovery_helpers import training_process

    job = job_factory()
    engine = create_ledger_engine(configured)
    with training_process() as child:
        JobQueue(EventStore(engine)).claim(process_identity("t", child.pid), actor="t")
        assert main(["health"]) == EXIT_OK
        child.kill()
        child.wait()
    engine.dispose()
    capsys.readouterr()

    assert main(["health", "--json"]) == EXIT_FAILURE
    report = json.loads(capsys.readouterr().out)
    assert [o["job_id"] for o in report["orphaned_jobs"]] == [job.job_id]
    assert report["orphaned_jobs"][0]["reason"] == "process_gone"

    assert main(["reconcile", "--dry-run", "--json"]) == EXIT_OK
    planned = json.loads(capsys.readouterr().out)
    assert planned["dry_run"] and planned["actions"][0]["applied"] is False
    assert main(["reconcile"]) == EXIT_OK
    assert f"{job.job_id}: mark_failed" in capsys.readouterr().out
    assert main(["health"]) == EXIT_OK


def test_operator_commands_record_the_reason_and_print_the_new_status(
    configured: str, job_factory: JobFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    pending = job_factory(JobStatus.PENDING)
    assert main(["force-start", pending.job_id, "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["queue_position"] == 1

    assert main(["mark-failed", pending.job_id, "--reason", "bad spec"]) == EXIT_OK
    assert f"{pending.job_id}: failed" in capsys.readouterr().out
    assert main(["requeue", pending.job_id]) == EXIT_OK
    assert main(["cancel", pending.job_id, "--reason", "duplicate"]) == EXIT_OK
    assert main(["cancel", pending.job_id]) == EXIT_FAILURE
    assert "allowed from cancelled: force_start, requeue" in capsys.readouterr().err

    assert main(["history", pending.job_id, "--json"]) == EXIT_OK
    history = json.loads(capsys.readouterr().out)
    assert [h["reason"] for h in history][-3:] == ["bad spec", None, "duplicate"]
    assert history[-1]["actor"].startswith("cli:")


def test_submit_registers_every_line_and_names_each_refused_one(
    configured: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep.jsonl"
    lines = [
        json.dumps({"job_id": f"sweep-{i}", "spec": {"lr": i}, "idempotency_key": f"k-{i}"})
        for i in range(1200)
    ]
    sweep.write_text("\n".join([*lines, "", '{"job_id": "bad", "priority": "high"}', "[1]"]))

    assert main(["submit", "--from", str(sweep)]) == EXIT_FAILURE
    first = capsys.readouterr()
    assert main(["submit", "--from", str(sweep), "--json"]) == EXIT_FAILURE
    again = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert first.out.strip() == "registered 1200, already registered 0, refused 2"
    assert "line 1202: bad: 422 invalid-request: priority" in first.err
    assert "line 1203: -: 422 invalid-request: not a JSON object" in first.err
    assert [o["status"] for o in again] == [200] * 1200 + [422, 422]
    assert again[5] == {
        "line": 6,
        "job_id": "sweep-5",
        "status": 200,
        "job_status": "queued",
        "version": 1,
        "kind": None,
        "detail": None,
    }
    assert main(["history", "sweep-1199"]) == EXIT_OK
