"""Plain text for the command line: tables, a job's history, the health report.

Text from the ledger (reasons, job ids, worker names) is anyone's input: it reaches
the terminal through `visible`, so no escape sequence, carriage return or
right-to-left override in it can rewrite or disguise what an operator reads.
"""

import unicodedata
from collections.abc import Sequence
from datetime import datetime

from ledger.queries import EXACT_COUNT
from projections.history import Transition
from projections.recovery.health import EXACT_PROBLEM_COUNT, HealthReport

HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
"""Controls, format characters (bidi overrides, zero-width), line and paragraph
separators, surrogates, private-use and unassigned code points."""
SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str) -> str:
    """`text` with every character a terminal would act on or hide written as an escape:
    ESC as `\\x1b`, a line feed as `\\n`, U+202E as `\\u202e`."""
    return "".join(_visible_char(char) for char in text)


def _visible_char(char: str) -> str:
    if char.isprintable() and unicodedata.category(char) not in HIDDEN_CATEGORIES:
        return char
    if char in SHORT_ESCAPES:
        return SHORT_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; every cell is made `visible`."""
    headers = [visible(header) for header in headers]
    rows = [[visible(cell) for cell in row] for row in rows]
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
        lines += _more(report.orphaned_count, len(report.orphaned), "orphaned runs")
    if report.stale_pending:
        rows = [[stale.job_id, _when(stale.pending_since)] for stale in report.stale_pending]
        lines += ["", render_table(["stale pending job", "pending since"], rows)]
        lines += _more(report.stale_pending_count, len(report.stale_pending), "stale pending jobs")
    if not report.counts_exact:
        lines += [
            "",
            f"counts of problems stop at {EXACT_PROBLEM_COUNT:,} ('more than'); "
            f"queued and running jobs past {EXACT_COUNT:,} are estimates",
        ]
    return "\n".join(lines)


def _more(count: int, shown: int, what: str) -> list[str]:
    """A line saying how many a table leaves out, when it does."""
    if count <= shown:
        return []
    total = f"more than {EXACT_PROBLEM_COUNT:,}" if count > EXACT_PROBLEM_COUNT else f"{count:,}"
    return [f"({shown} shown of {total} {what}, longest first)"]
