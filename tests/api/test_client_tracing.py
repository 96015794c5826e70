"""The training server's client sends a traceparent with every call: a trace of its own, or
a span of the trace `trace_calls` names; the ledger records the trace id on the events."""

from collections.abc import Iterator

import httpx
import pytest
from starlette.testclient import TestClient

from ledger.client import BATCH_JOBS, LedgerClient, trace_calls
from ledger.errors import InvalidTraceparent
from ledger.trace_context import TraceParent
from tests.api.conftest import auth, client_through

STEP = TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", sampled=True)


@pytest.fixture
def trainer(client: TestClient) -> Iterator[LedgerClient]:
    """The training server's client, talking to the app in process."""
    yield client_through(client)


def correlation_ids(client: TestClient, job_id: str) -> list[str]:
    history = client.get(f"/v1/jobs/{job_id}/history", headers=auth("audrey")).json()
    return [event["correlation_id"] for event in history["events"]]


def test_calls_inside_a_trace_record_its_trace_id(
    trainer: LedgerClient, client: TestClient
) -> None:
    with trace_calls(str(STEP)) as trace:
        trainer.register("step-1")
        client.headers.update(auth("alice"))
        trainer.cancel("step-1")
    assert trace == STEP
    assert correlation_ids(client, "step-1") == [STEP.trace_id, STEP.trace_id]


def test_batches_sent_at_once_carry_the_callers_trace(
    trainer: LedgerClient, client: TestClient
) -> None:
    jobs = [{"job_id": f"swept-{i}"} for i in range(BATCH_JOBS + 1)]
    with trace_calls(str(STEP)):
        trainer.register_many(jobs, in_flight=2)
    assert correlation_ids(client, "swept-0") == correlation_ids(client, f"swept-{BATCH_JOBS}")
    assert correlation_ids(client, f"swept-{BATCH_JOBS}") == [STEP.trace_id]


def test_every_call_outside_a_trace_is_a_trace_of_its_own() -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["traceparent"])
        return httpx.Response(200, json={"job_id": "j"})

    client = LedgerClient("http://ledger", transport=httpx.MockTransport(answer))
    client.job("j")
    client.job("j")
    first, second = (TraceParent.parse(value) for value in sent)
    assert first is not None and second is not None
    assert first.trace_id != second.trace_id


def test_a_new_trace_is_made_when_none_is_given(trainer: LedgerClient, client: TestClient) -> None:
    with trace_calls() as trace:
        trainer.register("fresh")
    assert correlation_ids(client, "fresh") == [trace.trace_id]


def test_a_malformed_traceparent_is_refused_by_the_client() -> None:
    with pytest.raises(InvalidTraceparent), trace_calls("00-not-a-trace-01"):
        pass


def test_a_call_is_tried_again_with_the_same_traceparent_and_each_call_is_a_span() -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["traceparent"])
        if len(sent) == 1:
            return httpx.Response(503, json={"type": "about:blank", "detail": "busy"})
        return httpx.Response(200, json={"job_id": "j"})

    client = LedgerClient("http://ledger", transport=httpx.MockTransport(answer), backoff=0)
    with trace_calls(STEP):
        client.job("j")
        client.job("j")
    first_try, retry, next_call = (TraceParent.parse(value) for value in sent)
    assert first_try == retry
    assert first_try is not None and next_call is not None
    assert {first_try.trace_id, next_call.trace_id} == {STEP.trace_id}
    assert len({first_try.parent_id, next_call.parent_id, STEP.parent_id}) == 3
    assert first_try.sampled
