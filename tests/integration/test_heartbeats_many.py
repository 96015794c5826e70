"""Many heartbeats in one statement: each judged as its own heartbeat would be."""

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from ledger.commands import MarkFailed
from ledger.errors import JobNotFound, LedgerError, StaleAttempt
from ledger.leases import MAX_HEARTBEATS, RunHeartbeat, renew_lease, renew_leases
from ledger.service import JobService
from ledger.statuses import JobStatus
from ledger.store import EventStore
from ledger.telemetry import LedgerObserver
from tests.conftest import JobFactory


def running(job_factory: JobFactory, count: int) -> list[RunHeartbeat]:
    jobs = [job_factory(JobStatus.RUNNING) for _ in range(count)]
    return [RunHeartbeat(job.job_id, job.attempt, f"token-{job.job_id}") for job in jobs]


def lease_expiry(store: EventStore, job_id: str) -> datetime:
    with store.connection() as conn:
        row = conn.execute(
            "SELECT expires_at FROM job_leases WHERE job_id = %(job_id)s", {"job_id": job_id}
        ).fetchone()
    assert row is not None
    expires: datetime = row[0]
    return expires


def test_every_current_run_is_renewed_in_the_order_sent_and_nothing_enters_the_log(
    job_factory: JobFactory, store: EventStore
) -> None:
    beats = running(job_factory, 5)
    before = {beat.job_id: lease_expiry(store, beat.job_id) for beat in beats}
    sent = list(reversed(beats))

    outcomes = renew_leases(store, sent, 600)

    assert all(isinstance(outcome, datetime) for outcome in outcomes)
    for beat, outcome in zip(sent, outcomes, strict=True):
        assert outcome == lease_expiry(store, beat.job_id) > before[beat.job_id]
        assert len(store.history(beat.job_id)) == 2, "heartbeats never enter the log"


def test_each_refused_run_is_refused_in_the_words_of_a_single_heartbeat(
    job_factory: JobFactory, store: EventStore, service: JobService
) -> None:
    live, closed = running(job_factory, 2)
    service.execute(closed.job_id, MarkFailed(reason="declared dead"), actor="op")
    sent = [
        RunHeartbeat(live.job_id, live.attempt, "forged"),
        live,
        RunHeartbeat(live.job_id, live.attempt + 1, live.run_token),
        closed,
        RunHeartbeat("no-such-job", 1, "token"),
        live,
    ]

    outcomes = renew_leases(store, sent, 60)

    assert [type(outcome) for outcome in outcomes] == [
        StaleAttempt,
        datetime,
        StaleAttempt,
        StaleAttempt,
        JobNotFound,
        datetime,
    ]
    for beat, outcome in zip(sent, outcomes, strict=True):
        if isinstance(outcome, LedgerError):
            with pytest.raises(LedgerError) as single:
                renew_lease(store, beat.job_id, beat.attempt, beat.run_token, 60)
            assert (type(outcome), str(outcome)) == (type(single.value), str(single.value))


def test_an_open_run_without_a_lease_is_fenced(job_factory: JobFactory, store: EventStore) -> None:
    [beat] = running(job_factory, 1)
    with store.connection() as conn:
        conn.execute("DELETE FROM job_leases")

    [outcome] = renew_leases(store, [beat], 60)

    assert isinstance(outcome, StaleAttempt) and "holds no lease" in str(outcome)


class Counting(LedgerObserver):
    def __init__(self) -> None:
        self.renewed = self.fenced = 0

    def heartbeat_received(self, *, fenced: bool) -> None:
        if fenced:
            self.fenced += 1
        else:
            self.renewed += 1


def test_observers_hear_of_each_renewed_and_each_fenced_heartbeat(
    job_factory: JobFactory, store: EventStore
) -> None:
    beats = running(job_factory, 3)
    counting = Counting()
    store.observers.add(counting)
    forged = RunHeartbeat(beats[0].job_id, beats[0].attempt, "forged")

    renew_leases(store, [*beats, forged, RunHeartbeat("missing", 1, "t")], 60)

    assert (counting.renewed, counting.fenced) == (3, 1)


def test_no_heartbeats_is_no_statement_and_too_many_are_refused(store: EventStore) -> None:
    assert renew_leases(store, [], 60) == []
    too_many = [RunHeartbeat(f"j-{n}", 1, "t") for n in range(MAX_HEARTBEATS + 1)]
    with pytest.raises(ValueError, match=str(MAX_HEARTBEATS)):
        renew_leases(store, too_many, 60)


def test_batches_sharing_runs_in_any_order_renew_them_all_without_a_deadlock(
    job_factory: JobFactory, store: EventStore
) -> None:
    beats = running(job_factory, 40)

    def send(seed: int) -> list[bool]:
        shuffled = random.Random(seed).sample(beats, len(beats))
        return [
            isinstance(outcome, datetime)
            for _ in range(10)
            for outcome in renew_leases(store, shuffled, 60)
        ]

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(send, range(6)))

    assert all(all(renewed) and len(renewed) == 400 for renewed in results)
