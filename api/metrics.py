"""`GET /metrics`: requests by route and outcome, latencies, and the ledger's gauges.

Requests are counted by a middleware around every route, labelled by the route's
template (`GET /v1/jobs/{job_id}`, never the path a client sent, so the labels stay
few) and by the class of the status the request was answered with.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Request
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Reader
from api.bootstrap import Ledger
from api.bounded_read import BoundedRead
from api.routing import api_router
from ledger.database import driver_connection
from ledger.errors import StorageError
from projections import current_status
from projections.checkpoints import read_checkpoint


class Metrics:
    """The registry of one app (never the process-global one), and the ledger's figures."""

    def __init__(self, ledger: Ledger) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "jobledger_requests",
            "HTTP requests by route and outcome",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "jobledger_request_seconds",
            "HTTP request latency by route",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.figures = BoundedRead(
            lambda: read_ledger_figures(ledger), ledger.settings.probe_timeout_s
        )

    def observe(self, route: str, status: int, started: float) -> None:
        """One request to `route`, answered with `status`, `started` by `time.perf_counter`."""
        outcome = "ok" if status < 400 else ("client_error" if status < 500 else "server_error")
        self.requests.labels(route, outcome).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)

    async def exposition(self) -> bytes:
        """Everything a scrape shows: the requests, then the ledger's figures as read now,
        or only that the database did not answer within the probe timeout."""
        try:
            figures: LedgerFigures | None = await self.figures()
        except (TimeoutError, StorageError):
            figures = None
        ledger = CollectorRegistry(auto_describe=False)
        ledger.register(_LedgerGauges(figures))
        return generate_latest(self.registry) + generate_latest(ledger)


@dataclass(frozen=True, slots=True)
class LedgerFigures:
    running: int
    running_alive: int
    queued: int
    orphaned: int
    stale_pending: int
    unreadable_events: int
    projection_lag: int


def read_ledger_figures(ledger: Ledger) -> LedgerFigures:
    """The health view and the projection's lag, read from the database (blocking)."""
    report = ledger.health.check()
    with driver_connection(ledger.engine) as conn:
        checkpoint = read_checkpoint(conn, current_status.NAME)
    lag = 0
    if checkpoint is not None:
        lag = len(ledger.store.read_feed(checkpoint.cursor, 10_000).events)
    return LedgerFigures(
        running=report.total_running,
        running_alive=report.total_running_alive,
        queued=report.queue_depth,
        orphaned=report.orphaned_count,
        stale_pending=report.stale_pending_count,
        unreadable_events=report.unreadable_events,
        projection_lag=lag,
    )


class _LedgerGauges(Collector):
    """The figures of one scrape. Without them (the database did not answer) only
    `jobledger_database_up 0`: the requests are still counted, and no figure is shown
    that was not read for this scrape (exporters do the same: `pg_up`, `mysql_up`)."""

    def __init__(self, figures: LedgerFigures | None) -> None:
        self.figures = figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self.figures
        yield GaugeMetricFamily(
            "jobledger_database_up",
            "1 when this scrape read the ledger's figures from the database, else 0",
            value=0 if figures is None else 1,
        )
        if figures is None:
            return
        yield GaugeMetricFamily(
            "jobledger_running_jobs", "Jobs running in the ledger", value=figures.running
        )
        yield GaugeMetricFamily(
            "jobledger_running_alive_jobs",
            "Running jobs whose run is alive",
            value=figures.running_alive,
        )
        yield GaugeMetricFamily("jobledger_queued_jobs", "Jobs in the queue", value=figures.queued)
        yield GaugeMetricFamily(
            "jobledger_orphaned_jobs", "Running jobs whose run is dead", value=figures.orphaned
        )
        yield GaugeMetricFamily(
            "jobledger_stale_pending_jobs", "Jobs pending too long", value=figures.stale_pending
        )
        yield GaugeMetricFamily(
            "jobledger_unreadable_events",
            "Events of the log this code could not read or apply",
            value=figures.unreadable_events,
        )
        yield GaugeMetricFamily(
            "jobledger_projection_lag_events",
            "Events after the current-status checkpoint (up to 10,000)",
            value=figures.projection_lag,
        )


class RequestMetrics:
    """Counts and times every request (a pure ASGI middleware).

    Latency runs to the start of the answer: for the event stream, to its opening.
    A request whose handler raised is counted as the 500 it is answered with."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        async def observing(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                self.metrics.observe(route_label(scope), message["status"], started)
            await send(message)

        try:
            await self.app(scope, receive, observing)
        finally:
            if not answered:
                self.metrics.observe(route_label(scope), 500, started)


def route_label(scope: Scope) -> str:
    """The method and template of the API route that answered (`GET /v1/jobs/{job_id}`);
    "other" for the routes outside the API (the document, the console's files), and
    "unrouted" when no route matched."""
    route: BaseRoute | None = scope.get("route")
    if isinstance(route, APIRoute):
        method = scope["method"] if scope["method"] in (route.methods or ()) else "OTHER"
        return f"{method} {route.path}"
    return "other" if "endpoint" in scope else "unrouted"


def metrics_of(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


router = api_router(401, 403, 503)


class PrometheusText(Response):
    media_type = "text/plain; version=0.0.4"


@router.get("/metrics", summary="Prometheus metrics", response_class=PrometheusText)
async def scrape(caller: Reader, request: Request) -> Response:
    """Always answers (within the probe timeout): while the database is away, with the
    request metrics and `jobledger_database_up 0`."""
    return PrometheusText(await metrics_of(request).exposition())
