"""One table of errors read from both ends: the server answers a ledger error with the
status and kind its class declares, and the client turns that answer back into it."""

import httpx
import pytest

from api.problems import ledger_error_response
from ledger.client import ERROR_OF_KIND, ClientError, problem_error
from ledger.errors import (
    CommandRefused,
    DatabaseBusy,
    DatabaseUnavailable,
    DuplicateJob,
    IdempotencyKeyReused,
    IllegalTransition,
    InvalidAuditFilter,
    InvalidCommand,
    InvalidDigest,
    JobNotFound,
    LedgerError,
    SchemaOutOfDate,
    StaleAttempt,
    StorageError,
    TooManyStreams,
    TooManyStreamsOfCaller,
    VersionConflict,
)

ANSWERED = [
    JobNotFound("j-1"),
    DuplicateJob("j-1"),
    CommandRefused("the job is paused"),
    IllegalTransition("j-1", "queued", "requeue", ["cancel", "start"]),
    StaleAttempt("j-1", 1, 2, "its run token is not current"),
    InvalidCommand("the database cannot store this input"),
    InvalidAuditFilter("since", "'yesterday' is not an RFC 3339 time"),
    InvalidDigest("a digest of chain 'md5': this ledger checks 'sha256-copy-v1'"),
    IdempotencyKeyReused("j-1", "key-1"),
    VersionConflict("j-1", 3),
    DatabaseUnavailable("the database cannot be reached"),
    DatabaseBusy(),
    SchemaOutOfDate("run `jobledger migrate`"),
    TooManyStreams(200),
    TooManyStreamsOfCaller("audrey", 10),
]


def answered(error: LedgerError) -> httpx.Response:
    """The server's answer to `error`, as the client receives it."""
    response = ledger_error_response(error)
    return httpx.Response(
        response.status_code, headers=dict(response.headers), content=bytes(response.body)
    )


@pytest.mark.parametrize("error", ANSWERED, ids=lambda error: type(error).__name__)
def test_each_ledger_error_comes_back_to_the_client_as_itself(error: LedgerError) -> None:
    response = answered(error)
    assert response.status_code == error.status_code
    assert response.json()["type"] == f"https://jobledger.dev/problems/{error.kind}"
    again = problem_error(response)
    assert type(again) is type(error)
    assert getattr(again, "job_id", None) == getattr(error, "job_id", None)


def test_the_details_of_a_refusal_survive_the_trip() -> None:
    refused = problem_error(answered(IllegalTransition("j-1", "queued", "requeue", ["start"])))
    assert isinstance(refused, IllegalTransition)
    assert (refused.status, refused.command, refused.allowed) == ("queued", "requeue", ("start",))
    fenced = problem_error(answered(StaleAttempt("j-1", 1, 2, "fenced")))
    assert isinstance(fenced, StaleAttempt)
    assert (fenced.attempt, fenced.current_attempt) == (1, 2)
    conflict = problem_error(answered(VersionConflict("j-1", 3)))
    assert isinstance(conflict, VersionConflict) and conflict.expected == 3
    bad_filter = problem_error(answered(InvalidAuditFilter("cursor", "not a cursor")))
    assert isinstance(bad_filter, InvalidAuditFilter)
    assert (bad_filter.field, str(bad_filter)) == ("cursor", "cursor: not a cursor")


def test_every_error_with_a_kind_of_its_own_is_answered_and_known_to_the_client() -> None:
    assert set(ERROR_OF_KIND.values()) == {type(error) for error in ANSWERED}


def test_a_failure_of_the_server_is_a_client_error_without_the_databases_words() -> None:
    response = answered(StorageError("the event store failed: relation job_events is locked"))
    assert (response.status_code, response.json()["type"].rsplit("/", 1)[-1]) == (
        500,
        "ledger-error",
    )
    assert "job_events" not in response.text
    error = problem_error(response)
    assert isinstance(error, ClientError)
    assert (error.status_code, error.kind) == (500, "ledger-error")


def test_an_api_refusal_is_a_client_error_with_its_status_and_kind() -> None:
    response = httpx.Response(
        403,
        json={"type": "https://jobledger.dev/problems/forbidden", "detail": "needs operator"},
    )
    error = problem_error(response)
    assert isinstance(error, ClientError)
    assert (error.status, error.status_code, error.kind) == (403, 403, "forbidden")
