"""`/openapi.json` describes every route the app serves, with its parameters typed."""

import types
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from fastapi import FastAPI
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from ledger.statuses import JobStatus
from tests.api.conftest import auth
from tests.api.operations import OPERATIONS


def test_every_route_served_is_an_operation_of_the_document(client: TestClient) -> None:
    document = client.get("/openapi.json", headers=auth("audrey")).json()
    paths = document["paths"].items()
    described = {(method.upper(), path) for path, operations in paths for method in operations}
    served: set[tuple[str, str]] = set()
    for route in _app(client).routes:
        if isinstance(route, APIRoute):
            served |= {(method, route.path) for method in route.methods or ()}
        elif isinstance(route, Mount):
            # The console page's scripts and styles, served by Starlette's StaticFiles: files
            # the page `/` loads, not operations of the API (the page itself is described).
            assert route.path == "/console"
        else:
            # Only the document itself and the page that shows it are left out of it.
            assert isinstance(route, Route) and route.path in ("/openapi.json", "/docs"), route
    assert served == described


def test_every_parameter_is_documented_with_the_type_it_is_parsed_as(client: TestClient) -> None:
    document = client.get("/openapi.json", headers=auth("audrey")).json()
    for route in _app(client).routes:
        if not isinstance(route, APIRoute):
            continue
        [method] = list(route.methods or ())
        operation = document["paths"][route.path][method.lower()]
        documented = {item["name"]: item for item in operation.get("parameters", [])}
        for field in get_flat_params(route.dependant):
            where = f"{method} {route.path} {field.alias}"
            assert field.alias in documented, f"{where}: not in the document"
            schema_types = _schema_types(documented[field.alias]["schema"], document)
            assert schema_types == _python_types(field.field_info.annotation), where


def test_query_parameters_are_integers_booleans_and_the_status_enum(client: TestClient) -> None:
    document = client.get("/openapi.json", headers=auth("audrey")).json()

    def types_of(method: str, path: str) -> dict[str, set[str]]:
        parameters = document["paths"][path][method].get("parameters", [])
        return {item["name"]: _schema_types(item["schema"], document) for item in parameters}

    jobs = types_of("get", "/v1/jobs")
    assert jobs["limit"] == {"integer"}
    assert jobs["status"] == {"enum: " + ", ".join(status.value for status in JobStatus), "null"}
    assert jobs["q"] == jobs["cursor"] - {"null"} == {"string"}
    reconcile = types_of("post", "/v1/admin/reconcile")
    assert reconcile == {"dry_run": {"boolean"}, "max_age_minutes": {"integer", "null"}}
    assert types_of("get", "/v1/events")["limit"] == {"integer"}
    assert types_of("post", "/api/training/admin/cleanup") == {"max_age_minutes": {"integer"}}


def test_the_stream_metrics_probes_and_console_are_described_with_their_media_types(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json", headers=auth("audrey")).json()["paths"]

    def media_types(path: str) -> list[str]:
        return list(paths[path]["get"]["responses"]["200"]["content"])

    assert media_types("/v1/events/stream") == ["text/event-stream"]
    assert media_types("/metrics") == ["text/plain; version=0.0.4"]
    assert media_types("/livez") == media_types("/readyz") == ["application/json"]
    assert media_types("/") == ["text/html"]


def test_each_operation_lists_the_roles_it_admits_and_public_ones_need_no_token(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json", headers=auth("audrey")).json()["paths"]
    assert paths["/v1/jobs/{job_id}/force-start"]["post"]["security"] == [{"bearer": ["operator"]}]
    assert paths["/v1/jobs"]["post"]["security"] == [{"bearer": ["emitter", "operator"]}]
    assert paths["/v1/health"]["get"]["security"] == [
        {"bearer": ["auditor", "emitter", "operator"]}
    ]
    assert {} in paths["/v1/me"]["get"]["security"]
    assert "security" not in paths["/livez"]["get"]


def test_only_the_probes_the_console_page_and_me_answer_without_a_token() -> None:
    # A route that forgot its caller would be public: every other test of roles reads
    # the document, so this list is what says which routes are meant to be.
    public = {str(operation) for operation in OPERATIONS if operation.public}
    assert public == {"GET /", "GET /livez", "GET /readyz", "GET /v1/me"}


def test_errors_are_documented_as_problems(client: TestClient) -> None:
    document = client.get("/openapi.json", headers=auth("audrey")).json()
    invalid = document["paths"]["/v1/jobs"]["get"]["responses"]["422"]
    assert invalid["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
    assert document["components"]["schemas"]["Problem"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
    ]


def test_the_document_is_shown_at_docs(client: TestClient) -> None:
    page = client.get("/docs", headers=auth("audrey"))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in page.text


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_with_tokens_configured_the_document_and_its_page_need_one(
    client: TestClient, path: str
) -> None:
    refused = client.get(path)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert "paths" not in refused.text
    assert (
        client.get(path, headers={"Authorization": "Bearer not-a-token-of-this-server"}).status_code
        == 401
    )
    assert client.get(path, headers=auth("trainer")).status_code == 200  # any role


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_without_tokens_the_document_and_its_page_answer_anyone(
    client_for: Callable[[bool], TestClient], path: str
) -> None:
    assert client_for(False).get(path).status_code == 200


def test_the_readiness_probe_documents_its_503_as_a_status_not_a_problem(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json", headers=auth("audrey")).json()["paths"]
    unavailable = paths["/readyz"]["get"]["responses"]["503"]["content"]
    assert list(unavailable) == ["application/json"]


def _app(client: TestClient) -> FastAPI:
    assert isinstance(client.app, FastAPI)
    return client.app


def _python_types(annotation: Any) -> set[str]:
    """The JSON types a parameter of this annotation is documented as having."""
    if get_origin(annotation) is Annotated:
        return _python_types(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return set().union(*(_python_types(arg) for arg in get_args(annotation)))
    if annotation is type(None):
        return {"null"}
    if get_origin(annotation) is list:  # a repeatable parameter
        return {f"array of {each}" for each in _python_types(get_args(annotation)[0])}
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return {"enum: " + ", ".join(member.value for member in annotation)}
    return {{bool: "boolean", int: "integer", float: "number", str: "string"}[annotation]}


def _schema_types(schema: dict[str, Any], document: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _schema_types(document["components"]["schemas"][name], document)
    if "anyOf" in schema:
        return set().union(*(_schema_types(option, document) for option in schema["anyOf"]))
    if "enum" in schema:
        return {"enum: " + ", ".join(schema["enum"])}
    if schema["type"] == "array":
        return {f"array of {each}" for each in _schema_types(schema["items"], document)}
    return {schema["type"]}
