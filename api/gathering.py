"""Calls that arrive together on the event loop, made together.

A fleet's single commands (a heartbeat, a registration) arrive by the hundred a second,
and each was a thread's hop, a statement and a commit of its own. `Gathered` collects on
the event loop the calls that arrive while one of theirs is on its way, and makes them all
in the next call of `together`, as a database's group commit gathers the commits that wait
on one flush: under load, one hop, one statement and one commit carry many; alone, a call
goes at once. One call of `together` is on its way at a time, carrying at most `most`;
a call waits for the ones that carry those that came before it.
"""

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from contextvars import Context
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from ledger.errors import DatabaseUnavailable

In = TypeVar("In")
Out = TypeVar("Out")

Together = Callable[[Sequence[In]], Awaitable[Sequence[Out | BaseException]]]
"""Makes the calls of many items at once: for each, in order, its answer or its error."""

InThread = Callable[[Callable[..., Any], dict[str, Any]], Awaitable[Any]]
"""How a blocking call is run off the event loop: `api.direct_handler.in_thread`."""


class Gathered(Generic[In, Out]):
    """Calls gathered per running event loop: a server runs one loop; a caller that runs a
    loop per request (a test client outside its `with` block) has its calls gathered per
    loop."""

    def __init__(self, together: Together[In, Out], most: int) -> None:
        self._together = together
        self._most = most
        self._loops: WeakKeyDictionary[asyncio.AbstractEventLoop, _Waiting[In, Out]] = (
            WeakKeyDictionary()
        )
        self._loops_lock = threading.Lock()

    async def __call__(self, item: In) -> Out:
        """`item`'s answer, from the next call of `together`. Raises its error, or
        `CancelledError` when the gathering was stopped before it answered (the server
        shutting down)."""
        loop = asyncio.get_running_loop()
        waiting = self._loops.get(loop)
        if waiting is None:
            with self._loops_lock:
                waiting = self._loops.setdefault(loop, _Waiting(self._together, self._most))
        return await waiting.answer(loop, item)

    def running(self) -> asyncio.Task[None] | None:
        """The task making the calls that wait on the running loop, while there is one."""
        waiting = self._loops.get(asyncio.get_running_loop())
        return None if waiting is None else waiting.task


class _Waiting(Generic[In, Out]):
    """The calls waiting on one event loop, and the task making them. Used from that loop
    only."""

    def __init__(self, together: Together[In, Out], most: int) -> None:
        self._together = together
        self._most = most
        self._items: list[tuple[In, asyncio.Future[Out]]] = []
        self.task: asyncio.Task[None] | None = None

    async def answer(self, loop: asyncio.AbstractEventLoop, item: In) -> Out:
        answer: asyncio.Future[Out] = loop.create_future()
        self._items.append((item, answer))
        if self.task is None:
            # A context of its own: the call is no one request's.
            self.task = loop.create_task(self._make_waiting(), context=Context())
        return await answer

    async def _make_waiting(self) -> None:
        """Make what waits, one call at a time, until nothing does. Stopped, it cancels
        the calls it had not answered."""
        batch: list[tuple[In, asyncio.Future[Out]]] = []
        try:
            while self._items:
                batch = self._items[: self._most]
                del self._items[: self._most]
                outcomes = await self._together([item for item, _ in batch])
                for (_, answer), outcome in zip(batch, outcomes, strict=True):
                    if answer.done():  # its request went away meanwhile
                        continue
                    if isinstance(outcome, BaseException):
                        answer.set_exception(outcome)
                    else:
                        answer.set_result(outcome)
                batch = []
        except BaseException:
            for _, answer in [*batch, *self._items]:
                answer.cancel()
            self._items.clear()
            raise
        finally:
            self.task = None


async def alone_after_failure(
    shared: Awaitable[Sequence[Out | BaseException]],
    items: Sequence[In],
    alone: Callable[[In], Awaitable[Out]],
) -> list[Out | BaseException]:
    """The outcomes of `shared`, the call of all `items` in one statement; when it fails,
    each item's own, from `alone` called for each at once, as each had been made without
    the others: a row another transaction holds past the lock timeout, or any failure of
    one item's own, fails that item only. A database that cannot be reached, which no item
    alone would reach either, fails each at once with an error of its own."""
    try:
        return list(await shared)
    except Exception as failure:
        if len(items) == 1:
            return [failure]
        if isinstance(failure, DatabaseUnavailable):
            return [_unreachable(failure) for _ in items]
    return list(await asyncio.gather(*map(alone, items), return_exceptions=True))


def _unreachable(failure: DatabaseUnavailable) -> DatabaseUnavailable:
    error = DatabaseUnavailable(str(failure))
    error.__cause__ = failure
    return error
