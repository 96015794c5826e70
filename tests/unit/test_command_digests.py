"""A command's digest is recorded with the idempotency key it was first sent with, and a
retry is answered only when its digest matches: the digests of commands must never
change. These were computed by the release that first recorded them."""

import pytest

from ledger.commands import (
    CancelJob,
    JobCommand,
    RegisterJob,
    StartJob,
    WorkerIdentity,
    command_digest,
)
from ledger.statuses import JobStatus


@pytest.mark.parametrize(
    ("command", "digest"),
    [
        (
            RegisterJob(
                initial_status=JobStatus.PENDING,
                spec={"lr": 0.001, "layers": [64, None]},
                priority=3,
                max_attempts=2,
                auto_retry=True,
            ),
            "6460fb746c73c6c0cdd5454d3ae135f328fb222ce10b3aa76f2c2dffec272ba0",
        ),
        (
            StartJob(worker=WorkerIdentity(worker_id="w-1", host="gpu-7", pid=42), run_token="t-1"),
            "339998e9c987871342af8976d652f857a34647ae8972cdea3a1a3b001d7e7a77",
        ),
        (
            CancelJob(reason="not needed"),
            "2052b771dd38a19880d98b67f75cfb601113bb5ec60f6fe3520e4ee3110d1493",
        ),
    ],
)
def test_a_commands_digest_is_the_one_recorded_before(command: JobCommand, digest: str) -> None:
    assert command_digest(command) == digest
