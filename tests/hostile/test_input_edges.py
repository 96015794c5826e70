"""Hostile input at the HTTP edge: oversized keys and bodies, loosely typed fields,
bodies of other media types, impossible cursors, forged hosts; and the headers every
answer carries."""

import os
from collections.abc import Callable

import pytest
from httpx import Response
from starlette.testclient import TestClient

from api.console_page import CONSOLE_DIR
from tests.api import conftest as api_fixtures
from tests.api.conftest import auth

# The HTTP API's fixtures, shared with tests/api.
ledger, client_for, client = api_fixtures.ledger, api_fixtures.client_for, api_fixtures.client


def assert_problem(response: Response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert field in [error["field"] for error in response.json()["errors"]], response.text


def test_an_idempotency_key_longer_than_255_characters_is_a_422_naming_it(
    client: TestClient,
) -> None:
    headers = {**auth("trainer"), "Idempotency-Key": "k" * 8000}
    assert_problem(client.post("/v1/jobs", json={}, headers=headers), 422, "Idempotency-Key")
    fits = {**auth("trainer"), "Idempotency-Key": "k" * 255}
    assert client.post("/v1/jobs", json={}, headers=fits).status_code == 201


def test_a_path_with_a_trailing_slash_is_not_found_not_redirected_to_the_callers_host(
    client: TestClient,
) -> None:
    headers = {**auth("alice"), "Host": "evil.example"}
    response = client.get("/v1/jobs/", headers=headers, follow_redirects=False)
    assert_problem(response, 404)
    assert "location" not in response.headers


@pytest.mark.parametrize("after", ["99999999999999999999999-1", "1-99999999999999999999999"])
@pytest.mark.parametrize("route", ["/v1/events", "/v1/events/stream"])
def test_a_feed_cursor_beyond_64_bits_is_a_422_before_any_event_is_sent(
    client: TestClient, route: str, after: str
) -> None:
    assert_refused_before_streaming(client, f"{route}?after={after}", auth("audrey"), "after")


def test_a_last_event_id_beyond_64_bits_is_a_422_before_the_stream_starts(
    client: TestClient,
) -> None:
    headers = {**auth("audrey"), "Last-Event-ID": "99999999999999999999999-1"}
    assert_refused_before_streaming(client, "/v1/events/stream", headers, "Last-Event-ID")


def assert_refused_before_streaming(
    client: TestClient, url: str, headers: dict[str, str], field: str
) -> None:
    # The answer's head decides: a stream that started is never read to its end.
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 422
        response.read()
    assert_problem(response, 422, field)


@pytest.mark.parametrize(
    "body", [{"priority": True}, {"auto_retry": "yes"}, {"priority": "5"}, {"max_attempts": 2.0}]
)
def test_a_field_of_another_json_type_is_a_422_not_coerced(
    client: TestClient, body: dict[str, object]
) -> None:
    response = client.post("/v1/jobs", json=body, headers=auth("trainer"))
    assert_problem(response, 422, next(iter(body)))


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_a_body_of_another_media_type_is_a_415(client: TestClient, content_type: str) -> None:
    headers = {**auth("trainer"), "Content-Type": content_type}
    assert_problem(client.post("/v1/jobs", content=b'{"job_id": "j"}', headers=headers), 415)
    assert client.get("/v1/jobs/j", headers=auth("trainer")).status_code == 404


def test_a_body_of_another_media_type_from_a_caller_the_route_refuses_is_still_a_401(
    client: TestClient,
) -> None:
    headers = {"Content-Type": "text/plain"}
    assert_problem(client.post("/v1/jobs", content=b"{}", headers=headers), 401)


def test_a_body_of_a_json_based_media_type_is_read_as_json(client: TestClient) -> None:
    headers = {**auth("trainer"), "Content-Type": "application/merge-patch+json; charset=utf-8"}
    assert client.post("/v1/jobs", content=b'{"job_id": "j"}', headers=headers).status_code == 201


def test_the_document_names_the_415_of_routes_with_a_body_only(client: TestClient) -> None:
    paths = client.get("/openapi.json", headers=auth("audrey")).json()["paths"]
    assert "415" in paths["/v1/jobs"]["post"]["responses"]
    assert "415" not in paths["/v1/jobs"]["get"]["responses"]


def test_a_body_over_one_mebibyte_is_a_413_before_it_is_read(client: TestClient) -> None:
    body = b'{"spec": {"x": "' + b"x" * (1024 * 1024) + b'"}}'
    response = client.post("/v1/jobs", content=body, headers=auth("trainer"))
    assert_problem(response, 413)
    assert response.json()["max_bytes"] == 1024 * 1024


def test_a_body_sent_in_chunks_without_a_length_is_counted_as_it_arrives(
    client: TestClient,
) -> None:
    chunks = [b'{"spec": {"x": "', *[b"x" * 65536] * 17, b'"}}']
    response = client.post("/v1/jobs", content=iter(chunks), headers=auth("trainer"))
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


def test_the_body_limit_is_set_by_the_environment(
    client_for: Callable[[bool], TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBLEDGER_MAX_BODY_BYTES", "100")
    client = client_for(True)
    small = client.post("/v1/jobs", json={"job_id": "small"}, headers=auth("trainer"))
    assert small.status_code == 201
    large = client.post("/v1/jobs", json={"spec": {"x": "x" * 100}}, headers=auth("trainer"))
    assert_problem(large, 413)


def test_a_spec_over_64_kib_as_json_is_a_422_naming_it(client: TestClient) -> None:
    spec = {"x": "x" * (64 * 1024)}
    response = client.post("/v1/jobs", json={"spec": spec}, headers=auth("trainer"))
    assert_problem(response, 422, "spec")
    fits = {"x": "x" * (64 * 1024 - 10)}
    assert client.post("/v1/jobs", json={"spec": fits}, headers=auth("trainer")).status_code == 201


@pytest.mark.parametrize(
    "path", ["/v1/jobs", "/v1/jobs/missing", "/v1/me", "/livez", "/openapi.json", "/nowhere"]
)
def test_an_answer_of_the_api_is_neither_sniffed_nor_stored(client: TestClient, path: str) -> None:
    response = client.get(path, headers=auth("alice"))
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


def test_a_refused_body_is_neither_sniffed_nor_stored(client: TestClient) -> None:
    response = client.post("/v1/jobs", content=b"x" * (1024 * 1024 + 1), headers=auth("trainer"))
    assert response.status_code == 413
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_the_consoles_files_carry_the_pages_security_policy(client: TestClient) -> None:
    page = client.get("/")
    scripts = [name for name in os.listdir(CONSOLE_DIR) if name.endswith(".js")]
    assert scripts
    for path in [f"/console/{scripts[0]}", "/console/missing.js"]:
        response = client.get(path)
        assert (
            response.headers["content-security-policy"] == page.headers["content-security-policy"]
        )
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
