"""Event streams are capped on a real `jobledger serve`: past the process's cap a 503
problem, past a caller's a 429 problem, both saying when to retry; a stream that ends
gives its slot back, and a client refused meanwhile resumes where it left off."""

import json
import signal
import socket
import time
from collections.abc import Iterator

import pytest

from ledger.settings import Settings
from tests.e2e.conftest import Server
from tests.integration.recovery_helpers import poll

PER_CALLER = 2
PROCESS = 3


@pytest.fixture
def capped(database_url: str) -> Iterator[Server]:
    served = Server(
        database_url,
        {
            "JOBLEDGER_MAX_STREAMS": str(PROCESS),
            "JOBLEDGER_MAX_STREAMS_PER_CALLER": str(PER_CALLER),
        },
    )
    served.start()
    yield served
    served.close_clients()
    served.kill(signal.SIGTERM)


class Answer:
    """The head of an answer to a stream request, read from a raw socket; the socket
    stays open for a stream."""

    def __init__(self, server: Server, name: str, last_event_id: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port))
        self.sock.settimeout(10)
        resume = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
        self.sock.sendall(
            (
                "GET /v1/events/stream HTTP/1.1\r\nHost: ledger\r\n"
                f"Authorization: Bearer t-{name}-0123456789abcdef\r\n{resume}\r\n"
            ).encode()
        )
        self.data = b""
        while b"\r\n\r\n" not in self.data:
            self.data += self.sock.recv(65536)
        head, _, self.data = self.data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode().split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}

    def problem(self) -> dict[str, object]:
        while len(self.data) < int(self.headers["content-length"]):
            self.data += self.sock.recv(65536)
        self.sock.close()
        problem: dict[str, object] = json.loads(self.data)
        return problem

    def read_until(self, marker: bytes) -> bytes:
        """What the stream sent, once `marker` is in it (10 s at most)."""
        deadline = time.monotonic() + 10
        while marker not in self.data:
            assert time.monotonic() < deadline, f"no {marker!r} within 10 s: {self.data!r}"
            self.data += self.sock.recv(65536)
        return self.data

    def close(self) -> None:
        self.sock.close()


def admitted(server: Server, name: str, last_event_id: str | None = None) -> Answer | None:
    """A stream opened for `name`, or None (and the refusal read) if it was refused."""
    answer = Answer(server, name, last_event_id)
    if answer.status == 200:
        return answer
    answer.problem()
    return None


def test_a_caller_past_its_share_of_streams_gets_a_429_problem_with_retry_after(
    capped: Server,
) -> None:
    held = [Answer(capped, "audrey") for _ in range(PER_CALLER)]
    assert [answer.status for answer in held] == [200] * PER_CALLER
    refused = Answer(capped, "audrey")
    assert refused.status == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    problem = refused.problem()
    assert problem["type"] == "https://jobledger.dev/problems/too-many-streams-of-caller"
    assert (problem["caller"], problem["max_streams_per_caller"]) == ("audrey", PER_CALLER)
    other = Answer(capped, "alice")  # another caller still has its share
    assert other.status == 200
    for answer in [*held, other]:
        answer.close()


def test_past_the_process_cap_every_caller_gets_a_503_problem_with_retry_after(
    capped: Server,
) -> None:
    held = [Answer(capped, "audrey"), Answer(capped, "audrey"), Answer(capped, "alice")]
    assert [answer.status for answer in held] == [200] * PROCESS
    refused = Answer(capped, "trainer")
    assert (refused.status, refused.headers["retry-after"]) == (503, "1")
    problem = refused.problem()
    assert problem["type"] == "https://jobledger.dev/problems/too-many-streams"
    assert problem["max_streams"] == PROCESS
    for answer in held:
        answer.close()


def test_a_stream_whose_client_leaves_gives_its_slot_back(capped: Server) -> None:
    first, second = Answer(capped, "audrey"), Answer(capped, "audrey")
    assert admitted(capped, "audrey") is None
    first.close()
    third = poll(lambda: admitted(capped, "audrey"), timeout=10, every=0.1)
    for answer in (second, third):
        answer.close()


def test_a_client_refused_while_the_cap_is_full_resumes_after_the_last_event_it_saw(
    capped: Server,
) -> None:
    trainer = capped.client("trainer")
    trainer.register("before")
    watching = Answer(capped, "audrey")
    seen = watching.read_until(b"event: job_registered")
    last_id = next(
        line.removeprefix(b"id: ").decode() for line in seen.split(b"\n") if line.startswith(b"id:")
    )
    watching.close()
    held = [Answer(capped, "alice"), Answer(capped, "alice"), Answer(capped, "trainer")]
    trainer.register("meanwhile")
    assert admitted(capped, "audrey", last_id) is None
    held[0].close()
    resumed = poll(lambda: admitted(capped, "audrey", last_id), timeout=10, every=0.1)
    sent = resumed.read_until(b"meanwhile")
    assert b'"before"' not in sent, "resumed after the last event seen, not from the start"
    for answer in (*held[1:], resumed):
        answer.close()


def test_the_stream_caps_are_read_from_their_environment_variables() -> None:
    settings = Settings.from_env(
        {"JOBLEDGER_MAX_STREAMS": "7", "JOBLEDGER_MAX_STREAMS_PER_CALLER": "3"}
    )
    assert (settings.max_streams, settings.max_streams_per_caller) == (7, 3)
    assert (Settings().max_streams, Settings().max_streams_per_caller) == (200, 10)


def test_a_stopping_server_ends_its_streams_cleanly_at_once(database_url: str) -> None:
    """SIGTERM ends every open stream with a last chunk that asks the client to come
    back shortly (it resumes with Last-Event-ID); the server need not wait out its
    30 s grace for streams that never end on their own."""
    served = Server(database_url)
    served.start()
    watching = [Answer(served, "audrey") for _ in range(3)]
    for answer in watching:
        answer.read_until(b": connected")
    assert served.process is not None
    started = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    endings = [answer.read_until(b"0\r\n\r\n") for answer in watching]
    ended_in = time.monotonic() - started
    code = served.process.wait(timeout=30)
    stopped_in = time.monotonic() - started
    if served.process.stdout is not None:
        served.process.stdout.close()
    print(
        f"3 streams ended {ended_in:.2f} s after SIGTERM; the server exited in {stopped_in:.2f} s"
    )
    for answer, ending in zip(watching, endings, strict=True):
        assert b": server stopping\nretry: 1000\n" in ending, ending
        assert ending.endswith(b"\r\n0\r\n\r\n"), "the last chunk: the answer is whole"
        answer.close()
    assert code == 0 and stopped_in < 10
