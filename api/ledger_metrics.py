"""The ledger's work as Prometheus counters: events appended, commands refused, claims and
their waits, heartbeats, reconciler passes and the monitor's leadership.

Every label takes one of a few values known in advance (an event type, an error's kind, an
action), never a job's id or a caller's name; the known ones are shown at 0 from the start,
so a rate over them is defined before the first one happens.
"""

import collections
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ledger.errors import IllegalTransition, StaleAttempt, VersionConflict
from ledger.events import EVENT_CLASSES
from ledger.telemetry import LedgerObserver
from projections.recovery.reconciler import ReconcileReport

REFUSALS_SHOWN_AT_ZERO = (VersionConflict.kind, IllegalTransition.kind, StaleAttempt.kind)

CLAIM_WAIT_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
"""Seconds a job was queued before its claim: from a busy worker pool's sub-second waits to
a queue that waits a day."""

PASS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class LedgerMetrics(LedgerObserver):
    """The counters, in `registry`: kept as the ledger tells of its work."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "jobledger_events_appended",
            "Events appended to the log by this process, by type",
            ["type"],
            registry=registry,
        )
        self.refusals = Counter(
            "jobledger_commands_refused",
            "Commands refused, by the kind of refusal (version-conflict, illegal-transition, "
            "stale-attempt for a fenced run, ...)",
            ["kind"],
            registry=registry,
        )
        self.claims = Counter(
            "jobledger_claims",
            "Claims and starts of queued jobs: started a job, or found the queue empty",
            ["outcome"],
            registry=registry,
        )
        self.claim_wait = Histogram(
            "jobledger_claim_wait_seconds",
            "How long a job was queued before a claim started it",
            registry=registry,
            buckets=CLAIM_WAIT_BUCKETS,
        )
        self.heartbeats = Counter(
            "jobledger_heartbeats",
            "Heartbeats: renewed their run's lease, or fenced (not the job's current run)",
            ["outcome"],
            registry=registry,
        )
        self.passes = Counter(
            "jobledger_reconciler_passes",
            "Reconciler passes this process made (not dry runs)",
            registry=registry,
        )
        self.pass_seconds = Histogram(
            "jobledger_reconciler_pass_seconds",
            "How long a reconciler pass took",
            registry=registry,
            buckets=PASS_BUCKETS,
        )
        self.actions = Counter(
            "jobledger_reconciler_actions",
            "What reconciler passes did: the action, what it was about (orphan or "
            "stale_pending), and whether it was applied or skipped (the job changed)",
            ["action", "finding", "outcome"],
            registry=registry,
        )
        self.leader = Gauge(
            "jobledger_monitor_leader",
            "1 while this process holds the health monitor's leadership, else 0",
            registry=registry,
        )
        for event_type in EVENT_CLASSES:
            self.events.labels(event_type)
        for kind in REFUSALS_SHOWN_AT_ZERO:
            self.refusals.labels(kind)
        for outcome in ("claimed", "empty"):
            self.claims.labels(outcome)
        for outcome in ("renewed", "fenced"):
            self.heartbeats.labels(outcome)

    def events_appended(self, event_types: Sequence[str]) -> None:
        if len(event_types) == 1:
            self.events.labels(event_types[0]).inc()
            return
        for event_type, count in collections.Counter(event_types).items():
            self.events.labels(event_type).inc(count)

    def command_refused(self, kind: str) -> None:
        self.refusals.labels(kind).inc()

    def claim_made(self, waited_s: float | None) -> None:
        if waited_s is None:
            self.claims.labels("empty").inc()
            return
        self.claims.labels("claimed").inc()
        self.claim_wait.observe(waited_s)

    def heartbeat_received(self, *, fenced: bool) -> None:
        self.heartbeats.labels("fenced" if fenced else "renewed").inc()

    def pass_completed(self, report: ReconcileReport) -> None:
        self.passes.inc()
        self.pass_seconds.observe(report.seconds)
        for action in report.actions:
            outcome = "applied" if action.applied else "skipped"
            self.actions.labels(action.action, action.about, outcome).inc()

    def leadership_changed(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)
