"""An answer's head and body leave in one write; nothing waits past its turn of the loop."""

import asyncio
import functools
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from api.connection_guard import ConnectionLimits, guarded_protocol
from api.one_send import MOST_JOINED, OneSendTransport
from ledger.settings import Settings
from tests.integration.test_loop_appends import run_apart


class Recorded(asyncio.Transport):
    """A transport that keeps what is written to it, write by write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_write_buffer_size(self) -> int:
        return 0


def on_a_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """The test, run on an event loop of its own (on a thread of its own)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        run_apart(test(*args, **kwargs))

    return run


async def a_turn() -> None:
    """Let the event loop run what was scheduled for the turn after this one."""
    await asyncio.sleep(0)


@on_a_loop
async def test_a_head_and_its_body_written_in_one_turn_go_in_one_write() -> None:
    recorded = Recorded()
    transport = OneSendTransport(recorded, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert recorded.writes == []
    transport.write(b"{}")
    assert recorded.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    await a_turn()
    assert len(recorded.writes) == 1


@on_a_loop
async def test_a_write_alone_is_sent_when_its_turn_ends() -> None:
    recorded = Recorded()
    transport = OneSendTransport(recorded, asyncio.get_running_loop())
    transport.write(b"head")
    assert transport.get_write_buffer_size() == 4
    await a_turn()
    assert recorded.writes == [b"head"]
    transport.write(b"event")
    await a_turn()
    assert recorded.writes == [b"head", b"event"]


@on_a_loop
async def test_a_large_write_goes_as_it_came_after_what_was_held() -> None:
    recorded = Recorded()
    transport = OneSendTransport(recorded, asyncio.get_running_loop())
    page = b"x" * (MOST_JOINED + 1)
    transport.write(b"head")
    transport.write(page)
    assert recorded.writes == [b"head", page]
    transport.write(page)
    assert recorded.writes == [b"head", page, page]


@on_a_loop
async def test_closing_sends_what_is_held_first_and_aborting_drops_it() -> None:
    loop = asyncio.get_running_loop()
    closed, aborted = Recorded(), Recorded()
    to_close, to_abort = OneSendTransport(closed, loop), OneSendTransport(aborted, loop)
    to_close.write(b"last words")
    to_close.close()
    assert closed.writes == [b"last words"] and closed.closed
    to_abort.write(b"never sent")
    to_abort.abort()
    await a_turn()
    assert aborted.writes == [] and aborted.aborted


@on_a_loop
async def test_nothing_is_written_to_a_connection_closing_before_its_turn_ends() -> None:
    recorded = Recorded()
    transport = OneSendTransport(recorded, asyncio.get_running_loop())
    transport.write(b"head")
    recorded.closed = True  # the peer went away meanwhile
    await a_turn()
    assert recorded.writes == []


@pytest.mark.parametrize("writes", [[b"head", b"body"], [b"one"], [b"a", b"b", b"c"]])
@on_a_loop
async def test_a_real_socket_receives_every_byte_in_order(writes: list[bytes]) -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    with theirs:
        raw, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        transport = OneSendTransport(raw, loop)
        for data in writes:
            transport.write(data)
        transport.close()
        theirs.setblocking(False)
        received = b""
        async with asyncio.timeout(10):
            while chunk := await loop.sock_recv(theirs, 1024):
                received += chunk
        assert received == b"".join(writes)


@on_a_loop
async def test_the_server_s_connections_answer_through_it() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"answered"})

    config = Config(app, http="httptools", lifespan="off")
    config.load()
    loop = asyncio.get_running_loop()
    protocol = guarded_protocol(ConnectionLimits.of(Settings()))(config, ServerState(), {}, loop)
    ours, theirs = socket.socketpair()
    with theirs:
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, ours)
        assert isinstance(protocol.transport, OneSendTransport)
        theirs.setblocking(False)
        await loop.sock_sendall(theirs, b"GET / HTTP/1.1\r\nHost: ledger\r\n\r\n")
        received = b""
        async with asyncio.timeout(10):
            while not received.endswith(b"0\r\n\r\n"):  # the chunked body's end
                chunk = await loop.sock_recv(theirs, 4096)
                assert chunk, f"the connection closed after {received!r}"
                received += chunk
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nanswered\r\n" in received
        transport.close()
