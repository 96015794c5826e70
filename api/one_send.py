"""An answer's head and body sent in one write.

uvicorn writes an answer's status line and headers as soon as the app starts it, and its
body when the app sends it: two sends, two TCP segments, and a client that wakes for the
head and reads again for the body. A command's answer is both at once (the app starts it
and sends its body in the same turn of the event loop), so `OneSendTransport` holds a
write until the next one or the end of the turn, whichever comes first, and sends the two
as one. A stream's head and its events still go out in the turn they were written: a write
is never held past the turn it was made in.
"""

import asyncio
from typing import Any

MOST_JOINED = 64 * 1024
"""The most bytes sent as one joined write: a larger write (a page of an export) goes
out at once, as it came, rather than copied."""


class OneSendTransport(asyncio.Transport):
    """`transport`, with each write held until the next one or the end of the event
    loop's turn, and sent with it. Closing sends what is held first; aborting drops it."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: "bytes | bytearray | memoryview[Any]") -> None:
        held, self._held = self._held, None
        if held is not None:
            if len(held) + len(data) <= MOST_JOINED:
                self._transport.write(held + bytes(data))
                return
            self._transport.write(held)
        if len(data) > MOST_JOINED:
            self._transport.write(data)
        elif data:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what is held now (nothing when the connection is closing)."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def writelines(self, list_of_data: Any) -> None:
        self.flush()
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()
