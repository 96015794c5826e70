"""Following a request across systems: its correlation id, and the headers that carry it.

A request's correlation id is the trace id of its W3C `traceparent` when that is valid
(`ledger.trace_context`); else its `X-Request-ID` when that is one this service keeps
(1 to 200 letters, digits and `-_.:+/=@`); else a new trace id. A malformed or repeated
header is ignored, never refused: the request gets a new id instead.

The id is recorded on every event the request appends and in the log line of its command
(`ledger.command_log`). Every answer carries `X-Request-ID` (the caller's own, or else the
correlation id) and a `traceparent` with the request's trace and this server's span in it.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.answer_headers import RawHeaders, with_headers
from ledger.trace_context import TraceParent

REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=@-]{1,200}")
"""An `X-Request-ID` this service records and answers with: UUIDs, ULIDs, base64 and
the like; anything else is ignored."""


@dataclass(frozen=True, slots=True)
class Correlation:
    """What a request is known by: the id its events and log lines record, the request
    id its answer names, and this server's span of its trace."""

    correlation_id: str
    request_id: str
    span: TraceParent

    @classmethod
    def of(cls, headers: Iterable[tuple[bytes, bytes]]) -> "Correlation":
        """The correlation of a request with these headers (ASGI's raw pairs, names in
        lower case)."""
        traceparent, request_id = _singles(headers)
        parent = None if traceparent is None else TraceParent.parse(traceparent)
        if request_id is not None and not REQUEST_ID.fullmatch(request_id):
            request_id = None
        span = TraceParent.start() if parent is None else parent.child()
        correlation_id = span.trace_id if parent is not None or request_id is None else request_id
        return cls(correlation_id, request_id or correlation_id, span)

    def answer(self, headers: RawHeaders) -> None:
        """Name the request and this server's span in the headers of its answer (its raw
        pairs, changed in place), in place of any the answer had."""
        if any(name in _ANSWERED for name, _ in headers):
            headers[:] = [pair for pair in headers if pair[0] not in _ANSWERED]
        headers.append((b"x-request-id", self.request_id.encode("latin-1")))
        headers.append((b"traceparent", str(self.span).encode("latin-1")))


_ANSWERED = frozenset((b"x-request-id", b"traceparent"))


def _singles(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """The request's `traceparent` and `X-Request-ID`, each when it was sent once: a
    repeated header names nothing for sure."""
    traceparent: bytes | None = None
    request_id: bytes | None = None
    repeated_traceparent = repeated_request_id = False
    for name, value in headers:
        if name == b"traceparent":
            repeated_traceparent = traceparent is not None
            traceparent = value
        elif name == b"x-request-id":
            repeated_request_id = request_id is not None
            request_id = value
    return (
        None if traceparent is None or repeated_traceparent else traceparent.decode("latin-1"),
        None if request_id is None or repeated_request_id else request_id.decode("latin-1"),
    )


class RequestCorrelation:
    """Gives every request its `Correlation` (in `request.state`, read by `CorrelationId`)
    and every answer its `X-Request-ID` and `traceparent`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            correlation = Correlation.of(scope["headers"])
            scope.setdefault("state", {})[_STATE_KEY] = correlation
            send = with_headers(send, correlation.answer)
        await self.app(scope, receive, send)


_STATE_KEY = "correlation"


def correlation_of(request: Request) -> Correlation | None:
    """The request's correlation (None in an app served without `RequestCorrelation`)."""
    correlation: Correlation | None = getattr(request.state, _STATE_KEY, None)
    return correlation


async def correlation_id_of(request: Request) -> str | None:
    correlation = correlation_of(request)
    return None if correlation is None else correlation.correlation_id


CorrelationId = Annotated[str | None, Depends(correlation_id_of)]
"""The id a handler records on the events it appends: see the module's docstring."""
