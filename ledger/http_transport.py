"""The client's transport for plain HTTP: kept-alive connections under httpx's client,
each request written whole in one send and its answer read with httptools' parser.

httpx's own transport (httpcore over h11) costs about a million instructions a call on
top of httpx's client: a quarter of what a registration costs its caller. The standard
library's `http.client` makes the same exchange for less, but parses an answer's headers
with the `email` package, a fifth of the client's time a call; httptools (llhttp, the
parser of Node.js and of uvicorn) parses them in C. A training server calls for every
heartbeat, checkpoint and report. HTTPS and `HEAD` go through httpx's own transport.
"""

import re
import select
import socket
import threading

import httptools
import httpx

_Server = tuple[str, int]

MAX_IDLE = 20
"""The most connections kept open, idle, to one server (httpx keeps as many)."""
READ_BYTES = 65536
_UNSENDABLE = re.compile(rb"[\r\n\0]")
"""What no header name or value may hold: it would end the header, or the request, early."""


class KeptAliveTransport(httpx.BaseTransport):
    """`httpx.BaseTransport` over kept-alive sockets, keeping idle connections for the
    next request (of any thread).

    As httpcore does, a kept connection is checked before it is used again: one the
    server closed while it was idle is thrown away, and the request goes on a new one. A
    request is never sent twice: when a connection fails once the request is on it, the
    caller gets httpx's error, as from httpx's own transport."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[_Server, list[socket.socket]] = {}
        self._closed = False
        self._secure: httpx.HTTPTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http" or request.method == "HEAD":
            return self._own_transport().handle_request(request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        server = (url.raw_host.decode("ascii"), url.port or 80)
        message = _message(request)
        sock = self._idle_connection(server) or _new_connection(
            server, timeouts.get("connect"), request
        )
        read_timeout = timeouts.get("read")
        try:
            answer = _exchange(sock, message, read_timeout)
        except TimeoutError as exc:
            sock.close()
            raise httpx.ReadTimeout(f"no answer within {read_timeout} s", request=request) from exc
        except (OSError, httptools.HttpParserError) as exc:
            sock.close()
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        except BaseException:
            sock.close()  # half used: no later request goes on it
            raise
        if answer.keep_alive:
            self._keep(server, sock)
        else:
            sock.close()
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(b"".join(answer.body)),
            request=request,
        )

    def _idle_connection(self, server: _Server) -> socket.socket | None:
        """A kept connection to `server` that is still open, if there is one."""
        while True:
            with self._lock:
                kept = self._idle.get(server)
                if not kept:
                    return None
                sock = kept.pop()
            if _still_open(sock):
                return sock
            sock.close()

    def _keep(self, server: _Server, sock: socket.socket) -> None:
        with self._lock:
            kept = self._idle.setdefault(server, [])
            if not self._closed and len(kept) < MAX_IDLE:
                kept.append(sock)
                return
        sock.close()

    def _own_transport(self) -> httpx.HTTPTransport:
        with self._lock:
            if self._secure is None:
                self._secure = httpx.HTTPTransport()
            return self._secure

    def close(self) -> None:
        """Close the kept connections; one in use now is closed when its answer is read."""
        with self._lock:
            self._closed = True
            kept = [sock for connections in self._idle.values() for sock in connections]
            self._idle.clear()
            secure, self._secure = self._secure, None
        for sock in kept:
            sock.close()
        if secure is not None:
            secure.close()


class _Answer:
    """One answer as httptools' parser reads it (its callbacks)."""

    __slots__ = ("body", "done", "headers", "headers_done", "keep_alive", "parser", "status")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.headers_done = False
        self.done = False
        self.keep_alive = False
        """Whether the connection can carry another request (HTTP/1.1, no `Connection:
        close`) once the answer, which says where its body ends, is read."""

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))  # bytes as they came (latin-1 on the wire)

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive() and self.delimited()

    def delimited(self) -> bool:
        """Whether the answer says where its body ends (a length, or chunks)."""
        return any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers
        )

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


def _message(request: httpx.Request) -> bytes:
    """The request as it goes on the wire: its line, httpx's headers (Host and Content-Length
    among them) as they are, and its body."""
    lines = [b"%s %s HTTP/1.1" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in request.headers.raw:
        if _UNSENDABLE.search(name) or _UNSENDABLE.search(value):
            raise ValueError(f"a header cannot hold CR, LF or NUL: {name!r}")
        lines.append(b"%s: %s" % (name, value))
    lines += [b"", request.read()]
    return b"\r\n".join(lines)


def _exchange(sock: socket.socket, message: bytes, read_timeout: float | None) -> _Answer:
    """Send `message` on `sock`; its answer, read whole."""
    sock.settimeout(read_timeout)
    sock.sendall(message)
    answer = _Answer()
    while not answer.done:
        data = sock.recv(READ_BYTES)
        if not data:
            if answer.headers_done and not answer.delimited():
                return answer  # a body that ends where the connection does
            raise ConnectionError("the server closed the connection before its answer ended")
        answer.parser.feed_data(data)
    return answer


def _new_connection(
    server: _Server, connect_timeout: float | None, request: httpx.Request
) -> socket.socket:
    try:
        sock = socket.create_connection(server, timeout=connect_timeout)
    except TimeoutError as exc:
        raise httpx.ConnectTimeout(
            f"no connection within {connect_timeout} s", request=request
        ) from exc
    except OSError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _still_open(sock: socket.socket) -> bool:
    """Whether an idle connection can carry a request: the server has neither closed it
    nor sent anything on it (an idle connection readable at once is at its end)."""
    if sock.fileno() < 0:
        return False
    poll = select.poll()  # not select(), which takes no descriptor past 1023
    poll.register(sock, select.POLLIN)
    try:
        return not poll.poll(0)
    except OSError:
        return False
