"""The busiest routes are handled without the framework's general dependency solver
(`api.direct_handler`), and answer every kind of request exactly as the framework's own
handler does: the same status, problem and headers, for good input and bad."""

from collections.abc import Callable, Iterator
from typing import Any

import fastapi.routing
import pytest
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from api.app import declare_api
from api.direct_handler import plan_of
from tests.api.conftest import auth

DIRECT = [
    ("POST", "/v1/jobs"),
    ("POST", "/v1/jobs/batch"),
    ("POST", "/v1/queue/claim"),
    ("POST", "/v1/jobs/{job_id}/start"),
    ("POST", "/v1/jobs/{job_id}/heartbeat"),
    ("POST", "/v1/heartbeats"),
    ("POST", "/v1/jobs/{job_id}/complete"),
    ("POST", "/v1/jobs/{job_id}/fail"),
    ("POST", "/v1/jobs/{job_id}/complete-and-claim"),
    ("POST", "/v1/jobs/{job_id}/fail-and-claim"),
    ("GET", "/v1/jobs/{job_id}/history"),
]


def api_routes() -> dict[tuple[str, str], APIRoute]:
    return {
        (method, route.path): route
        for route in declare_api().routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }


@pytest.mark.parametrize(("method", "path"), DIRECT)
def test_the_busiest_routes_are_planned_for_the_direct_handler(method: str, path: str) -> None:
    assert plan_of(api_routes()[method, path]) is not None


def test_a_route_with_query_parameters_is_left_to_the_framework() -> None:
    routes = api_routes()
    assert plan_of(routes["GET", "/v1/jobs"]) is None  # filters and a cursor
    assert plan_of(routes["GET", "/v1/jobs/{job_id}"]) is None  # ?as_of=


def not_solvable(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the framework's dependency solver was used")


def test_a_planned_route_is_answered_without_the_frameworks_solver(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastapi.routing, "solve_dependencies", not_solvable)
    registered = client.post("/v1/jobs", json={"job_id": "direct"}, headers=auth("trainer"))
    assert registered.status_code == 201, registered.text
    framework_only = client.get("/v1/jobs/direct", headers=auth("alice"))
    assert framework_only.status_code == 500  # this route is the framework's: it failed


def unused_override() -> None:
    """Any override makes every route the framework's (`dependency_overrides`)."""


@pytest.fixture
def both_ways(client: TestClient) -> Iterator[Callable[..., tuple[Any, Any]]]:
    """`ask(method, path, ...)`: the direct handler's answer, then the framework's."""

    def ask(method: str, path: str, **kwargs: Any) -> tuple[Any, Any]:
        app: Any = client.app
        direct = client.request(method, path, **kwargs)
        app.dependency_overrides[unused_override] = unused_override
        try:
            framework = client.request(method, path, **kwargs)
        finally:
            app.dependency_overrides.clear()
        return direct, framework

    yield ask


def same(direct: Any, framework: Any) -> None:
    assert direct.status_code == framework.status_code, (direct.text, framework.text)
    assert direct.headers.get("content-type") == framework.headers.get("content-type")
    assert direct.headers.get("retry-after") == framework.headers.get("retry-after")
    if direct.content:
        assert direct.json() == framework.json()


TRAINER = auth("trainer")
JSON = {**TRAINER, "Content-Type": "application/json"}

REFUSED = [
    ("no token", "POST", "/v1/jobs/j/heartbeat", {"json": {"attempt": 1, "run_token": "x"}}),
    (
        "a wrong token",
        "POST",
        "/v1/queue/claim",
        {"json": {"worker_id": "w"}, "headers": {"Authorization": "Bearer nope"}},
    ),
    (
        "the wrong role",
        "POST",
        "/v1/jobs/j/complete",
        {"json": {"attempt": 1, "run_token": "x"}, "headers": auth("audrey")},
    ),
    ("no body", "POST", "/v1/jobs/j/heartbeat", {"headers": TRAINER}),
    ("not JSON", "POST", "/v1/jobs/j/heartbeat", {"content": b"{nope", "headers": JSON}),
    (
        "not JSON, without a token",
        "POST",
        "/v1/jobs/j/heartbeat",
        {"content": b"{nope", "headers": {"Content-Type": "application/json"}},
    ),
    ("a list", "POST", "/v1/jobs/j/heartbeat", {"json": [1, 2], "headers": TRAINER}),
    (
        "a missing field",
        "POST",
        "/v1/jobs/j/heartbeat",
        {"json": {"attempt": 1}, "headers": TRAINER},
    ),
    (
        "a field of the wrong type",
        "POST",
        "/v1/jobs/j/complete",
        {"json": {"attempt": "first", "run_token": "x"}, "headers": TRAINER},
    ),
    (
        "a field it does not know",
        "POST",
        "/v1/queue/claim",
        {"json": {"worker_id": "w", "host": "h", "colour": "red"}, "headers": TRAINER},
    ),
    (
        "a form",
        "POST",
        "/v1/jobs",
        {"content": b"job_id=x", "headers": {**TRAINER, "Content-Type": "text/plain"}},
    ),
    (
        "JSON sent without a type",
        "POST",
        "/v1/jobs/missing/heartbeat",
        {"content": b'{"attempt": 1, "run_token": "x"}', "headers": TRAINER},
    ),
    (
        "a job id too long",
        "POST",
        "/v1/jobs/" + "j" * 300 + "/heartbeat",
        {"json": {"attempt": 1, "run_token": "x"}, "headers": TRAINER},
    ),
    (
        "a bad path and a bad body",
        "POST",
        "/v1/jobs/" + "j" * 300 + "/complete",
        {"json": {"attempt": "first"}, "headers": TRAINER},
    ),
    (
        "a job that does not exist",
        "POST",
        "/v1/jobs/missing/complete",
        {"json": {"attempt": 1, "run_token": "x"}, "headers": TRAINER},
    ),
    (
        "an empty queue",
        "POST",
        "/v1/queue/claim",
        {"json": {"worker_id": "w", "host": "h"}, "headers": TRAINER},
    ),
    ("a history of nothing", "GET", "/v1/jobs/missing/history", {"headers": auth("audrey")}),
    (
        "a bad idempotency key",
        "POST",
        "/v1/jobs",
        {"json": {"job_id": "k"}, "headers": {**TRAINER, "Idempotency-Key": "x" * 1000}},
    ),
    (
        "too many heartbeats",
        "POST",
        "/v1/heartbeats",
        {
            "json": {"runs": [{"job_id": "j", "attempt": 1, "run_token": "x"}] * 5000},
            "headers": TRAINER,
        },
    ),
]


@pytest.mark.parametrize(("case", "method", "path", "kwargs"), REFUSED, ids=[c[0] for c in REFUSED])
def test_each_refusal_is_the_frameworks_own(
    both_ways: Callable[..., tuple[Any, Any]],
    case: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
) -> None:
    direct, framework = both_ways(method, path, **kwargs)
    assert direct.status_code >= 204
    same(direct, framework)


def test_a_lifecycle_answers_alike_either_way(client: TestClient) -> None:
    app: Any = client.app
    answers = []
    for way, job_id in (("direct", "life-direct"), ("framework", "life-framework")):
        if way == "framework":
            app.dependency_overrides[unused_override] = unused_override
        try:
            registered = client.post(
                "/v1/jobs", json={"job_id": job_id, "status": "queued"}, headers=TRAINER
            )
            claimed = client.post(
                "/v1/queue/claim", json={"worker_id": way, "host": "gpu-1"}, headers=TRAINER
            )
            run = {"attempt": claimed.json()["attempt"], "run_token": claimed.json()["run_token"]}
            beat = client.post(f"/v1/jobs/{job_id}/heartbeat", json=run, headers=TRAINER)
            done = client.post(f"/v1/jobs/{job_id}/complete", json=run, headers=TRAINER)
            again = client.post("/v1/jobs", json={"job_id": job_id}, headers=TRAINER)
        finally:
            app.dependency_overrides.clear()
        answers.append(
            [
                (answer.status_code, sorted(answer.json()))
                for answer in (registered, claimed, beat, done, again)
            ]
        )
        assert claimed.json()["job"]["job_id"] == job_id
        assert done.json()["status"] == "completed"
    direct, framework = answers
    assert direct == framework
    assert [status for status, _ in direct] == [201, 200, 200, 200, 409]
