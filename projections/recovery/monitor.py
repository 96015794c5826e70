"""The health monitor: one reconciler pass at start-up, then one every interval on the leader,
which also moves the current-status projection's checkpoint along the log every poll and
keeps the log's hash chain (chained every poll, a digest every interval)."""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ledger.settings import Settings
from projections.audit_chain.keeping import ChainKeeping
from projections.current_status.catchup import follow_log
from projections.recovery.leader import LeaderLock
from projections.recovery.reconciler import Reconciler, ReconcileReport

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 300.0


@dataclass(frozen=True, slots=True)
class MonitorTiming:
    interval_s: float = DEFAULT_INTERVAL_S
    """Between two periodic passes."""
    poll_s: float = 30.0
    """How often a follower tries to take the lead: at most one lease period."""

    @classmethod
    def of(cls, settings: Settings) -> "MonitorTiming":
        interval = settings.reconcile_interval_s
        return cls(interval_s=interval, poll_s=min(settings.lease_seconds, interval))


class HealthMonitor:
    def __init__(
        self,
        reconciler: Reconciler,
        leader: LeaderLock,
        timing: MonitorTiming | None = None,
        on_pass: Callable[[ReconcileReport], None] | None = None,
        on_leadership: Callable[[bool], None] | None = None,
        *,
        chain: ChainKeeping | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.leader = leader
        self.timing = timing or MonitorTiming()
        self.on_pass = on_pass or (lambda report: None)
        self.on_leadership = on_leadership or (lambda leading: None)
        self.chain = chain
        self.stop = threading.Event()

    def recover(self) -> ReconcileReport:
        """The start-up pass: every process runs it (writes are guarded, so it is safe)."""
        report = self.reconciler.run_once()
        self.on_pass(report)
        return report

    def run(self) -> None:
        """Loop until `stop` is set: lead when possible, reconcile every interval while leading."""
        leading: bool | None = None  # unknown until the first try
        next_pass = 0.0
        clock = 0.0
        try:
            while not self.stop.is_set():
                now_leading = self.leader.try_acquire()
                if now_leading != leading:
                    leading = now_leading
                    log.info("health monitor %s", "leads" if leading else "follows")
                    self.on_leadership(leading)
                    next_pass = clock
                if leading:
                    self._follow_log()
                if leading and clock >= next_pass:
                    self._pass()
                    next_pass = clock + self.timing.interval_s
                if leading and self.chain is not None:
                    self._keep_chain(clock)
                wait = min(self.timing.poll_s, self.timing.interval_s)
                if self.stop.wait(wait):
                    break
                clock += wait
        finally:
            self.leader.release()

    def _follow_log(self) -> None:
        try:
            follow_log(self.reconciler.service.store.engine)
        except Exception:
            log.exception("following the log failed; trying again next poll")

    def _keep_chain(self, clock: float) -> None:
        assert self.chain is not None
        try:
            self.chain.tick(clock, self.stop)
        except Exception:
            log.exception("keeping the audit chain failed; trying again next poll")

    def _pass(self) -> None:
        try:
            self.on_pass(self.reconciler.run_once())
        except Exception:
            log.exception("health monitor pass failed; trying again next interval")
