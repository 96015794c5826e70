"""Slow and many clients cannot stop a real `jobledger serve`: a connection that sends
half a request, or half a body, is closed after its timeout; thousands of them leave
the probes and the API answering; the process never runs out of file handles, and its
log says what it closed in a few lines, not one each."""

import contextlib
import functools
import logging
import re
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from api.connection_guard import (
    ACCEPT_ROUNDS_IN_FLIGHT,
    RESERVED_FILES,
    ConnectionLimits,
    fit_to_file_limit,
)
from api.log_pacing import PacedLog
from ledger.settings import Settings
from tests.e2e.conftest import Server
from tests.integration.recovery_helpers import poll

AUDREY = {"Authorization": "Bearer t-audrey-0123456789abcdef"}
AUDREY_HEADER = "Authorization: Bearer t-audrey-0123456789abcdef"
ALICE_TOKEN = "t-alice-0123456789abcdef"


@pytest.fixture
def quick_timeouts(database_url: str) -> Iterator[Server]:
    served = Server(
        database_url, {"JOBLEDGER_HEADER_TIMEOUT_S": "1", "JOBLEDGER_BODY_TIMEOUT_S": "1"}
    )
    served.start()
    yield served
    served.kill(signal.SIGTERM)


class LoggedServer(Server):
    """A `jobledger serve` whose log (stderr) goes to a file, optionally started with a
    lower open file limit."""

    def __init__(self, database_url: str, log_path: Path, file_limit: int | None = None):
        super().__init__(database_url)
        self.log_path = log_path
        self.file_limit = file_limit

    def start(self) -> None:
        limit = self.file_limit
        with self.log_path.open("a") as log, pytest.MonkeyPatch.context() as patch:
            popen = functools.partial(
                subprocess.Popen,
                stderr=log,
                preexec_fn=None if limit is None else lambda: lowered_file_limit(limit),
            )
            patch.setattr(subprocess, "Popen", popen)
            super().start()

    def log(self) -> str:
        return self.log_path.read_text()

    def log_once_it_says(self, words: str) -> str:
        """The log, once `words` are in it (10 s at most)."""

        def said() -> str | None:
            text = self.log()
            return text if words in text else None

        return poll(said)


def lines_saying(log: str, *words: str) -> list[str]:
    """The lines of `log` with any of `words`: a failed assertion shows them whole."""
    return [line for line in log.splitlines() if any(word in line for word in words)]


def lowered_file_limit(files: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))


@pytest.fixture
def logged_server(database_url: str, tmp_path: Path) -> Iterator[LoggedServer]:
    served = LoggedServer(database_url, tmp_path / "serve.log")
    served.start()
    yield served
    served.close_clients()
    served.kill(signal.SIGTERM)


def connect(server: Server, first_bytes: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


def partial_body(token: str = ALICE_TOKEN) -> bytes:
    return (
        "POST /v1/jobs HTTP/1.1\r\nHost: ledger\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
        '{"job_id": "'
    ).encode()


def seconds_until_closed(
    sock: socket.socket, *, trickle: Callable[[], None] | None = None
) -> float:
    """How long after now the server closes `sock` (its reads end), at most 10 s."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < 10:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            if trickle is not None:
                trickle()
        except ConnectionResetError:
            return time.monotonic() - started
    raise AssertionError("the server kept the connection open for 10 s")


def test_a_partial_request_line_is_closed_after_the_header_timeout(
    quick_timeouts: Server,
) -> None:
    with connect(quick_timeouts, b"GET /v1/jo") as sock:
        waited = seconds_until_closed(sock)
    print(f"partial request line closed after {waited:.2f} s (header timeout 1 s)")
    assert waited < 3


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    quick_timeouts: Server,
) -> None:
    with connect(quick_timeouts) as sock:
        waited = seconds_until_closed(sock)
    print(f"silent connection closed after {waited:.2f} s (header timeout 1 s)")
    assert waited < 3


def test_headers_trickled_byte_by_byte_are_still_closed_at_the_header_timeout(
    quick_timeouts: Server,
) -> None:
    """The header timeout is a deadline for the whole head, not a gap between bytes."""
    header = iter(b"GET /livez HTTP/1.1\r\nX-Padding: " + b"a" * 200)
    with connect(quick_timeouts) as sock:
        waited = seconds_until_closed(sock, trickle=lambda: sock.sendall(bytes([next(header)])))
    assert waited < 3


def test_a_partial_body_is_closed_after_the_body_timeout(quick_timeouts: Server) -> None:
    with connect(quick_timeouts, partial_body()) as sock:
        waited = seconds_until_closed(sock)
    print(f"partial body closed after {waited:.2f} s (body timeout 1 s)")
    assert waited < 3


def test_a_body_sent_slowly_but_steadily_is_read_whole_and_answered(
    quick_timeouts: Server,
) -> None:
    """The body timeout is a gap between bytes: a body that keeps coming is served."""
    body = b'{"job_id": "steady"}'
    head = (
        "POST /v1/jobs HTTP/1.1\r\nHost: ledger\r\nConnection: close\r\n"
        f"Authorization: Bearer {ALICE_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with connect(quick_timeouts, head) as sock:
        started = time.monotonic()
        for start in range(0, len(body), 4):  # 5 pieces, 0.4 s apart: 1.6 s in all
            sock.sendall(body[start : start + 4])
            time.sleep(0.4)  # the client's pace is what is tested, not a wait for the server
        assert time.monotonic() - started > 1.5
        sock.settimeout(5)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]


def test_a_kept_alive_connection_is_timed_again_after_each_answer(
    quick_timeouts: Server,
) -> None:
    """The header clock starts again at each answer: a second request sent promptly is
    served, and half of a third is closed."""
    with connect(quick_timeouts) as sock:
        sock.settimeout(5)
        for _ in range(2):
            time.sleep(0.6)  # each under the 1 s header timeout, 1.2 s in all
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: ledger\r\n\r\n")
            answer = b""
            while not answer.endswith(b'"alive"}'):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /li")
        assert seconds_until_closed(sock) < 3


def test_requests_sent_together_are_answered_in_order_and_the_clock_starts_again_after_them(
    quick_timeouts: Server,
) -> None:
    """Pipelined requests: each is answered, in the order sent, and the connection waits
    on its client again only after the last answer."""
    paths = (b"/livez", b"/v1/nothing-here", b"/livez")
    with connect(quick_timeouts) as sock:
        sock.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: ledger\r\n\r\n" % path for path in paths))
        sock.settimeout(5)
        answers = b""
        while answers.count(b"HTTP/1.1 ") < len(paths) or not answers.endswith(b'"alive"}'):
            answers += sock.recv(65536)
        assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answers) == [b"200", b"404", b"200"]
        sock.sendall(b"GET /li")
        assert seconds_until_closed(sock) < 3


def test_a_request_to_upgrade_the_connection_is_answered_as_http_and_the_next_follows(
    quick_timeouts: Server,
) -> None:
    """No route is a WebSocket: a request asking to upgrade gets its answer over HTTP,
    and the connection carries the next request."""
    with connect(quick_timeouts) as sock:
        sock.settimeout(5)
        for upgrade in (b"Connection: Upgrade\r\nUpgrade: websocket\r\n", b""):
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: ledger\r\n%s\r\n" % upgrade)
            answer = b""
            while not answer.endswith(b'"alive"}'):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_a_client_that_stops_reading_its_answers_is_cut_off_after_the_send_timeout(
    database_url: str, tmp_path: Path
) -> None:
    """Forty pipelined reads of a job with a 60 KiB spec, and not a byte read back: once
    the server's send buffer is full for 1 s the connection is aborted, not kept until
    the client reads (a close would wait for that)."""
    served = LoggedServer(database_url, tmp_path / "serve.log")
    served.env["JOBLEDGER_SEND_TIMEOUT_S"] = "1"
    served.start()
    try:
        served.client("trainer").register("big", spec={"blob": "x" * 60_000})
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.connect(("127.0.0.1", served.port))
        read = f"GET /v1/jobs/big HTTP/1.1\r\nHost: ledger\r\n{AUDREY_HEADER}\r\n\r\n"
        started = time.monotonic()
        sock.sendall(read.encode() * 40)
        log = served.log_once_it_says("took nothing of an answer for 1 s")
        cut_off_in = time.monotonic() - started
        sock.settimeout(5)
        received = 0
        with contextlib.suppress(ConnectionResetError):  # the rest, to the end: cut short
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        sock.close()
        print(
            f"a client reading nothing was cut off {cut_off_in:.2f} s after its requests, "
            f"with {received} of the 40 answers' {40 * 60_000}+ bytes sent"
        )
        assert received < 40 * 60_000
    finally:
        served.close_clients()
        served.kill(signal.SIGTERM)
    assert "1 took nothing of an answer for 1 s" in log


def timed_get(
    client: httpx.Client, url: str, headers: dict[str, str] | None = None
) -> tuple[int, float]:
    """The status and the seconds a GET on a new connection takes."""
    started = time.monotonic()
    response = client.get(url, headers={"Connection": "close", **(headers or {})})
    return response.status_code, time.monotonic() - started


def open_slow_connections(server: Server, count: int) -> list[socket.socket]:
    """`count` connections, in turn silent, half a request line, and half a body."""
    kinds = [b"", b"GET /v1/jobs/a-very-long-j", partial_body()]
    return [connect(server, kinds[number % 3]) for number in range(count)]


def still_open(sockets: list[socket.socket]) -> int:
    alive = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            alive += sock.recv(1) != b""
        except BlockingIOError:
            alive += 1
        except ConnectionResetError:
            pass
    return alive


@pytest.mark.slow
def test_thousands_of_slow_connections_leave_the_probe_and_a_job_read_answering(
    logged_server: LoggedServer,
) -> None:
    server = logged_server
    stack = ExitStack()
    server.client("trainer").register("survivor")
    count = 3 * Settings().max_connections // 2  # half as many again as the cap: 3,000
    client = stack.enter_context(httpx.Client(timeout=10))
    started = time.monotonic()
    sockets = open_slow_connections(server, count)
    opened_in = time.monotonic() - started
    try:
        # The first probe waits behind the flood in the listen queue: the server takes
        # in 3,000 connections (and sheds 1,000) before it reaches it.
        first_status, taken_in = timed_get(client, f"{server.url}/livez")
        probes = [timed_get(client, f"{server.url}/livez") for _ in range(5)]
        reads = [timed_get(client, f"{server.url}/v1/jobs/survivor", AUDREY) for _ in range(5)]
        open_now = still_open(sockets)
    finally:
        for sock in sockets:
            sock.close()
    print(
        f"{count} slow connections opened in {opened_in:.2f} s, taken in by the server in "
        f"{taken_in:.2f} s, {open_now} still open; "
        f"/livez {max(t for _, t in probes) * 1000:.0f} ms at most, "
        f"GET /v1/jobs/survivor {max(t for _, t in reads) * 1000:.0f} ms at most"
    )
    assert first_status == 200 and taken_in < 5
    assert {status for status, _ in probes} == {200}
    assert {status for status, _ in reads} == {200}
    assert max(t for _, t in probes + reads) < 1.0
    assert open_now <= Settings().max_connections, "the cap sheds the oldest waiting"
    log = server.log_once_it_says("closed connections")
    assert "shed at the cap of 2000 connections" in log
    assert lines_saying(log, "Too many open files") == []


def test_a_flood_of_malformed_requests_is_one_warning_not_one_each(
    logged_server: LoggedServer,
) -> None:
    for _ in range(200):
        with connect(logged_server, b"NOT HTTP AT ALL\r\n\r\n") as sock:
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 400")
    with connect(logged_server, b"GET /livez HTTP/1.1\r\nHost: ledger\r\n\r\n") as sock:
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert logged_server.log().count("Invalid HTTP request received.") == 1


@pytest.mark.slow
def test_a_low_file_limit_lowers_the_cap_and_accept_never_fails(
    database_url: str, tmp_path: Path
) -> None:
    """With 512 file handles, 600 connections: the server keeps fewer than that open,
    sheds the oldest waiting ones, never fails an accept(), and summarises what it shed
    in a line at once and at most one more every 10 s."""
    served = LoggedServer(database_url, tmp_path / "serve.log", file_limit=512)
    served.start()
    started = time.monotonic()
    try:
        sockets = open_slow_connections(served, 600)
        opened_in = time.monotonic() - started
        try:
            with httpx.Client(timeout=10) as client:
                status, took = timed_get(client, f"{served.url}/livez")
            open_now = still_open(sockets)
        finally:
            for sock in sockets:
                sock.close()
        print(
            f"file limit 512: 600 opened in {opened_in:.2f} s, {open_now} still open, "
            f"/livez {took * 1000:.0f} ms"
        )
        assert status == 200 and took < 1.0
        assert open_now < 512 - 128
        log = served.log_once_it_says("closed connections")
    finally:
        served.kill(signal.SIGTERM)
    assert "to fit the open file limit (512)" in log  # the default cap, lowered
    assert lines_saying(log, "Too many open files", "accept") == []
    assert log.count("closed connections") <= 1 + (time.monotonic() - started) // 10, log


def test_a_flood_of_one_log_line_is_one_line_per_interval_counting_the_rest() -> None:
    now = [0.0]
    paced = PacedLog(every_s=10, clock=lambda: now[0])
    accept_failed = "socket.accept() out of system resource\nsocket: <fd=6>"

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None, None)

    passed = [paced.filter(record(accept_failed)) for _ in range(1000)]
    assert passed.count(True) == 1
    assert paced.filter(record("another kind of line"))
    now[0] = 10.0
    next_one = record(accept_failed)
    assert paced.filter(next_one)
    assert "999 more like this not logged" in next_one.getMessage()


def test_the_connection_cap_and_backlog_fit_the_file_limit() -> None:
    limits = ConnectionLimits.of(Settings())
    assert fit_to_file_limit(limits, 20_000, pool_size=10) == limits  # 2,000 and 2,048 fit
    small = fit_to_file_limit(limits, 512, pool_size=10)
    in_flight = ACCEPT_ROUNDS_IN_FLIGHT * small.backlog
    assert small.max_connections + in_flight + RESERVED_FILES + 20 <= 512
    with pytest.raises(ValueError, match="open file limit"):
        fit_to_file_limit(limits, 160, pool_size=10)
    with pytest.raises(ValueError, match="JOBLEDGER_HEADER_TIMEOUT_S"):
        ConnectionLimits.of(Settings(header_timeout_s=0))


def test_the_connection_limits_are_read_from_their_environment_variables() -> None:
    settings = Settings.from_env(
        {
            "JOBLEDGER_HEADER_TIMEOUT_S": "2.5",
            "JOBLEDGER_BODY_TIMEOUT_S": "4",
            "JOBLEDGER_MAX_CONNECTIONS": "300",
            "JOBLEDGER_SEND_TIMEOUT_S": "7",
        }
    )
    assert ConnectionLimits.of(settings) == ConnectionLimits(2.5, 4.0, 300, 7.0)
    assert ConnectionLimits.of(Settings()) == ConnectionLimits(10.0, 10.0, 2000, 30.0)
