"""Errors as `application/problem+json` (RFC 9457).

A ledger error is answered with the `status_code` and `kind` its class declares
(`ledger.errors`); the API's own refusals (authentication, input) are `Problem`s;
a request the framework cannot validate is an `invalid-request` naming each field.
"""

import logging
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.correlation import correlation_of
from ledger.errors import (
    LedgerError,
)

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://jobledger.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(Exception):
    """An HTTP error raised by the API layer itself (auth, input)."""

    def __init__(self, status: int, kind: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.extra = extra


RETRY_AFTER_S = 1
"""What a 503 or a 429 asks a caller to wait before trying again."""


def problem_response(status: int, kind: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + kind,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status in (429, 503):  # busy, or the caller's share is taken: worth asking again shortly
        headers = {"Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse(body, status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def ledger_error_response(error: LedgerError) -> JSONResponse:
    if error.status_code == 500:
        # The database's own words may quote stored data: they go to the log only.
        log.error("ledger error: %s", error, exc_info=error)
        return problem_response(500, error.kind, "the ledger failed; see the server's log")
    return problem_response(error.status_code, error.kind, str(error), **error.details())


def item_refusal(error: LedgerError) -> dict[str, Any]:
    """How one item of a many-item request was refused, in its place in the answer: the
    status, kind and detail its own request would have got as a problem."""
    return {"status": error.status_code, "kind": error.kind, "detail": str(error)}


def validation_response(error: RequestValidationError) -> JSONResponse:
    fields = [{"field": _field(item), "message": item["msg"]} for item in error.errors()]
    named = ", ".join(field["field"] for field in fields)
    return problem_response(422, "invalid-request", f"invalid fields: {named}", errors=fields)


def _field(item: dict[str, Any]) -> str:
    """The field an error is about, without where it came from ("body", "query", ...):
    the body itself when it is not JSON, or when a rule spans its fields."""
    source, *path = item["loc"]
    if item["type"] == "json_invalid" or not path:
        return str(source)
    return ".".join(str(part) for part in path)


async def handle_ledger_error(request: Request, exc: LedgerError) -> Response:
    return ledger_error_response(exc)


async def handle_problem(request: Request, exc: Problem) -> Response:
    return problem_response(exc.status, exc.kind, exc.detail, **exc.extra)


async def handle_http(request: Request, exc: HTTPException) -> Response:
    kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem_response(exc.status_code, kind, str(exc.detail))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # Never a stack trace in a response: the log has it, under the request's correlation id,
    # which the answer names (it is made outside the middleware that names it otherwise).
    correlation = correlation_of(request)
    correlation_id = None if correlation is None else correlation.correlation_id
    log.error(
        "unexpected error on %s %s, correlation %s",
        request.method,
        request.url.path,
        correlation_id,
        exc_info=exc,
        extra={"correlation_id": correlation_id},
    )
    response = problem_response(500, "internal-error", "the server failed; see its log")
    if correlation is not None:
        correlation.answer(response.headers.raw)
    return response


EXCEPTION_HANDLERS: dict[
    int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]
] = {
    LedgerError: handle_ledger_error,
    Problem: handle_problem,
    HTTPException: handle_http,
    Exception: handle_unexpected,
}
"""Every error a request can end in, answered as a problem."""

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of these statuses' answers: problems."""
    content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        status: {"description": HTTPStatus(status).phrase, "content": content}
        for status in statuses
    }
