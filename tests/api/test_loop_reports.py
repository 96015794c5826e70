"""A claim, and a run's completion or failure, are decided and recorded on the event loop
while the server runs (`CommandRequest.claim_soon`, `CommandRequest.execute_soon`), and
on a thread (a report on a fresh read) when the loop's try cannot tell what becomes of
it."""

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from api import direct_handler, params, routes_runs
from api.bootstrap import Ledger, wire_ledger
from api.gathered_registrations import LOOP_SPEC_BYTES
from api.on_to_its_end import to_its_end
from ledger.command_log import LOGGER
from ledger.commands import MarkFailed, RequeueJob
from ledger.service import JobService
from ledger.settings import Settings
from projections.current_status.catchup import catch_up_current_status
from tests.api.conftest import auth
from tests.api.test_gathered_registrations import Calls
from tests.api.test_http_report_and_claim import (
    WORKER,
    claim,
    last_event,
    register,
    run_of,
    status_of,
)
from tests.api.test_loop_registrations import loop_appends, served
from tests.integration.test_loop_appends import run_apart, until

TRAINER = auth("trainer")


class Executions:
    """The calls handed to a thread (a command's, its answer's read, and a blocking
    route's own), with the values each was made with."""

    def __init__(self) -> None:
        self.made: list[tuple[str, dict[str, Any]]] = []
        self.threads = Calls()

    async def __call__(self, call: Callable[..., Any], values: dict[str, Any]) -> Any:
        self.made.append((call.__name__, values))
        return await self.threads(call, values)


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch) -> Executions:
    executions = Executions()
    for module in (params, routes_runs, direct_handler):
        monkeypatch.setattr(module, "in_thread", executions)
    return executions


@pytest.fixture
def running(ledger: Ledger) -> Iterator[TestClient]:
    with served(ledger, Calls()) as client:
        yield client


def claimed(client: TestClient, job_id: str, **fields: object) -> dict[str, Any]:
    register(client, job_id, **fields)
    run = claim(client)
    assert run["job"]["job_id"] == job_id
    return run


def test_a_claim_is_made_on_the_loop_without_a_thread(
    running: TestClient, threads: Executions, caplog: pytest.LogCaptureFixture
) -> None:
    register(running, "claimed-on-loop")
    headers = {**TRAINER, "X-Request-ID": "corr-claim"}
    with caplog.at_level(logging.INFO, logger=LOGGER):
        answer = running.post("/v1/queue/claim", json=WORKER, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["job"]["job_id"] == "claimed-on-loop"
    assert answer.json()["job"]["status"] == "running"
    assert threads.made == []
    event = last_event(running, "claimed-on-loop")
    assert event["type"] == "job_started"
    assert event["correlation_id"] == "corr-claim"
    lines = [r for r in caplog.records if getattr(r, "command", None) == "claim"]
    assert [(r.job_id, r.outcome) for r in lines] == [("claimed-on-loop", "accepted")]  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", [None, "idle-poll"])
def test_an_empty_queue_is_told_on_the_loop(
    running: TestClient, threads: Executions, caplog: pytest.LogCaptureFixture, key: str | None
) -> None:
    headers = TRAINER if key is None else {**TRAINER, "Idempotency-Key": key}
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        answer = running.post("/v1/queue/claim", json=WORKER, headers=headers)
    assert answer.status_code == 204, answer.text
    assert threads.made == []
    lines = [r for r in caplog.records if getattr(r, "command", None) == "claim"]
    assert [r.outcome for r in lines] == ["empty"]  # type: ignore[attr-defined]


def test_a_repeated_claim_answers_the_run_its_key_started(
    running: TestClient, threads: Executions
) -> None:
    register(running, "claimed-once")
    register(running, "left-queued")
    headers = {**TRAINER, "Idempotency-Key": "claim-1"}
    first = running.post("/v1/queue/claim", json=WORKER, headers=headers)
    again = running.post("/v1/queue/claim", json=WORKER, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert run_of(again.json()) == run_of(first.json())
    assert again.json()["job"]["job_id"] == "claimed-once"
    assert [name for name, _ in threads.made] == ["_claim_view"]  # its answer reads the job
    assert status_of(running, "left-queued") == "queued"


def test_a_completion_is_recorded_on_the_loop_without_a_thread(
    running: TestClient, threads: Executions, caplog: pytest.LogCaptureFixture
) -> None:
    run = claimed(running, "done-on-loop")
    headers = {**TRAINER, "X-Request-ID": "corr-complete", "Idempotency-Key": "c-1"}
    with caplog.at_level(logging.INFO, logger=LOGGER):
        answer = running.post(
            "/v1/jobs/done-on-loop/complete",
            json={**run_of(run), "result": {"loss": 0.5}},
            headers=headers,
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed"
    assert answer.json()["health"] == "ok"
    assert threads.made == []
    event = last_event(running, "done-on-loop")
    assert event["type"] == "job_completed"
    assert event["payload"]["result"] == {"loss": 0.5}
    assert event["correlation_id"] == "corr-complete"
    lines = [r for r in caplog.records if getattr(r, "command", None) == "complete"]
    assert [(r.job_id, r.outcome) for r in lines] == [("done-on-loop", "accepted")]  # type: ignore[attr-defined]


def test_a_repeated_completion_is_answered_as_the_first_on_a_fresh_read(
    running: TestClient, threads: Executions
) -> None:
    run = claimed(running, "done-twice")
    headers = {**TRAINER, "Idempotency-Key": "c-twice"}
    body = {**run_of(run), "result": {"loss": 0.25}}
    first = running.post("/v1/jobs/done-twice/complete", json=body, headers=headers)
    again = running.post("/v1/jobs/done-twice/complete", json=body, headers=headers)
    assert first.status_code == again.status_code == 200, again.text
    assert again.json() == first.json()
    # The cache's guess (a completed job) refuses the repeat: only a fresh read finds
    # the key's first outcome.
    assert [(name, values["fresh_read"]) for name, values in threads.made] == [("execute", True)]
    history = running.get("/v1/jobs/done-twice/history", headers=auth("audrey")).json()
    assert [e["type"] for e in history["events"]].count("job_completed") == 1


def test_a_completion_decided_on_a_stale_guess_is_decided_again_on_a_fresh_read(
    running: TestClient, threads: Executions, ledger: Ledger
) -> None:
    run = claimed(running, "failed-meanwhile")
    # Another process of the ledger (its own cache) fails the job meanwhile.
    JobService(ledger.store).execute(
        "failed-meanwhile", MarkFailed(reason="node lost"), actor="alice"
    )
    answer = running.post("/v1/jobs/failed-meanwhile/complete", json=run_of(run), headers=TRAINER)
    assert answer.status_code == 409, answer.text
    assert [(name, values["fresh_read"]) for name, values in threads.made] == [("execute", True)]
    assert last_event(running, "failed-meanwhile")["type"] == "job_marked_failed"


def test_a_repeated_failure_of_a_job_queued_again_answers_its_place_in_the_queue(
    running: TestClient, threads: Executions, ledger: Ledger
) -> None:
    run = claimed(running, "tried-again")
    headers = {**TRAINER, "Idempotency-Key": "f-1"}
    body = {**run_of(run), "reason": "OOM"}
    failed = running.post("/v1/jobs/tried-again/fail", json=body, headers=headers)
    assert failed.status_code == 200, failed.text
    assert failed.json()["status"] == "failed"
    assert threads.made == []
    JobService(ledger.store).execute("tried-again", RequeueJob(reason="retry"), actor="alice")
    # The worker's retry of its report: the job it failed is queued again by now.
    again = running.post("/v1/jobs/tried-again/fail", json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "queued"
    assert again.json()["queue_position"] == 1
    assert [name for name, _ in threads.made] == ["execute", "_job_view"]


def test_a_completion_without_a_running_server_goes_to_a_thread(
    ledger: Ledger, threads: Executions
) -> None:
    client = served(ledger, Calls())  # outside its `with` block: the loop's appends are closed
    run = claimed(client, "no-loop")
    answer = client.post("/v1/jobs/no-loop/complete", json=run_of(run), headers=TRAINER)
    assert answer.status_code == 200, answer.text
    assert [name for name, _ in threads.made] == ["claim", "execute"]
    assert threads.made[1][1]["fresh_read"] is False


def test_a_completion_and_the_next_claim_are_made_on_the_loop(
    running: TestClient, threads: Executions
) -> None:
    run = claimed(running, "first-of-two")
    register(running, "second-of-two")
    headers = {**TRAINER, "Idempotency-Key": "done-and-next"}
    body = {**run_of(run), "worker": WORKER}
    answer = running.post("/v1/jobs/first-of-two/complete-and-claim", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["job"]["status"] == "completed"
    assert answer.json()["next"]["job"]["job_id"] == "second-of-two"
    assert threads.made == []
    # Its retry answers the same: the report and the claim its key made, read on threads.
    again = running.post("/v1/jobs/first-of-two/complete-and-claim", json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert run_of(again.json()["next"]) == run_of(answer.json()["next"])
    assert [name for name, _ in threads.made] == ["execute", "report_and_claim_view"]


def test_a_report_with_a_large_body_is_decided_on_a_thread(
    running: TestClient, threads: Executions
) -> None:
    run = claimed(running, "large-result")
    result = {"curve": "x" * LOOP_SPEC_BYTES}  # its encoding would hold up the loop
    answer = running.post(
        "/v1/jobs/large-result/complete", json={**run_of(run), "result": result}, headers=TRAINER
    )
    assert answer.status_code == 200, answer.text
    assert [(name, values["fresh_read"]) for name, values in threads.made] == [("execute", False)]
    assert last_event(running, "large-result")["payload"]["result"] == result


def test_a_command_on_the_loop_goes_on_to_its_end_when_its_request_is_cancelled() -> None:
    async def scenario() -> None:
        started, go_on = asyncio.Event(), asyncio.Event()
        recorded: list[str] = []

        async def command() -> str:
            started.set()
            await go_on.wait()
            recorded.append("logged and cached")
            return "outcome"

        request = asyncio.create_task(to_its_end(command()))
        await started.wait()
        request.cancel()  # the server stopping
        with pytest.raises(asyncio.CancelledError):
            await request
        go_on.set()
        await until(lambda: recorded == ["logged and cached"], "the command ends all the same")

    run_apart(scenario())


def test_with_no_loop_connections_every_command_takes_a_thread(
    database_url: str, engine: Engine, threads: Executions
) -> None:
    settings = Settings(lease_seconds=60, loop_connections=0)
    ledger = wire_ledger(database_url, engine, settings, catch_up_current_status(engine))
    with served(ledger, Calls()) as client:
        register(client, "through-threads")
        run = claim(client)
        report = {"attempt": run["attempt"], "run_token": run["run_token"]}
        answer = client.post("/v1/jobs/through-threads/complete", json=report, headers=TRAINER)
        assert loop_appends(client).backend_pids() == [], "no connection opened on the loop"
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed"
    assert [name for name, _ in threads.made] == ["claim", "execute"]
