"""`GET /metrics`: commands by route and outcome, latencies, and the ledger's gauges."""

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from api.auth import READ, TokenBook
from api.bootstrap import Ledger
from ledger.database import driver_connection
from projections import current_status
from projections.checkpoints import read_checkpoint


class Metrics:
    """The registry of one app (never the process-global one)."""

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
        self.registry.register(_LedgerGauges(ledger))

    def observe(self, route: str, status: int, started: float) -> None:
        outcome = "ok" if status < 400 else ("client_error" if status < 500 else "server_error")
        self.requests.labels(route, outcome).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)


class _LedgerGauges(Collector):
    """Read at scrape time from the health view and the projection checkpoint."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = self.ledger.health.check()
        yield GaugeMetricFamily(
            "jobledger_running_jobs", "Jobs running in the ledger", value=report.total_running
        )
        yield GaugeMetricFamily(
            "jobledger_running_alive_jobs",
            "Running jobs whose run is alive",
            value=report.total_running_alive,
        )
        yield GaugeMetricFamily(
            "jobledger_queued_jobs", "Jobs in the queue", value=report.queue_depth
        )
        yield GaugeMetricFamily(
            "jobledger_orphaned_jobs", "Running jobs whose run is dead", value=len(report.orphaned)
        )
        yield GaugeMetricFamily(
            "jobledger_stale_pending_jobs", "Jobs pending too long", value=len(report.stale_pending)
        )
        with driver_connection(self.ledger.engine) as conn:
            checkpoint = read_checkpoint(conn, current_status.NAME)
        lag = 0
        if checkpoint is not None:
            lag = len(self.ledger.store.read_feed(checkpoint.cursor, 10_000).events)
        yield GaugeMetricFamily(
            "jobledger_projection_lag_events",
            "Events after the current-status checkpoint (up to 10,000)",
            value=lag,
        )


def metrics_endpoint(metrics: Metrics, tokens: TokenBook) -> Callable[[Request], Response]:
    def serve(request: Request) -> Response:
        tokens.caller(request, READ)
        return Response(generate_latest(metrics.registry), media_type="text/plain; version=0.0.4")

    return serve
