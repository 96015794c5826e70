"""Errors as `application/problem+json` (RFC 9457), mapped from the ledger's errors in one table."""

import logging
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ledger.errors import (
    CommandRefused,
    DatabaseUnavailable,
    DuplicateJob,
    IllegalTransition,
    InvalidCommand,
    JobNotFound,
    LedgerError,
    SchemaOutOfDate,
    StaleAttempt,
    VersionConflict,
)

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://jobledger.dev/problems/"

STATUS_OF: list[tuple[type[LedgerError], int, str]] = [
    (JobNotFound, 404, "job-not-found"),
    (DuplicateJob, 409, "duplicate-job"),
    (IllegalTransition, 409, "illegal-transition"),
    (StaleAttempt, 409, "stale-attempt"),
    (CommandRefused, 409, "command-refused"),
    (VersionConflict, 409, "version-conflict"),
    (InvalidCommand, 422, "invalid-command"),
    (DatabaseUnavailable, 503, "database-unavailable"),
    (SchemaOutOfDate, 503, "schema-out-of-date"),
    (LedgerError, 500, "ledger-error"),
]
"""The one table from ledger errors to HTTP statuses; the first match wins."""


class Problem(Exception):
    """An HTTP error raised by the API layer itself (auth, input)."""

    def __init__(self, status: int, kind: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.extra = extra


def problem_response(status: int, kind: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + kind,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status, headers=headers, media_type="application/problem+json")


def ledger_error_response(error: LedgerError) -> JSONResponse:
    for cls, status, kind in STATUS_OF:
        if isinstance(error, cls):
            if status == 500:
                # The database's own words may quote stored data: they go to the log only.
                log.error("ledger error: %s", error, exc_info=error)
                return problem_response(status, kind, "the ledger failed; see the server's log")
            return problem_response(status, kind, str(error), **_details(error))
    raise AssertionError("LedgerError is in the table")  # pragma: no cover


def _details(error: LedgerError) -> dict[str, Any]:
    if isinstance(error, IllegalTransition):
        return {
            "job_id": error.job_id,
            "current_status": error.status,
            "command": error.command,
            "allowed_commands": list(error.allowed),
        }
    if isinstance(error, StaleAttempt):
        return {
            "job_id": error.job_id,
            "attempt": error.attempt,
            "current_attempt": error.current_attempt,
        }
    if isinstance(error, VersionConflict):
        return {"job_id": error.job_id, "expected_version": error.expected}
    if isinstance(error, JobNotFound | DuplicateJob):
        return {"job_id": error.job_id}
    return {}


def validation_response(error: ValidationError) -> JSONResponse:
    fields = [
        {"field": ".".join(str(part) for part in item["loc"]) or "body", "message": item["msg"]}
        for item in error.errors(include_url=False, include_input=False)
    ]
    named = ", ".join(field["field"] for field in fields)
    return problem_response(422, "invalid-request", f"invalid fields: {named}", errors=fields)


async def handle_ledger_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LedgerError)
    return ledger_error_response(exc)


async def handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(exc.status, exc.kind, exc.detail, **exc.extra)


async def handle_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ValidationError)
    return validation_response(exc)


async def handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem_response(exc.status_code, kind, str(exc.detail))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # Never a stack trace in a response: the log has it.
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "internal-error", "the server failed; see its log")
