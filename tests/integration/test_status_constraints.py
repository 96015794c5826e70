"""The database itself refuses a `job_status` row that `evolve` could never produce."""

import psycopg
import pytest

from ledger.database import libpq_url
from ledger.schema import JOB_STATUS_RULES
from ledger.statuses import JobStatus
from tests.conftest import JobFactory

NO_RUN = (
    "attempt = 0, run_token_sha256 = NULL, started_at = NULL, worker_id = NULL, worker_host = NULL"
)

VIOLATIONS: list[tuple[str, JobStatus, str]] = [
    ("known_status", JobStatus.RUNNING, "status = 'lost'"),
    ("version_positive", JobStatus.QUEUED, "version = 0"),
    ("attempt_not_negative", JobStatus.FAILED, "attempt = -1"),
    ("max_attempts_positive", JobStatus.PENDING, "max_attempts = 0"),
    ("finished_exactly_when_terminal", JobStatus.QUEUED, "finished_at = now()"),
    ("finished_exactly_when_terminal", JobStatus.COMPLETED, "finished_at = NULL"),
    ("active_run_started", JobStatus.RUNNING, NO_RUN),
    ("active_run_started", JobStatus.PAUSED, NO_RUN),
    ("run_recorded_exactly_when_started", JobStatus.RUNNING, "run_token_sha256 = NULL"),
    ("run_recorded_exactly_when_started", JobStatus.PAUSED, "worker_id = NULL"),
    ("run_recorded_exactly_when_started", JobStatus.COMPLETED, "started_at = NULL"),
    ("run_recorded_exactly_when_started", JobStatus.CANCELLED, "worker_host = NULL"),
    ("run_recorded_exactly_when_started", JobStatus.QUEUED, "attempt = 1"),
    ("queued_at_when_queued", JobStatus.QUEUED, "queued_at = NULL"),
    ("failure_reason_exactly_when_failed", JobStatus.FAILED, "failure_reason = NULL"),
    ("failure_reason_exactly_when_failed", JobStatus.CANCELLED, "failure_reason = 'boom'"),
]
"""For each rule, rows that break it and no other rule: a job in a status, then changed."""


def test_every_rule_has_a_row_that_breaks_it() -> None:
    assert {name for name, _, _ in VIOLATIONS} == set(JOB_STATUS_RULES)


@pytest.mark.parametrize(
    ("rule", "status", "change"),
    VIOLATIONS,
    ids=[f"{rule}: {status} with {change}" for rule, status, change in VIOLATIONS],
)
def test_a_direct_update_that_breaks_a_rule_is_refused(
    database_url: str, job_factory: JobFactory, rule: str, status: JobStatus, change: str
) -> None:
    job = job_factory(status)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation) as refused:
            conn.execute(f"UPDATE job_status SET {change} WHERE job_id = %s", (job.job_id,))
        assert refused.value.diag.constraint_name == f"ck_job_status_{rule}"
        row = conn.execute("SELECT version FROM job_status WHERE job_id = %s", (job.job_id,))
        assert row.fetchone() == (job.version,)
