"""Carrying out commands: load the job, decide, append — with optimistic concurrency."""

import random
import time
from dataclasses import dataclass
from datetime import datetime

from ledger.commands import JobCommand, StartJob
from ledger.decide import decide
from ledger.errors import DuplicateJob, InvalidCommand, LedgerError, VersionConflict
from ledger.events import RecordedEvent
from ledger.state import JobState
from ledger.state_cache import DEFAULT_SIZE as DEFAULT_CACHE_SIZE
from ledger.state_cache import StateCache
from ledger.store import EventStore, IdempotencyKeyTaken

CONFLICT_RETRIES = 20
"""How often a command without an expected version is decided again after losing a race."""

BACKOFF_SECONDS = 0.002
"""Up to this much (times the retry count, jittered) between two tries, so racers spread out."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: the events it appended and the job's state after them."""

    state: JobState
    events: list[RecordedEvent]
    replayed: bool = False
    """True when an earlier command with the same idempotency key already did this."""


class JobService:
    """The one way commands reach the log (a start goes through `ledger.queue`)."""

    def __init__(self, store: EventStore, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.store = store
        self.cache = StateCache(cache_size)

    def execute(
        self,
        job_id: str,
        command: JobCommand,
        *,
        actor: str,
        expected_version: int | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Outcome:
        """Decide `command` on the job's current state and append what it causes.

        With `expected_version`, the command applies only to that version of
        the job (`VersionConflict` otherwise). Without it, a command that loses
        a race to another writer is decided again on the newer state. A command
        repeated with an idempotency key it already used returns the first
        outcome and appends nothing.
        """
        if isinstance(command, StartJob):
            raise InvalidCommand("a job is started through the queue, which opens its lease")
        trust_cache = True
        for remaining in range(CONFLICT_RETRIES, -1, -1):
            cached = self.cache.get(job_id) if trust_cache else None
            from_cache = cached is not None and expected_version in (None, cached.version)
            if from_cache:
                state = cached
            else:
                loaded = self.store.load_for_command(job_id, idempotency_key)
                if loaded.earlier_outcome is not None and loaded.state is not None:
                    return Outcome(loaded.state, loaded.earlier_outcome, replayed=True)
                state = loaded.state
                current = state.version if state else 0
                if expected_version is not None and expected_version != current:
                    raise VersionConflict(job_id, expected_version, current)
            try:
                events = decide(state, command, job_id=job_id)
            except LedgerError:
                if from_cache:
                    trust_cache = False  # a refusal is only believed on a fresh read
                    continue
                raise
            if not events:
                if from_cache:
                    trust_cache = False
                    continue
                assert state is not None
                return Outcome(state, [])
            try:
                appended = self.store.append(
                    job_id,
                    state,
                    events,
                    actor=actor,
                    idempotency_key=idempotency_key,
                    correlation_id=correlation_id,
                    occurred_at=occurred_at,
                )
            except IdempotencyKeyTaken:
                trust_cache = False  # the same command landed before; the reload returns it
                continue
            except (VersionConflict, DuplicateJob):
                self.cache.drop(job_id)
                trust_cache = False
                if from_cache:
                    continue  # the guess was stale: decide again on the log's state
                if expected_version is not None or remaining == 0:
                    raise
                time.sleep(random.uniform(0, BACKOFF_SECONDS) * (CONFLICT_RETRIES - remaining))
                continue
            self.cache.put(appended.state)
            return Outcome(appended.state, appended.events)
        raise VersionConflict(job_id, expected_version or 0)  # pragma: no cover
