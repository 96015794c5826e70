"""Reads of the database that a handler waits for a bounded time, off the request threads.

A probe or a scrape must answer even when every worker thread of the request pool
waits on the database: its read runs on a thread of its own, and the handler stops
waiting after its timeout. Callers that ask while a read is under way share it, so a
database that hangs holds one thread per read, not one per caller.
"""

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter

T = TypeVar("T")


class BoundedRead(Generic[T]):
    """`read` (blocking) run off the request thread pool, shared by concurrent callers, each
    of whom waits `timeout_s` at most (then `TimeoutError`); the read's own error otherwise."""

    def __init__(self, read: Callable[[], T], timeout_s: float) -> None:
        self.read = read
        self.timeout_s = timeout_s
        self._running: asyncio.Task[T] | None = None

    async def __call__(self) -> T:
        running = self._running
        if (
            running is None
            or running.done()
            or running.get_loop() is not asyncio.get_running_loop()
        ):
            running = self._running = asyncio.create_task(self._read_on_its_own_thread())
            running.add_done_callback(_retrieve_error)
        return await asyncio.wait_for(asyncio.shield(running), self.timeout_s)

    async def _read_on_its_own_thread(self) -> T:
        # A limiter of its own: the read never waits for a thread of the request pool.
        return await anyio.to_thread.run_sync(self.read, limiter=CapacityLimiter(1))


def _retrieve_error(task: "asyncio.Task[object]") -> None:
    """A read nobody waited for to the end failed: its error was already answered as a
    timeout, so it is not reported again when the task is collected."""
    if not task.cancelled():
        task.exception()
