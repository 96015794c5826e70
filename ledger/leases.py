"""Heartbeats: a running attempt's lease, renewed in place, never in the log."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.decide import check_fence
from ledger.errors import JobNotFound, LedgerError, StaleAttempt
from ledger.loop_appends import LoopAppends
from ledger.queries import (
    LEASE_UNLEASED_RUNS,
    LOAD_STATES,
    PRUNE_LEASES,
    RENEW_LEASES,
    RENEW_ONE_LEASE,
)
from ledger.run_tokens import run_token_digest
from ledger.state import JobState
from ledger.store import EventStore, state_from_row

MAX_HEARTBEATS = 1_000
"""Runs one `renew_leases` renews at most: a training server's whole fleet on one host, or
a thousand runs of a bigger one, in one statement."""


@dataclass(frozen=True, slots=True)
class RunHeartbeat:
    """One run's heartbeat: the attempt it is and the token its start gave it."""

    job_id: str
    attempt: int
    run_token: str


def renew_lease(
    store: EventStore, job_id: str, attempt: int, run_token: str, lease_seconds: float
) -> datetime:
    """Record a heartbeat; return the new expiry.

    Raises `StaleAttempt` when the attempt is not the job's current open run
    (or the token is wrong), in the words `decide` uses for the worker's
    commands: the worker has been fenced and must stop.
    """
    [outcome] = renew_leases(store, [RunHeartbeat(job_id, attempt, run_token)], lease_seconds)
    if isinstance(outcome, LedgerError):
        raise outcome
    return outcome


def renew_leases(
    store: EventStore, heartbeats: Sequence[RunHeartbeat], lease_seconds: float
) -> list[datetime | LedgerError]:
    """Record many heartbeats in one statement (at most `MAX_HEARTBEATS`); for each, in
    order, the new expiry or why it was refused (`StaleAttempt` or `JobNotFound`, as
    `renew_lease` raises them). Runs of the same job may repeat; each is judged on its own."""
    if len(heartbeats) > MAX_HEARTBEATS:
        raise ValueError(f"at most {MAX_HEARTBEATS} heartbeats at a time, not {len(heartbeats)}")
    if not heartbeats:
        return []
    digests = [run_token_digest(beat.run_token) for beat in heartbeats]
    statement, params = _renewal(heartbeats, digests, lease_seconds)
    with store.connection() as conn:  # one statement: its own transaction
        expiries = _expiries(store, heartbeats, digests, conn.execute(statement, params))
        missed = {
            beat.job_id
            for beat, expires in zip(heartbeats, expiries, strict=True)
            if expires is None
        }
        states = (
            {
                state.job_id: state
                for state in map(
                    state_from_row, conn.execute(LOAD_STATES, {"job_ids": list(missed)})
                )
            }
            if missed
            else {}
        )
    return [
        _refusal(store, beat, states.get(beat.job_id)) if expires is None else expires
        for beat, expires in zip(heartbeats, expiries, strict=True)
    ]


async def renew_leases_on_loop(
    store: EventStore,
    heartbeats: Sequence[RunHeartbeat],
    lease_seconds: float,
    appends: LoopAppends,
) -> list[datetime | None] | None:
    """`renew_leases`, its statement sent from the event loop by `appends`: each
    heartbeat's new expiry, counted as `renew_leases` counts it, or None for one that
    renewed nothing (only `renew_leases` of it tells why, on a fresh read). None for all
    when `appends` is not ready, or there are more than `MAX_HEARTBEATS`."""
    if len(heartbeats) > MAX_HEARTBEATS or not appends.ready():
        return None
    digests = [run_token_digest(beat.run_token) for beat in heartbeats]
    statement, params = _renewal(heartbeats, digests, lease_seconds)
    return _expiries(store, heartbeats, digests, await appends.rows(statement, params))


def _expiries(
    store: EventStore,
    heartbeats: Sequence[RunHeartbeat],
    digests: list[str],
    rows: Iterable[Sequence[Any]],
) -> list[datetime | None]:
    """Each heartbeat's new expiry from the renewal statement's `rows` (counted), or None
    for one it did not renew."""
    renewed = {(job_id, attempt, digest): expires for job_id, attempt, digest, expires in rows}
    expiries = [
        renewed.get((beat.job_id, beat.attempt, digest))
        for beat, digest in zip(heartbeats, digests, strict=True)
    ]
    for expires in expiries:
        if expires is not None:
            store.observers.heartbeat_received(fenced=False)
    return expiries


def _renewal(
    heartbeats: Sequence[RunHeartbeat], digests: list[str], lease_seconds: float
) -> tuple[str, dict[str, Any]]:
    """The statement renewing the leases of `heartbeats` (their tokens' `digests` in step),
    and its values."""
    if len(heartbeats) == 1:
        [beat], [digest] = heartbeats, digests
        one = {"job_id": beat.job_id, "attempt": beat.attempt, "digest": digest}
        return RENEW_ONE_LEASE, one | {"lease_seconds": lease_seconds}
    return RENEW_LEASES, {
        "job_ids": [beat.job_id for beat in heartbeats],
        "attempts": [beat.attempt for beat in heartbeats],
        "digests": digests,
        "lease_seconds": lease_seconds,
    }


def _refusal(store: EventStore, beat: RunHeartbeat, state: JobState | None) -> LedgerError:
    """Why `beat` renewed no lease, its job being in `state` now: the job does not exist, or
    the run is not its current open one with that token (a fenced heartbeat)."""
    if state is None:
        return JobNotFound(beat.job_id)
    store.observers.heartbeat_received(fenced=True)
    try:
        check_fence(state, beat.attempt, beat.run_token)
    except StaleAttempt as stale:
        return stale
    # The run is current and open, yet holds no lease: it was never started by the queue.
    return StaleAttempt(beat.job_id, beat.attempt, state.attempt, "the attempt holds no lease")


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
