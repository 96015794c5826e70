"""The socket `jobledger serve --workers N` listens on, as its workers' event loops use it."""

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor

from api.workers import bind


def test_connections_accepted_on_the_shared_socket_send_without_delay() -> None:
    """An answer's head and body go out at once, not after the client's delayed
    acknowledgement: each accepted connection has TCP_NODELAY."""

    async def accepted_nodelay() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        with bind("127.0.0.1", 0, 16) as listening:
            server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
            async with server:
                port = listening.getsockname()[1]
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                try:
                    return await asyncio.wait_for(accepted, timeout=10)
                finally:
                    writer.close()

    with ThreadPoolExecutor(1) as thread:  # a loop of its own, whatever this thread runs
        assert thread.submit(asyncio.run, accepted_nodelay()).result(timeout=30) != 0
