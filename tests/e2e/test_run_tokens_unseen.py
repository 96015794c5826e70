"""A run token never leaves the claim's answer: the event stream shows no trace of it."""

from ledger.commands import WorkerIdentity
from tests.e2e.conftest import Server
from tests.e2e.test_served_scenarios import read_stream

WORKER = WorkerIdentity(worker_id="w-1", host="gpu-1")


def test_the_event_stream_shows_no_run_token(server: Server) -> None:
    trainer = server.client("trainer")
    trainer.register("streamed")
    claim = trainer.claim(WORKER)
    assert claim is not None

    registered, started = read_stream(server, 2)

    assert '"job_started"' in started and '"w-1"' in started
    assert claim.run_token not in started
    assert "run_token" not in registered + started
