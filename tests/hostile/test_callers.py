"""Hostile callers and careless configuration: tokens, headers and who an action is recorded as."""

import getpass
import hashlib
import json
import os
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api.auth import Role, TokenBook, TokenBookError
from api.bootstrap import Ledger
from api.cli import EXIT_FAILURE, EXIT_OK, main
from api.problems import Problem
from ledger.commands import CancelJob, WorkerIdentity
from ledger.host import hostname
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.recovery.leader import LeaderLock
from projections.recovery.monitor import HealthMonitor
from tests.api import conftest as api_fixtures
from tests.api.conftest import auth, token_of
from tests.conftest import JobFactory

# The HTTP API's fixtures, shared with tests/api.
ledger, client_for, client = api_fixtures.ledger, api_fixtures.client_for, api_fixtures.client

VALID = "a-long-enough-token-0123"


@pytest.mark.parametrize(
    "spec",
    [
        "ci:operator:",  # JOBLEDGER_TOKENS="ci:operator:$CI_TOKEN" with CI_TOKEN unset
        f"ci:operator:{VALID},bob:auditor:",
        f"ci:operator:\xa0{VALID}",
        f"ci:operator:{VALID} x",
        "ci:operator",
        f":operator:{VALID}",
        f"ci:root:{VALID}",
        "ci:operator:fifteen-chars-x",  # 15 characters: guessable
    ],
)
def test_an_unusable_token_in_the_variable_is_refused_when_the_book_is_read(spec: str) -> None:
    with pytest.raises(TokenBookError):
        TokenBook.from_env({"JOBLEDGER_TOKENS": spec})


def test_a_token_of_sixteen_characters_is_long_enough() -> None:
    assert len("fifteen-chars-x") == 15 and len("sixteen-chars-ok") == 16
    assert TokenBook.from_env({"JOBLEDGER_TOKENS": "ci:operator:sixteen-chars-ok"}).enabled


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "ci", "role": "operator", "token": ""},
        {"name": "ci", "role": "operator"},
        {"name": "ci", "role": "operator", "sha256": "ab" * 31},
        {"name": "ci", "role": "operator", "sha256": "zz" * 32},
        {"name": "ci", "role": "operator", "sha256": ""},
    ],
)
def test_an_unusable_token_in_the_file_is_refused_when_the_book_is_read(
    tmp_path: Path, entry: dict[str, str]
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([entry]))
    with pytest.raises(TokenBookError):
        TokenBook.from_env({"JOBLEDGER_TOKENS_FILE": str(path)})


def test_a_file_token_may_be_given_by_its_sha256_of_64_hex_digits(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    digest = hashlib.sha256(VALID.encode()).hexdigest()
    path.write_text(json.dumps([{"name": "ci", "role": "operator", "sha256": digest}]))
    book = TokenBook.from_env({"JOBLEDGER_TOKENS_FILE": str(path)})
    assert book.caller(f"Bearer {VALID}", frozenset({Role.OPERATOR})).name == "ci"


def test_serve_with_an_empty_token_exits_non_zero_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOBLEDGER_TOKENS", "ci:operator:")
    monkeypatch.delenv("JOBLEDGER_TOKENS_FILE", raising=False)
    # Were the tokens accepted, the server would fail at once here, never serve.
    monkeypatch.setenv("JOBLEDGER_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["serve"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "'ci'" in err and "empty" in err


@pytest.mark.parametrize(
    "header",
    [
        "Bearer \xa0" + token_of("alice"),  # str.strip() removed the U+00A0
        "Bearer " + token_of("alice") + "\u2003",
        "Bearer \u3000" + token_of("alice"),
        "Bearer  " + token_of("alice"),
        "Bearer\t" + token_of("alice"),
        "Bearer" + token_of("alice"),
        "Basic " + token_of("alice"),
        token_of("alice"),
        "Bearer ",
    ],
)
def test_a_malformed_authorization_header_is_401(header: str) -> None:
    # A server hands the header over decoded as Latin-1, U+00A0 and all (the test
    # client would send it UTF-8 encoded): the token book is asked directly.
    book = TokenBook.from_env({"JOBLEDGER_TOKENS": f"alice:operator:{token_of('alice')}"})
    with pytest.raises(Problem) as refused:
        book.caller(header, frozenset(Role))
    assert refused.value.status == 401


def test_a_header_with_two_spaces_is_refused_over_http(client: TestClient) -> None:
    header = f"Bearer  {token_of('alice')}"
    assert client.get("/v1/health", headers={"Authorization": header}).status_code == 401


def test_exactly_bearer_space_token_is_admitted(client: TestClient) -> None:
    header = f"Bearer {token_of('alice')}"
    assert client.get("/v1/health", headers={"Authorization": header}).status_code == 200


def orphan_of_a_rebooted_host(store: EventStore, job_factory: JobFactory) -> str:
    """A running job whose worker ran on this host before it rebooted: orphaned at once."""
    job = job_factory()
    worker = WorkerIdentity(
        worker_id="trainer", host=hostname(), pid=os.getpid(), pid_started_at=1.0, boot_id="old"
    )
    JobQueue(store).start(job.job_id, worker, actor="trainer")
    return job.job_id


@pytest.mark.parametrize("path", ["/v1/admin/reconcile", "/api/training/admin/cleanup"])
def test_a_reconcile_an_operator_asks_for_is_recorded_as_that_operator(
    client: TestClient, store: EventStore, job_factory: JobFactory, path: str
) -> None:
    job_id = orphan_of_a_rebooted_host(store, job_factory)
    assert client.post(path, headers=auth("alice")).status_code == 200
    last = store.history(job_id)[-1]
    assert (last.type, last.actor) == ("job_marked_failed", "alice")


def test_jobledger_reconcile_is_recorded_as_the_cli_user(
    database_url: str,
    store: EventStore,
    job_factory: JobFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBLEDGER_DATABASE_URL", database_url)
    monkeypatch.delenv("JOBLEDGER_ACTOR", raising=False)
    job_id = orphan_of_a_rebooted_host(store, job_factory)
    assert main(["reconcile"]) == EXIT_OK
    assert store.history(job_id)[-1].actor == f"cli:{getpass.getuser()}"


def test_the_monitors_own_passes_stay_the_health_monitors(
    ledger: Ledger, store: EventStore, job_factory: JobFactory
) -> None:
    job_id = orphan_of_a_rebooted_host(store, job_factory)
    HealthMonitor(ledger.reconciler, LeaderLock(ledger.url)).recover()
    assert store.history(job_id)[-1].actor == "health-monitor"


HOSTILE_REASON = "done\x1b[2J\x1b]0;owned\x07\rall good\nfake line \u202eevil"


def test_history_prints_control_characters_of_a_reason_visibly(
    database_url: str,
    service: JobService,
    job_factory: JobFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JOBLEDGER_DATABASE_URL", database_url)
    job = job_factory()
    service.execute(job.job_id, CancelJob(reason=HOSTILE_REASON), actor="mallory\x1b[31m")
    assert main(["history", job.job_id]) == EXIT_OK
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out and "\x07" not in out
    assert r"done\x1b[2J\x1b]0;owned\x07\rall good\nfake line \u202eevil" in out
    assert r"mallory\x1b[31m" in out
    assert out.count("\n") == 2 + 2  # headers, rule, two transitions: one line each


def test_the_operator_commands_line_is_printed_visibly(
    database_url: str,
    job_factory: JobFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JOBLEDGER_DATABASE_URL", database_url)
    job = job_factory(JobStatus.PENDING, job_id="job-\u202etxt.exe")
    assert main(["cancel", job.job_id]) == EXIT_OK
    assert capsys.readouterr().out == "job-\\u202etxt.exe: cancelled\n"


def test_a_max_age_of_zero_minutes_means_every_pending_job(
    client: TestClient, job_factory: JobFactory, store: EventStore
) -> None:
    pending = job_factory(JobStatus.PENDING).job_id  # pending for a moment, far under 10 minutes

    response = client.post("/v1/admin/reconcile?max_age_minutes=0", headers=auth("alice"))

    assert response.status_code == 200, response.text
    assert [action["job_id"] for action in response.json()["actions"]] == [pending]
    assert store.history(pending)[-1].type == "job_marked_failed"
