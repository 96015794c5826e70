"""The client's transport for plain HTTP: a kept-alive `http.client` connection per thread
and server, under httpx's client.

httpx's own transport (httpcore over h11) costs about a million instructions a call on
top of httpx's client: a quarter of what a registration costs its caller. The standard
library's connection makes the same exchange for a fraction of that, and a training
server calls for every heartbeat, checkpoint and report. HTTPS goes through httpx's own
transport, with its certificate handling.
"""

import http.client
import socket
import threading

import httpx

_Server = tuple[str, int]

_DROPPED_WHILE_IDLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
"""What a kept-alive connection that the server closed while it was idle fails with when
it is used again."""


class KeptAliveTransport(httpx.BaseTransport):
    """`httpx.BaseTransport` over `http.client`. Each thread keeps its own connection to
    each server, so one client serves many threads. A request on a kept-alive connection
    that the server dropped while it was idle is sent once more, on a new connection:
    the answer to it was never begun (every POST this client sends carries an idempotency
    key besides)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()
        self._secure: httpx.HTTPTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            return self._secure_transport().handle_request(request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        server = (url.host, url.port or 80)
        body = request.read()
        conn, reused = self._connection(server, timeouts.get("connect"), request)
        try:
            return self._exchange(conn, request, body, timeouts.get("read"))
        except _DROPPED_WHILE_IDLE as exc:
            self._drop(server)
            if not reused:
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        conn, _ = self._connection(server, timeouts.get("connect"), request)
        try:
            return self._exchange(conn, request, body, timeouts.get("read"))
        except _DROPPED_WHILE_IDLE as exc:
            self._drop(server)
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        request: httpx.Request,
        body: bytes,
        read_timeout: float | None,
    ) -> httpx.Response:
        """Send `request` on `conn` and read the whole answer."""
        server = (conn.host, conn.port)
        try:
            assert conn.sock is not None
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
            content = answer.read()
        except _DROPPED_WHILE_IDLE:
            raise
        except TimeoutError as exc:
            self._drop(server)
            raise httpx.ReadTimeout(f"no answer within {read_timeout} s", request=request) from exc
        except (OSError, http.client.HTTPException) as exc:
            self._drop(server)
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        if answer.will_close:
            self._drop(server)
        return httpx.Response(
            answer.status,
            headers=answer.getheaders(),
            stream=httpx.ByteStream(content),
            request=request,
        )

    def _connection(
        self, server: _Server, connect_timeout: float | None, request: httpx.Request
    ) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to `server`, and whether an earlier request used it."""
        connections = self._connections()
        conn = connections.get(server)
        if conn is not None and conn.sock is not None:  # not closed since
            return conn, True
        conn = http.client.HTTPConnection(server[0], server[1], timeout=connect_timeout)
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
        connections[server] = conn
        with self._lock:
            self._open.add(conn)
        return conn, False

    def _connections(self) -> dict[_Server, http.client.HTTPConnection]:
        """This thread's connections, by server."""
        connections: dict[_Server, http.client.HTTPConnection] | None = getattr(
            self._local, "connections", None
        )
        if connections is None:
            connections = self._local.connections = {}
        return connections

    def _drop(self, server: _Server) -> None:
        """Close this thread's connection to `server`: the next request makes a new one."""
        conn = self._connections().pop(server, None)
        if conn is not None:
            conn.close()
            with self._lock:
                self._open.discard(conn)

    def _secure_transport(self) -> httpx.HTTPTransport:
        with self._lock:
            if self._secure is None:
                self._secure = httpx.HTTPTransport()
            return self._secure

    def close(self) -> None:
        """Close every thread's connections."""
        with self._lock:
            connections, self._open = self._open, set()
            secure, self._secure = self._secure, None
        for conn in connections:
            conn.close()
        if secure is not None:
            secure.close()
