"""What the ledger tells observers as it works: events appended, commands refused, claims,
heartbeats (in the manner of Oban's and River's telemetry events).

The ledger knows nothing of how an observation is kept: `/metrics` adds an observer that
counts them. Observers are called on the thread that did the work, after it is done, and
must return at once; they are told the kind of a thing, never a job's id.
"""

import threading
from collections.abc import Sequence
from types import TracebackType

from ledger.errors import LedgerError, StorageError


class LedgerObserver:
    """One observer of the ledger. Every observation is ignored here: a subclass keeps the
    ones it wants."""

    def events_appended(self, event_types: Sequence[str]) -> None:
        """Events of these types were appended to the log (one entry per event)."""

    def command_refused(self, kind: str) -> None:
        """A command was refused; `kind` is its error's kind (`version-conflict`,
        `illegal-transition`, `stale-attempt`, ...)."""

    def claim_made(self, waited_s: float | None) -> None:
        """A claim started a job that was queued for `waited_s`; None when it found the
        queue empty."""

    def heartbeat_received(self, *, fenced: bool) -> None:
        """A heartbeat renewed its run's lease, or was `fenced`: its run is not the job's
        current open run."""


class LedgerObservers(LedgerObserver):
    """Every observer added, told each observation in turn."""

    def __init__(self) -> None:
        self._observers: tuple[LedgerObserver, ...] = ()
        self._adding = threading.Lock()

    def add(self, observer: LedgerObserver) -> None:
        with self._adding:  # a new tuple: observations never take the lock
            self._observers = (*self._observers, observer)

    def events_appended(self, event_types: Sequence[str]) -> None:
        for observer in self._observers:
            observer.events_appended(event_types)

    def command_refused(self, kind: str) -> None:
        for observer in self._observers:
            observer.command_refused(kind)

    def claim_made(self, waited_s: float | None) -> None:
        for observer in self._observers:
            observer.claim_made(waited_s)

    def heartbeat_received(self, *, fenced: bool) -> None:
        for observer in self._observers:
            observer.heartbeat_received(fenced=fenced)


def telling_refusals(observer: LedgerObserver) -> "TellingRefusals":
    """Tell `observer` of a command refused inside (a `LedgerError` about the command, not
    the database's trouble), and let the refusal through."""
    return TellingRefusals(observer)


class TellingRefusals:
    """What `telling_refusals` returns: a class rather than a generator, which would cost
    several times more on every command."""

    __slots__ = ("observer",)

    def __init__(self, observer: LedgerObserver) -> None:
        self.observer = observer

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        refusal: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(refusal, LedgerError) and not isinstance(refusal, StorageError):
            self.observer.command_refused(refusal.kind)
