"""Many writers, one job: exactly one wins each version."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger.commands import RegisterJob, SaveCheckpoint
from ledger.errors import VersionConflict
from ledger.events import CheckpointSaved
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.store import EventStore
from tests.conftest import WORKER

WRITERS = 16
ROUNDS = 8


@pytest.mark.slow
def test_sixteen_writers_with_the_same_expected_version_leave_one_winner_per_version(
    service: JobService, store: EventStore
) -> None:
    service.execute("contended", RegisterJob(), actor="a")
    JobQueue(store, run_tokens=lambda: "t").start("contended", WORKER, actor="w")
    barrier = threading.Barrier(WRITERS)

    def race(writer: int, state_version: int) -> str:
        state = store.load("contended")
        assert state is not None and state.version == state_version
        event = CheckpointSaved(path=f"/ck/{writer}", step=state_version)
        barrier.wait()
        try:
            store.append("contended", state, [event], actor=f"writer-{writer}")
        except VersionConflict:
            return "conflict"
        return "won"

    with ThreadPoolExecutor(WRITERS) as pool:
        for round_ in range(ROUNDS):
            version = 2 + round_
            outcomes = list(pool.map(race, range(WRITERS), [version] * WRITERS))
            assert outcomes.count("won") == 1
            assert outcomes.count("conflict") == WRITERS - 1

    seqs = [event.seq for event in store.history("contended")]
    assert seqs == list(range(1, 3 + ROUNDS))
    final = store.load("contended")
    assert final is not None and final.version == 2 + ROUNDS


@pytest.mark.slow
def test_commands_without_an_expected_version_all_land_after_retrying(
    service: JobService, store: EventStore
) -> None:
    service.execute("busy", RegisterJob(), actor="a")
    JobQueue(store, run_tokens=lambda: "t").start("busy", WORKER, actor="w")

    def checkpoint(step: int) -> int:
        command = SaveCheckpoint(attempt=1, run_token="t", path=f"/ck/{step}", step=step)
        return service.execute("busy", command, actor="w").state.version

    with ThreadPoolExecutor(4) as pool:
        versions = list(pool.map(checkpoint, range(12)))

    assert sorted(versions) == list(range(3, 15))
    assert [e.seq for e in store.history("busy")] == list(range(1, 15))
