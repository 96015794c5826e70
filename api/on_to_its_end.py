"""A call on the event loop that goes on to its end when its caller is cancelled."""

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def to_its_end(call: Coroutine[Any, Any, T]) -> T:
    """`call`'s answer; when its caller is cancelled meanwhile (a request, or a gathering,
    stopped with the server), the call still goes on to its end, as a call on a thread
    does, so that what it recorded is logged and cached."""
    task = asyncio.ensure_future(call)
    task.add_done_callback(_retrieved)
    return await asyncio.shield(task)


def _retrieved(task: "asyncio.Future[Any]") -> None:
    """Take a finished call's error, so that one whose request went away is not reported
    as never retrieved (it was logged as the command's line)."""
    if not task.cancelled():
        task.exception()
