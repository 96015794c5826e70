"""Heartbeats that arrive together, renewed together.

A fleet whose every GPU sends its own heartbeat puts a thousand single renewals a second
on one process, and each was a thread's hop, a statement and a commit of its own.
`LeaseRenewals` gathers on the event loop the heartbeats that arrive while a renewal is on
its way, and renews them all in the next statement (`renew_leases`, on a thread of the
handlers' pool), as a database's group commit gathers the commits that wait on one flush:
under load, one hop, one statement and one commit carry many heartbeats; alone, a
heartbeat goes at once.

Each heartbeat is answered as `renew_lease` answers it: its new expiry, or the refusal of
its own run. When a statement fails, each of its heartbeats fails with the same error.
One statement is on its way at a time: a heartbeat waits at most for the one before its
own, and one that waits on a lock (within the connection's lock timeout) holds up those
behind it, where each heartbeat on a thread of its own had held up only itself; in
return, 40 threads of single renewals had answered at most 40 a round trip, and the
statements here answer up to `MOST_TOGETHER`.
"""

import asyncio
import copy
from collections.abc import Awaitable, Callable, Sequence
from contextvars import Context
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request

from ledger.leases import MAX_HEARTBEATS, RunHeartbeat, renew_leases
from ledger.store import EventStore

MOST_TOGETHER = MAX_HEARTBEATS
"""The most heartbeats one statement renews, as one `POST /v1/heartbeats` does: when the
database slows, the statements grow instead of the heartbeats falling behind."""

InThread = Callable[[Callable[..., Any], dict[str, Any]], Awaitable[Any]]
"""How a blocking call is run off the event loop: `api.direct_handler.in_thread`."""

Outcome = datetime | BaseException


class LeaseRenewals:
    """The heartbeats of one process, renewed together when they arrive together. Used
    from its event loop only."""

    def __init__(self, store: EventStore, lease_seconds: float, in_thread: InThread) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self._in_thread = in_thread
        self._waiting: list[tuple[RunHeartbeat, asyncio.Future[datetime]]] = []
        self._renewing: asyncio.Task[None] | None = None
        """The task renewing what waits, while there is one."""

    async def renew(self, beat: RunHeartbeat) -> datetime:
        """Renew `beat`'s lease, with the heartbeats that wait beside it; its new expiry.
        Raises what `renew_lease` raises."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[datetime] = loop.create_future()
        self._waiting.append((beat, answer))
        if self._renewing is None:
            # A context of its own: the statement is no one request's.
            self._renewing = loop.create_task(self._renew_waiting(), context=Context())
        return await answer

    async def _renew_waiting(self) -> None:
        """Renew what waits, one statement at a time, until nothing does. Stopped (the
        server shutting down), it cancels the heartbeats it had not answered."""
        batch: list[tuple[RunHeartbeat, asyncio.Future[datetime]]] = []
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
            self._renewing = None

    async def _outcomes(self, beats: Sequence[RunHeartbeat]) -> list[Outcome]:
        """Each heartbeat's expiry or refusal; when the statement fails, an error of its
        own for each."""
        values = {"store": self.store, "heartbeats": beats, "lease_seconds": self.lease_seconds}
        try:
            return list(await self._in_thread(renew_leases, values))
        except Exception as failure:
            failed: list[Outcome] = [failure]
            return failed + [copy.copy(failure) for _ in beats[1:]]


async def renewals_of(request: Request) -> LeaseRenewals:
    renewals: LeaseRenewals = request.app.state.renewals
    return renewals


TheRenewals = Annotated[LeaseRenewals, Depends(renewals_of)]
