"""How much a request may send: a body larger than the limit is refused with a 413
before it is read whole.

The limit is `JOBLEDGER_MAX_BODY_BYTES` (1 MiB unless set), read once when the app
is built.
"""

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response

MAX_BODY_BYTES = 1024 * 1024
MAX_SPEC_BYTES = 64 * 1024
"""A job's `spec`, encoded as JSON, at most."""


def max_body_bytes(environ: Mapping[str, str]) -> int:
    """The body limit `environ` sets, else the default."""
    text = environ.get("JOBLEDGER_MAX_BODY_BYTES", "").strip()
    if not text:
        return MAX_BODY_BYTES
    limit = int(text)
    if limit < 1:
        raise ValueError(f"JOBLEDGER_MAX_BODY_BYTES must be a positive number, not {text}")
    return limit


class BodyTooLarge(Exception):
    """The request's body is larger than the server accepts."""


class BodyLimit:
    """Refuses a body of more than `max_bytes`: at once when its Content-Length says so,
    else as soon as the chunks read so far add up to more. A body within its declared
    Content-Length is passed on untouched: the server never reads past that length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = self._declared_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:  # the server reads no more of the body than its Content-Length
                await self.app(scope, receive, send)
            return

        received = 0
        started = False
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started:
                        refused = True
                        await self._refuse(scope, receive, send)
                    raise BodyTooLarge()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer: whatever the app makes of the error is not
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not refused:
                raise

    def _declared_length(self, scope: Scope) -> int | None:
        """The body's length as its one Content-Length says, when the body is not sent in
        chunks; else None, and the chunks are counted as they come."""
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"transfer-encoding":
                return None
            if name == b"content-length":
                if declared is not None:
                    return None
                try:
                    declared = int(value)
                except ValueError:
                    return None
        return declared

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "body-too-large",
            f"the request's body must be at most {self.max_bytes} bytes",
            max_bytes=self.max_bytes,
        )
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
