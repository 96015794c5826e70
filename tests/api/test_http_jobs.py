"""The HTTP API end to end on a real database: jobs, runs, health, errors."""

import pytest
from starlette.testclient import TestClient

from tests.api.conftest import auth, client_through

WORKER = {"worker_id": "w1", "host": "gpu-node-7", "pid": 4242}


def register(client: TestClient, **body: object) -> dict[str, object]:
    response = client.post("/v1/jobs", json=body, headers=auth("trainer"))
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_registering_a_job_returns_it_with_its_queue_position(client: TestClient) -> None:
    job = register(client, job_id="train-1", spec={"lr": 0.1})
    assert job["status"] == "queued" and job["queue_position"] == 1
    assert job["health"] == "ok" and job["spec"] == {"lr": 0.1}
    fetched = client.get("/v1/jobs/train-1", headers=auth("audrey")).json()
    assert fetched["version"] == 1


def test_a_repeated_registration_with_its_key_returns_200_and_the_same_job(
    client: TestClient,
) -> None:
    headers = {**auth("trainer"), "Idempotency-Key": "create-42"}
    first = client.post("/v1/jobs", json={"status": "pending"}, headers=headers)
    again = client.post("/v1/jobs", json={"status": "pending"}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["job_id"] == again.json()["job_id"]
    conflict = client.post(
        "/v1/jobs", json={"job_id": first.json()["job_id"]}, headers=auth("trainer")
    )
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("prefer", ["return=minimal", "respond-async, return=minimal; x=1"])
def test_a_registration_preferring_a_minimal_answer_gets_the_job_as_recorded(
    client: TestClient, prefer: str
) -> None:
    headers = {**auth("trainer"), "Prefer": prefer, "Idempotency-Key": "lean-1"}
    first = client.post("/v1/jobs", json={"job_id": "lean", "spec": {"lr": 1}}, headers=headers)
    again = client.post("/v1/jobs", json={"job_id": "lean", "spec": {"lr": 1}}, headers=headers)

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.headers["preference-applied"] == "return=minimal"
    assert first.headers["location"] == "/v1/jobs/lean"
    job = first.json()
    assert (job["job_id"], job["status"], job["version"], job["spec"]) == (
        "lean",
        "queued",
        1,
        {"lr": 1},
    )
    assert not {"queue_position", "health", "last_heartbeat_at"} & job.keys()
    assert again.json() == job


def test_a_registration_preferring_a_representation_gets_the_whole_view(
    client: TestClient,
) -> None:
    headers = {**auth("trainer"), "Prefer": "return=representation"}
    answer = client.post("/v1/jobs", json={"job_id": "full"}, headers=headers)

    assert answer.status_code == 201 and "preference-applied" not in answer.headers
    assert (answer.json()["queue_position"], answer.json()["health"]) == (1, "ok")


def test_a_training_run_from_claim_to_completion(client: TestClient) -> None:
    register(client, job_id="run-me")
    claim = client.post("/v1/queue/claim", json=WORKER, headers=auth("trainer")).json()
    run = {"attempt": claim["attempt"], "run_token": claim["run_token"]}
    assert claim["job"]["status"] == "running"
    beat = client.post("/v1/jobs/run-me/heartbeat", json=run, headers=auth("trainer"))
    assert beat.status_code == 200
    saved = client.post(
        "/v1/jobs/run-me/checkpoint",
        json={**run, "path": "/ck/1", "step": 10},
        headers=auth("trainer"),
    )
    assert saved.json()["checkpoint"] == {"path": "/ck/1", "step": 10}
    done = client.post(
        "/v1/jobs/run-me/complete", json={**run, "result": {"loss": 0.1}}, headers=auth("trainer")
    )
    assert done.json()["status"] == "completed"
    history = client.get("/v1/jobs/run-me/history", headers=auth("audrey")).json()
    assert [(e["from_status"], e["to_status"]) for e in history["events"]] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "running"),
        ("running", "completed"),
    ]
    assert {e["actor"] for e in history["events"]} == {"trainer"}


def test_an_empty_queue_answers_204(client: TestClient) -> None:
    response = client.post("/v1/queue/claim", json=WORKER, headers=auth("trainer"))
    assert response.status_code == 204 and response.content == b""


def test_an_illegal_transition_is_409_naming_status_and_allowed_commands(
    client: TestClient,
) -> None:
    register(client, job_id="q")
    response = client.post("/v1/jobs/q/requeue", json={}, headers=auth("alice"))
    assert response.status_code == 409
    problem = response.json()
    assert problem["current_status"] == "queued"
    assert problem["allowed_commands"] == ["cancel", "force_start", "mark_failed", "start"]


def test_a_stale_worker_is_fenced_with_409(client: TestClient) -> None:
    register(client, job_id="fenced")
    claim = client.post("/v1/queue/claim", json=WORKER, headers=auth("trainer")).json()
    client.post("/v1/jobs/fenced/mark-failed", json={"reason": "node lost"}, headers=auth("alice"))
    late = client.post(
        "/v1/jobs/fenced/complete",
        json={"attempt": claim["attempt"], "run_token": claim["run_token"]},
        headers=auth("trainer"),
    )
    assert late.status_code == 409
    assert late.json()["type"].endswith("stale-attempt")


def test_malformed_input_is_422_naming_the_field(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={"max_attempts": 0}, headers=auth("trainer"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "max_attempts"
    garbage = client.post("/v1/jobs", content=b"{not json", headers=auth("trainer"))
    assert garbage.status_code == 422
    unknown = client.post("/v1/jobs", json={"colour": "red"}, headers=auth("trainer"))
    assert unknown.status_code == 422 and "colour" in unknown.json()["detail"]


def test_unknown_jobs_and_routes_are_404_problems(client: TestClient) -> None:
    job = client.get("/v1/jobs/nope", headers=auth("audrey"))
    route = client.get("/v1/nothing-here", headers=auth("audrey"))
    assert (job.status_code, route.status_code) == (404, 404)
    assert (
        job.headers["content-type"] == route.headers["content-type"] == "application/problem+json"
    )


def test_force_start_of_a_pending_job_reports_its_position(client: TestClient) -> None:
    register(client, job_id="first")
    register(client, job_id="stuck", status="pending")
    response = client.post(
        "/v1/jobs/stuck/force-start", json={"reason": "go"}, headers=auth("alice")
    )
    assert response.json()["queue_position"] == 2
    legacy = client.post("/api/training/stuck/force-start", headers=auth("alice")).json()
    assert legacy == {"success": True, "job_id": "stuck", "queue_position": 2}


def test_health_and_the_old_frontends_health_agree(client: TestClient) -> None:
    register(client, job_id="h1")
    client.post("/v1/queue/claim", json=WORKER, headers=auth("trainer"))
    health = client.get("/v1/health", headers=auth("audrey")).json()
    legacy = client.get("/api/training/health", headers=auth("audrey")).json()
    assert health["total_running"] == legacy["total_running_db"] == 1
    assert set(legacy) == {"healthy", "orphaned_jobs", "total_running_db", "total_running_memory"}


def test_the_event_feed_pages_with_its_cursor(client: TestClient) -> None:
    for index in range(3):
        register(client, job_id=f"feed-{index}")
    first = client.get("/v1/events?limit=2", headers=auth("audrey")).json()
    rest = client.get(f"/v1/events?after={first['next']}", headers=auth("audrey")).json()
    assert [e["job_id"] for e in first["events"] + rest["events"]] == ["feed-0", "feed-1", "feed-2"]


def test_reconcile_dry_run_and_cleanup_return_the_documented_shapes(client: TestClient) -> None:
    dry = client.post("/v1/admin/reconcile?dry_run=true", headers=auth("alice")).json()
    assert dry == {"dry_run": True, "actions": []}
    cleanup = client.post("/api/training/admin/cleanup?max_age_minutes=30", headers=auth("alice"))
    assert cleanup.json() == {
        "orphaned_marked_failed": [],
        "old_pending_marked_failed": [],
        "old_queued_requeued": [],
    }


def test_probes_answer_without_a_token_and_the_document_with_one(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/openapi.json").status_code == 401
    document = client.get("/openapi.json", headers=auth("audrey")).json()
    assert "/v1/queue/claim" in document["paths"]
    statuses = document["components"]["schemas"]["JobStatus"]["enum"]
    assert statuses == [
        "pending",
        "queued",
        "running",
        "paused",
        "completed",
        "failed",
        "cancelled",
    ]


def test_readyz_is_503_until_the_projections_are_built(
    client: TestClient, engine: object, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy import Engine, text

    assert isinstance(engine, Engine)
    with engine.connect() as conn:
        conn.execute(text("DELETE FROM projection_checkpoints"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}, "why not is for the log only"
    assert "the projections are not built yet" in caplog.text


def test_the_client_registers_with_a_minimal_answer_when_asked(client: TestClient) -> None:
    trainer = client_through(client)

    lean = trainer.register("lean-client", minimal=True)
    full = trainer.register("full-client")

    assert (lean["job_id"], lean["status"]) == ("lean-client", "queued")
    assert "queue_position" not in lean
    assert full["queue_position"] == 2
