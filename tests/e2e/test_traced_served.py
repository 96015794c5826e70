"""A training step followed from the trainer into a real `jobledger serve`: its trace id is
the correlation id of the events it appended and of its command's log line, and with
`JOBLEDGER_LOG_FORMAT=json` every line the server logs (uvicorn's too) is a JSON object."""

import json
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.client import JobRun, trace_calls
from ledger.trace_context import TraceParent
from tests.hostile.test_slow_clients import LoggedServer


@pytest.fixture
def json_logged_server(database_url: str, tmp_path: Path) -> Iterator[LoggedServer]:
    served = LoggedServer(database_url, tmp_path / "serve.log")
    served.env["JOBLEDGER_LOG_FORMAT"] = "json"
    served.start()
    yield served
    served.close_clients()
    served.kill(signal.SIGTERM)


def send_malformed_request(server: LoggedServer) -> None:
    """A request uvicorn itself refuses, and logs."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 400")


def test_a_training_steps_trace_reaches_the_jobs_history_and_the_servers_json_log(
    json_logged_server: LoggedServer,
) -> None:
    server = json_logged_server
    trainer = server.client("trainer")
    trainer.register("traced-run")
    step = TraceParent.start(sampled=True)
    with JobRun(trainer, worker_id="trainer-1") as run, trace_calls(str(step)) as trace:
        run.checkpoint("s3://checkpoints/traced-run/1", step=1)
    assert trace.trace_id == step.trace_id

    events = server.client("audrey").history("traced-run")["events"]
    correlation = {event["type"]: event["correlation_id"] for event in events}
    assert correlation["checkpoint_saved"] == step.trace_id
    # Every other call was a trace of its own.
    others = [correlation[kind] for kind in ("job_registered", "job_started", "job_completed")]
    assert len({*others, step.trace_id}) == 4
    assert all(len(trace_id) == 32 for trace_id in others)

    send_malformed_request(server)
    log = server.log_once_it_says("Invalid HTTP request received.")
    lines: list[dict[str, Any]] = [json.loads(line) for line in log.splitlines()]
    assert {line["logger"] for line in lines} >= {"jobledger.commands", "uvicorn.error"}
    commands = [line for line in lines if line["logger"] == "jobledger.commands"]
    assert {
        "level": "INFO",
        "command": "checkpoint",
        "job_id": "traced-run",
        "actor": "trainer",
        "outcome": "accepted",
        "correlation_id": step.trace_id,
    }.items() <= next(line for line in commands if line["command"] == "checkpoint").items()
    assert [line["command"] for line in commands] == ["register", "claim", "checkpoint", "complete"]
    assert json.loads(server.recovery_line)["message"].startswith("recovered: ")
