"""A run's report and the next claim in one request: `complete-and-claim`,
`fail-and-claim`, and the client's loop over them (`work_off_queue`)."""

import threading
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from ledger.client import JobRun, LedgerClient, work_off_queue
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


def last_event(client: TestClient, job_id: str) -> dict[str, Any]:
    history = client.get(f"/v1/jobs/{job_id}/history", headers=auth("audrey")).json()
    return dict(history["events"][-1])


def result_of(client: TestClient, job_id: str) -> Any:
    return last_event(client, job_id)["payload"].get("result")


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


class RecordedPaths:
    """The requests a client sends through `client`, as "METHOD path"; those whose path
    ends with one of `missing` are sent to a route no server has (an older server)."""

    def __init__(self, client: TestClient, missing: tuple[str, ...] = ()) -> None:
        self.paths: list[str] = []
        request = client.request

        def recorded(method: str, url: str, **kwargs: Any) -> Any:
            self.paths.append(f"{method} {url}")
            if url.endswith(missing):
                url = "/v1/no-such-route"
            return request(method, url, **kwargs)

        client.request = recorded  # type: ignore[method-assign]


def trainer_with_queued(client: TestClient, *job_ids: str) -> LedgerClient:
    """The trainer's `LedgerClient` through `client`, with `job_ids` registered (queued in
    that order)."""
    for job_id in job_ids:
        register(client, job_id)
    return client_through(client)


WORKER_IDENTITY = WorkerIdentity(worker_id="w1", host="gpu-node-7", pid=4242)


def test_a_worker_loop_takes_each_next_job_with_the_report_of_the_last(
    client: TestClient,
) -> None:
    trainer = trainer_with_queued(client, "sweep-0", "sweep-1", "sweep-2")
    sent = RecordedPaths(client)
    ran: list[str] = []

    def work(run: JobRun) -> dict[str, Any]:
        assert run.claim is not None
        ran.append(run.claim.job_id)
        return {"step": len(ran)}

    assert work_off_queue(trainer, work, worker=WORKER_IDENTITY) == 3
    paths = list(sent.paths)
    assert ran == ["sweep-0", "sweep-1", "sweep-2"]
    assert [status_of(client, job_id) for job_id in ran] == ["completed"] * 3
    assert [result_of(client, job_id) for job_id in ran] == [{"step": n} for n in (1, 2, 3)]
    assert paths == [
        "POST /v1/queue/claim",
        "POST /v1/jobs/sweep-0/complete-and-claim",
        "POST /v1/jobs/sweep-1/complete-and-claim",
        "POST /v1/jobs/sweep-2/complete-and-claim",
        "POST /v1/queue/claim",  # the last report claimed nothing: the queue is empty
    ]


def test_a_failing_job_is_reported_and_the_loop_goes_on(client: TestClient) -> None:
    trainer = trainer_with_queued(client, "breaks", "works")
    sent = RecordedPaths(client)

    def work(run: JobRun) -> None:
        if run.job_id == "breaks":
            raise RuntimeError("diverged")

    assert work_off_queue(trainer, work, worker=WORKER_IDENTITY) == 2
    assert "POST /v1/jobs/breaks/fail-and-claim" in sent.paths
    assert status_of(client, "breaks") == "failed"
    assert last_event(client, "breaks")["reason"] == "RuntimeError: diverged"
    assert status_of(client, "works") == "completed"


def test_an_interrupt_is_reported_failed_and_claims_nothing(client: TestClient) -> None:
    trainer = trainer_with_queued(client, "interrupted", "untouched")

    def work(run: JobRun) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        work_off_queue(trainer, work, worker=WORKER_IDENTITY)
    assert status_of(client, "interrupted") == "failed"
    assert status_of(client, "untouched") == "queued"


def test_a_stop_asked_during_a_job_ends_the_loop_with_nothing_claimed(
    client: TestClient,
) -> None:
    trainer = trainer_with_queued(client, "last", "left")
    sent = RecordedPaths(client)
    stop = threading.Event()

    def work(run: JobRun) -> None:
        stop.set()

    assert work_off_queue(trainer, work, worker=WORKER_IDENTITY, stop=stop) == 1
    assert sent.paths[-1] == "POST /v1/jobs/last/complete"
    assert status_of(client, "last") == "completed"
    assert status_of(client, "left") == "queued"


def test_a_fenced_job_reports_nothing_and_the_next_is_claimed_on_its_own(
    client: TestClient,
) -> None:
    trainer = trainer_with_queued(client, "taken", "next")
    sent = RecordedPaths(client)

    def work(run: JobRun) -> None:
        if run.job_id == "taken":
            lost = {"reason": "node lost"}
            client.post("/v1/jobs/taken/mark-failed", json=lost, headers=auth("alice"))
            run.fenced.set()  # as a refused heartbeat tells it

    assert work_off_queue(trainer, work, worker=WORKER_IDENTITY) == 2
    reports = [path for path in sent.paths if path.startswith("POST /v1/jobs/taken/")]
    assert reports == ["POST /v1/jobs/taken/mark-failed"]  # the operator's, none of the run's
    assert status_of(client, "next") == "completed"


def test_against_a_server_without_the_route_a_report_then_a_claim(client: TestClient) -> None:
    trainer = trainer_with_queued(client, "old-0", "old-1")
    sent = RecordedPaths(client, missing=("-and-claim",))
    assert work_off_queue(trainer, lambda run: None, worker=WORKER_IDENTITY) == 2
    assert [status_of(client, job_id) for job_id in ("old-0", "old-1")] == ["completed"] * 2
    assert sent.paths[1:4] == [
        "POST /v1/jobs/old-0/complete-and-claim",  # answered 404: not tried again for a while
        "POST /v1/jobs/old-0/complete",
        "POST /v1/queue/claim",
    ]
    assert "POST /v1/jobs/old-1/complete" in sent.paths
    assert sum(path.endswith("-and-claim") for path in sent.paths) == 1


def test_a_retry_that_meets_an_older_replica_replays_the_report_and_the_claim(
    client: TestClient,
) -> None:
    """A rolling upgrade: the first try reaches a replica with the route, which records
    the report and a claim, and its answer is lost; the retry meets a replica without the
    route, so the client sends a report and a claim, which replay the first try's."""
    trainer = trainer_with_queued(client, "reported", "next", "waiting")
    trainer.backoff = 0.001
    reported = trainer.claim(WORKER_IDENTITY)
    assert reported is not None and reported.job_id == "reported"
    request = client.request
    lost: list[Any] = []

    def replicas(method: str, url: str, **kwargs: Any) -> Any:
        if url.endswith("-and-claim"):
            if not lost:  # the newer replica: recorded, its answer lost on the way back
                lost.append(request(method, url, **kwargs))
                raise httpx.ReadError("connection reset")
            url = "/v1/no-such-route"  # an older replica
        return request(method, url, **kwargs)

    client.request = replicas  # type: ignore[method-assign]
    job, following = trainer.report_and_claim(
        "reported",
        "complete",
        reported.attempt,
        reported.run_token,
        WORKER_IDENTITY,
        result={"loss": 0.5},
    )
    assert lost[0].status_code == 200, lost[0].text
    first_next = lost[0].json()["next"]
    assert job["status"] == "completed"
    assert following is not None and following.job_id == "next"
    assert following.job_id == first_next["job"]["job_id"]
    assert following.run_token == first_next["run_token"]  # the first try's run, replayed
    assert status_of(client, "waiting") == "queued"  # nothing else claimed
    assert status_of(client, "next") == "running"
    history = client.get("/v1/jobs/reported/history", headers=auth("audrey")).json()
    assert [e["to_status"] for e in history["events"]] == ["queued", "running", "completed"]
    assert result_of(client, "reported") == {"loss": 0.5}


def test_a_retry_on_an_older_replica_after_the_claimed_run_ended_answers_no_next_job(
    client: TestClient,
) -> None:
    """As above, but the run the first try claimed is cancelled before the retry: its
    replayed claim is refused as stale, and the retry answers no next job, claiming none."""
    trainer = trainer_with_queued(client, "reported", "next", "waiting")
    trainer.backoff = 0.001
    reported = trainer.claim(WORKER_IDENTITY)
    assert reported is not None
    request = client.request
    lost: list[Any] = []

    def replicas(method: str, url: str, **kwargs: Any) -> Any:
        if url.endswith("-and-claim"):
            if not lost:
                lost.append(request(method, url, **kwargs))
                request("POST", "/v1/jobs/next/cancel", json={}, headers=auth("alice"))
                raise httpx.ReadError("connection reset")
            url = "/v1/no-such-route"
        return request(method, url, **kwargs)

    client.request = replicas  # type: ignore[method-assign]
    job, following = trainer.report_and_claim(
        "reported", "complete", reported.attempt, reported.run_token, WORKER_IDENTITY
    )
    assert lost[0].json()["next"]["job"]["job_id"] == "next"
    assert job["status"] == "completed"
    assert following is None
    assert status_of(client, "next") == "cancelled"
    assert status_of(client, "waiting") == "queued"  # the retry claimed nothing else


def test_a_retry_after_the_claimed_run_ended_answers_no_next_job(client: TestClient) -> None:
    register(client, "reported")
    register(client, "next")
    body = {**run_of(claim(client)), "worker": WORKER}
    register(client, "waiting")  # queued behind "next": the first try takes "next"
    headers = {**TRAINER, "Idempotency-Key": "finish-reported"}
    first = client.post("/v1/jobs/reported/complete-and-claim", json=body, headers=headers)
    assert first.json()["next"]["job"]["job_id"] == "next"
    client.post("/v1/jobs/next/cancel", json={}, headers=auth("alice"))
    again = client.post("/v1/jobs/reported/complete-and-claim", json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["job"]["status"] == "completed"
    assert again.json()["next"] is None
    assert status_of(client, "waiting") == "queued"  # the retry replayed its claim, no other


def test_the_same_key_on_another_jobs_report_claims_anew(client: TestClient) -> None:
    for job_id in ("a", "b", "c", "d"):
        register(client, job_id)
    runs = {claimed["job"]["job_id"]: run_of(claimed) for claimed in (claim(client), claim(client))}
    headers = {**TRAINER, "Idempotency-Key": "reused"}
    on_a = client.post(
        "/v1/jobs/a/complete-and-claim", json={**runs["a"], "worker": WORKER}, headers=headers
    )
    on_b = client.post(
        "/v1/jobs/b/complete-and-claim", json={**runs["b"], "worker": WORKER}, headers=headers
    )
    assert on_a.status_code == on_b.status_code == 200
    claimed = {on_a.json()["next"]["job"]["job_id"], on_b.json()["next"]["job"]["job_id"]}
    assert claimed == {"c", "d"}  # one run each, not the same run handed out twice


def test_a_body_without_its_worker_is_422(client: TestClient) -> None:
    register(client, "w")
    body = run_of(claim(client))
    answer = client.post("/v1/jobs/w/complete-and-claim", json=body, headers=TRAINER)
    assert answer.status_code == 422
    assert "worker" in answer.text
    assert status_of(client, "w") == "running"


def test_a_nul_character_in_the_worker_is_422_and_nothing_is_reported(client: TestClient) -> None:
    register(client, "n")
    body = {**run_of(claim(client)), "result": {"a": "ok"}, "worker": {**WORKER, "host": "a\x00b"}}
    answer = client.post("/v1/jobs/n/complete-and-claim", json=body, headers=TRAINER)
    assert answer.status_code == 422
    assert "NUL" in answer.text
    assert status_of(client, "n") == "running"


def test_a_nul_character_in_the_result_beside_a_worker_is_422(client: TestClient) -> None:
    register(client, "r")
    body = {**run_of(claim(client)), "result": {"a": "x\x00"}, "worker": WORKER}
    answer = client.post("/v1/jobs/r/complete-and-claim", json=body, headers=TRAINER)
    assert answer.status_code == 422
    assert "result" in answer.text
    assert status_of(client, "r") == "running"


@pytest.mark.parametrize(
    ("result", "why"),
    [
        (0.5, "a result is a JSON object, not float"),
        ({"big": 2**64}, "Integer exceeds 64-bit range"),
        ({"text": "nul\x00"}, "must not contain a NUL character"),
    ],
)
def test_a_result_the_ledger_cannot_store_fails_its_job_and_the_loop_goes_on(
    client: TestClient, result: Any, why: str
) -> None:
    trainer = trainer_with_queued(client, "unstorable", "after")

    def work(run: JobRun) -> Any:
        return result if run.job_id == "unstorable" else {"ok": True}

    assert work_off_queue(trainer, work, worker=WORKER_IDENTITY) == 2
    failed = last_event(client, "unstorable")
    assert failed["to_status"] == "failed"
    assert failed["reason"].startswith("the run's result could not be recorded: ")
    assert why in failed["reason"]
    assert status_of(client, "after") == "completed"


def test_a_failure_whose_summary_the_ledger_cannot_store_is_reported_escaped(
    client: TestClient,
) -> None:
    trainer = trainer_with_queued(client, "odd")

    def work(run: JobRun) -> None:
        raise FileNotFoundError("no file 'caf\udce9' (\x00)")

    assert work_off_queue(trainer, work, worker=WORKER_IDENTITY) == 1
    failed = last_event(client, "odd")
    assert failed["to_status"] == "failed"
    assert failed["reason"] == "FileNotFoundError: no file 'caf\\udce9' (\\x00)"
