"""Plain-text tables for the command line."""

from collections.abc import Sequence
from datetime import datetime

from projections.history import Transition


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
