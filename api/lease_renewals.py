"""Heartbeats that arrive together, renewed together.

A fleet whose every GPU sends its own heartbeat puts a thousand single renewals a second
on one process. `LeaseRenewals` gathers them on the event loop (`api.gathering`) and
renews those that arrive together in one statement, sent from the loop itself while the
server runs (`renew_leases_on_loop`), else on a thread of the handlers' pool
(`renew_leases`). A heartbeat the loop's statement did not renew is told on a thread
(`renew_leases` of those alone, which tells why). Each heartbeat is answered as
`renew_lease` answers it: its new expiry, or the refusal of its own run. The runs of one
`POST /v1/heartbeats` go the same way, in one statement (`renew_each`).

A statement that waits on a lock (within the connection's lock timeout) holds up the
heartbeats behind it, where each heartbeat on a thread of its own had held up only
itself; in return, 40 threads of single renewals had answered at most 40 a round trip,
and the statements here answer up to `MOST_TOGETHER`. When a shared statement fails, each
of its heartbeats is tried again alone, all at once (`alone_after_failure`): a row another
transaction holds fails that heartbeat only.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from api.gathering import Gathered, InThread, alone_after_failure, filled_in, rest_told
from ledger.errors import LedgerError
from ledger.leases import (
    MAX_HEARTBEATS,
    RunHeartbeat,
    renew_lease,
    renew_leases,
    renew_leases_on_loop,
)
from ledger.loop_appends import LoopAppends
from ledger.store import EventStore

MOST_TOGETHER = MAX_HEARTBEATS
"""The most heartbeats one statement renews, as one `POST /v1/heartbeats` does: when the
database slows, the statements grow instead of the heartbeats falling behind."""


class LeaseRenewals:
    """The heartbeats of one process, renewed together when they arrive together."""

    def __init__(
        self,
        store: EventStore,
        lease_seconds: float,
        in_thread: InThread,
        appends: LoopAppends | None = None,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self._in_thread = in_thread
        self.appends = appends
        """Where the heartbeats' statement is first sent from the event loop, while the
        server runs (`ledger.loop_appends`)."""
        self.gathered = Gathered[RunHeartbeat, datetime](self._outcomes, MOST_TOGETHER)

    async def renew(self, beat: RunHeartbeat) -> datetime:
        """Renew `beat`'s lease, with the heartbeats that wait beside it; its new expiry.
        Raises what `renew_lease` raises."""
        return await self.gathered(beat)

    async def renew_each(self, beats: Sequence[RunHeartbeat]) -> list[datetime | LedgerError]:
        """`renew_leases` of `beats` (one `POST /v1/heartbeats`): its statement sent from
        the event loop while the server runs, the heartbeats it did not renew told by
        `renew_leases` of those alone on a thread (which tells why), and every one on a
        thread when the loop cannot take the statement. Raises what `renew_leases` raises."""
        renewed = await self._on_loop(beats)
        if renewed is None:
            return await self._in_thread_renewed(beats)
        return await filled_in(renewed, beats, self._in_thread_renewed)

    async def _outcomes(self, beats: Sequence[RunHeartbeat]) -> Sequence[datetime | BaseException]:
        return await alone_after_failure(self._shared(beats), beats, self._alone)

    async def _shared(self, beats: Sequence[RunHeartbeat]) -> Sequence[datetime | BaseException]:
        renewed = await self._on_loop(beats)
        if renewed is None:
            return await self._in_thread_renewed(beats)
        return await rest_told(renewed, beats, self._in_thread_renewed, self._alone)

    async def _on_loop(self, beats: Sequence[RunHeartbeat]) -> list[datetime | None] | None:
        """`renew_leases_on_loop` of `beats`; None when there is no loop to send it from."""
        if self.appends is None:
            return None
        return await renew_leases_on_loop(self.store, beats, self.lease_seconds, self.appends)

    async def _in_thread_renewed(
        self, beats: Sequence[RunHeartbeat]
    ) -> list[datetime | LedgerError]:
        values = {"store": self.store, "heartbeats": beats, "lease_seconds": self.lease_seconds}
        outcomes: list[datetime | LedgerError] = await self._in_thread(renew_leases, values)
        return outcomes

    async def _alone(self, beat: RunHeartbeat) -> datetime:
        values = {
            "store": self.store,
            "job_id": beat.job_id,
            "attempt": beat.attempt,
            "run_token": beat.run_token,
            "lease_seconds": self.lease_seconds,
        }
        expires: datetime = await self._in_thread(renew_lease, values)
        return expires


async def renewals_of(request: Request) -> LeaseRenewals:
    renewals: LeaseRenewals = request.app.state.renewals
    return renewals


TheRenewals = Annotated[LeaseRenewals, Depends(renewals_of)]
