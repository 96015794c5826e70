"""Heartbeats: a running attempt's lease, renewed in place, never in the log."""

from datetime import datetime

from ledger.decide import check_fence
from ledger.errors import JobNotFound, StaleAttempt
from ledger.queries import LEASE_UNLEASED_RUNS, PRUNE_LEASES, RENEW_LEASE
from ledger.run_tokens import run_token_digest
from ledger.store import EventStore


def renew_lease(
    store: EventStore, job_id: str, attempt: int, run_token: str, lease_seconds: float
) -> datetime:
    """Record a heartbeat; return the new expiry.

    Raises `StaleAttempt` when the attempt is not the job's current open run
    (or the token is wrong), in the words `decide` uses for the worker's
    commands: the worker has been fenced and must stop.
    """
    params = {
        "job_id": job_id,
        "attempt": attempt,
        "run_token_sha256": run_token_digest(run_token),
        "lease_seconds": lease_seconds,
    }
    with store.transaction(job_id) as conn:
        row = conn.execute(RENEW_LEASE, params).fetchone()
    if row is not None:
        store.observers.heartbeat_received(fenced=False)
        expires_at: datetime = row[0]
        return expires_at
    state = store.load(job_id)
    if state is None:
        raise JobNotFound(job_id)
    try:
        check_fence(state, attempt, run_token)
        # The run is current and open, yet holds no lease: it was never started by the queue.
        raise StaleAttempt(job_id, attempt, state.attempt, "the attempt holds no lease")
    except StaleAttempt:
        store.observers.heartbeat_received(fenced=True)
        raise


def lease_unleased_runs(store: EventStore, lease_seconds: float) -> int:
    """Give each open run that holds no lease one from its start; return how many."""
    with store.transaction() as conn:
        return conn.execute(LEASE_UNLEASED_RUNS, {"lease_seconds": lease_seconds}).rowcount


def prune_leases(store: EventStore) -> int:
    """Delete the leases of attempts that are no longer open; return how many."""
    with store.transaction() as conn:
        return conn.execute(PRUNE_LEASES).rowcount
