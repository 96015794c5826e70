"""POST /v1/jobs/batch and LedgerClient.register_many: an outcome per job."""

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from ledger.client import BATCH_JOBS
from ledger.registrations import MAX_REGISTRATIONS
from tests.api.conftest import auth, client_through


def batch(client: TestClient, jobs: list[Any], who: str = "trainer") -> Any:
    return client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=auth(who))


def test_each_item_is_answered_201_200_409_or_422_with_its_job_id(client: TestClient) -> None:
    assert (
        client.post("/v1/jobs", json={"job_id": "exists"}, headers=auth("trainer")).status_code
        == 201
    )
    first = batch(client, [{"job_id": "sweep-1", "idempotency_key": "k1", "spec": {"lr": 1}}])
    assert first.status_code == 200
    assert first.json()["results"] == [
        {
            "job_id": "sweep-1",
            "status": 201,
            "job_status": "queued",
            "version": 1,
            "kind": None,
            "detail": None,
        }
    ]

    answer = batch(
        client,
        [
            {"job_id": "sweep-2", "spec": {"lr": 2}},
            {"job_id": "sweep-1", "idempotency_key": "k1", "spec": {"lr": 1}},
            {"job_id": "exists"},
            {"job_id": "bad-one", "priority": "high"},
            {"job_id": "sweep-1", "idempotency_key": "k1", "spec": {"lr": 99}},
        ],
    )

    body = answer.json()
    assert [(r["job_id"], r["status"]) for r in body["results"]] == [
        ("sweep-2", 201),
        ("sweep-1", 200),
        ("exists", 409),
        ("bad-one", 422),
        ("sweep-1", 422),
    ]
    assert body["results"][2]["kind"] == "duplicate-job"
    assert "priority" in body["results"][3]["detail"]
    assert body["results"][4]["kind"] == "idempotency-key-reused"
    assert (body["created"], body["replayed"], body["refused"]) == (1, 1, 3)
    job = client.get("/v1/jobs/sweep-2", headers=auth("trainer")).json()
    assert job["spec"] == {"lr": 2} and job["status"] == "queued"
    assert client.get("/v1/jobs/bad-one", headers=auth("trainer")).status_code == 404


@pytest.mark.parametrize(
    ("unstorable", "problem"),
    [
        ({"lr": float("nan")}, "spec: numbers must be finite"),
        ({"note": "a\x00b"}, "spec: must not contain a NUL character"),
        ({"a\x00b": 1}, "spec: must not contain a NUL character"),
        ({"steps": 2**64}, "spec: integers must fit in 64 bits"),
    ],
)
def test_an_item_postgresql_cannot_store_is_refused_alone_among_plain_ones(
    client: TestClient, unstorable: dict[str, Any], problem: str
) -> None:
    plain = [{"job_id": f"plain-{i}", "spec": {"lr": 0.1, "step": i}} for i in range(3)]
    jobs = [plain[0], {"job_id": "odd", "spec": unstorable}, *plain[1:]]
    answer = client.post(
        "/v1/jobs/batch",
        content=json.dumps({"jobs": jobs}),  # NaN written as JSON's readers take it
        headers={**auth("trainer"), "Content-Type": "application/json"},
    )

    results = answer.json()["results"]
    assert [(r["job_id"], r["status"]) for r in results] == [
        ("plain-0", 201),
        ("odd", 422),
        ("plain-1", 201),
        ("plain-2", 201),
    ]
    assert problem in results[1]["detail"]
    assert client.get("/v1/jobs/odd", headers=auth("trainer")).status_code == 404


def test_items_with_nulls_of_their_own_are_registered_as_given(client: TestClient) -> None:
    jobs = [
        {"job_id": "nulls-1", "spec": {"resume_from": None, "tags": [None, "a"]}},
        {"job_id": None, "idempotency_key": "nulls-key", "spec": {"note": "null"}},
        {"job_id": "nulls-3", "spec": {"lr": 0.1}},
    ]
    results = batch(client, jobs).json()["results"]

    assert [r["status"] for r in results] == [201, 201, 201]
    job = client.get("/v1/jobs/nulls-1", headers=auth("trainer")).json()
    assert job["spec"] == {"resume_from": None, "tags": [None, "a"]}


def test_an_item_without_a_job_id_is_named_by_its_key(client: TestClient) -> None:
    once = batch(client, [{"idempotency_key": "only-key"}]).json()["results"][0]
    again = batch(client, [{"idempotency_key": "only-key"}]).json()["results"][0]

    assert once["status"] == 201 and again["status"] == 200
    assert once["job_id"] == again["job_id"]


def test_more_than_the_most_at_once_is_a_422_and_registers_nothing(client: TestClient) -> None:
    jobs = [{"job_id": f"many-{i}"} for i in range(MAX_REGISTRATIONS + 1)]

    answer = batch(client, jobs)

    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert client.get("/v1/jobs/many-0", headers=auth("trainer")).status_code == 404


def test_an_auditor_may_not_register(client: TestClient) -> None:
    assert batch(client, [{"job_id": "nope"}], who="audrey").status_code == 403


def test_the_client_registers_many_and_a_retry_replays(
    client_for: Callable[[bool], TestClient],
) -> None:
    app = client_for(True)
    trainer = client_through(app)
    jobs = [{"job_id": f"c-{i}", "idempotency_key": f"ck-{i}"} for i in range(1500)]

    first = trainer.register_many(jobs)
    again = trainer.register_many([*jobs[:3], {"job_id": "c-new"}])

    assert [o["status"] for o in first] == [201] * 1500
    assert [o["job_id"] for o in first] == [f"c-{i}" for i in range(1500)]
    assert [o["status"] for o in again] == [200, 200, 200, 201]


def test_the_client_sends_batches_at_once_and_answers_in_the_order_of_the_jobs(
    client_for: Callable[[bool], TestClient],
) -> None:
    app = client_for(True)
    trainer = client_through(app)
    three_at_once = threading.Barrier(3, timeout=30)
    first = threading.Semaphore(3)

    def sent(request: httpx.Request) -> None:
        if first.acquire(blocking=False):
            three_at_once.wait()  # the first three requests are all on their way

    app.event_hooks = {"request": [sent]}
    jobs = [{"job_id": f"f-{i}"} for i in range(4 * BATCH_JOBS + 1)]

    outcomes = trainer.register_many(jobs, in_flight=3)

    assert [o["job_id"] for o in outcomes] == [job["job_id"] for job in jobs]
    assert {o["status"] for o in outcomes} == {201}
    assert not three_at_once.broken
    with pytest.raises(ValueError, match="in_flight"):
        trainer.register_many(jobs, in_flight=0)


def test_a_job_named_in_two_batches_is_registered_as_its_first_mention_says(
    client_for: Callable[[bool], TestClient],
) -> None:
    app = client_for(True)
    trainer = client_through(app)
    jobs: list[dict[str, Any]] = [{"job_id": f"d-{i}"} for i in range(2 * BATCH_JOBS)]
    jobs[0] = {"job_id": "twice", "spec": {"mention": 1}}
    jobs[BATCH_JOBS] = {"job_id": "twice", "spec": {"mention": 2}}
    keyed = [{"job_id": "by-key", "idempotency_key": "one"}, {"idempotency_key": "free"}]
    order: list[int] = []
    second_answered = threading.Event()

    def sent(request: httpx.Request) -> None:
        order.append(id(request))
        if len(order) == 1:  # the first batch lets a second one sent meanwhile go first
            second_answered.wait(timeout=1.0)

    def answered(response: httpx.Response) -> None:
        if order.index(id(response.request)) == 1:
            second_answered.set()

    app.event_hooks = {"request": [sent], "response": [answered]}
    outcomes = trainer.register_many([*jobs, keyed[1]], in_flight=2, per_request=BATCH_JOBS)
    app.event_hooks = {"request": [], "response": []}
    again = trainer.register_many([keyed[1], *keyed], in_flight=3, per_request=1)

    assert (outcomes[0]["status"], outcomes[BATCH_JOBS]["status"]) == (201, 409)
    assert trainer.job("twice")["spec"] == {"mention": 1}
    assert [o["status"] for o in again] == [200, 201, 200]
    with pytest.raises(ValueError, match="per_request"):
        trainer.register_many(jobs, per_request=BATCH_JOBS + 1)
