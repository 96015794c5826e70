"""Changing an answer's headers as it starts: what a middleware that adds headers needs.

The headers are the answer's own list of `(name, value)` byte pairs, names in lower
case as ASGI has them, changed in place: no `MutableHeaders` is built per answer, which
costs a request more than the change itself."""

from collections.abc import Callable

from starlette.types import Message, Send

RawHeaders = list[tuple[bytes, bytes]]


def with_headers(send: Send, add: Callable[[RawHeaders], None]) -> Send:
    """`send`, which lets `add` change the headers of the answer as it starts."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = message["headers"] = list(message.get("headers", ()))
            add(headers)
        await send(message)

    return send_with_headers


def add_missing(headers: RawHeaders, wanted: RawHeaders) -> None:
    """Each of `wanted` that the answer does not set itself."""
    present = {name for name, _ in headers}
    headers.extend(pair for pair in wanted if pair[0] not in present)


def encoded(headers: dict[str, str]) -> RawHeaders:
    """`headers` as an answer's raw pairs."""
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
