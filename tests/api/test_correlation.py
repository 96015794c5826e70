"""A request's correlation id: read from its traceparent or X-Request-ID (or made), recorded
on its events and in its command's log line, and answered in its headers."""

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from api.bootstrap import Ledger
from api.presenters import feed_event
from ledger.command_log import LOGGER
from ledger.trace_context import TraceParent
from tests.api.conftest import auth

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
WORKER = {"worker_id": "w1", "host": "gpu-1", "pid": 42}


@pytest.fixture
def command_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger=LOGGER):
        yield caplog


def lines_of(log: pytest.LogCaptureFixture, job_id: str) -> list[dict[str, Any]]:
    """The command log's fields for `job_id`, one dict per line."""
    names = ("command", "job_id", "actor", "outcome", "kind", "correlation_id")
    return [
        {name: getattr(record, name, None) for name in names}
        for record in log.records
        if record.name == LOGGER and getattr(record, "job_id", None) == job_id
    ]


def history(client: TestClient, job_id: str) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/jobs/{job_id}/history", headers=auth("audrey"))
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def register(client: TestClient, job_id: str, **headers: str) -> Any:
    answer = client.post("/v1/jobs", json={"job_id": job_id}, headers=auth("trainer") | headers)
    assert answer.status_code == 201, answer.text
    return answer


def test_a_traceparents_trace_id_is_on_the_requests_events_and_in_its_log_line(
    client: TestClient, command_log: pytest.LogCaptureFixture
) -> None:
    answer = register(client, "traced", traceparent=TRACEPARENT)

    assert [event["correlation_id"] for event in history(client, "traced")] == [TRACE]
    assert lines_of(command_log, "traced") == [
        {
            "command": "register",
            "job_id": "traced",
            "actor": "trainer",
            "outcome": "accepted",
            "kind": None,
            "correlation_id": TRACE,
        }
    ]
    served = TraceParent.parse(answer.headers["traceparent"])
    assert served is not None and served.trace_id == TRACE and served.sampled
    assert served.parent_id != "00f067aa0ba902b7"  # the server's own span
    assert answer.headers["x-request-id"] == TRACE


@pytest.mark.parametrize(
    "malformed",
    [
        f"00-{TRACE.upper()}-00f067aa0ba902b7-01",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",
        f"ff-{TRACE}-00f067aa0ba902b7-01",
        f"00-{TRACE}-00f067aa0ba902b7-01-extra",
        "not a traceparent",
    ],
)
def test_a_malformed_traceparent_is_ignored_and_the_request_gets_a_new_trace(
    client: TestClient, command_log: pytest.LogCaptureFixture, malformed: str
) -> None:
    answer = register(client, "replaced", traceparent=malformed)

    served = TraceParent.parse(answer.headers["traceparent"])
    assert served is not None and served.trace_id != TRACE
    assert [event["correlation_id"] for event in history(client, "replaced")] == [served.trace_id]
    assert [line["correlation_id"] for line in lines_of(command_log, "replaced")] == [
        served.trace_id
    ]


def test_a_repeated_traceparent_names_no_trace(client: TestClient) -> None:
    headers = [("traceparent", TRACEPARENT), ("traceparent", f"00-{'1' * 32}-{'2' * 16}-01")]
    answer = client.post(
        "/v1/jobs", json={"job_id": "twice"}, headers=[*auth("trainer").items(), *headers]
    )
    assert answer.status_code == 201
    correlation_id = history(client, "twice")[0]["correlation_id"]
    assert correlation_id not in (TRACE, "1" * 32)
    assert TraceParent.parse(answer.headers["traceparent"]).trace_id == correlation_id  # type: ignore[union-attr]


def test_an_x_request_id_without_a_traceparent_is_the_correlation_id(
    client: TestClient,
) -> None:
    answer = register(client, "by-request-id", **{"X-Request-ID": "req-42:retry/1"})
    assert history(client, "by-request-id")[0]["correlation_id"] == "req-42:retry/1"
    assert answer.headers["x-request-id"] == "req-42:retry/1"


def test_a_traceparent_is_the_correlation_id_beside_an_x_request_id_which_is_answered_back(
    client: TestClient,
) -> None:
    answer = register(client, "both", traceparent=TRACEPARENT, **{"X-Request-ID": "req-7"})
    assert history(client, "both")[0]["correlation_id"] == TRACE
    assert answer.headers["x-request-id"] == "req-7"


@pytest.mark.parametrize("malformed", ["has space", "x" * 201, "quote'd", "ünïcode"])
def test_a_malformed_x_request_id_is_ignored(client: TestClient, malformed: str) -> None:
    answer = client.post(
        "/v1/jobs",
        json={"job_id": "odd-id"},
        headers=[*auth("trainer").items(), ("X-Request-ID", malformed.encode())],
    )
    assert answer.status_code == 201
    made = TraceParent.parse(answer.headers["traceparent"])
    assert made is not None
    assert history(client, "odd-id")[0]["correlation_id"] == made.trace_id
    assert answer.headers["x-request-id"] == made.trace_id


def test_a_refused_command_logs_its_kind_and_correlation_id(
    client: TestClient, command_log: pytest.LogCaptureFixture
) -> None:
    register(client, "done")
    client.post("/v1/jobs/done/cancel", json={}, headers=auth("alice"))
    again = client.post(
        "/v1/jobs/done/cancel", json={}, headers=auth("alice") | {"traceparent": TRACEPARENT}
    )
    assert again.status_code == 409
    assert lines_of(command_log, "done")[-1] == {
        "command": "cancel",
        "job_id": "done",
        "actor": "alice",
        "outcome": "refused",
        "kind": "illegal-transition",
        "correlation_id": TRACE,
    }
    assert again.headers["x-request-id"] == TRACE


def test_a_claim_and_a_runs_reports_record_their_requests_correlation_ids(
    client: TestClient, command_log: pytest.LogCaptureFixture
) -> None:
    register(client, "run-me")
    claimed = client.post(
        "/v1/queue/claim",
        json=WORKER,
        headers=auth("trainer") | {"X-Request-ID": "claim-1"},
    ).json()
    run = {"attempt": claimed["attempt"], "run_token": claimed["run_token"]}
    step = {"traceparent": TRACEPARENT}
    client.post(
        "/v1/jobs/run-me/checkpoint",
        json={**run, "path": "s3://c/1"},
        headers=auth("trainer") | step,
    )

    events = history(client, "run-me")
    assert [(event["type"], event["correlation_id"]) for event in events[1:]] == [
        ("job_started", "claim-1"),
        ("checkpoint_saved", TRACE),
    ]
    assert [(line["command"], line["correlation_id"]) for line in lines_of(command_log, "run-me")][
        1:
    ] == [("claim", "claim-1"), ("checkpoint", TRACE)]


def test_the_feed_shows_each_events_correlation_id(client: TestClient, ledger: Ledger) -> None:
    register(client, "fed", traceparent=TRACEPARENT)
    # The feed's view of the event (its reads wait for every older transaction of the
    # server to end, which other databases' may hold back).
    (registered,) = ledger.store.history("fed")
    assert feed_event(registered).correlation_id == TRACE


def test_a_refused_request_is_answered_with_its_ids_too(client: TestClient) -> None:
    answer = client.get("/v1/jobs", headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 401
    assert answer.headers["x-request-id"] == TRACE
    assert answer.headers["traceparent"].split("-")[1] == TRACE


def test_an_unexpected_failure_is_answered_and_logged_with_the_requests_correlation_id(
    client: TestClient,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail(job_id: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ledger.reader, "read", fail)
    answer = client.get("/v1/jobs/any", headers=auth("audrey") | {"traceparent": TRACEPARENT})
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == TRACE
    (logged,) = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert getattr(logged, "correlation_id", None) == TRACE


def test_a_reconciler_pass_an_operator_asks_for_records_the_requests_correlation_id(
    client: TestClient,
) -> None:
    answer = client.post(
        "/v1/jobs", json={"job_id": "stuck", "status": "pending"}, headers=auth("trainer")
    )
    assert answer.status_code == 201
    passed = client.post(
        "/v1/admin/reconcile?max_age_minutes=0",
        headers=auth("alice") | {"traceparent": TRACEPARENT},
    )
    assert passed.json()["actions"][0]["job_id"] == "stuck"
    assert history(client, "stuck")[-1]["correlation_id"] == TRACE


def test_a_repeated_idempotency_key_is_logged_as_replayed(
    client: TestClient, command_log: pytest.LogCaptureFixture
) -> None:
    headers = auth("trainer") | {"Idempotency-Key": "once", "traceparent": TRACEPARENT}
    for _ in range(2):
        client.post("/v1/jobs", json={"job_id": "keyed"}, headers=headers)
    assert [line["outcome"] for line in lines_of(command_log, "keyed")] == [
        "accepted",
        "replayed",
    ]


def test_each_job_of_a_batch_records_the_requests_correlation_id_and_its_line_logs_it(
    client: TestClient, command_log: pytest.LogCaptureFixture
) -> None:
    invalid = {"job_id": "sweep 3"}  # refused by the API before the ledger sees it
    jobs = [{"job_id": "sweep-1"}, {"job_id": "sweep-2"}, {"job_id": "sweep-1"}, invalid]
    answer = client.post(
        "/v1/jobs/batch",
        json={"jobs": jobs},
        headers=auth("trainer") | {"traceparent": TRACEPARENT},
    )
    assert answer.status_code == 200, answer.text
    assert [result["status"] for result in answer.json()["results"]] == [201, 201, 409, 422]
    for job_id in ("sweep-1", "sweep-2"):
        assert [event["correlation_id"] for event in history(client, job_id)] == [TRACE]
    batch_lines = [
        (record.getMessage(), vars(record))
        for record in command_log.records
        if getattr(record, "outcome", None) == "batch"
    ]
    assert [
        (message, fields["accepted"], fields["refused"], fields["correlation_id"])
        for message, fields in batch_lines
    ] == [
        (f"register 4 jobs by 'trainer': 2 accepted, 2 refused, correlation {TRACE}", 2, 2, TRACE)
    ]
    # At INFO, the job it refused has a line of its own; the jobs it registered, none.
    assert lines_of(command_log, "sweep-2") == []
    assert [
        (line["outcome"], line["kind"], line["correlation_id"])
        for line in lines_of(command_log, "sweep-1")
    ] == [("refused", "duplicate-job", TRACE)]


def test_at_debug_every_job_of_a_batch_has_a_line(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        answer = client.post(
            "/v1/jobs/batch",
            json={"jobs": [{"job_id": "sweep-1"}, {"job_id": "sweep-2"}]},
            headers=auth("trainer") | {"traceparent": TRACEPARENT},
        )
    assert answer.status_code == 200, answer.text
    for job_id in ("sweep-1", "sweep-2"):
        assert [
            (line["command"], line["outcome"], line["correlation_id"])
            for line in lines_of(caplog, job_id)
        ] == [("register", "accepted", TRACE)]
