"""A worker's identity has one shape: the command's, the start event's and the state's."""

from dataclasses import fields
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from ledger.commands import WorkerIdentity
from ledger.events import JobRegistered, JobStarted, RecordedEvent, event_to_record
from ledger.evolve import evolve
from ledger.run_tokens import run_token_digest
from ledger.state import WORKER_FIELDS, JobState, worker_fields
from ledger.statuses import JobStatus

AT = datetime(2026, 1, 1, tzinfo=UTC)

workers = st.builds(
    WorkerIdentity,
    worker_id=st.text(min_size=1),
    host=st.text(min_size=1),
    pid=st.none() | st.integers(1, 2**31 - 1),
    pid_started_at=st.none() | st.floats(allow_nan=False),
    boot_id=st.none() | st.text(),
)


def registered() -> JobState:
    event = JobRegistered(initial_status=JobStatus.QUEUED)
    return evolve(None, RecordedEvent("job-1", 1, event, AT))


def test_the_start_event_holds_every_field_of_the_identity_by_its_name() -> None:
    identity = {f.name: f.type for f in fields(WorkerIdentity)}
    started = {f.name: f.type for f in fields(JobStarted)}
    assert identity.items() <= started.items()


def test_the_state_holds_every_field_of_the_identity() -> None:
    assert list(WORKER_FIELDS) == [f.name for f in fields(WorkerIdentity)]
    assert set(WORKER_FIELDS.values()) <= set(JobState._fields)


@given(worker=workers)
def test_a_start_event_gives_back_the_worker_it_was_made_of(worker: WorkerIdentity) -> None:
    started = JobStarted.of(worker, run_token="t", resume_from="/ck/1")
    assert started.worker == worker
    assert (started.run_token_sha256, started.resume_from) == (run_token_digest("t"), "/ck/1")


@given(worker=workers)
def test_the_payload_of_a_start_names_the_worker_as_the_identity_does(
    worker: WorkerIdentity,
) -> None:
    _, payload, _ = event_to_record(JobStarted.of(worker, run_token="t", resume_from=None))
    assert payload == {
        "run_token_sha256": run_token_digest("t"),
        "worker_id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "pid_started_at": worker.pid_started_at,
        "boot_id": worker.boot_id,
        "resume_from": None,
    }


@given(worker=workers)
def test_a_started_job_knows_its_worker(worker: WorkerIdentity) -> None:
    before = registered()
    started = JobStarted.of(worker, run_token="t", resume_from=None)
    after = evolve(before, RecordedEvent("job-1", 2, started, AT))
    assert after.worker == worker
    assert before._replace(**worker_fields(worker)).worker == worker


def test_a_job_never_started_has_no_worker() -> None:
    assert registered().worker is None
