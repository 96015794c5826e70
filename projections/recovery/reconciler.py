"""The reconciler: act on what the health view found, as events with actor `health-monitor`
(the monitor's passes) or the operator who asked for the pass.

Every write is guarded by the version the health view saw: if the job
completed, heartbeated into a new state or was touched by an operator in
between, the append conflicts and nothing is overwritten.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta

from ledger.commands import ForceStart, JobCommand, MarkFailed, SubmitJob
from ledger.decide import DEAD_RUN_REASON
from ledger.errors import CommandRefused, VersionConflict
from ledger.leases import lease_unleased_runs, prune_leases
from ledger.service import JobService
from ledger.trace_context import new_trace_id
from projections.recovery.health import HEALTH_PAGE, HealthCheck, HealthReport, OrphanedRun

log = logging.getLogger(__name__)

ACTOR = "health-monitor"
STALE_PENDING_REASON = "stuck in pending state"
AUTO_START_REASON = "pending too long: admitted to the queue"

MAX_BATCHES = 100
"""A pass acts on the health view's first page, then looks again, up to this many times:
a disaster of many dead runs is recovered a page at a time, each action its own
transaction, so the ledger keeps serving meanwhile."""


@dataclass(frozen=True, slots=True)
class Action:
    job_id: str
    action: str  # "mark_failed", "requeue" or "submit"
    reason: str
    applied: bool
    skipped: str | None = None
    """Why a planned action was not applied (the job changed meanwhile)."""
    about: str = "orphan"
    """What the health view found: an "orphan" run or a "stale_pending" job."""


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    dry_run: bool
    actions: list[Action] = field(default_factory=list)
    health: HealthReport | None = None
    seconds: float = 0.0
    """How long the pass took."""

    def of(self, action: str, *, applied: bool = True) -> list[str]:
        return [a.job_id for a in self.actions if a.action == action and a.applied == applied]

    def about(self, finding: str) -> list[str]:
        """The jobs acted on (or planned, in a dry run) for `finding`."""
        return [a.job_id for a in self.actions if a.about == finding]


@dataclass(frozen=True, slots=True)
class ReconcilerPolicy:
    auto_start_pending: bool = False
    """Admit stale pending jobs to the queue instead of failing them. Off: a pending
    job may be one its user never meant to run."""


class Reconciler:
    def __init__(
        self,
        service: JobService,
        health: HealthCheck,
        policy: ReconcilerPolicy | None = None,
    ) -> None:
        self.service = service
        self.health = health
        self.policy = policy or ReconcilerPolicy()
        self.observers: list[Callable[[ReconcileReport], None]] = []
        """Told of every pass that acted (not of dry runs), once it is done."""

    def run_once(
        self,
        *,
        dry_run: bool = False,
        stale_pending_after: timedelta | None = None,
        actor: str = ACTOR,
        max_batches: int = MAX_BATCHES,
        correlation_id: str | None = None,
    ) -> ReconcileReport:
        """One pass: fail (or retry) orphaned runs, fail (or admit) stale pending jobs.

        `actor` is recorded on every event the pass writes: the monitor's name for its
        own passes, the caller's for a pass an operator asked for; and `correlation_id`,
        the request's that asked for it, or a new trace id that names this pass."""
        correlation_id = correlation_id or new_trace_id()
        # Liveness data, not the log: a dry run gives them leases too, or it could not
        # see them. Every open run then holds one, and lapsed leases are all the health
        # view reads to find the dead.
        started = time.perf_counter()
        lease_unleased_runs(self.service.store, self.health.lease_seconds)
        actions: list[Action] = []
        first: HealthReport | None = None
        for _ in range(max_batches):
            report = self.health.check(stale_pending_after=stale_pending_after)
            first = first or report
            batch = [
                self._act(planned, dry_run, actor, correlation_id) for planned in self._plan(report)
            ]
            actions += batch
            full = max(len(report.orphaned), len(report.stale_pending)) >= HEALTH_PAGE
            if dry_run or not full or not any(action.applied for action in batch):
                break  # done, or a dry run's first page, or the next page would be this one
        if dry_run:
            return ReconcileReport(dry_run, actions, first, time.perf_counter() - started)
        prune_leases(self.service.store)
        done = ReconcileReport(dry_run, actions, first, time.perf_counter() - started)
        for observer in self.observers:
            observer(done)
        return done

    def _plan(self, report: HealthReport) -> list["_Planned"]:
        plan = [_orphan_plan(orphan) for orphan in report.orphaned]
        for stale in report.stale_pending:
            command: JobCommand
            if self.policy.auto_start_pending:
                action, command, reason = "submit", SubmitJob(), AUTO_START_REASON
            else:
                action, reason = "mark_failed", STALE_PENDING_REASON
                command = MarkFailed(reason=STALE_PENDING_REASON)
            planned = _Planned(stale.job_id, stale.version, action, command, reason)
            plan.append(replace(planned, about="stale_pending"))
        return plan

    def _act(self, planned: "_Planned", dry_run: bool, actor: str, correlation_id: str) -> Action:
        job_id, action, reason = planned.job_id, planned.action, planned.reason
        about = planned.about
        if dry_run:
            return Action(job_id, action, reason, applied=False, about=about)
        try:
            self.service.execute(
                job_id,
                planned.command,
                actor=actor,
                expected_version=planned.version,
                correlation_id=correlation_id,
            )
        except (VersionConflict, CommandRefused) as exc:
            log.info("reconciler left %s alone: %s", job_id, exc)
            return Action(job_id, action, reason, applied=False, skipped=str(exc), about=about)
        log.warning("reconciler (%s): %s %s (%s)", actor, action, job_id, reason)
        return Action(job_id, action, reason, applied=True, about=about)


@dataclass(frozen=True, slots=True)
class _Planned:
    job_id: str
    version: int
    """The version the health view saw: the write is guarded by it."""
    action: str
    command: JobCommand
    reason: str
    about: str = "orphan"


def _orphan_plan(orphan: OrphanedRun) -> _Planned:
    reason = f"{DEAD_RUN_REASON} ({orphan.reason})"
    if orphan.auto_retry and orphan.attempt < orphan.max_attempts:
        command: JobCommand = ForceStart(reason=reason, run_is_dead=True)
        return _Planned(orphan.job_id, orphan.version, "requeue", command, reason)
    return _Planned(orphan.job_id, orphan.version, "mark_failed", MarkFailed(reason=reason), reason)
