"""Who is calling, health, reconciliation, the event feed, probes, and the frontend's old
endpoints."""

from datetime import timedelta
from typing import Annotated

from fastapi import Query, Request
from starlette.responses import Response

from api.auth import OPERATE, Caller, Operator, Reader, Visitor
from api.bootstrap import Ledger
from api.correlation import CorrelationId
from api.models import (
    CallerView,
    FeedView,
    HealthView,
    LegacyCleanupView,
    LegacyForceStartView,
    LegacyHealthView,
    ProbeView,
    ReconcileView,
)
from api.params import BlankIsAbsent, FeedAfter, JobId, TheLedger
from api.presenters import feed_event, health_view, reconcile_view
from api.problems import RETRY_AFTER_S
from api.readiness import Readiness
from api.responses import json_response
from api.routing import api_router
from ledger.store import FeedCursor
from projections.recovery.reconciler import ReconcileReport

router = api_router(401, 403, 404, 409, 422, 503)
probes = api_router()

STALE_AFTER = Query(ge=0, le=10_000_000, description="pending longer than this is stale")


@router.get(
    "/v1/me",
    summary="the caller and what it may do",
    response_model=CallerView,
    # A token is optional here: without one, the answer says whether one is needed.
    openapi_extra={"security": [{}]},
)
async def me(caller: Visitor) -> Response:
    """Who the token belongs to and what it may do: the console hides what it may not."""
    signed_in = caller.role is not None or not caller.tokens_required
    view = CallerView(
        name=caller.name,
        role=caller.role,
        tokens_required=caller.tokens_required,
        signed_in=signed_in,
        can_operate=not caller.tokens_required or caller.role in OPERATE,
    )
    return json_response(view)


@router.get("/v1/health", summary="the health view", response_model=HealthView)
def health(caller: Reader, ledger: TheLedger) -> Response:
    return json_response(health_view(ledger.health.check()))


@router.post("/v1/admin/reconcile", summary="one reconciler pass", response_model=ReconcileView)
def reconcile(
    caller: Operator,
    ledger: TheLedger,
    correlation: CorrelationId,
    dry_run: Annotated[bool, Query(description="plan only: change nothing"), BlankIsAbsent] = False,
    max_age_minutes: Annotated[int | None, STALE_AFTER, BlankIsAbsent] = None,
) -> Response:
    report = _reconcile(ledger, caller, correlation, dry_run, max_age_minutes)
    return json_response(reconcile_view(report))


def _reconcile(
    ledger: Ledger,
    caller: Caller,
    correlation: str | None,
    dry_run: bool,
    max_age_minutes: int | None,
) -> ReconcileReport:
    """A pass the caller asked for: its events are the caller's, and the request's."""
    stale_after = None if max_age_minutes is None else timedelta(minutes=max_age_minutes)
    return ledger.reconciler.run_once(
        dry_run=dry_run,
        stale_pending_after=stale_after,
        actor=caller.name,
        correlation_id=correlation,
    )


def feed_cursor(ledger: Ledger, after: str) -> FeedCursor:
    """A cursor as clients send it (checked by `FeedAfter`): "1234-56", or "now" for only
    what comes next."""
    return ledger.store.feed_head() if after == "now" else FeedCursor.parse(after)


@router.get("/v1/events", summary="the global event feed", response_model=FeedView)
def events(
    caller: Reader,
    ledger: TheLedger,
    after: Annotated[FeedAfter, Query(description="a cursor, or now"), BlankIsAbsent] = "0-0",
    limit: Annotated[int, Query(ge=1, le=1000), BlankIsAbsent] = 100,
) -> Response:
    page = ledger.store.read_feed(feed_cursor(ledger, after), limit, specs=False)
    view = FeedView(
        events=[feed_event(event, page.spec_bytes.get(event[:2])) for event in page.events],
        next=str(page.next_cursor),
    )
    return json_response(view)


@router.get("/api/training/health", summary="old frontend: health", response_model=LegacyHealthView)
def legacy_health(caller: Reader, ledger: TheLedger) -> Response:
    report = ledger.health.check()
    view = LegacyHealthView(
        healthy=report.healthy,
        orphaned_jobs=[orphan.job_id for orphan in report.orphaned],
        total_running_db=report.total_running,
        total_running_memory=report.total_running_alive,
    )
    return json_response(view)


@router.post(
    "/api/training/{job_id}/force-start",
    summary="old frontend: force start",
    response_model=LegacyForceStartView,
)
def legacy_force_start(
    job_id: JobId, caller: Operator, ledger: TheLedger, correlation: CorrelationId
) -> Response:
    started = ledger.force_starter.force_start(
        job_id, actor=caller.name, correlation_id=correlation
    )
    view = LegacyForceStartView(success=True, job_id=job_id, queue_position=started.queue_position)
    return json_response(view)


@router.post(
    "/api/training/admin/cleanup",
    summary="old frontend: cleanup",
    response_model=LegacyCleanupView,
)
def legacy_cleanup(
    caller: Operator,
    ledger: TheLedger,
    correlation: CorrelationId,
    max_age_minutes: Annotated[int, STALE_AFTER, BlankIsAbsent] = 30,
) -> Response:
    report = _reconcile(ledger, caller, correlation, False, max_age_minutes)
    stale_pending = set(report.about("stale_pending"))
    failed = report.of("mark_failed")
    view = LegacyCleanupView(
        orphaned_marked_failed=[job for job in failed if job not in stale_pending],
        old_pending_marked_failed=[job for job in failed if job in stale_pending],
        old_queued_requeued=[],  # queued jobs live in the ledger: none is ever lost
    )
    return json_response(view)


@probes.get("/livez", summary="the process answers", response_model=ProbeView)
async def livez() -> Response:
    return json_response(ProbeView(status="alive"))


@probes.get(
    "/readyz",
    summary="ready to serve",
    response_model=ProbeView,
    responses={503: {"description": "not ready", "model": ProbeView}},
)
async def readyz(request: Request) -> Response:
    """Database reachable, schema current, projections built by this code's version: only
    whether, never why not (the log says why). Answers within the probe timeout."""
    readiness: Readiness = request.app.state.readiness
    if await readiness.ready():
        return json_response(ProbeView(status="ready"))
    retry = {"Retry-After": str(RETRY_AFTER_S)}
    return json_response(ProbeView(status="unavailable"), 503, retry)
