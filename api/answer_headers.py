"""Changing an answer's headers as it starts: what a middleware that adds headers needs."""

from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Send


def with_headers(send: Send, add: Callable[[MutableHeaders], None]) -> Send:
    """`send`, which lets `add` change the headers of the answer as it starts."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            add(MutableHeaders(scope=message))
        await send(message)

    return send_with_headers
