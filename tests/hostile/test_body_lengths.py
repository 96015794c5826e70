"""A real `jobledger serve` reads a body no further than its Content-Length says, so the
body limit only counts the bodies sent in chunks: bytes past a declared length are the
next request, never more of this one's body."""

import contextlib
import re
import signal
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Server

ALICE = b"Authorization: Bearer t-alice-0123456789abcdef\r\n"
ALICE_HEADERS = {"Authorization": "Bearer t-alice-0123456789abcdef"}
MIB = 1024 * 1024


@pytest.fixture
def server(database_url: str) -> Iterator[Server]:
    served = Server(database_url)
    served.start()
    yield served
    served.kill(signal.SIGTERM)


def exchange(server: Server, request: bytes) -> bytes:
    """Everything the server answers to `request` until it closes the connection (a
    server that closes with bytes unread resets it, and the answers may be lost; one
    that has closed already leaves nothing to shut down)."""
    answers = b""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request)
            with contextlib.suppress(OSError):  # ENOTCONN: the server closed first
                sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                answers += chunk
    return answers


def post_job(headers: bytes, body: bytes) -> bytes:
    return (
        b"POST /v1/jobs HTTP/1.1\r\nHost: ledger\r\nContent-Type: application/json\r\n"
        + ALICE
        + headers
        + b"\r\n"
        + body
    )


def statuses(answers: bytes) -> list[bytes]:
    return re.findall(rb"HTTP/1\.1 (\d{3}) ", answers)


def test_bytes_past_the_declared_length_are_not_the_body(server: Server) -> None:
    """Read with the 2 MiB after it, the body would be no JSON at all, and over the limit."""
    body = b'{"job_id": "declared"}'
    more = b'"' + b"x" * (2 * MIB) + b'"}'
    exchange(server, post_job(b"Content-Length: %d\r\n" % len(body), body + more))
    job = httpx.get(f"{server.url}/v1/jobs/declared", headers=ALICE_HEADERS, timeout=10)
    assert job.status_code == 200, job.text
    assert job.json()["spec"] == {}


def test_a_chunked_body_past_the_limit_is_refused_as_it_arrives(server: Server) -> None:
    chunk = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17))
    request = post_job(b"Transfer-Encoding: chunked\r\n", b'10\r\n{"spec": {"x": "\r\n' + chunks)
    answers = exchange(server, request + b"0\r\n\r\n")
    assert statuses(answers) == [b"413"], answers[:500]


def test_a_body_both_chunked_and_of_a_declared_length_is_not_read(server: Server) -> None:
    request = post_job(
        b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", b"2\r\n{}\r\n0\r\n\r\n"
    )
    answers = exchange(server, request)
    assert statuses(answers) == [b"400"], answers[:500]
