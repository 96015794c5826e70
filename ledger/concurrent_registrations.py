"""Registrations made from many threads of one process, registered together.

A training server that registers its jobs in process, from many threads, makes a
statement and a commit a job through `JobService.execute`. `ConcurrentRegistrations`
gathers the registrations that arrive while one is on its way and registers them in one
transaction (`JobService.register_each`: one statement, one commit), as a database's
group commit gathers the commits that wait on one flush, and as the HTTP server gathers
its single registrations (`api.gathered_registrations`). Each is answered, logged and
counted as its own `execute` would be.

One call is on its way at a time. The thread that finds none on its way makes its own at
once: alone, through `execute` (a single append costs one registration less); and the
threads that arrive meanwhile wait. When it ends, the first of them makes the next call,
for itself and every one waiting then (at most `most`). When a shared transaction fails
in a way one registration alone may cause (`tried_alone_after`), each is tried again
alone, through `execute`, on its own thread; otherwise each fails with an error of its
own and a log line, as `execute` would have failed it.
"""

import threading
from collections import deque
from dataclasses import dataclass

from ledger.commands import RegisterJob
from ledger.errors import failed_alike, tried_alone_after
from ledger.registrations import Registered, Registration
from ledger.service import JobService

MOST_TOGETHER = 100
"""The most registrations one shared transaction carries: a statement of a bounded size
(each carries its spec), however many threads wait."""


@dataclass(slots=True, eq=False)
class _Waiter:
    """One thread's registration, and what became of it."""

    registration: Registration
    woken: threading.Event | None = None
    """Set once its outcome is there, or once it is to make the next call (made only for
    a registration that waits)."""
    leads: bool = False
    """Woken to make the next call, for itself and the ones waiting."""
    outcome: Registered | BaseException | None = None
    """None once woken: the shared call could not tell, and it is registered on its own."""


class ConcurrentRegistrations:
    """The registrations of one process's threads, registered together when they arrive
    together. Safe to call from any number of threads."""

    def __init__(self, service: JobService, most: int = MOST_TOGETHER) -> None:
        if most < 1:
            raise ValueError(f"most must be 1 or more, not {most}")
        self.service = service
        self._most = most
        self._lock = threading.Lock()
        self._waiting: deque[_Waiter] = deque()
        self._on_its_way = False

    def register(
        self,
        job_id: str,
        command: RegisterJob,
        *,
        actor: str,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Registered:
        """Register the job as `execute` would, with the registrations of other threads
        that wait beside it: the job as registered, or as an earlier registration with the
        same key left it (`replayed`). Raises what `execute` raises for it."""
        me = _Waiter(
            Registration(
                job_id=job_id,
                command=command,
                idempotency_key=idempotency_key,
                actor=actor,
                correlation_id=correlation_id,
            )
        )
        with self._lock:
            leads = not self._on_its_way
            if leads:
                self._on_its_way = True
            else:
                me.woken = threading.Event()
                self._waiting.append(me)
        if me.woken is not None:
            me.woken.wait()
        if leads or me.leads:
            self._call(me)
        outcome = me.outcome
        if outcome is None:
            return self.service.register_alone(me.registration)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def waiting(self) -> int:
        """How many registrations wait for the call on its way to end."""
        with self._lock:
            return len(self._waiting)

    def _call(self, me: _Waiter) -> None:
        """Make the next call: `me`'s registration with every one waiting now (at most
        `most`); then hand the next call to the first that waits, and wake the others."""
        with self._lock:
            group = [me]
            while self._waiting and len(group) < self._most:
                group.append(self._waiting.popleft())
        try:
            if len(group) == 1:
                me.outcome = self._outcome_alone(me.registration)
            else:
                self._together(group)
        finally:
            with self._lock:
                if self._waiting:
                    following = self._waiting.popleft()
                    following.leads = True
                    _wake(following)
                else:
                    self._on_its_way = False
            for waiter in group[1:]:
                _wake(waiter)

    def _together(self, group: list[_Waiter]) -> None:
        registrations = [waiter.registration for waiter in group]
        try:
            outcomes = self.service.register_each(registrations)
        except Exception as failure:
            if tried_alone_after(failure):
                return  # each is registered on its own
            errors = failed_alike(failure, len(group))
            self.service.log_unrecorded(registrations, errors)
            for waiter, error in zip(group, errors, strict=True):
                waiter.outcome = error
            return
        for waiter, outcome in zip(group, outcomes, strict=True):
            waiter.outcome = outcome

    def _outcome_alone(self, registration: Registration) -> Registered | BaseException:
        try:
            return self.service.register_alone(registration)
        except Exception as refused:
            return refused


def _wake(waiter: _Waiter) -> None:
    assert waiter.woken is not None, "a registration that waits has its event"
    waiter.woken.set()
