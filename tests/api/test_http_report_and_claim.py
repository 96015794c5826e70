"""A run's report and the next claim in one request: `complete-and-claim`,
`fail-and-claim`, and the client's `job_runs` loop over them."""

from typing import Any

from starlette.testclient import TestClient

from ledger.client import job_runs
from ledger.commands import WorkerIdentity
from tests.api.conftest import auth, client_through

WORKER = {"worker_id": "w1", "host": "gpu-node-7", "pid": 4242}
TRAINER = auth("trainer")


def register(client: TestClient, job_id: str, **body: object) -> None:
    response = client.post("/v1/jobs", json={"job_id": job_id, **body}, headers=TRAINER)
    assert response.status_code == 201, response.text


def claim(client: TestClient) -> dict[str, Any]:
    response = client.post("/v1/queue/claim", json=WORKER, headers=TRAINER)
    assert response.status_code == 200, response.text
    return dict(response.json())


def run_of(claimed: dict[str, Any]) -> dict[str, Any]:
    return {"attempt": claimed["attempt"], "run_token": claimed["run_token"]}


def status_of(client: TestClient, job_id: str) -> str:
    return str(client.get(f"/v1/jobs/{job_id}", headers=TRAINER).json()["status"])


def test_a_completion_answers_the_job_it_completed_and_the_next_claim(
    client: TestClient,
) -> None:
    register(client, "first")
    register(client, "second")
    first = claim(client)
    body = {**run_of(first), "result": {"loss": 0.1}, "worker": WORKER}
    answer = client.post("/v1/jobs/first/complete-and-claim", json=body, headers=TRAINER)
    assert answer.status_code == 200, answer.text
    assert answer.json()["job"]["job_id"] == "first"
    assert answer.json()["job"]["status"] == "completed"
    following = answer.json()["next"]
    assert following["job"]["job_id"] == "second"
    assert following["job"]["status"] == "running"
    assert following["job"]["worker"]["worker_id"] == "w1"
    # the next claim is a run like any other: its token completes it
    done = client.post("/v1/jobs/second/complete", json=run_of(following), headers=TRAINER)
    assert done.status_code == 200 and done.json()["status"] == "completed"


def test_an_empty_queue_answers_the_completion_and_no_next_job(client: TestClient) -> None:
    register(client, "only")
    body = {**run_of(claim(client)), "worker": WORKER}
    answer = client.post("/v1/jobs/only/complete-and-claim", json=body, headers=TRAINER)
    assert answer.status_code == 200, answer.text
    assert answer.json()["job"]["status"] == "completed"
    assert answer.json()["next"] is None


def test_a_refused_report_claims_nothing(client: TestClient) -> None:
    register(client, "fenced")
    register(client, "waiting")
    fenced = claim(client)
    client.post("/v1/jobs/fenced/mark-failed", json={"reason": "node lost"}, headers=auth("alice"))
    late = {**run_of(fenced), "worker": WORKER}
    answer = client.post("/v1/jobs/fenced/complete-and-claim", json=late, headers=TRAINER)
    assert answer.status_code == 409
    assert answer.json()["type"].endswith("stale-attempt")
    assert status_of(client, "waiting") == "queued"


def test_a_retry_with_the_same_key_replays_the_report_and_the_claim(client: TestClient) -> None:
    for job_id in ("done", "next-1", "next-2"):
        register(client, job_id)
    body = {**run_of(claim(client)), "worker": WORKER}
    headers = {**TRAINER, "Idempotency-Key": "finish-done"}
    first = client.post("/v1/jobs/done/complete-and-claim", json=body, headers=headers)
    again = client.post("/v1/jobs/done/complete-and-claim", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json()["next"]["job"]["job_id"] == first.json()["next"]["job"]["job_id"]
    assert run_of(again.json()["next"]) == run_of(first.json()["next"])
    assert status_of(client, "next-2") == "queued"  # one job claimed, not two
    history = client.get("/v1/jobs/done/history", headers=auth("audrey")).json()
    assert [e["to_status"] for e in history["events"]] == ["queued", "running", "completed"]


def test_a_failure_answers_the_job_it_failed_and_the_next_claim(client: TestClient) -> None:
    register(client, "broken")
    register(client, "healthy")
    body = {**run_of(claim(client)), "reason": "out of memory", "worker": WORKER}
    answer = client.post("/v1/jobs/broken/fail-and-claim", json=body, headers=TRAINER)
    assert answer.status_code == 200, answer.text
    assert answer.json()["job"]["job_id"] == "broken"
    assert answer.json()["job"]["status"] == "failed"
    assert answer.json()["next"]["job"]["job_id"] == "healthy"
    history = client.get("/v1/jobs/broken/history", headers=auth("audrey")).json()
    assert history["events"][-1]["reason"] == "out of memory"


def test_a_retry_may_claim_the_reported_job_once_it_is_queued_again(client: TestClient) -> None:
    """The first try found the queue empty; an operator queued the failed job again before
    the retry: the retry's claim starts it, under a key other than the failure's."""
    register(client, "flaky")
    first = claim(client)
    body = {**run_of(first), "reason": "node lost", "worker": WORKER}
    headers = {**TRAINER, "Idempotency-Key": "fail-flaky"}
    answer = client.post("/v1/jobs/flaky/fail-and-claim", json=body, headers=headers)
    assert answer.status_code == 200 and answer.json()["next"] is None
    requeued = client.post("/v1/jobs/flaky/requeue", json={}, headers=auth("alice"))
    assert requeued.status_code == 200, requeued.text
    again = client.post("/v1/jobs/flaky/fail-and-claim", json=body, headers=headers)
    assert again.status_code == 200, again.text
    following = again.json()["next"]
    assert following["job"]["job_id"] == "flaky"
    assert following["attempt"] == first["attempt"] + 1


def test_the_next_claim_keeps_the_shape_of_a_plain_claim(client: TestClient) -> None:
    register(client, "a")
    register(client, "b")
    body = {**run_of(claim(client)), "worker": WORKER}
    following = client.post("/v1/jobs/a/complete-and-claim", json=body, headers=TRAINER).json()
    register(client, "c")
    plain = claim(client)
    assert set(following["next"]) == set(plain)
    assert set(following["next"]["job"]) == set(plain["job"])


def test_job_runs_complete_each_job_and_claim_the_next_in_one_request(
    client: TestClient,
) -> None:
    for n in range(3):
        register(client, f"sweep-{n}")
    trainer = client_through(client)
    paths: list[str] = []
    request = client.request

    def recorded(method: str, url: str, **kwargs: Any) -> Any:
        paths.append(f"{method} {url}")
        return request(method, url, **kwargs)

    client.request = recorded  # type: ignore[method-assign]
    worker = WorkerIdentity(worker_id="w1", host="gpu-node-7", pid=4242)
    ran = []
    for run in job_runs(trainer, worker=worker):
        with run:
            assert run.claim is not None
            ran.append(run.claim.job_id)
            run.result = {"job": run.claim.job_id}
    sent = list(paths)
    assert ran == ["sweep-0", "sweep-1", "sweep-2"]
    assert [status_of(client, job_id) for job_id in ran] == ["completed"] * 3
    assert sent == [
        "POST /v1/queue/claim",
        "POST /v1/jobs/sweep-0/complete-and-claim",
        "POST /v1/jobs/sweep-1/complete-and-claim",
        "POST /v1/jobs/sweep-2/complete-and-claim",
    ]


def test_a_failing_run_in_job_runs_reports_its_failure_and_claims_nothing(
    client: TestClient,
) -> None:
    register(client, "breaks")
    register(client, "untouched")
    trainer = client_through(client)
    worker = WorkerIdentity(worker_id="w1", host="gpu-node-7", pid=4242)
    try:
        for run in job_runs(trainer, worker=worker):
            with run:
                raise RuntimeError("diverged")
    except RuntimeError:
        pass
    assert status_of(client, "breaks") == "failed"
    assert status_of(client, "untouched") == "queued"
