"""The reconciler: act on what the health view found, as events with actor `health-monitor`
(the monitor's passes) or the operator who asked for the pass.

Every write is guarded by the version the health view saw: if the job
completed, heartbeated into a new state or was touched by an operator in
between, the append conflicts and nothing is overwritten.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from ledger.commands import ForceStart, JobCommand, MarkFailed, SubmitJob
from ledger.decide import DEAD_RUN_REASON
from ledger.errors import CommandRefused, VersionConflict
from ledger.leases import prune_leases
from ledger.service import JobService
from projections.recovery.health import HealthCheck, HealthReport, OrphanedRun

log = logging.getLogger(__name__)

ACTOR = "health-monitor"
STALE_PENDING_REASON = "stuck in pending state"
AUTO_START_REASON = "pending too long: admitted to the queue"


@dataclass(frozen=True, slots=True)
class Action:
    job_id: str
    action: str  # "mark_failed", "requeue" or "submit"
    reason: str
    applied: bool
    skipped: str | None = None
    """Why a planned action was not applied (the job changed meanwhile)."""


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    dry_run: bool
    actions: list[Action] = field(default_factory=list)
    health: HealthReport | None = None

    def of(self, action: str, *, applied: bool = True) -> list[str]:
        return [a.job_id for a in self.actions if a.action == action and a.applied == applied]


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

    def run_once(
        self,
        *,
        dry_run: bool = False,
        stale_pending_after: timedelta | None = None,
        actor: str = ACTOR,
    ) -> ReconcileReport:
        """One pass: fail (or retry) orphaned runs, fail (or admit) stale pending jobs.

        `actor` is recorded on every event the pass writes: the monitor's name for its
        own passes, the caller's for a pass an operator asked for."""
        report = self.health.check(stale_pending_after=stale_pending_after)
        plan = [_orphan_plan(orphan) for orphan in report.orphaned]
        for stale in report.stale_pending:
            if self.policy.auto_start_pending:
                plan.append(
                    _Planned(stale.job_id, stale.version, "submit", SubmitJob(), AUTO_START_REASON)
                )
            else:
                failed = MarkFailed(reason=STALE_PENDING_REASON)
                plan.append(
                    _Planned(
                        stale.job_id, stale.version, "mark_failed", failed, STALE_PENDING_REASON
                    )
                )
        actions = [self._act(planned, dry_run, actor) for planned in plan]
        if not dry_run:
            prune_leases(self.service.store)
        return ReconcileReport(dry_run, actions, report)

    def _act(self, planned: "_Planned", dry_run: bool, actor: str) -> Action:
        job_id, action, reason = planned.job_id, planned.action, planned.reason
        if dry_run:
            return Action(job_id, action, reason, applied=False)
        try:
            self.service.execute(
                job_id, planned.command, actor=actor, expected_version=planned.version
            )
        except (VersionConflict, CommandRefused) as exc:
            log.info("reconciler left %s alone: %s", job_id, exc)
            return Action(job_id, action, reason, applied=False, skipped=str(exc))
        log.warning("reconciler (%s): %s %s (%s)", actor, action, job_id, reason)
        return Action(job_id, action, reason, applied=True)


@dataclass(frozen=True, slots=True)
class _Planned:
    job_id: str
    version: int
    """The version the health view saw: the write is guarded by it."""
    action: str
    command: JobCommand
    reason: str


def _orphan_plan(orphan: OrphanedRun) -> _Planned:
    reason = f"{DEAD_RUN_REASON} ({orphan.reason})"
    if orphan.auto_retry and orphan.attempt < orphan.max_attempts:
        command: JobCommand = ForceStart(reason=reason, run_is_dead=True)
        return _Planned(orphan.job_id, orphan.version, "requeue", command, reason)
    return _Planned(orphan.job_id, orphan.version, "mark_failed", MarkFailed(reason=reason), reason)
