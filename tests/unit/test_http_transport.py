"""The client's transport: kept-alive connections per thread, a connection the server
dropped replaced without an error, and timeouts and refusals as httpx's errors, which
the client turns into its own."""

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ledger.client import LedgerClient, _default_transport
from ledger.errors import DatabaseUnavailable
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
            self.server.release.wait(DEADLINE_S)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
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


def test_each_thread_has_a_connection_of_its_own(server: EchoServer, http: httpx.Client) -> None:
    paths: dict[int, list[str]] = {0: [], 1: []}

    def calls(thread: int) -> None:
        for n in range(5):
            paths[thread].append(http.get(f"/t{thread}/{n}").json()["path"])

    threads = [threading.Thread(target=calls, args=(index,)) for index in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    assert paths == {index: [f"/t{index}/{n}" for n in range(5)] for index in paths}
    assert len(server.connections) == 2


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


def test_closing_closes_the_connections_of_every_thread(
    server: EchoServer, http: httpx.Client
) -> None:
    http.get("/main")
    worker = threading.Thread(target=lambda: http.get("/worker"))
    worker.start()
    worker.join(DEADLINE_S)
    assert len(server.connections) == 2
    http.close()
    deadline = time.monotonic() + DEADLINE_S
    while server.closed < 2:
        assert time.monotonic() < deadline, "a connection stayed open"
        time.sleep(0.01)
