"""Questions across jobs for auditors: the log's events filtered, a page at a time or
exported whole as JSON Lines or CSV."""

from itertools import chain, islice
from typing import Annotated

from fastapi import Header, Query, Request
from starlette.responses import Response, StreamingResponse

from api.audit_export import ExportFormat, export_format, exported_lines
from api.auth import Reader
from api.models import AuditEventsView
from api.params import BlankIsAbsent, StoredText, TheLedger
from api.presenters import audit_event_view
from api.responses import json_response
from api.routing import api_router
from ledger.audit_events import MAX_PAGE, AuditCursor, AuditFilter, AuditLog, Clock, parse_moment
from ledger.statuses import JobStatus

router = api_router(401, 403, 422, 503)

Text = Annotated[str, StoredText]
MOMENT = "an RFC 3339 time (2026-11-01T00:00:00Z) or a date (its midnight, UTC)"

EXPORTS = {format_.value: {"schema": {"type": "string"}, "example": ""} for format_ in ExportFormat}


@router.get(
    "/v1/audit/events",
    summary="events across jobs: filtered, paged, or exported",
    response_model=AuditEventsView,
    responses={200: {"content": EXPORTS}},
)
def audit_events(
    *,
    caller: Reader,
    ledger: TheLedger,
    request: Request,
    actor: Annotated[Text | None, Query(description="caused by this actor"), BlankIsAbsent] = None,
    not_actor: Annotated[
        list[Text], Query(description="not caused by this actor (repeatable)")
    ] = [],  # noqa: B006 - FastAPI copies a default list
    types: Annotated[
        list[Text], Query(alias="type", description="of this event type (repeatable)")
    ] = [],  # noqa: B006
    status: Annotated[
        list[JobStatus], Query(description="moving its job to this status (repeatable)")
    ] = [],  # noqa: B006
    job_id: Annotated[Text | None, Query(description="of this job"), BlankIsAbsent] = None,
    job_id_prefix: Annotated[
        Text | None, Query(description="of jobs whose id starts with this"), BlankIsAbsent
    ] = None,
    clock: Annotated[
        Clock,
        Query(description="the time filtered and ordered by (occurred_at: events that have one)"),
        BlankIsAbsent,
    ] = Clock.RECORDED,
    since: Annotated[Text | None, Query(description=f"from: {MOMENT}"), BlankIsAbsent] = None,
    until: Annotated[Text | None, Query(description=f"before: {MOMENT}"), BlankIsAbsent] = None,
    cursor: Annotated[
        Text | None, Query(description="the next_cursor of the page before"), BlankIsAbsent
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE), BlankIsAbsent] = 100,
    accept: Annotated[
        str | None,
        Header(description="application/x-ndjson or text/csv: every matching event, streamed"),
    ] = None,
) -> Response:
    """Events in time order on the chosen clock (then by position in the log). As JSON,
    a page with the link to the next; as JSON Lines or CSV, every event the filter
    matches (after `cursor`), streamed in constant memory."""
    question = AuditFilter(
        actor=actor,
        not_actors=tuple(not_actor),
        types=tuple(types),
        statuses=tuple(status),
        job_id=job_id,
        job_id_prefix=job_id_prefix,
        clock=clock,
        since=parse_moment("since", since) if since else None,
        until=parse_moment("until", until) if until else None,
    )
    after = AuditCursor.parse(cursor, clock) if cursor else None
    audit = AuditLog(ledger.store)
    format_ = export_format(accept)
    if format_ is not None:
        batches = audit.batches(question, after)
        first = list(islice(batches, 1))  # read here: a failure is still a problem answer
        name = f"audit-events.{format_.extension}"
        return StreamingResponse(
            exported_lines(format_, chain(first, batches)),
            media_type=format_.value,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    page = audit.page(question, after, limit)
    next_cursor = None if page.next_cursor is None else str(page.next_cursor)
    link = None
    if next_cursor is not None:
        url = request.url.include_query_params(cursor=next_cursor)
        link = f"{url.path}?{url.query}"
    view = AuditEventsView(
        events=[audit_event_view(item) for item in page.events], next_cursor=next_cursor, next=link
    )
    return json_response(view, headers={"Link": f'<{link}>; rel="next"'} if link else None)
