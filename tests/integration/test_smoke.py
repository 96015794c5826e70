from ledger.statuses import JobStatus
from tests.conftest import JobFactory


def test_factory_makes_jobs_in_every_status(job_factory: JobFactory) -> None:
    for status in JobStatus:
        assert job_factory(status).status is status
