"""Lists and the feed do not carry specs: a page of jobs with the largest specs stays
small (the job's own view carries its spec; the feed shows each spec's size)."""

from fastapi.testclient import TestClient

from tests.api import conftest as api_fixtures
from tests.api.conftest import auth

# The HTTP API's fixtures, shared with tests/api.
ledger, client_for, client = api_fixtures.ledger, api_fixtures.client_for, api_fixtures.client

SPEC = {"x": "x" * (60 * 1024)}


def register_large_jobs(client: TestClient, count: int) -> list[str]:
    ids = [f"large-{n}" for n in range(count)]
    for job_id in ids:
        response = client.post(
            "/v1/jobs", json={"job_id": job_id, "spec": SPEC}, headers=auth("trainer")
        )
        assert response.status_code == 201
        assert response.json()["spec"] == SPEC, "a command's answer is the job's own view"
    return ids


def test_a_list_page_carries_no_spec_and_the_job_view_does(client: TestClient) -> None:
    ids = register_large_jobs(client, 10)

    page = client.get("/v1/jobs", params={"limit": 500}, headers=auth("audrey"))
    assert page.status_code == 200
    assert [job["spec"] for job in page.json()["jobs"]] == [None] * 10
    assert len(page.content) < 10 * 1024, "ten jobs of 60 KiB specs, listed in under 10 KiB"

    job = client.get(f"/v1/jobs/{ids[0]}", headers=auth("audrey"))
    assert job.json()["spec"] == SPEC


def test_the_feed_shows_a_registrations_spec_as_its_size(client: TestClient) -> None:
    register_large_jobs(client, 10)

    feed = client.get("/v1/events", params={"after": "0-0"}, headers=auth("audrey"))
    registrations = [e for e in feed.json()["events"] if e["type"] == "job_registered"]
    assert len(registrations) == 10
    for event in registrations:
        assert "spec" not in event["payload"]
        assert event["payload"]["spec_bytes"] > 60 * 1024
        assert event["payload"]["initial_status"] == "queued"
    assert len(feed.content) < 10 * 1024
