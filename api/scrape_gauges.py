"""The gauges a scrape reads as it is made: the ledger's figures (one bounded statement),
and what this process holds now (its pool's connections, its open event streams, its
build)."""

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from projections.current_status.lag import LAG_SCAN
from projections.ledger_figures import EXACT_JOBS, EXACT_PROBLEMS, LedgerFigures


@dataclass(frozen=True, slots=True)
class ProcessFigures:
    """What this process holds at the scrape."""

    pool_in_use: int
    pool_waiting: int
    streams_open: int


@dataclass(frozen=True, slots=True)
class Build:
    version: str
    schema_revision: str


class ScrapeGauges(Collector):
    """The gauges of one scrape. Without the ledger's figures (the database did not answer
    within the probe timeout) only `jobledger_database_up 0` of them: no figure is shown
    that was not read for this scrape (exporters do the same: `pg_up`, `mysql_up`)."""

    def __init__(
        self, figures: LedgerFigures | None, process: ProcessFigures, build: Build
    ) -> None:
        self.figures = figures
        self.process = process
        self.build = build

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "jobledger_build_info",
            "Always 1: the version of JobLedger serving, and the schema revision it needs",
            labels=["version", "schema_revision"],
        )
        info.add_metric([self.build.version, self.build.schema_revision], 1)
        yield info
        process = self.process
        yield GaugeMetricFamily(
            "jobledger_pool_connections_in_use",
            "Database connections of this process's pool handed out now",
            value=process.pool_in_use,
        )
        yield GaugeMetricFamily(
            "jobledger_pool_waiting",
            "Callers waiting for a connection of this process's pool now",
            value=process.pool_waiting,
        )
        yield GaugeMetricFamily(
            "jobledger_event_streams_open",
            "Event streams (GET /v1/events/stream) this process serves now",
            value=process.streams_open,
        )
        figures = self.figures
        yield GaugeMetricFamily(
            "jobledger_database_up",
            "1 when this scrape read the ledger's figures from the database, else 0",
            value=0 if figures is None else 1,
        )
        if figures is not None:
            yield from _ledger_gauges(figures)


def _ledger_gauges(figures: LedgerFigures) -> Iterator[GaugeMetricFamily]:
    jobs = f"exact up to {EXACT_JOBS:,}, then the statistics' estimate"
    problems = f"exact up to {EXACT_PROBLEMS:,}, then {EXACT_PROBLEMS + 1:,}"
    gauges = (
        ("jobledger_queued_jobs", f"Jobs in the queue ({jobs})", figures.queued),
        (
            "jobledger_oldest_queued_age_seconds",
            "Seconds the longest-queued job has waited (0 when the queue is empty)",
            figures.oldest_queued_age_s or 0.0,
        ),
        ("jobledger_running_jobs", f"Jobs running ({jobs})", figures.running),
        (
            "jobledger_running_alive_jobs",
            "Running jobs whose lease holds",
            figures.running_alive,
        ),
        (
            "jobledger_orphaned_jobs",
            f"Running or paused jobs whose run's lease lapsed ({problems})",
            figures.orphaned,
        ),
        (
            "jobledger_stale_pending_jobs",
            f"Jobs pending longer than the threshold ({problems})",
            figures.stale_pending,
        ),
        (
            "jobledger_unreadable_events",
            f"Events of the log this code could not read or apply ({problems})",
            figures.unreadable_events,
        ),
        (
            "jobledger_monitor_leaders",
            "Processes holding the health monitor's leadership on this ledger (0 or 1), "
            "read from the database's locks",
            figures.monitor_leaders,
        ),
        (
            "jobledger_projection_lag_events",
            "Events of the log the current-status projection has not applied (among the "
            f"first {LAG_SCAN:,} after its checkpoint)",
            figures.projection_lag,
        ),
    )
    for name, documentation, value in gauges:
        yield GaugeMetricFamily(name, documentation, value=value)
