"""Heartbeats that arrive together, renewed together.

A fleet whose every GPU sends its own heartbeat puts a thousand single renewals a second
on one process, and each was a thread's hop, a statement and a commit of its own.
`LeaseRenewals` gathers on the event loop the heartbeats that arrive while a renewal is on
its way, and renews them all in the next statement (`renew_leases`, on a thread of the
handlers' pool), as a database's group commit gathers the commits that wait on one flush:
under load, one hop, one statement and one commit carry many heartbeats; alone, a
heartbeat goes at once.

Each heartbeat is answered as `renew_lease` answers it: its new expiry, or the refusal of
its own run. One statement is on its way at a time, carrying at most `MOST_TOGETHER`; a
heartbeat waits for the statements that carry those that came before it. A statement that
waits on a lock (within the connection's lock timeout) holds up the heartbeats behind it,
where each heartbeat on a thread of its own had held up only itself; in return, 40 threads
of single renewals had answered at most 40 a round trip, and the statements here answer up
to `MOST_TOGETHER`. When a shared statement fails, each of its heartbeats is tried again
alone, all at once, each on a thread as it had been without the others: a row another
transaction holds, or any failure of one heartbeat's own, fails that heartbeat only. The
exception is a database that cannot be reached, which no heartbeat alone would reach
either: each fails at once with an error of its own.
"""

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from contextvars import Context
from datetime import datetime
from typing import Annotated, Any
from weakref import WeakKeyDictionary

from fastapi import Depends, Request

from ledger.errors import DatabaseUnavailable
from ledger.leases import MAX_HEARTBEATS, RunHeartbeat, renew_lease, renew_leases
from ledger.store import EventStore

MOST_TOGETHER = MAX_HEARTBEATS
"""The most heartbeats one statement renews, as one `POST /v1/heartbeats` does: when the
database slows, the statements grow instead of the heartbeats falling behind."""

InThread = Callable[[Callable[..., Any], dict[str, Any]], Awaitable[Any]]
"""How a blocking call is run off the event loop: `api.direct_handler.in_thread`."""

Outcome = datetime | BaseException
Waiting = list[tuple[RunHeartbeat, asyncio.Future[datetime]]]


class LeaseRenewals:
    """The heartbeats of one process, renewed together when they arrive together on the
    same event loop. A server runs one loop; a caller that runs a loop per request (a test
    client outside its `with` block) has its heartbeats gathered per loop."""

    def __init__(self, store: EventStore, lease_seconds: float, in_thread: InThread) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self._in_thread = in_thread
        self._gatherings: WeakKeyDictionary[asyncio.AbstractEventLoop, _Gathering] = (
            WeakKeyDictionary()
        )
        self._gatherings_lock = threading.Lock()

    async def renew(self, beat: RunHeartbeat) -> datetime:
        """Renew `beat`'s lease, with the heartbeats that wait beside it; its new expiry.
        Raises what `renew_lease` raises, or `CancelledError` when the renewal was stopped
        before it answered (the server shutting down)."""
        loop = asyncio.get_running_loop()
        gathering = self._gatherings.get(loop)
        if gathering is None:
            with self._gatherings_lock:
                gathering = self._gatherings.setdefault(loop, _Gathering(self._outcomes))
        return await gathering.renew(loop, beat)

    def renewing(self) -> asyncio.Task[None] | None:
        """The task renewing what waits on the running loop, while there is one."""
        gathering = self._gatherings.get(asyncio.get_running_loop())
        return None if gathering is None else gathering.task

    async def _outcomes(self, beats: Sequence[RunHeartbeat]) -> list[Outcome]:
        """Each heartbeat's expiry or refusal: from one statement, or, when it fails, from
        each heartbeat tried alone."""
        values = {"store": self.store, "heartbeats": beats, "lease_seconds": self.lease_seconds}
        try:
            return list(await self._in_thread(renew_leases, values))
        except Exception as failure:
            if len(beats) == 1:
                return [failure]
            if isinstance(failure, DatabaseUnavailable):
                return [_unreachable(failure) for _ in beats]
        alone = (self._in_thread(renew_lease, self._values_of(beat)) for beat in beats)
        return list(await asyncio.gather(*alone, return_exceptions=True))

    def _values_of(self, beat: RunHeartbeat) -> dict[str, Any]:
        return {
            "store": self.store,
            "job_id": beat.job_id,
            "attempt": beat.attempt,
            "run_token": beat.run_token,
            "lease_seconds": self.lease_seconds,
        }


class _Gathering:
    """The heartbeats waiting on one event loop, and the task renewing them. Used from
    that loop only."""

    def __init__(self, outcomes: Callable[[Sequence[RunHeartbeat]], Awaitable[list[Outcome]]]):
        self._outcomes = outcomes
        self._waiting: Waiting = []
        self.task: asyncio.Task[None] | None = None

    async def renew(self, loop: asyncio.AbstractEventLoop, beat: RunHeartbeat) -> datetime:
        answer: asyncio.Future[datetime] = loop.create_future()
        self._waiting.append((beat, answer))
        if self.task is None:
            # A context of its own: the statement is no one request's.
            self.task = loop.create_task(self._renew_waiting(), context=Context())
        return await answer

    async def _renew_waiting(self) -> None:
        """Renew what waits, one statement at a time, until nothing does. Stopped (the
        server shutting down), it cancels the heartbeats it had not answered."""
        batch: Waiting = []
        try:
            while self._waiting:
                batch = self._waiting[:MOST_TOGETHER]
                del self._waiting[:MOST_TOGETHER]
                outcomes = await self._outcomes([beat for beat, _ in batch])
                for (_, answer), outcome in zip(batch, outcomes, strict=True):
                    if answer.done():  # its request went away meanwhile
                        continue
                    if isinstance(outcome, BaseException):
                        answer.set_exception(outcome)
                    else:
                        answer.set_result(outcome)
                batch = []
        except BaseException:
            for _, answer in [*batch, *self._waiting]:
                answer.cancel()
            self._waiting.clear()
            raise
        finally:
            self.task = None


def _unreachable(failure: DatabaseUnavailable) -> DatabaseUnavailable:
    error = DatabaseUnavailable(str(failure))
    error.__cause__ = failure
    return error


async def renewals_of(request: Request) -> LeaseRenewals:
    renewals: LeaseRenewals = request.app.state.renewals
    return renewals


TheRenewals = Annotated[LeaseRenewals, Depends(renewals_of)]
