"""JSON shapes of the ledger's answers, shared by the command line and HTTP."""

from datetime import datetime
from typing import Any

from ledger.state import JobState
from projections.health import HealthReport
from projections.reconciler import ReconcileReport


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def health_json(report: HealthReport) -> dict[str, Any]:
    return {
        "healthy": report.healthy,
        "orphaned_jobs": [
            {
                "job_id": orphan.job_id,
                "attempt": orphan.attempt,
                "worker": {
                    "worker_id": orphan.worker.worker_id,
                    "host": orphan.worker.host,
                    "pid": orphan.worker.pid,
                },
                "last_heartbeat_at": _time(orphan.last_heartbeat_at),
                "reason": str(orphan.reason),
            }
            for orphan in report.orphaned
        ],
        "stale_pending_jobs": [
            {"job_id": stale.job_id, "pending_since": _time(stale.pending_since)}
            for stale in report.stale_pending
        ],
        "queue_depth": report.queue_depth,
        "oldest_queued_age_s": report.oldest_queued_age_s,
        "total_running": report.total_running,
        "total_running_alive": report.total_running_alive,
        "checked_at": _time(report.checked_at),
    }


def reconcile_json(report: ReconcileReport) -> dict[str, Any]:
    return {
        "dry_run": report.dry_run,
        "actions": [
            {
                "job_id": action.job_id,
                "action": action.action,
                "reason": action.reason,
                "applied": action.applied,
                "skipped": action.skipped,
            }
            for action in report.actions
        ],
    }


def job_json(state: JobState, queue_position: int | None = None) -> dict[str, Any]:
    return {
        "job_id": state.job_id,
        "status": str(state.status),
        "version": state.version,
        "attempt": state.attempt,
        "priority": state.priority,
        "spec": state.spec,
        "created_at": _time(state.created_at),
        "updated_at": _time(state.updated_at),
        "queue_position": queue_position,
        "worker": None
        if state.worker_id is None
        else {"worker_id": state.worker_id, "host": state.worker_host, "pid": state.worker_pid},
        "failure_reason": state.failure_reason,
        "checkpoint": None
        if state.checkpoint_path is None
        else {"path": state.checkpoint_path, "step": state.checkpoint_step},
    }
