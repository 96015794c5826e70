"""Headers a dependency reads itself (`api.read_headers`) are checked, refused and
documented exactly as FastAPI's declared `Header` parameters of the same type are."""

from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from api.params import IDEMPOTENCY_KEY, PREFER, StoredText
from api.read_headers import ReadHeader, reading
from tests.api.conftest import auth


def declared_app(header: ReadHeader, checks: tuple[Any, ...]) -> FastAPI:
    """A route taking the header as a declared parameter of the same type."""
    app = FastAPI()
    declared = Annotated[
        str | None,
        Header(alias=header.name, max_length=255, description=header.parameter["description"]),
        *checks,
    ]

    @app.get("/h")
    async def route(value: declared = None) -> dict[str, Any]:
        return {"value": value}

    return with_errors_shown(app)


def read_app(header: ReadHeader) -> FastAPI:
    """A route whose dependency reads the header itself."""
    app = FastAPI()

    @reading(header)
    async def read(request: Request) -> str | None:
        return header.read(request)

    @app.get("/h")
    async def route(value: Annotated[str | None, Depends(read)]) -> dict[str, Any]:
        return {"value": value}

    return with_errors_shown(app)


def with_errors_shown(app: FastAPI) -> FastAPI:
    async def show(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(jsonable_encoder(exc.errors()), status_code=422)

    app.add_exception_handler(RequestValidationError, show)
    return app


HEADERS = [(IDEMPOTENCY_KEY, (StoredText,)), (PREFER, ())]


@pytest.mark.parametrize(("header", "checks"), HEADERS, ids=lambda h: getattr(h, "name", ""))
def test_a_read_header_is_documented_as_the_declared_parameter_is(
    header: ReadHeader, checks: tuple[Any, ...]
) -> None:
    [declared] = declared_app(header, checks).openapi()["paths"]["/h"]["get"]["parameters"]
    assert header.parameter == declared


@pytest.mark.parametrize(("header", "checks"), HEADERS, ids=lambda h: getattr(h, "name", ""))
@pytest.mark.parametrize("sent", [None, "", "return=minimal", "k" * 255, "k" * 256, "é" * 300])
def test_a_read_header_is_checked_and_refused_as_the_declared_parameter_is(
    header: ReadHeader, checks: tuple[Any, ...], sent: str | None
) -> None:
    headers = {} if sent is None else {header.name: sent.encode()}
    ours = TestClient(read_app(header)).get("/h", headers=headers)
    theirs = TestClient(declared_app(header, checks)).get("/h", headers=headers)
    assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json())


def test_every_command_route_documents_the_headers_its_request_reads(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json", headers=auth("audrey")).json()["paths"]

    def headers_of(path: str) -> list[str]:
        parameters = paths[path]["post"].get("parameters", [])
        return [p["name"] for p in parameters if p["in"] == "header"]

    assert headers_of("/v1/jobs") == ["Idempotency-Key", "Prefer"]
    # Documented, yet not a parameter the framework solves on each request.
    solved = {
        param.alias
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, APIRoute)
        for dependency in route.dependant.dependencies
        for param in dependency.header_params
    }
    assert solved.isdisjoint({"Idempotency-Key", "Prefer"}), solved
    assert headers_of("/v1/queue/claim") == ["Idempotency-Key"]
    assert headers_of("/v1/jobs/{job_id}/complete") == ["Idempotency-Key"]
    assert headers_of("/v1/jobs/{job_id}/cancel") == ["Idempotency-Key"]


def test_a_header_that_does_not_fit_is_a_422_only_for_a_caller_the_route_admits(
    client: TestClient,
) -> None:
    too_long = {"Prefer": "p" * 256}
    assert client.post("/v1/jobs", json={}, headers=too_long).status_code == 401
    refused = client.post("/v1/jobs", json={}, headers={**auth("trainer"), **too_long})
    assert refused.status_code == 422
    assert [error["field"] for error in refused.json()["errors"]] == ["Prefer"]
