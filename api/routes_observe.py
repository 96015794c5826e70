"""Health, reconciliation, the event feed, and the frontend's old endpoints."""

from datetime import timedelta

from api.auth import OPERATE, READ
from api.bootstrap import Ledger
from api.endpoints import Call, Endpoint, int_query
from api.models import (
    CallerView,
    FeedView,
    HealthView,
    LegacyCleanupView,
    LegacyForceStartView,
    LegacyHealthView,
    ReconcileView,
)
from api.presenters import feed_event, health_view, reconcile_view
from api.problems import Problem
from ledger.store import FeedCursor
from projections.recovery.reconciler import ReconcileReport


def me(call: Call) -> CallerView:
    """Who the token belongs to and what it may do: the console hides what it may not."""
    caller = call.caller
    signed_in = caller.role is not None or not caller.tokens_required
    return CallerView(
        name=caller.name,
        role=caller.role,
        tokens_required=caller.tokens_required,
        signed_in=signed_in,
        can_operate=not caller.tokens_required or caller.role in OPERATE,
    )


def health(call: Call) -> HealthView:
    return health_view(call.ledger.health.check())


def _stale_after(call: Call) -> timedelta | None:
    minutes = call.query.get("max_age_minutes")
    if minutes is None or minutes == "":
        return None
    return timedelta(minutes=int_query(call, "max_age_minutes", 0, 0, 10_000_000))


def _dry_run(call: Call) -> bool:
    raw = (call.query.get("dry_run") or "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise Problem(422, "invalid-request", "dry_run must be true or false")
    return raw in ("true", "1")


def _reconcile(call: Call, dry_run: bool) -> ReconcileReport:
    return call.ledger.reconciler.run_once(dry_run=dry_run, stale_pending_after=_stale_after(call))


def reconcile(call: Call) -> ReconcileView:
    return reconcile_view(_reconcile(call, _dry_run(call)))


def feed_cursor(ledger: Ledger, raw: str) -> FeedCursor:
    """A cursor as clients send it: "1234-56", or "now" for only what comes next."""
    if raw == "now":
        return ledger.store.feed_head()
    try:
        return FeedCursor.parse(raw)
    except ValueError:
        raise Problem(
            422, "invalid-request", "after must be a cursor like 1234-56, or now"
        ) from None


def events(call: Call) -> FeedView:
    after = feed_cursor(call.ledger, call.query.get("after") or "0-0")
    page = call.ledger.store.read_feed(after, int_query(call, "limit", 100, 1, 1000))
    return FeedView(events=[feed_event(event) for event in page.events], next=str(page.next_cursor))


def legacy_health(call: Call) -> LegacyHealthView:
    report = call.ledger.health.check()
    return LegacyHealthView(
        healthy=report.healthy,
        orphaned_jobs=[orphan.job_id for orphan in report.orphaned],
        total_running_db=report.total_running,
        total_running_memory=report.total_running_alive,
    )


def legacy_force_start(call: Call) -> LegacyForceStartView:
    job_id = call.path["job_id"]
    started = call.ledger.force_starter.force_start(job_id, actor=call.caller.name)
    return LegacyForceStartView(success=True, job_id=job_id, queue_position=started.queue_position)


def legacy_cleanup(call: Call) -> LegacyCleanupView:
    if not call.query.get("max_age_minutes"):
        call = Call(
            call.ledger,
            call.caller,
            call.body,
            call.path,
            {**call.query, "max_age_minutes": "30"},
            call.headers,
        )
    report = _reconcile(call, dry_run=False)
    stale_pending = (
        {stale.job_id for stale in report.health.stale_pending} if report.health else set()
    )
    failed = report.of("mark_failed")
    return LegacyCleanupView(
        orphaned_marked_failed=[job for job in failed if job not in stale_pending],
        old_pending_marked_failed=[job for job in failed if job in stale_pending],
        old_queued_requeued=[],  # queued jobs live in the ledger: none is ever lost
    )


ENDPOINTS = [
    Endpoint(
        "GET", "/v1/me", READ, me, "the caller and what it may do", None, CallerView, public=True
    ),
    Endpoint("GET", "/v1/health", READ, health, "the health view", None, HealthView),
    Endpoint(
        "POST",
        "/v1/admin/reconcile",
        OPERATE,
        reconcile,
        "one reconciler pass",
        None,
        ReconcileView,
        200,
        ("dry_run", "max_age_minutes"),
    ),
    Endpoint(
        "GET",
        "/v1/events",
        READ,
        events,
        "the global event feed",
        None,
        FeedView,
        200,
        ("after", "limit"),
    ),
    Endpoint(
        "GET",
        "/api/training/health",
        READ,
        legacy_health,
        "old frontend: health",
        None,
        LegacyHealthView,
    ),
    Endpoint(
        "POST",
        "/api/training/{job_id}/force-start",
        OPERATE,
        legacy_force_start,
        "old frontend: force start",
        None,
        LegacyForceStartView,
    ),
    Endpoint(
        "POST",
        "/api/training/admin/cleanup",
        OPERATE,
        legacy_cleanup,
        "old frontend: cleanup",
        None,
        LegacyCleanupView,
        200,
        ("max_age_minutes",),
    ),
]
