"""POST /v1/heartbeats and LedgerClient.heartbeat_many: a host's runs in one request."""

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.testclient import TestClient

from api.direct_handler import in_thread
from api.lease_renewals import LeaseRenewals
from ledger.client import HEARTBEATS_PER_REQUEST
from ledger.leases import MAX_HEARTBEATS, RunHeartbeat
from tests.api.conftest import auth, client_through

WORKER = {"worker_id": "w1", "host": "gpu-node-7", "pid": 4242}


def started(client: TestClient, job_id: str) -> dict[str, Any]:
    """A job registered and started: its run as a heartbeat names it."""
    assert client.post("/v1/jobs", json={"job_id": job_id}, headers=auth("trainer")).is_success
    claim = client.post(f"/v1/jobs/{job_id}/start", json=WORKER, headers=auth("trainer"))
    assert claim.status_code == 200, claim.text
    return {
        "job_id": job_id,
        "attempt": claim.json()["attempt"],
        "run_token": claim.json()["run_token"],
    }


def beat(client: TestClient, runs: list[Any], who: str = "trainer") -> Any:
    return client.post("/v1/heartbeats", json={"runs": runs}, headers=auth(who))


def test_each_run_is_answered_in_order_renewed_or_refused_as_its_own_heartbeat(
    client: TestClient,
) -> None:
    first, second = started(client, "hb-1"), started(client, "hb-2")
    forged = {**first, "run_token": "forged"}
    missing = {"job_id": "hb-none", "attempt": 1, "run_token": "t"}

    answer = beat(client, [second, forged, missing, first])

    assert answer.status_code == 200
    view = answer.json()
    assert [r["status"] for r in view["results"]] == [200, 409, 404, 200]
    assert [r["job_id"] for r in view["results"]] == ["hb-2", "hb-1", "hb-none", "hb-1"]
    assert (view["renewed"], view["refused"], view["lease_seconds"]) == (2, 2, 60.0)
    body = {"attempt": forged["attempt"], "run_token": "forged"}
    single = client.post("/v1/jobs/hb-1/heartbeat", json=body, headers=auth("trainer")).json()
    fenced = view["results"][1]
    assert (fenced["kind"], fenced["detail"], fenced["current_attempt"]) == (
        single["type"].rpartition("/")[2],
        single["detail"],
        single["current_attempt"],
    )
    assert view["results"][0]["lease_expires_at"] and view["results"][1]["lease_expires_at"] is None
    job = client.get("/v1/jobs/hb-2", headers=auth("audrey")).json()
    assert job["last_heartbeat_at"] is not None


def test_an_auditor_may_not_heartbeat(client: TestClient) -> None:
    run = started(client, "hb-audit")
    assert beat(client, [run], who="audrey").status_code == 403


def test_an_empty_an_oversized_or_a_malformed_request_is_refused_whole(
    client: TestClient,
) -> None:
    run = started(client, "hb-bad")
    too_many = [run] * (MAX_HEARTBEATS + 1)
    for runs in ([], too_many, [{**run, "extra": 1}], [{**run, "attempt": "1"}]):
        answer = beat(client, runs)
        assert answer.status_code == 422, runs[:1]
        assert answer.headers["content-type"] == "application/problem+json"
    assert beat(client, [run] * MAX_HEARTBEATS).json()["renewed"] == MAX_HEARTBEATS


def test_the_client_heartbeats_many_runs_in_requests_of_the_servers_limit(
    client_for: Callable[[bool], TestClient],
) -> None:
    app = client_for(True)
    run = started(app, "hb-client")
    trainer = client_through(app)
    runs = [(run["job_id"], run["attempt"], run["run_token"])] * (HEARTBEATS_PER_REQUEST + 2)

    outcomes = trainer.heartbeat_many([*runs, ("hb-client", run["attempt"], "forged")])

    assert [o["status"] for o in outcomes] == [200] * len(runs) + [409]
    assert HEARTBEATS_PER_REQUEST == MAX_HEARTBEATS


def test_single_heartbeats_sent_together_share_a_statement_and_keep_their_answers(
    client: TestClient,
) -> None:
    runs = [started(client, f"hb-together-{n}") for n in range(4)]
    forged = {**runs[3], "run_token": "forged"}
    sizes: list[int] = []
    arrived: list[RunHeartbeat] = []
    all_arrived = asyncio.Event()

    class Counted(LeaseRenewals):
        async def renew(self, beat: RunHeartbeat) -> datetime:
            arrived.append(beat)
            if len(arrived) == 4:
                all_arrived.set()
            return await super().renew(beat)

    async def counted(call: Callable[..., Any], values: dict[str, Any]) -> Any:
        sizes.append(len(values["heartbeats"]))
        await all_arrived.wait()  # the first statement is on its way as the rest arrive
        return await in_thread(call, values)

    app = client.app
    assert isinstance(app, FastAPI)
    app.state.renewals = Counted(app.state.ledger.store, 60.0, counted)

    async def together() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ledger") as http:
            beats = [
                http.post(
                    f"/v1/jobs/{run['job_id']}/heartbeat",
                    json={"attempt": run["attempt"], "run_token": run["run_token"]},
                    headers=auth("trainer"),
                )
                for run in [*runs[:3], forged]
            ]
            return list(await asyncio.gather(*beats))

    answers = asyncio.run(asyncio.wait_for(together(), 30))
    assert [answer.status_code for answer in answers] == [200, 200, 200, 409]
    assert [answer.json()["job_id"] for answer in answers[:3]] == [
        f"hb-together-{n}" for n in range(3)
    ]
    assert answers[3].json()["current_attempt"] == runs[3]["attempt"]
    assert sum(sizes) == 4 and len(sizes) <= 2, sizes  # alone, each had its own


def test_a_requests_runs_are_renewed_from_the_event_loop_and_only_the_refused_on_a_thread(
    client: TestClient,
) -> None:
    first, second = started(client, "hb-loop-1"), started(client, "hb-loop-2")
    forged = {**first, "run_token": "forged"}
    sizes: list[int] = []

    async def counted(call: Callable[..., Any], values: dict[str, Any]) -> Any:
        sizes.append(len(values["heartbeats"]))
        return await in_thread(call, values)

    app = client.app
    assert isinstance(app, FastAPI)
    state = app.state
    state.renewals = LeaseRenewals(state.ledger.store, 60.0, counted, state.appends)

    with client:  # served: the loop's connections open with the lifespan
        answer = beat(client, [first, forged, second])

    assert [r["status"] for r in answer.json()["results"]] == [200, 409, 200]
    assert sizes == [1], "the two renewed from the loop; the forged one told on a thread"
