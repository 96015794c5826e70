"""A command reads the job only when a guess cannot decide: a new job's registration and a
claimed run's next command go straight to the append, whose unique `(job_id, seq)` judges
the guess. A heartbeat is one statement, sent without BEGIN and COMMIT around it."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine

from ledger.commands import CompleteJob, RegisterJob
from ledger.errors import DuplicateJob
from ledger.leases import renew_lease
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.statuses import JobStatus
from ledger.store import Connection, EventStore, LoadedJob
from tests.conftest import WORKER


class CountingStore(EventStore):
    """A real store that counts the reads a command makes before it appends, and the
    explicit transactions it opens."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.reads = 0
        self.transactions = 0

    @contextmanager
    def transaction(self, job_id: str = "") -> Iterator[Connection]:
        self.transactions += 1
        with super().transaction(job_id) as conn:
            yield conn

    def load_for_command(self, job_id: str, idempotency_key: str | None) -> LoadedJob:
        self.reads += 1
        return super().load_for_command(job_id, idempotency_key)


@pytest.fixture
def counting(engine: Engine) -> CountingStore:
    return CountingStore(engine)


def test_a_new_job_is_registered_without_a_read(counting: CountingStore) -> None:
    outcome = JobService(counting).execute("job-new", RegisterJob(), actor="test")

    assert counting.reads == 0
    assert outcome.state.status is JobStatus.QUEUED
    assert counting.load("job-new") == outcome.state


def test_a_registration_of_a_job_another_process_made_is_refused_after_a_read(
    counting: CountingStore, service: JobService
) -> None:
    service.execute("job-taken", RegisterJob(spec={"by": "other"}), actor="other")

    with pytest.raises(DuplicateJob):
        JobService(counting).execute("job-taken", RegisterJob(), actor="test")

    assert counting.reads == 1, "the log refused the guess; the refusal is read, then decided"
    state = counting.load("job-taken")
    assert state is not None and state.version == 1 and state.spec == {"by": "other"}


def test_a_registration_retried_with_its_key_in_another_process_is_replayed(
    counting: CountingStore, service: JobService
) -> None:
    first = service.execute("job-keyed", RegisterJob(), actor="test", idempotency_key="k-1")

    again = JobService(counting).execute(
        "job-keyed", RegisterJob(), actor="test", idempotency_key="k-1"
    )

    assert again.replayed and again.state == first.state
    assert len(counting.history("job-keyed")) == 1


def test_a_claimed_run_is_completed_without_a_read(counting: CountingStore) -> None:
    service = JobService(counting)
    queue = JobQueue(counting, cache=service.cache)
    service.execute("job-run", RegisterJob(), actor="test")
    claim = queue.claim(WORKER, actor="worker")
    assert claim is not None and claim.job.job_id == "job-run"

    complete = CompleteJob(attempt=claim.attempt, run_token=claim.run_token, result={"ok": 1})
    outcome = service.execute("job-run", complete, actor="worker")

    assert counting.reads == 0
    assert outcome.state.status is JobStatus.COMPLETED
    assert counting.load("job-run") == outcome.state


def test_a_heartbeat_renews_its_lease_outside_an_explicit_transaction(
    counting: CountingStore,
) -> None:
    JobService(counting).execute("job-beating", RegisterJob(), actor="test")
    claim = JobQueue(counting, lease_seconds=60).claim(WORKER, actor="worker")
    assert claim is not None and claim.job.job_id == "job-beating"
    opened = counting.transactions

    expires = renew_lease(counting, "job-beating", claim.attempt, claim.run_token, 60.0)

    assert counting.transactions == opened, "one statement needs no BEGIN and COMMIT"
    assert expires >= claim.lease_expires_at
