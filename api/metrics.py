"""`GET /metrics`: requests by route and outcome, latencies, the ledger's work
(`api.ledger_metrics`) and the gauges each scrape reads (`api.scrape_gauges`).

Requests are counted by a middleware around every route, labelled by the route's
template (`GET /v1/jobs/{job_id}`, never the path a client sent, so the labels stay
few) and by the class of the status the request was answered with.
"""

import time
from importlib.metadata import version

from fastapi import Request
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Reader
from api.bootstrap import Ledger
from api.bounded_read import BoundedRead
from api.ledger_metrics import LedgerMetrics
from api.routing import api_router
from api.scrape_gauges import Build, ProcessFigures, ScrapeGauges
from api.stream import streams_open
from ledger.database import pool_usage
from ledger.errors import StorageError
from ledger.migrate import head_revision
from projections.ledger_figures import LedgerFigures, read_ledger_figures


class Metrics:
    """The registry of one app (never the process-global one): its requests, the ledger's
    work as it is told of it, and the gauges each scrape reads."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
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
        self.work = LedgerMetrics(self.registry)
        ledger.store.observers.add(self.work)
        ledger.reconciler.observers.append(self.work.pass_completed)
        stale_pending_s = ledger.health.stale_pending_after.total_seconds()
        self.figures = BoundedRead(
            lambda: read_ledger_figures(ledger.engine, stale_pending_s),
            ledger.settings.probe_timeout_s,
        )
        self.build = Build(version("jobledger"), head_revision(ledger.url) or "none")
        self._series: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        """The counter and histogram of each route and outcome seen: `labels` finds them
        under a lock, each time, at several times the cost of counting."""

    def observe(self, route: str, status: int, started: float) -> None:
        """One request to `route`, answered with `status`, `started` by `time.perf_counter`."""
        outcome = "ok" if status < 400 else ("client_error" if status < 500 else "server_error")
        series = self._series.get((route, outcome))
        if series is None:
            series = (self.requests.labels(route, outcome), self.latency.labels(route))
            self._series[route, outcome] = series
        requests, latency = series
        requests.inc()
        latency.observe(time.perf_counter() - started)

    async def exposition(self, streams_open: int) -> bytes:
        """Everything a scrape shows: the requests and the ledger's work, then the gauges
        as read now (the ledger's figures, or only that the database did not answer within
        the probe timeout), with the app's `streams_open`."""
        try:
            figures: LedgerFigures | None = await self.figures()
        except (TimeoutError, StorageError):
            figures = None
        in_use, waiting = pool_usage(self.ledger.engine)
        process = ProcessFigures(in_use, waiting, streams_open)
        gauges = CollectorRegistry(auto_describe=False)
        gauges.register(ScrapeGauges(figures, process, self.build))
        return generate_latest(self.registry) + generate_latest(gauges)


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
    return PrometheusText(await metrics_of(request).exposition(streams_open(request)))
