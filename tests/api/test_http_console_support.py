"""What the operator console reads: the jobs list, who the caller is, the feed from now,
and the page itself."""

from collections.abc import Callable

from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from tests.api.conftest import auth


def register(client: TestClient, job_id: str, status: str = "queued") -> None:
    response = client.post(
        "/v1/jobs", json={"job_id": job_id, "status": status}, headers=auth("trainer")
    )
    assert response.status_code == 201, response.text


def test_the_jobs_list_is_newest_first_with_counts_and_a_search(client: TestClient) -> None:
    for job_id, status in [("resnet-1", "queued"), ("bert-1", "pending"), ("resnet-2", "pending")]:
        register(client, job_id, status)

    everything = client.get("/v1/jobs", headers=auth("audrey")).json()
    assert [job["job_id"] for job in everything["jobs"]] == ["resnet-2", "bert-1", "resnet-1"]
    assert everything["total"] == 3
    assert everything["counts"]["pending"] == 2
    assert everything["counts"]["failed"] == 0
    assert everything["as_of"] >= everything["jobs"][0]["created_at"]

    found = client.get("/v1/jobs?q=resnet&status=pending", headers=auth("audrey")).json()
    assert [job["job_id"] for job in found["jobs"]] == ["resnet-2"]
    assert found["counts"] == {
        "pending": 1,
        "queued": 1,
        "running": 0,
        "paused": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }


def test_the_jobs_list_pages_with_its_cursor_and_refuses_a_forged_one(client: TestClient) -> None:
    for n in range(5):
        register(client, f"paged-{n}")
    seen: list[str] = []
    url = "/v1/jobs?limit=2"
    while url:
        page = client.get(url, headers=auth("audrey")).json()
        seen += [job["job_id"] for job in page["jobs"]]
        url = f"/v1/jobs?limit=2&cursor={page['next_cursor']}" if page["next_cursor"] else ""
    assert seen == [f"paged-{n}" for n in reversed(range(5))]

    forged = client.get("/v1/jobs?cursor=paged-3", headers=auth("audrey"))
    assert forged.status_code == 422
    assert forged.headers["content-type"] == "application/problem+json"
    assert "cursor" in forged.json()["detail"]


def test_me_names_the_caller_and_whether_it_may_operate(client: TestClient) -> None:
    assert client.get("/v1/me", headers=auth("alice")).json() == {
        "name": "alice",
        "role": "operator",
        "tokens_required": True,
        "signed_in": True,
        "can_operate": True,
    }
    auditor = client.get("/v1/me", headers=auth("audrey")).json()
    assert (auditor["role"], auditor["can_operate"]) == ("auditor", False)
    nobody = client.get("/v1/me").json()
    assert (nobody["signed_in"], nobody["tokens_required"], nobody["can_operate"]) == (
        False,
        True,
        False,
    )
    wrong = client.get("/v1/me", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401


def test_without_tokens_me_is_a_signed_in_local_operator(
    client_for: Callable[[bool], TestClient],
) -> None:
    me = client_for(False).get("/v1/me").json()
    assert (me["signed_in"], me["tokens_required"], me["can_operate"]) == (True, False, True)


def test_an_orphaned_job_says_why(client: TestClient, engine: Engine) -> None:
    register(client, "lost-run")
    worker = {"worker_id": "w", "host": "elsewhere", "pid": 4242}
    assert client.post("/v1/jobs/lost-run/start", json=worker, headers=auth("trainer")).is_success
    healthy = client.get("/v1/jobs/lost-run", headers=auth("audrey")).json()
    assert (healthy["health"], healthy["health_reason"]) == ("ok", None)

    with engine.begin() as conn:  # the remote worker's lease lapses
        conn.execute(text("UPDATE job_leases SET expires_at = now() - interval '1 minute'"))

    lost = client.get("/v1/jobs/lost-run", headers=auth("audrey")).json()
    assert (lost["health"], lost["health_reason"]) == ("orphaned", "lease_expired")


def test_the_feed_from_now_holds_only_later_events(client: TestClient) -> None:
    register(client, "before")
    head = client.get("/v1/events?after=now", headers=auth("audrey")).json()
    assert head["events"] == []
    register(client, "after")
    later = client.get(f"/v1/events?after={head['next']}", headers=auth("audrey")).json()
    assert [event["job_id"] for event in later["events"]] == ["after"]


def test_the_console_page_is_served_with_a_strict_content_security_policy(
    client: TestClient,
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/console/app.js">' in page.text
    script = client.get("/console/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert client.get("/console/no-such-file.js").status_code == 404
