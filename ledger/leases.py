"""Heartbeats: a running attempt's lease, renewed in place, never in the log."""

from datetime import datetime

from ledger.errors import JobNotFound, StaleAttempt
from ledger.queries import PRUNE_LEASES, RENEW_LEASE
from ledger.store import EventStore


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
        row = conn.execute(RENEW_LEASE, params).fetchone()
    if row is not None:
        expires_at: datetime = row[0]
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


def prune_leases(store: EventStore) -> int:
    """Delete the leases of attempts that are no longer open; return how many."""
    with store.transaction() as conn:
        return conn.execute(PRUNE_LEASES).rowcount
