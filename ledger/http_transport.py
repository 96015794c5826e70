"""The client's transport for plain HTTP: kept-alive connections under httpx's client,
each request written whole in one send and its answer read with httptools' parser.

httpx's own transport (httpcore over h11) costs about a million instructions a call on
top of httpx's client: a quarter of what a registration costs its caller. The standard
library's `http.client` makes the same exchange for less, but parses an answer's headers
with the `email` package, a fifth of the client's time a call; httptools (llhttp, the
parser of Node.js and of uvicorn) parses them in C. A training server calls for every
heartbeat, checkpoint and report. HTTPS and `HEAD` go through httpx's own transport.

`PlainRequests` is what `LedgerClient` sends plain HTTP with: it writes each request onto
these connections itself, without httpx's client around the call, which cost as much
again as the exchange (callgrind, a registration: 1.27 million instructions in all
through httpx's client, 0.16 million without it).
"""

import re
import select
import socket
import threading
from collections.abc import Mapping
from typing import Any, Protocol

import httptools
import httpx
import orjson

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
        answer = self.round_trip(
            server, _message(request), timeouts.get("connect"), timeouts.get("read"), request
        )
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(b"".join(answer.body)),
            request=request,
        )

    def round_trip(
        self,
        server: _Server,
        message: bytes,
        connect_timeout: float | None,
        read_timeout: float | None,
        request: httpx.Request | None = None,
    ) -> "_Answer":
        """Send `message` (a whole plain-HTTP request) to `server` on a kept connection
        or a new one; its answer, read whole. Failures are httpx's errors (of `request`,
        when there is one)."""
        sock = self._idle_connection(server) or _new_connection(server, connect_timeout, request)
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
        return answer

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


class Answered(Protocol):
    """What a caller reads of an answer: `httpx.Response` and `PlainAnswer` alike."""

    @property
    def status_code(self) -> int: ...

    @property
    def content(self) -> bytes: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


class PlainAnswer:
    """An answer `PlainRequests` read: its status and body."""

    __slots__ = ("content", "status_code")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return orjson.loads(self.content)


class PlainRequests:
    """A client's requests to one plain-HTTP server, written straight onto the transport's
    connections: the request line, the client's fixed headers (written once), the call's
    own and its body. httpx's client builds a `Request` and a `Response` around every
    call (URL merging, header and cookie handling, event hooks), which costs about as
    much as the exchange itself; a path with a query or a character to escape is still
    written by httpx's rules."""

    def __init__(
        self,
        transport: KeptAliveTransport,
        base_url: httpx.URL,
        headers: Mapping[str, str],
        timeout: float | None,
    ) -> None:
        self.transport = transport
        self.server: _Server = (base_url.raw_host.decode("ascii"), base_url.port or 80)
        self.prefix = base_url.raw_path.rstrip(b"/")
        fixed = {"Host": base_url.netloc.decode("ascii"), "Accept": "*/*", **headers}
        self.fixed = _header_lines(fixed)
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str],
        content: bytes | None,
    ) -> PlainAnswer:
        """One exchange; httpx's errors for a connection that fails or an answer that
        does not come in time."""
        if params is None and _PLAIN_PATH.fullmatch(path):
            target = self.prefix + path.encode("ascii")
        else:
            target = self.prefix + httpx.URL(path, params=params).raw_path
        body = content or b""
        lines = [b"%s %s HTTP/1.1" % (method.encode("ascii"), target), self.fixed]
        if headers:
            lines.append(_header_lines(headers))
        if content is not None or method in _WITH_BODY:
            lines.append(b"Content-Length: %d" % len(body))
        lines += [b"", body]
        answer = self.transport.round_trip(
            self.server, b"\r\n".join(lines), self.timeout, self.timeout
        )
        return PlainAnswer(answer.status, b"".join(answer.body))


_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
"""A path sent as it is: nothing in it to escape, and no query."""
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
"""Methods whose requests say the length of their body, empty or not (as httpx's do)."""


def _header_lines(headers: Mapping[str, str]) -> bytes:
    """`headers` as lines of a request (`_header_line` each)."""
    return b"\r\n".join(
        _header_line(name.encode("ascii"), value.encode("latin-1"))
        for name, value in headers.items()
    )


def _header_line(name: bytes, value: bytes) -> bytes:
    """A header's line, refused if it holds CR, LF or NUL: it would end the header, or
    the request, early."""
    if _UNSENDABLE.search(name) or _UNSENDABLE.search(value):
        raise ValueError(f"a header cannot hold CR, LF or NUL: {name!r}")
    return b"%s: %s" % (name, value)


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
    lines += [_header_line(name, value) for name, value in request.headers.raw]
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
    server: _Server, connect_timeout: float | None, request: httpx.Request | None
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
