"""Plain text for the command line: tables, a job's history, the health report."""

from collections.abc import Sequence
from datetime import datetime

from projections.history import Transition
from projections.recovery.health import HealthReport


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in (headers, ["-" * width for width in widths], *rows)
    ]
    return "\n".join(lines)


def render_history(history: Sequence[Transition]) -> str:
    rows = [
        [
            _when(item.event.recorded_at),
            str(item.event.seq),
            item.event.type,
            f"{item.from_status or '-'} -> {item.to_status}",
            str(item.event.attempt),
            item.event.actor,
            item.event.reason or "",
        ]
        for item in history
    ]
    headers = ["when", "seq", "event", "from -> to", "attempt", "actor", "reason"]
    return render_table(headers, rows)


def _when(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="milliseconds")


def render_health(report: HealthReport) -> str:
    lines = [
        f"healthy: {'yes' if report.healthy else 'no'}  (checked {_when(report.checked_at)})",
        f"running: {report.total_running} in the ledger, {report.total_running_alive} alive",
        f"queue: {report.queue_depth} job(s)"
        + (
            f", oldest waiting {report.oldest_queued_age_s:.0f} s"
            if report.oldest_queued_age_s is not None
            else ""
        ),
    ]
    if report.orphaned:
        rows = [
            [
                orphan.job_id,
                str(orphan.attempt),
                orphan.worker.worker_id or "",
                f"{orphan.worker.host}:{orphan.worker.pid}",
                _when(orphan.last_heartbeat_at) if orphan.last_heartbeat_at else "never",
                str(orphan.reason),
            ]
            for orphan in report.orphaned
        ]
        headers = ["orphaned job", "attempt", "worker", "host:pid", "last heartbeat", "reason"]
        lines += ["", render_table(headers, rows)]
    if report.stale_pending:
        rows = [[stale.job_id, _when(stale.pending_since)] for stale in report.stale_pending]
        lines += ["", render_table(["stale pending job", "pending since"], rows)]
    return "\n".join(lines)
