"""Heartbeats: a running attempt's lease, renewed in place, never in the log."""

from datetime import datetime

from sqlalchemy import text

from ledger.errors import JobNotFound, StaleAttempt
from ledger.store import EventStore

RENEW_LEASE = text(
    """
    UPDATE job_leases l
    SET heartbeat_at = now(), expires_at = now() + make_interval(secs => :lease_seconds)
    FROM job_status s
    WHERE l.job_id = :job_id AND l.attempt = :attempt AND l.run_token = :run_token
      AND s.job_id = l.job_id AND s.attempt = l.attempt AND s.status IN ('running', 'paused')
    RETURNING l.expires_at
    """
)
"""Renews only the lease of the job's current, open attempt with the right token."""


def renew_lease(
    store: EventStore, job_id: str, attempt: int, run_token: str, lease_seconds: float
) -> datetime:
    """Record a heartbeat; return the new expiry.

    Raises `StaleAttempt` when the attempt is not the job's current open run
    (or the token is wrong): the worker has been fenced and must stop.
    """
    params = {
        "job_id": job_id,
        "attempt": attempt,
        "run_token": run_token,
        "lease_seconds": lease_seconds,
    }
    with store.transaction(job_id) as conn:
        expires_at: datetime | None = conn.execute(RENEW_LEASE, params).scalar()
    if expires_at is not None:
        return expires_at
    state = store.load(job_id)
    if state is None:
        raise JobNotFound(job_id)
    if attempt != state.attempt:
        detail = "a newer attempt has started"
    elif run_token != state.run_token:
        detail = "the run token does not match"
    else:
        detail = f"the attempt was closed ({state.status})"
    raise StaleAttempt(job_id, attempt, state.attempt, detail)
