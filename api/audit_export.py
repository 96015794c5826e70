"""The audit log's events exported as JSON Lines or CSV, a batch at a time: the HTTP
route and the command line write the same lines."""

import csv
import io
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any

import orjson

from api.presenters import audit_event_fields
from ledger.audit_events import AuditEvent


class ExportFormat(StrEnum):
    JSON_LINES = "application/x-ndjson"
    CSV = "text/csv"

    @property
    def extension(self) -> str:
        return "jsonl" if self is ExportFormat.JSON_LINES else "csv"


CSV_COLUMNS: tuple[str, ...] = (
    "position",
    "recorded_at",
    "occurred_at",
    "job_id",
    "seq",
    "type",
    "status",
    "attempt",
    "actor",
    "reason",
    "correlation_id",
    "unreadable",
    "payload",
)
"""The columns of a CSV export, in order: the fields of `AuditEventView`, the payload as
its JSON."""


def exported_lines(format_: ExportFormat, batches: Iterable[list[AuditEvent]]) -> Iterator[bytes]:
    """`batches` as the lines of `format_` (a CSV's header first), one chunk per batch."""
    if format_ is ExportFormat.CSV:
        yield _csv_chunk([CSV_COLUMNS])
        for batch in batches:
            yield _csv_chunk(_csv_row(audit_event_fields(item)) for item in batch)
    else:
        for batch in batches:
            yield b"".join(
                orjson.dumps(audit_event_fields(item), option=orjson.OPT_APPEND_NEWLINE)
                for item in batch
            )


def _csv_row(fields: dict[str, Any]) -> list[object]:
    shown = {**fields, "payload": orjson.dumps(fields["payload"]).decode()}
    return [shown[column] for column in CSV_COLUMNS]


def _csv_chunk(rows: Iterable[Iterable[object]]) -> bytes:
    """RFC 4180 lines (CRLF; a field holding a quote, comma or line break is quoted)."""
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    return text.getvalue().encode()


def export_format(accept: str | None) -> ExportFormat | None:
    """The export format an `Accept` header asks for first, or None for a JSON page."""
    for item in (accept or "").split(","):
        media_type = item.split(";")[0].strip().lower()
        if media_type == "application/json":
            return None
        for format_ in ExportFormat:
            if media_type == format_.value:
                return format_
    return None
