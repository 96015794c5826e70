"""`jobledger audit digest` and `jobledger audit verify` from the command line."""

import json
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from api.cli import main
from api.cli_audit_chain import EXIT_BROKEN, EXIT_INTACT, EXIT_USAGE
from ledger.database import libpq_url
from ledger.statuses import JobStatus
from tests.chain_helpers import digest_of_all, events_in_log, triggers_disabled
from tests.conftest import JobFactory


@pytest.fixture
def configured(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("JOBLEDGER_DATABASE_URL", database_url)
    return database_url


def test_a_digest_printed_then_kept_verifies_until_an_event_is_edited(
    configured: str,
    engine: Engine,
    job_factory: JobFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = job_factory(JobStatus.COMPLETED)
    digest_of_all(engine)
    assert main(["audit", "digest"]) == EXIT_INTACT
    printed = capsys.readouterr().out
    assert json.loads(printed)["events"] == events_in_log(engine)
    kept = tmp_path / "digests.jsonl"
    kept.write_text(printed)

    assert main(["audit", "verify", "--digest", str(kept)]) == EXIT_INTACT
    assert f"digest {kept}:1" in capsys.readouterr().out

    with (
        psycopg.connect(libpq_url(configured), autocommit=True) as superuser,
        triggers_disabled(superuser),
    ):
        superuser.execute(
            "UPDATE job_events SET reason = 'forged' WHERE job_id = %s AND seq = 2",
            (job.job_id,),
        )
    assert main(["audit", "verify", "--digest", str(kept)]) == EXIT_BROKEN
    out = capsys.readouterr().out
    assert f"(job {job.job_id}, seq 2) is not the event chained there" in out
    assert f"digest {kept}:1" in out and "FAILS" in out


def test_an_unreadable_digest_is_a_usage_error(
    configured: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "digest.json"
    path.write_text('{"chain": "sha256-copy-v1", "events": 3}')
    assert main(["audit", "verify", "--digest", str(path)]) == EXIT_USAGE
    assert f"{path}:1: cursor None" in capsys.readouterr().err
