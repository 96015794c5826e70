"""Path, query and header parameters parsed by their types: a value that does not fit is
a 422 `invalid-request` problem naming the field; an empty query value is no value."""

from http import HTTPStatus

import pytest
from starlette.testclient import TestClient

from tests.api.conftest import auth

PROBLEMS = "https://jobledger.dev/problems/"


def invalid_field(client: TestClient, method: str, url: str, caller: str = "audrey") -> str:
    """The one field the 422 answer to this request names."""
    response = client.request(method, url, headers=auth(caller))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == PROBLEMS + "invalid-request"
    assert (problem["title"], problem["status"]) == (HTTPStatus(422).phrase, 422)
    [error] = problem["errors"]
    assert problem["detail"] == f"invalid fields: {error['field']}"
    return str(error["field"])


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/jobs?limit=0", "limit"),
        ("/v1/jobs?limit=501", "limit"),
        ("/v1/jobs?limit=ten", "limit"),
        ("/v1/jobs?status=stuck", "status"),
        ("/v1/jobs?cursor=paged-3", "cursor"),
        ("/v1/jobs?q=" + "x" * 201, "q"),
        ("/v1/jobs?q=a%00b", "q"),
        ("/v1/jobs/a%00b", "job_id"),
        ("/v1/jobs/a%00b/history", "job_id"),
        ("/v1/events?after=yesterday", "after"),
        ("/v1/events?limit=1001", "limit"),
    ],
)
def test_a_query_or_path_value_that_does_not_fit_its_type_is_a_422_naming_it(
    client: TestClient, url: str, field: str
) -> None:
    assert invalid_field(client, "GET", url) == field


def test_the_reconcile_flags_are_a_boolean_and_a_bounded_integer(client: TestClient) -> None:
    reconcile = "/v1/admin/reconcile"
    assert invalid_field(client, "POST", f"{reconcile}?dry_run=maybe", "alice") == "dry_run"
    assert invalid_field(client, "POST", f"{reconcile}?max_age_minutes=-1", "alice") == (
        "max_age_minutes"
    )
    cleanup = "/api/training/admin/cleanup?max_age_minutes=soon"
    assert invalid_field(client, "POST", cleanup, "alice") == "max_age_minutes"
    planned = client.post(f"{reconcile}?dry_run=1&max_age_minutes=5", headers=auth("alice"))
    assert planned.json() == {"dry_run": True, "actions": []}


def test_an_empty_query_value_is_the_parameters_default(client: TestClient) -> None:
    client.post("/v1/jobs", json={"job_id": "only"}, headers=auth("trainer"))
    page = client.get("/v1/jobs?status=&limit=&cursor=&q=", headers=auth("audrey"))
    assert [job["job_id"] for job in page.json()["jobs"]] == ["only"]
    feed = client.get("/v1/events?after=&limit=", headers=auth("audrey"))
    assert [event["job_id"] for event in feed.json()["events"]] == ["only"]
    dry = client.post("/v1/admin/reconcile?dry_run=&max_age_minutes=", headers=auth("alice"))
    assert dry.json()["dry_run"] is False


def test_the_search_is_trimmed_before_its_length_is_checked(client: TestClient) -> None:
    client.post("/v1/jobs", json={"job_id": "trimmed"}, headers=auth("trainer"))
    padded = "%20" * 20 + "trim" + "x" * 196 + "%20" * 20
    assert client.get(f"/v1/jobs?q={padded}", headers=auth("audrey")).status_code == 200


def test_the_token_is_checked_before_the_parameters(client: TestClient) -> None:
    assert client.get("/v1/jobs?limit=0").status_code == 401
    refused = client.post("/v1/admin/reconcile?dry_run=maybe", headers=auth("audrey"))
    assert refused.status_code == 403


def test_the_token_is_checked_before_the_body(client: TestClient) -> None:
    assert client.post("/v1/jobs", content=b"{not json").status_code == 401
    wrong_role = client.post("/v1/jobs", content=b"{not json", headers=auth("audrey"))
    assert wrong_role.status_code == 403
    assert wrong_role.json()["type"].endswith("/forbidden")
    as_form = client.post(
        "/v1/jobs/j/cancel",
        content=b"reason=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert as_form.status_code == 401


def test_a_body_that_is_not_json_is_a_422_naming_the_body(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b"{not json", headers=auth("trainer"))
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["body"]


def test_a_json_body_sent_without_a_content_type_is_read_as_json(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b'{"job_id": "untyped"}', headers=auth("trainer"))
    assert response.status_code == 201, response.text
    assert response.json()["job_id"] == "untyped"


def test_commands_whose_fields_all_have_defaults_take_an_empty_body(client: TestClient) -> None:
    created = client.post("/v1/jobs", headers=auth("trainer"))
    assert created.status_code == 201
    job_id = created.json()["job_id"]
    assert created.headers["location"] == f"/v1/jobs/{job_id}"
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel", headers=auth("alice"))
    assert cancelled.json()["status"] == "cancelled"


def test_a_head_request_is_answered_as_its_get_without_a_body(client: TestClient) -> None:
    probe = client.head("/livez")
    assert (probe.status_code, probe.content) == (200, b"")
    assert probe.headers["content-type"] == "application/json"
    page = client.head("/")
    assert (page.status_code, page.content) == (200, b"")
    assert page.headers["content-type"].startswith("text/html")
    missing = client.head("/v1/jobs/nope", headers=auth("audrey"))
    assert (missing.status_code, missing.content) == (404, b"")
