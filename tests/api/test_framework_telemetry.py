"""The framework's own OpenTelemetry layer stays off: with a tracer provider set for the
process, a request to the service asks it for nothing (the service's telemetry is its own
`/metrics` and the `traceparent` in its log lines), while a plain FastAPI app would."""

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace

from api.app import declare_api


class RecordingProvider(trace.TracerProvider):
    """A configured provider (neither the API's default nor its no-op one) that counts
    the tracers asked of it."""

    def __init__(self) -> None:
        self.asked = 0

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        self.asked += 1
        return trace.NoOpTracer()


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> RecordingProvider:
    recording = RecordingProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: recording)
    return recording


def livez(app: FastAPI) -> None:
    with TestClient(app) as client:
        assert client.get("/livez").status_code == 200


def test_a_plain_app_would_trace_its_requests(provider: RecordingProvider) -> None:
    plain = FastAPI()
    plain.add_api_route("/livez", lambda: {"status": "alive"})
    livez(plain)
    assert provider.asked > 0


def test_the_service_asks_no_tracer_of_a_configured_provider(provider: RecordingProvider) -> None:
    livez(declare_api())
    assert provider.asked == 0
