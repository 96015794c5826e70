"""The client's transport for plain HTTP: kept-alive `http.client` connections, under
httpx's client.

httpx's own transport (httpcore over h11) costs about a million instructions a call on
top of httpx's client: a quarter of what a registration costs its caller. The standard
library's connection makes the same exchange for a fraction of that, and a training
server calls for every heartbeat, checkpoint and report. HTTPS goes through httpx's own
transport, with its certificate handling.
"""

import http.client
import select
import socket
import threading

import httpx

_Server = tuple[str, int]

MAX_IDLE = 20
"""The most connections kept open, idle, to one server (httpx keeps as many)."""


class KeptAliveTransport(httpx.BaseTransport):
    """`httpx.BaseTransport` over `http.client`, keeping idle connections for the next
    request (of any thread).

    As httpcore does, a kept connection is checked before it is used again: one the
    server closed while it was idle is thrown away, and the request goes on a new one. A
    request is never sent twice: when a connection fails once the request is on it, the
    caller gets httpx's error, as from httpx's own transport."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[_Server, list[http.client.HTTPConnection]] = {}
        self._closed = False
        self._secure: httpx.HTTPTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            return self._secure_transport().handle_request(request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        server = (url.raw_host.decode("ascii"), url.port or 80)
        body = request.read()
        conn = self._idle_connection(server) or self._new_connection(
            server, timeouts.get("connect"), request
        )
        read_timeout = timeouts.get("read")
        try:
            answer, content = self._exchange(conn, request, body, read_timeout)
        except TimeoutError as exc:
            conn.close()
            raise httpx.ReadTimeout(f"no answer within {read_timeout} s", request=request) from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        except BaseException:
            conn.close()  # half used: no later request goes on it
            raise
        if answer.will_close:
            conn.close()
        else:
            self._keep(server, conn)
        return httpx.Response(
            answer.status,
            headers=[
                (name.encode("latin-1"), value.encode("latin-1"))  # as http.client read them
                for name, value in answer.getheaders()
            ],
            stream=httpx.ByteStream(content),
            request=request,
        )

    @staticmethod
    def _exchange(
        conn: http.client.HTTPConnection,
        request: httpx.Request,
        body: bytes,
        read_timeout: float | None,
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """Send `request` on `conn`; its answer, read whole."""
        if conn.sock is None:
            raise http.client.HTTPException("the connection was closed")
        conn.sock.settimeout(read_timeout)
        conn.putrequest(
            request.method,
            request.url.raw_path.decode("ascii"),
            skip_host=True,  # httpx's headers carry Host and Accept-Encoding
            skip_accept_encoding=True,
        )
        for name, value in request.headers.raw:
            conn.putheader(name, value)  # bytes go as they are
        conn.endheaders(body or None)
        answer = conn.getresponse()
        return answer, answer.read()

    def _idle_connection(self, server: _Server) -> http.client.HTTPConnection | None:
        """A kept connection to `server` that is still open, if there is one."""
        while True:
            with self._lock:
                kept = self._idle.get(server)
                if not kept:
                    return None
                conn = kept.pop()
            if _still_open(conn):
                return conn
            conn.close()

    def _new_connection(
        self, server: _Server, connect_timeout: float | None, request: httpx.Request
    ) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(server[0], server[1], timeout=connect_timeout)
        conn.auto_open = False  # a closed connection fails: it does not connect again
        try:
            conn.connect()
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(
                f"no connection within {connect_timeout} s", request=request
            ) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _keep(self, server: _Server, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            kept = self._idle.setdefault(server, [])
            if not self._closed and len(kept) < MAX_IDLE:
                kept.append(conn)
                return
        conn.close()

    def _secure_transport(self) -> httpx.HTTPTransport:
        with self._lock:
            if self._secure is None:
                self._secure = httpx.HTTPTransport()
            return self._secure

    def close(self) -> None:
        """Close the kept connections; one in use now is closed when its answer is read."""
        with self._lock:
            self._closed = True
            kept = [conn for connections in self._idle.values() for conn in connections]
            self._idle.clear()
            secure, self._secure = self._secure, None
        for conn in kept:
            conn.close()
        if secure is not None:
            secure.close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection can carry a request: the server has neither closed it
    nor sent anything on it (an idle connection readable at once is at its end)."""
    sock = conn.sock
    if sock is None:
        return False
    poll = select.poll()  # not select(), which takes no descriptor past 1023
    poll.register(sock, select.POLLIN)
    try:
        return not poll.poll(0)
    except OSError:
        return False
