"""Turning ledger answers into the API's response models."""

from datetime import datetime
from typing import Any

from api.models import (
    ActionView,
    AuditDigestView,
    AuditEventView,
    CheckpointView,
    ClaimView,
    FeedEvent,
    HealthView,
    HistoryEvent,
    HistoryView,
    JobFields,
    JobView,
    OrphanView,
    PastJobList,
    PastJobView,
    ReconcileView,
    StalePendingView,
    WorkerView,
)
from ledger.audit_events import AuditEvent
from ledger.commands import WorkerIdentity
from ledger.events import JobEvent, RecordedEvent, UnreadableEvent, shown_payload
from ledger.queries import EXACT_QUEUE_POSITIONS
from ledger.queue import Claim
from ledger.state import JobState
from ledger.store import FeedCursor
from projections.audit_chain.digest import Digest
from projections.current_status.as_of import PastJobsPage
from projections.history import Transition
from projections.job_readings import JobReading
from projections.recovery.health import HealthReport
from projections.recovery.reconciler import ReconcileReport


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def audit_digest_view(digest: Digest) -> AuditDigestView:
    """A digest as `jobledger audit digest` prints it and `verify` reads it."""
    return AuditDigestView.model_validate(digest.document())


def worker_view(worker: WorkerIdentity) -> WorkerView:
    """Which process on which host runs (or ran) an attempt: the fields of the identity
    that `WorkerView` shows."""
    return WorkerView.model_validate(worker)


def _job_fields(state: JobState) -> dict[str, Any]:
    """The fields of `JobFields`, from the job's state."""
    return {
        "job_id": state.job_id,
        "status": state.status,
        "version": state.version,
        "attempt": state.attempt,
        "priority": state.priority,
        "spec": state.spec,
        "created_at": state.created_at.isoformat(),
        "updated_at": state.updated_at.isoformat(),
        "status_changed_at": state.status_changed_at.isoformat(),
        "worker": None if state.worker is None else worker_view(state.worker),
        "failure_reason": state.failure_reason,
        "checkpoint": None
        if state.checkpoint_path is None
        else CheckpointView(path=state.checkpoint_path, step=state.checkpoint_step),
    }


def job_view(reading: JobReading) -> JobView:
    """The job as clients see it, with its queue position and health."""
    judged = reading.health
    return JobView(
        **_job_fields(reading.state),
        queue_position=reading.queue_position,
        queued_behind_more_than=EXACT_QUEUE_POSITIONS if reading.behind_the_front else None,
        last_heartbeat_at=iso(judged.last_heartbeat_at),
        health=judged.label,  # type: ignore[arg-type]
        health_reason=judged.reason,
    )


def recorded_job_view(state: JobState) -> JobFields:
    """The job as a command recorded it, without what a read adds (queue position, health)."""
    return JobFields(**_job_fields(state))


def past_job_view(state: JobState, as_of: datetime) -> PastJobView:
    """The job as it was at `as_of`."""
    return PastJobView(**_job_fields(state), as_of=as_of.isoformat())


def past_job_list(page: PastJobsPage) -> PastJobList:
    return PastJobList(
        jobs=[past_job_view(state, page.as_of) for state in page.jobs],
        next_cursor=str(page.next_cursor) if page.next_cursor else None,
        as_of=page.as_of.isoformat(),
    )


def claim_view(claim: Claim, reading: JobReading, lease_seconds: float) -> ClaimView:
    """A started attempt, with the job as `reading` (of `claim.job`) shows it, and the
    lease it was opened with (the worker heartbeats by it)."""
    return ClaimView(
        job=job_view(reading),
        attempt=claim.attempt,
        run_token=claim.run_token,
        resume_from=claim.resume_from,
        lease_expires_at=claim.lease_expires_at.isoformat(),
        lease_seconds=lease_seconds,
    )


def history_view(job_id: str, history: list[Transition]) -> HistoryView:
    return HistoryView(
        job_id=job_id,
        events=[
            HistoryEvent(
                seq=item.event.seq,
                type=item.event.type,
                from_status=item.from_status,
                to_status=item.to_status,
                attempt=item.event.attempt,
                actor=item.event.actor,
                reason=item.event.reason,
                payload=shown_payload(item.event.data),
                unreadable=unreadable_problem(item.event.data),
                occurred_at=iso(item.event.occurred_at),
                recorded_at=item.event.recorded_at.isoformat(),
                correlation_id=item.event.correlation_id,
            )
            for item in history
        ],
    )


def feed_event(event: RecordedEvent, spec_bytes: int | None = None) -> FeedEvent:
    """An event of the feed; a registration's spec is shown as its size, `spec_bytes`
    (from a page read without specs)."""
    return FeedEvent(
        cursor=str(FeedCursor.after(event)),
        job_id=event.job_id,
        seq=event.seq,
        type=event.type,
        attempt=event.attempt,
        actor=event.actor,
        reason=event.reason,
        payload=_without_spec(shown_payload(event.data), spec_bytes),
        unreadable=unreadable_problem(event.data),
        recorded_at=event.recorded_at.isoformat(),
        correlation_id=event.correlation_id,
    )


def audit_event_view(item: AuditEvent) -> AuditEventView:
    """An event of the audit log, as a page shows it (see `audit_event_fields`)."""
    return AuditEventView(**audit_event_fields(item))


def audit_event_fields(item: AuditEvent) -> dict[str, Any]:
    """The fields of `AuditEventView` for an event of the audit log, ready for JSON: with
    the status it moved its job to; a registration's spec shown as its size. An export
    writes these without building a view of each of its events."""
    event = item.event
    return {
        "position": event.position or 0,
        "job_id": event.job_id,
        "seq": event.seq,
        "type": event.type,
        "status": item.status,
        "attempt": event.attempt,
        "actor": event.actor,
        "reason": event.reason,
        "payload": _without_spec(shown_payload(event.data), item.spec_bytes),
        "unreadable": unreadable_problem(event.data),
        "correlation_id": event.correlation_id,
        "occurred_at": iso(event.occurred_at),
        "recorded_at": event.recorded_at.isoformat(),
    }


def unreadable_problem(data: JobEvent | UnreadableEvent) -> str | None:
    return data.problem if isinstance(data, UnreadableEvent) else None


def _without_spec(payload: dict[str, Any], spec_bytes: int | None) -> dict[str, Any]:
    """A registration's payload (read without its spec, see `EventStore.read_feed`, so its
    event holds the empty default) with the spec's size in its place: the feed and the
    stream carry many events, and a spec can be large (the job's view has it)."""
    if spec_bytes is None:
        return payload
    trimmed = {name: value for name, value in payload.items() if name != "spec"}
    return {**trimmed, "spec_bytes": spec_bytes}


def health_view(report: HealthReport) -> HealthView:
    return HealthView(
        healthy=report.healthy,
        orphaned_jobs=[
            OrphanView(
                job_id=orphan.job_id,
                attempt=orphan.attempt,
                worker=worker_view(orphan.worker),
                last_heartbeat_at=iso(orphan.last_heartbeat_at),
                reason=str(orphan.reason),
            )
            for orphan in report.orphaned
        ],
        stale_pending_jobs=[
            StalePendingView(job_id=stale.job_id, pending_since=stale.pending_since.isoformat())
            for stale in report.stale_pending
        ],
        orphaned_count=report.orphaned_count,
        stale_pending_count=report.stale_pending_count,
        oldest_stale_pending_age_s=report.oldest_stale_pending_age_s,
        queue_depth=report.queue_depth,
        oldest_queued_age_s=report.oldest_queued_age_s,
        total_running=report.total_running,
        total_running_alive=report.total_running_alive,
        counts_exact=report.counts_exact,
        checked_at=report.checked_at.isoformat(),
        unreadable_events=report.unreadable_events,
    )


def reconcile_view(report: ReconcileReport) -> ReconcileView:
    """Every action of the pass: applied, planned (dry run) or skipped, and why."""
    return ReconcileView(
        dry_run=report.dry_run,
        actions=[
            ActionView(
                job_id=action.job_id,
                action=action.action,
                reason=action.reason,
                applied=action.applied,
                skipped=action.skipped,
            )
            for action in report.actions
        ],
    )
