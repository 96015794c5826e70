"""Connections that cannot hold the server: uvicorn's HTTP/1.1 protocol (httptools, the
llhttp parser in C) with the timeouts and the cap uvicorn lacks.

- A request's line and headers arrive whole within `header_timeout_s` of the connection
  opening or of the previous answer, or the connection is closed: a connection that
  sends nothing, or half a request line, is closed then. uvicorn's keep-alive timeout
  (5 s) still closes an idle kept-alive connection sooner.
- While a request's body is awaited, `body_timeout_s` without a byte of it closes the
  connection. Time while reading is paused (the app has not yet taken what came) or
  while the client waits for `100 Continue` does not count; each byte starts the clock
  again.
- An answer the client takes nothing of for `send_timeout_s` (the send buffer stays
  above its high-water mark) aborts the connection: a client that stops reading holds
  no connection, stream or file handle for longer.
- At most `max_connections` are open. A connection beyond it sheds the one that has
  waited longest on its client (idle, or part-way through a request), so a caller that
  sends its request at once is served; a connection whose request is being answered
  (a handler at work, an event stream) is never shed.

The cap fits the process's file limit (`fit_to_file_limit`), so accept() never fails
for want of a file handle. What was closed is logged as one summary line at most every
`SUMMARY_EVERY_S` seconds.
"""

import asyncio
import enum
import logging
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from api.one_send import OneSendTransport
from ledger.settings import Settings

log = logging.getLogger("jobledger.connections")

RESERVED_FILES = 128
"""File handles kept for the process's own use besides its database pool: the feed
watcher's and the monitor's connections, the listening socket, logs, static files."""
UVICORN_BACKLOG = 2048
"""uvicorn's default listen backlog: how many connections one accept round may take
before any of them is counted, so the cap leaves that many handles free too."""
ACCEPT_ROUNDS_IN_FLIGHT = 3
"""Accept rounds whose connections can hold file handles before the cap sees them: a
connection accepted in one turn of the event loop gets its transport in the next and its
protocol in the one after, and a connection shed is closed a turn after that; meanwhile
the listening socket, flooded, is read again every turn."""
SUMMARY_EVERY_S = 10.0


class Closed(enum.StrEnum):
    """Why the guard closed a connection."""

    SHED = "shed"  # the cap was reached and it had waited longest on its client
    HEADERS_LATE = "headers_late"  # no whole request line and headers in time
    BODY_STALLED = "body_stalled"  # no byte of an awaited body in time
    NOT_READING = "not_reading"  # took nothing of its answer in time


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_connections: int
    send_timeout_s: float = 30.0
    backlog: int = UVICORN_BACKLOG

    @classmethod
    def of(cls, settings: Settings) -> "ConnectionLimits":
        for name, value in (
            ("JOBLEDGER_HEADER_TIMEOUT_S", settings.header_timeout_s),
            ("JOBLEDGER_BODY_TIMEOUT_S", settings.body_timeout_s),
            ("JOBLEDGER_MAX_CONNECTIONS", settings.max_connections),
            ("JOBLEDGER_SEND_TIMEOUT_S", settings.send_timeout_s),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be a positive number, not {value}")
        return cls(
            settings.header_timeout_s,
            settings.body_timeout_s,
            settings.max_connections,
            settings.send_timeout_s,
        )


def raise_file_limit() -> int:
    """Raises the soft limit of open files to the hard limit; returns the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open file limit from %d to %d: %s", soft, wanted, exc)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def fit_to_file_limit(
    limits: ConnectionLimits, file_limit: int, pool_size: int
) -> ConnectionLimits:
    """The limits with the cap and the listen backlog lowered to leave file handles free
    for the database pool (twice its size: its overflow), `RESERVED_FILES`, and
    `ACCEPT_ROUNDS_IN_FLIGHT` accept rounds of `backlog` connections each: at the cap,
    every connection accepted is shed or closed, but only a few turns of the event loop
    later, so the process never runs out of handles."""
    spare = file_limit - RESERVED_FILES - 2 * pool_size
    backlog = max(16, min(UVICORN_BACKLOG, spare // (2 * ACCEPT_ROUNDS_IN_FLIGHT + 2)))
    most = spare - ACCEPT_ROUNDS_IN_FLIGHT * backlog
    if most < 16:
        raise ValueError(
            f"the open file limit ({file_limit}) leaves too few handles for connections: "
            "raise it (ulimit -n)"
        )
    if limits.max_connections > most:
        log.warning(
            "JOBLEDGER_MAX_CONNECTIONS=%d lowered to %d to fit the open file limit (%d)",
            limits.max_connections,
            most,
            file_limit,
        )
    return replace(limits, max_connections=min(limits.max_connections, most), backlog=backlog)


class ClosingSummary:
    """Counts the connections the guard closed, and logs them as one line at once and
    then at most every `every_s`: a flood of slow clients is a few lines, not one each."""

    def __init__(
        self,
        limits: ConnectionLimits,
        every_s: float = SUMMARY_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.every_s = every_s
        self.clock = clock
        self.counts: Counter[Closed] = Counter()
        self.total: Counter[Closed] = Counter()
        self._quiet_until = float("-inf")
        self._flush: asyncio.TimerHandle | None = None

    def count(self, reason: Closed) -> None:
        self.counts[reason] += 1
        self.total[reason] += 1
        if self._flush is not None:
            return
        wait = self._quiet_until - self.clock()
        if wait <= 0:
            self.flush()
        else:
            self._flush = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        self._flush = None
        if not self.counts:
            return
        said = {
            Closed.SHED: f"shed at the cap of {self.limits.max_connections} connections",
            Closed.HEADERS_LATE: (
                f"sent no whole request line and headers within {self.limits.header_timeout_s:g} s"
            ),
            Closed.BODY_STALLED: f"sent no byte of a body for {self.limits.body_timeout_s:g} s",
            Closed.NOT_READING: f"took nothing of an answer for {self.limits.send_timeout_s:g} s",
        }
        parts = [
            f"{self.counts[reason]} {said[reason]}" for reason in Closed if self.counts[reason]
        ]
        log.warning("closed connections: %s", "; ".join(parts))
        self.counts.clear()
        self._quiet_until = self.clock() + self.every_s


class ConnectionBook:
    """The open connections of one server, and those waiting on their client in the
    order they began to wait: the first is the one to shed."""

    def __init__(self, limits: ConnectionLimits, summary: ClosingSummary | None = None) -> None:
        self.limits = limits
        self.summary = summary or ClosingSummary(limits)
        self.open: set[GuardedProtocol] = set()
        self.waiting: dict[GuardedProtocol, None] = {}

    def admit(self, connection: "GuardedProtocol") -> None:
        self.open.add(connection)
        self.waiting[connection] = None
        while len(self.open) > self.limits.max_connections and self.waiting:
            next(iter(self.waiting)).close_for(Closed.SHED)

    def waits(self, connection: "GuardedProtocol") -> None:
        if connection in self.open:
            self.waiting.pop(connection, None)
            self.waiting[connection] = None

    def answers(self, connection: "GuardedProtocol") -> None:
        self.waiting.pop(connection, None)

    def forget(self, connection: "GuardedProtocol") -> None:
        self.open.discard(connection)
        self.waiting.pop(connection, None)


class Phase(enum.Enum):
    HEADERS = "waiting for a request line and headers"
    BODY = "waiting for a request's body"
    ANSWERING = "the request is whole: the app answers it"


class WatchedFlow(FlowControl):
    """uvicorn's flow control, telling the connection when reading pauses and when the
    app asks for more of the body."""

    def __init__(self, transport: asyncio.Transport, connection: "GuardedProtocol") -> None:
        super().__init__(transport)
        self.connection = connection

    def pause_reading(self) -> None:
        super().pause_reading()
        self.connection.reading_paused()

    def resume_reading(self) -> None:
        super().resume_reading()  # also called each time the app asks for the body
        self.connection.reading_resumed()


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header, body and send timeouts and a shared cap.

    The parser says where the client is through its callbacks: after a request's
    headers and until its message ends, its body is awaited."""

    book: ClassVar[ConnectionBook]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.phase: Phase | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.send_timer: asyncio.TimerHandle | None = None
        self.reading_body = False
        """Whether a request's headers are whole and its body is not yet."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        transport = OneSendTransport(transport, self.loop)
        super().connection_made(transport)
        self.flow = WatchedFlow(transport, self)
        self.book.admit(self)
        self.follow_client()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_timer()
        self.resume_writing()
        self.book.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.follow_client()
        if self.phase is Phase.BODY and self.timer is not None:
            self.arm_body_timer()  # a byte of the body: the clock starts again

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.reading_body = True

    def on_message_complete(self) -> None:
        self.reading_body = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.phase = None  # the next request's headers are timed from this answer
        super().on_response_complete()
        self.follow_client()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.send_timer is None:
            self.send_timer = self.loop.call_later(
                self.book.limits.send_timeout_s, self.close_for, Closed.NOT_READING
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None

    def follow_client(self) -> None:
        """Times what the connection now waits for from its client, if anything."""
        if self.transport.is_closing():
            return
        if self.reading_body:
            phase = Phase.BODY
        elif self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            phase = Phase.ANSWERING
        else:
            phase = Phase.HEADERS
        if phase is self.phase:
            return
        self.phase = phase
        self.stop_timer()
        if phase is Phase.HEADERS:
            self.book.waits(self)
            self.timer = self.loop.call_later(
                self.book.limits.header_timeout_s, self.close_for, Closed.HEADERS_LATE
            )
        elif phase is Phase.BODY:
            self.book.waits(self)
            if self.body_is_awaited():
                self.arm_body_timer()
        else:
            self.book.answers(self)

    def body_is_awaited(self) -> bool:
        waiting_for_continue = self.cycle is not None and self.cycle.waiting_for_100_continue
        return not self.flow.read_paused and not waiting_for_continue

    def arm_body_timer(self) -> None:
        self.stop_timer()
        self.timer = self.loop.call_later(
            self.book.limits.body_timeout_s, self.close_for, Closed.BODY_STALLED
        )

    def reading_paused(self) -> None:
        if self.phase is Phase.BODY:
            self.stop_timer()

    def reading_resumed(self) -> None:
        if self.phase is Phase.BODY and self.timer is None and self.body_is_awaited():
            self.arm_body_timer()

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close_for(self, reason: Closed) -> None:
        """Closes the connection; a handler waiting for its body is told it is gone. A
        client that reads nothing is cut off at once: a close would wait for it to take
        what is buffered."""
        self.stop_timer()
        self.book.forget(self)
        if reason is Closed.NOT_READING:
            self.send_timer = None
        elif self.transport.is_closing():
            return
        self.book.summary.count(reason)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if reason is Closed.NOT_READING:
            self.transport.abort()
        else:
            self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """The protocol class for one server: its connections share one book."""
    book = ConnectionBook(limits)

    class Guarded(GuardedProtocol):
        pass

    Guarded.book = book
    return Guarded
