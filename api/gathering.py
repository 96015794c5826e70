"""Calls that arrive together on the event loop, made together.

A fleet's single commands (a heartbeat, a registration) arrive by the hundred a second,
and each was a thread's hop, a statement and a commit of its own. `Gathered` collects on
the event loop the calls that arrive while one of theirs is on its way, and makes them all
in the next call of `together`, as a database's group commit gathers the commits that wait
on one flush: under load, one hop, one statement and one commit carry many; a call that
finds none on its way goes at once. One call of `together` is on its way at a time,
carrying at most `most` items (and, when items are weighed, at most `most_weight`); a
call waits for the ones that carry those that came before it, so one that waits on a lock
holds up those behind it.
"""

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from contextvars import Context
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from ledger.errors import failed_alike, tried_alone_after

In = TypeVar("In")
Out = TypeVar("Out")
Told = TypeVar("Told")

Together = Callable[[Sequence[In]], Awaitable[Sequence[Out | BaseException]]]
"""Makes the calls of many items at once: for each, in order, its answer or its error."""

InThread = Callable[[Callable[..., Any], dict[str, Any]], Awaitable[Any]]
"""How a blocking call is run off the event loop: `api.direct_handler.in_thread`."""

ALONE_AT_ONCE = 8
"""The most items tried alone at a time after their shared call failed: the threads they
take are the ones every other request uses."""


class Gathered(Generic[In, Out]):
    """Calls gathered per running event loop: a server runs one loop; a caller that runs a
    loop per request (a test client outside its `with` block) has its calls gathered per
    loop."""

    def __init__(
        self,
        together: Together[In, Out],
        most: int,
        weigh: Callable[[In], int] | None = None,
        most_weight: int = 0,
    ) -> None:
        self._together = together
        self._limits = (most, weigh, most_weight)
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
                waiting = self._loops.setdefault(loop, _Waiting(self._together, *self._limits))
        return await waiting.answer(loop, item)

    def running(self) -> asyncio.Task[None] | None:
        """The task making the calls that wait on the running loop, while there is one."""
        waiting = self._loops.get(asyncio.get_running_loop())
        return None if waiting is None else waiting.task


class _Waiting(Generic[In, Out]):
    """The calls waiting on one event loop, and the task making them. Used from that loop
    only."""

    def __init__(
        self,
        together: Together[In, Out],
        most: int,
        weigh: Callable[[In], int] | None,
        most_weight: int,
    ) -> None:
        self._together = together
        self._most = most
        self._weigh = weigh
        self._most_weight = most_weight
        self._items: list[tuple[In, asyncio.Future[Out]]] = []
        self.task: asyncio.Task[None] | None = None

    async def answer(self, loop: asyncio.AbstractEventLoop, item: In) -> Out:
        answer: asyncio.Future[Out] = loop.create_future()
        self._items.append((item, answer))
        if self.task is None:
            # A context of its own: the call is no one request's.
            self.task = loop.create_task(self._make_waiting(), context=Context())
        return await answer

    def _next_batch(self) -> list[tuple[In, asyncio.Future[Out]]]:
        """The items of the next call: the first `most`, fewer when their weight would pass
        `most_weight` (one item at least, whatever it weighs)."""
        count = min(self._most, len(self._items))
        if self._weigh is not None:
            weight = 0
            for index, (item, _) in enumerate(self._items[:count]):
                weight += self._weigh(item)
                if weight > self._most_weight and index > 0:
                    count = index
                    break
        batch = self._items[:count]
        del self._items[:count]
        return batch

    async def _make_waiting(self) -> None:
        """Make what waits, one call at a time, until nothing does. A call that raises
        instead of answering fails each of its items and of those waiting with that error;
        stopped, it cancels the items it had not answered."""
        batch: list[tuple[In, asyncio.Future[Out]]] = []
        try:
            while self._items:
                batch = self._next_batch()
                outcomes = await self._together([item for item, _ in batch])
                for (_, answer), outcome in zip(batch, outcomes, strict=True):
                    if answer.done():  # its request went away meanwhile
                        continue
                    if isinstance(outcome, BaseException):
                        answer.set_exception(outcome)
                    else:
                        answer.set_result(outcome)
                batch = []
        except Exception as failure:
            for _, answer in [*batch, *self._items]:
                if not answer.done():
                    answer.set_exception(failure)
            self._items.clear()
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
    failed_each: Callable[[Sequence[In], Sequence[Exception]], None] | None = None,
) -> list[Out | BaseException]:
    """The outcomes of `shared`, the call of all `items` in one statement. When it fails,
    each item's own: from `alone` called for each, `ALONE_AT_ONCE` at a time, as each had
    been made without the others, when `tried_alone_after` the failure; else each fails
    at once with an error of its own, told to `failed_each`."""
    try:
        return list(await shared)
    except Exception as failure:
        if len(items) > 1 and tried_alone_after(failure):
            return await _each_alone(items, alone)
        errors = failed_alike(failure, len(items))
        if failed_each is not None:
            failed_each(items, errors)
        return list(errors)


async def rest_told(
    outcomes: Sequence[Out | None],
    items: Sequence[In],
    told: Together[In, Out],
    alone: Callable[[In], Awaitable[Out]],
    failed_each: Callable[[Sequence[In], Sequence[Exception]], None] | None = None,
) -> list[Out | BaseException]:
    """`outcomes` of `items`, a shared call's that left some untold (None), with those told
    by `told` of the untold items alone, a shared call of their own (`alone_after_failure`,
    with `alone` and `failed_each`). Whatever that meets, the outcomes told first stay."""

    async def told_alone_after_failure(untold: Sequence[In]) -> Sequence[Out | BaseException]:
        return await alone_after_failure(told(untold), untold, alone, failed_each)

    return await filled_in(outcomes, items, told_alone_after_failure)


async def filled_in(
    outcomes: Sequence[Told | None],
    items: Sequence[In],
    told: Callable[[Sequence[In]], Awaitable[Sequence[Told]]],
) -> list[Told]:
    """`outcomes` of `items`, a shared call's that left some untold (None), with those
    filled in by `told` of the untold items, in one call (none when all were told)."""
    untold = [item for item, outcome in zip(items, outcomes, strict=True) if outcome is None]
    told_now = iter(await told(untold) if untold else ())
    return [next(told_now) if outcome is None else outcome for outcome in outcomes]


async def _each_alone(
    items: Sequence[In], alone: Callable[[In], Awaitable[Out]]
) -> list[Out | BaseException]:
    turns = asyncio.Semaphore(ALONE_AT_ONCE)

    async def in_turn(item: In) -> Out:
        async with turns:
            return await alone(item)

    return list(await asyncio.gather(*map(in_turn, items), return_exceptions=True))
