"""Single registrations that arrive together, registered together.

A training server that submits its jobs one request each, from many threads, sends the
ledger a registration per job. `Registrations` gathers on the event loop
(`api.gathering`) the registrations that arrive while one is on its way, and registers
them in one transaction (`JobService.register_each`: one statement, one commit), each
with its own caller, idempotency key and correlation id, each answered, logged and
counted as its own `execute` would be. While the server runs, that statement is sent
from the event loop itself (`JobService.register_each_on_loop`), without a thread's hop
there and back; the registrations of jobs that were there already are then told on a
thread, on a fresh read of those alone (`JobService.tell_each`, which appends nothing).
A registration that arrives alone is appended as `execute` would first try it, a single
append that costs one registration less: while the server runs, from the event loop
(`JobService.register_on_loop`); when that try cannot tell (the job is there), through
`execute`. When the shared transaction fails, each is tried again alone, or fails at once
with a log line of its own (`alone_after_failure`). One transaction is on its way at a
time: one that waits on a lock holds up the registrations behind it.
"""

from collections.abc import Sequence
from typing import Annotated

import orjson
from fastapi import Depends, Request

from api.gathering import Gathered, InThread, alone_after_failure, rest_told
from api.on_to_its_end import to_its_end
from ledger.loop_appends import LoopAppends
from ledger.registrations import MAX_REGISTRATIONS, Registered, Registration, RegistrationOutcome
from ledger.service import JobService

MOST_TOGETHER = MAX_REGISTRATIONS
"""The most registrations one transaction carries, as one `POST /v1/jobs/batch` does."""

MOST_SPEC_BYTES = 1_000_000
"""The most bytes of specs one transaction carries (a registration's spec, as JSON), as
a batch's body is held to its limit: a statement of large specs stays one of a bounded
size. A registration larger alone goes alone."""

LOOP_SPEC_BYTES = 64_000
"""The largest spec (as JSON) of a registration appended from the event loop, and the most
bytes of specs that registrations gathered into one statement there carry: larger ones go
to a thread, whose encoding and digests of them would hold up every other request on the
loop."""


class Registrations:
    """The single registrations of one process, registered together when they arrive
    together."""

    def __init__(
        self, service: JobService, in_thread: InThread, appends: LoopAppends | None = None
    ) -> None:
        self.service = service
        self._in_thread = in_thread
        self.appends = appends
        """Where registrations are first sent from the event loop, while the server runs
        (`ledger.loop_appends`); without it, those gathered go through `register_each`
        and one alone through `execute`, on a thread."""
        self.gathered = Gathered[Registration, Registered](
            self._outcomes, MOST_TOGETHER, weigh=_spec_bytes, most_weight=MOST_SPEC_BYTES
        )

    async def register(self, registration: Registration) -> Registered:
        """Register the job, with the registrations that wait beside it (`registration`
        names its actor); the job as registered, or as an earlier registration with the
        same key left it. Raises what `JobService.execute` raises for it."""
        return await self.gathered(registration)

    async def _outcomes(
        self, items: Sequence[Registration]
    ) -> Sequence[RegistrationOutcome | BaseException]:
        if len(items) == 1:  # `execute`'s one append costs a lone registration less
            try:
                return [await self._alone(items[0])]
            except Exception as refused:
                return [refused]
        return await alone_after_failure(
            self._each(items), items, self._alone, failed_each=self.service.log_unrecorded
        )

    async def _each(
        self, items: Sequence[Registration]
    ) -> Sequence[RegistrationOutcome | BaseException]:
        """`register_each` of `items`: from the event loop when it can be, the jobs it
        left out (there already) then told on a thread (`rest_told` with `tell_each`)."""
        appends = self.appends
        if appends is not None and appends.ready() and _specs_within(items, LOOP_SPEC_BYTES):
            outcomes = await to_its_end(self.service.register_each_on_loop(items, appends))
            if outcomes is not None:
                return await rest_told(
                    outcomes,
                    items,
                    self._told_in_thread,
                    self._alone,
                    failed_each=self.service.log_unrecorded,
                )
        return await self._each_in_thread(items)

    async def _each_in_thread(self, items: Sequence[Registration]) -> list[RegistrationOutcome]:
        registered: list[RegistrationOutcome] = await self._in_thread(
            self.service.register_each, {"registrations": items}
        )
        return registered

    async def _told_in_thread(self, items: Sequence[Registration]) -> list[RegistrationOutcome]:
        """What became of `items`, left out by the statement from the loop (their jobs were
        there): judged on a thread, on a fresh read, with no second statement that appends."""
        told: list[RegistrationOutcome] = await self._in_thread(
            self.service.tell_each, {"registrations": items}
        )
        return told

    async def _alone(self, item: Registration) -> Registered:
        appends, tried = self.appends, False
        if appends is not None and appends.ready() and _spec_bytes(item) <= LOOP_SPEC_BYTES:
            registered = await to_its_end(self.service.register_on_loop(item, appends))
            if registered is not None:
                return registered
            tried = True
        values = {"registration": item, "fresh_read": tried}
        alone: Registered = await self._in_thread(self.service.register_alone, values)
        return alone


def _specs_within(registrations: Sequence[Registration], most: int) -> bool:
    """Whether the specs of `registrations` come to `most` bytes or fewer (each encoded only
    until they pass it)."""
    total = 0
    for registration in registrations:
        total += _spec_bytes(registration)
        if total > most:
            return False
    return True


def _spec_bytes(registration: Registration) -> int:
    spec = registration.command.spec
    return len(orjson.dumps(spec)) if spec else 0


async def registrations_of(request: Request) -> Registrations:
    registrations: Registrations = request.app.state.registrations
    return registrations


TheRegistrations = Annotated[Registrations, Depends(registrations_of)]
