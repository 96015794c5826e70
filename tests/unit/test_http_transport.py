"""The client's transport: kept-alive connections used again by any thread, a connection
the server dropped while idle replaced without an error, a request never sent twice, and
timeouts and refusals as httpx's errors, which the client turns into its own."""

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ledger.client import LedgerClient, _default_transport
from ledger.errors import DatabaseUnavailable, JobNotFound
from ledger.http_transport import KeptAliveTransport

DEADLINE_S = 10.0


class EchoServer(ThreadingHTTPServer):
    """Answers every request with what it received, as JSON; counts its connections."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), EchoHandler)
        self.connections: list[tuple[str, int]] = []
        self.open: list[socket.socket] = []
        self.closed = 0
        self.release = threading.Event()
        """Set to let a request to /wait be answered."""
        self.waiting = threading.Semaphore(0)
        """Released by each request to /wait as it starts to wait."""
        self.resets = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def drop_connections(self) -> None:
        """End every open connection from this side, as a server's idle timeout does, and
        wait until each handler has seen it."""
        closed, open_ = self.closed, list(self.open)
        for sock in open_:
            sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + DEADLINE_S
        while self.closed < closed + len(open_):
            assert time.monotonic() < deadline, "the handlers did not end"
            time.sleep(0.01)


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EchoServer

    def setup(self) -> None:
        super().setup()
        self.server.connections.append(self.client_address)
        self.server.open.append(self.connection)

    def finish(self) -> None:
        super().finish()
        self.server.open.remove(self.connection)
        self.server.closed += 1

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        if self.path == "/wait":
            self.server.waiting.release()
            self.server.release.wait(DEADLINE_S)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        if self.path == "/reset":  # read whole, then the connection is reset unanswered
            self.server.resets += 1
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        answer = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "headers": {name.lower(): value for name, value in self.headers.items()},
                "port": self.client_address[1],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("X-Name", "Zoë")  # latin-1 on the wire
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()
    thread.join(DEADLINE_S)


@pytest.fixture
def http(server: EchoServer) -> Iterator[httpx.Client]:
    client = httpx.Client(base_url=server.url, transport=KeptAliveTransport(), timeout=5)
    yield client
    client.close()


def test_a_request_arrives_whole_and_its_answer_comes_back(
    server: EchoServer, http: httpx.Client
) -> None:
    answer = http.post("/v1/jobs?after=1-2&limit=3", json={"a": "é"}, headers={"X-Id": "42"})
    assert answer.status_code == 200
    echoed = answer.json()
    assert (echoed["method"], echoed["path"]) == ("POST", "/v1/jobs?after=1-2&limit=3")
    assert json.loads(echoed["body"]) == {"a": "é"}
    assert echoed["headers"]["x-id"] == "42"
    assert echoed["headers"]["host"] == server.url.removeprefix("http://")
    assert answer.headers["content-type"] == "application/json"


def test_calls_from_one_thread_share_one_connection(server: EchoServer, http: httpx.Client) -> None:
    ports = {http.get(f"/n/{n}").json()["port"] for n in range(3)}
    assert len(ports) == 1
    assert len(server.connections) == 1


def test_calls_at_the_same_time_get_connections_of_their_own_kept_for_later_calls(
    server: EchoServer, http: httpx.Client
) -> None:
    paths: list[str] = []
    threads = [
        threading.Thread(target=lambda: paths.append(http.get("/wait").json()["path"]))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for _ in threads:  # both are on the server at once
        assert server.waiting.acquire(timeout=DEADLINE_S)
    server.release.set()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert paths == ["/wait", "/wait"]
    assert len(server.connections) == 2
    for n in range(4):
        assert http.get(f"/later/{n}").status_code == 200
    assert len(server.connections) == 2


def test_threads_that_ended_leave_their_connection_to_the_next(
    server: EchoServer, http: httpx.Client
) -> None:
    for n in range(20):  # as a worker starts a heartbeat thread per job
        thread = threading.Thread(target=lambda n=n: http.get(f"/job/{n}"))
        thread.start()
        thread.join(DEADLINE_S)
    assert len(server.connections) == 1


def test_a_request_whose_connection_fails_once_it_is_sent_is_not_sent_again(
    server: EchoServer, http: httpx.Client
) -> None:
    http.get("/first")
    with pytest.raises(httpx.TransportError):
        http.post("/reset", json={"once": True})
    assert server.resets == 1
    assert http.get("/next").status_code == 200


def test_a_header_outside_ascii_arrives_as_it_was_sent(http: httpx.Client) -> None:
    assert http.get("/name").headers["x-name"] == "Zoë"


def test_a_connection_the_server_dropped_while_idle_is_replaced_without_an_error(
    server: EchoServer, http: httpx.Client
) -> None:
    first = http.get("/before").json()["port"]
    server.drop_connections()
    answer = http.get("/after")
    assert answer.status_code == 200
    assert answer.json()["port"] != first
    assert len(server.connections) == 2


def test_an_answer_that_closes_its_connection_leaves_the_next_call_a_new_one(
    server: EchoServer, http: httpx.Client
) -> None:
    first = http.get("/close").json()["port"]
    assert http.get("/next").json()["port"] != first


def test_an_answer_later_than_the_timeout_is_a_read_timeout_and_the_next_call_works(
    server: EchoServer,
) -> None:
    client = httpx.Client(base_url=server.url, transport=KeptAliveTransport(), timeout=0.2)
    try:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/wait")
        server.release.set()
        assert client.get("/next").json()["path"] == "/next"
    finally:
        client.close()


def test_no_server_is_a_connect_error_and_the_client_says_the_ledger_cannot_be_reached() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = KeptAliveTransport()
    with pytest.raises(httpx.ConnectError):
        transport.handle_request(httpx.Request("GET", f"http://127.0.0.1:{port}/"))
    client = LedgerClient(f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(DatabaseUnavailable, match="cannot be reached"):
        client.job("any")
    client.close()


def test_the_client_uses_it_unless_the_environment_names_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    assert isinstance(_default_transport(), KeptAliveTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert _default_transport() is None


def test_closing_closes_every_kept_connection(server: EchoServer, http: httpx.Client) -> None:
    threads = [threading.Thread(target=lambda: http.get("/wait")) for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert server.waiting.acquire(timeout=DEADLINE_S)
    server.release.set()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert len(server.connections) == 2
    http.close()
    deadline = time.monotonic() + DEADLINE_S
    while server.closed < 2:
        assert time.monotonic() < deadline, "a connection stayed open"
        time.sleep(0.01)


# -- answers as they come on the wire ------------------------------------------------


class ScriptedServer:
    """Accepts one connection, reads one request's head, and sends `answer` in pieces of
    `piece` bytes; then closes the connection, unless `keep_open`."""

    def __init__(self, answer: bytes, *, piece: int = 1 << 16, keep_open: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.thread = threading.Thread(
            target=self._serve, args=(answer, piece, keep_open), daemon=True
        )
        self.thread.start()

    def _serve(self, answer: bytes, piece: int, keep_open: bool) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(DEADLINE_S)
        received = b""
        while b"\r\n\r\n" not in received:
            received += conn.recv(4096)
        self.requests.append(received)
        for start in range(0, len(answer), piece):
            conn.sendall(answer[start : start + piece])
        if keep_open:
            conn.recv(1)  # until the client closes
        conn.close()
        self.listener.close()


def exchange(server: ScriptedServer, method: str = "GET") -> httpx.Response:
    with httpx.Client(transport=KeptAliveTransport(), timeout=DEADLINE_S) as client:
        answer = client.request(method, f"{server.url}/x")
    server.thread.join(DEADLINE_S)
    return answer


def test_an_answer_in_chunks_arrives_whole() -> None:
    server = ScriptedServer(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        keep_open=True,
    )
    answer = exchange(server)
    assert (answer.status_code, answer.text) == (200, "hello world")


def test_an_answer_sent_a_byte_at_a_time_arrives_whole() -> None:
    body = b'{"job_id": "a"}'
    server = ScriptedServer(
        b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nX-Two: 1\r\nX-Two: 2\r\n\r\n%s" % (len(body), body),
        piece=1,
        keep_open=True,
    )
    answer = exchange(server)
    assert answer.status_code == 409
    assert answer.json() == {"job_id": "a"}
    assert answer.headers.get_list("x-two") == ["1", "2"]


def test_an_answer_without_a_length_ends_where_its_connection_does() -> None:
    server = ScriptedServer(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end")
    assert exchange(server).text == "to the end"


def test_a_connection_closed_part_way_through_an_answer_is_a_read_error() -> None:
    server = ScriptedServer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
    with pytest.raises(httpx.ReadError, match="before its answer ended"):
        exchange(server)


def test_an_answer_that_is_not_http_is_a_read_error() -> None:
    server = ScriptedServer(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    with pytest.raises(httpx.ReadError):
        exchange(server)


def test_a_header_that_would_end_the_request_early_is_refused_before_it_is_sent(
    server: EchoServer, http: httpx.Client
) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        http.get("/x", headers={"X-Id": "1\r\nX-Injected: yes"})
    assert server.connections == []


def test_the_answer_to_a_head_request_ends_with_its_headers() -> None:
    server = ScriptedServer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", keep_open=True)
    answer = exchange(server, "HEAD")
    assert (answer.status_code, answer.headers["content-length"], answer.content) == (200, "5", b"")
    assert server.requests[0].startswith(b"HEAD /x HTTP/1.1\r\n")


def echoed_calls(ledger: LedgerClient) -> list[dict[str, Any]]:
    """What the echo server received from a plain path, a path to escape, a query and a
    registration with its body."""
    return [
        ledger.job("job-1"),
        ledger.job("zoë 1"),
        ledger.jobs(status="queued", limit=5, cursor="c d"),
        ledger.register("job-2", spec={"lr": 0.1}, minimal=True),
    ]


def test_the_client_writes_plain_http_itself_as_httpx_would(server: EchoServer) -> None:
    plain = LedgerClient(server.url + "/base", "tok-1")
    through_httpx = LedgerClient(server.url + "/base", "tok-1", transport=httpx.HTTPTransport())
    assert plain._plain is not None and through_httpx._plain is None
    ours, theirs = echoed_calls(plain), echoed_calls(through_httpx)
    assert [call["path"] for call in ours] == [call["path"] for call in theirs]
    assert [call["path"] for call in ours] == [
        "/base/v1/jobs/job-1",
        "/base/v1/jobs/zo%C3%AB%201",
        "/base/v1/jobs?status=queued&limit=5&cursor=c+d",
        "/base/v1/jobs",
    ]
    assert [(call["method"], call["body"]) for call in ours] == [
        (call["method"], call["body"]) for call in theirs
    ]
    sent, httpx_sent = ours[-1]["headers"], theirs[-1]["headers"]
    for name in ("host", "authorization", "content-type", "content-length", "prefer"):
        assert sent[name] == httpx_sent[name], name
    assert sent["authorization"] == "Bearer tok-1"
    assert len(sent["idempotency-key"]) == 32 and sent["traceparent"].startswith("00-")
    assert "content-length" not in ours[0]["headers"]
    plain.close()
    through_httpx.close()


def test_a_token_that_would_end_a_request_early_is_refused_before_anything_is_sent(
    server: EchoServer,
) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        LedgerClient(server.url, "tok\r\nX-Injected: yes")
    assert server.connections == []


def test_the_plain_path_reads_refusals_as_the_ledger_errors_they_are() -> None:
    problem = b'{"type": "/problems/job-not-found", "detail": "no job j-1", "job_id": "j-1"}'
    server = ScriptedServer(
        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/problem+json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(problem), problem)
    )
    ledger = LedgerClient(server.url, "tok-1", retries=0)
    assert ledger._plain is not None
    with pytest.raises(JobNotFound):
        ledger.job("j-1")
    ledger.close()
