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
    with store.connection(job_id) as conn:  # one statement: its own transaction
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


LEASE_BATCH = 1_000
"""How many open runs (or leases) one transaction of `lease_unleased_runs` (or
`prune_leases`) looks at: after a disaster, tens of thousands are done in transactions of
this size, so the heartbeats and claims that touch the same leases never wait long."""


def lease_unleased_runs(store: EventStore, lease_seconds: float, batch: int = LEASE_BATCH) -> int:
    """Give each open run that holds no lease one from its start, `batch` open runs a
    transaction; return how many."""
    return _in_batches(store, LEASE_UNLEASED_RUNS, {"lease_seconds": lease_seconds}, batch)


def prune_leases(store: EventStore, batch: int = LEASE_BATCH) -> int:
    """Delete the leases of attempts that are no longer open, `batch` leases a
    transaction; return how many."""
    return _in_batches(store, PRUNE_LEASES, {}, batch)


def _in_batches(store: EventStore, statement: str, params: dict[str, object], batch: int) -> int:
    """Run `statement` (which says how many rows it changed and the last job id it looked
    at) over the jobs in id order, one transaction per `batch`; return the rows changed."""
    changed, after = 0, ""
    while True:
        with store.transaction() as conn:
            row = conn.execute(statement, {**params, "after": after, "batch": batch}).fetchone()
        assert row is not None, "the statement always answers one row"
        count, last = row
        changed += int(count)
        if last is None:
            return changed
        after = last
