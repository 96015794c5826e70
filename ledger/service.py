"""Carrying out commands: load the job, decide, append — with optimistic concurrency."""

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from ledger.command_log import (
    ACCEPTED,
    FAILED,
    REFUSED,
    REPLAYED,
    CommandLine,
    error_kind,
    log_batch,
    log_line,
    log_refusal,
    logged_command,
    refusal_outcome,
)
from ledger.command_log import log as command_log
from ledger.commands import COMMAND_NAMES, JobCommand, RegisterJob, StartJob, command_digest
from ledger.decide import decide
from ledger.errors import (
    DuplicateJob,
    IdempotencyKeyReused,
    InvalidCommand,
    LedgerError,
    StorageError,
    VersionConflict,
)
from ledger.events import JobEvent, RecordedEvent
from ledger.loop_appends import LoopAppends
from ledger.registrations import (
    Registered,
    Registration,
    RegistrationOutcome,
    register_many,
    register_many_on_loop,
    told,
)
from ledger.state import JobState
from ledger.state_cache import DEFAULT_SIZE as DEFAULT_CACHE_SIZE
from ledger.state_cache import StateCache
from ledger.store import EventStore, IdempotencyKeyTaken, prepare_append
from ledger.telemetry import telling_refusals

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


class _Request(NamedTuple):
    """One call of `JobService.execute` (a named tuple: the cheapest to build, once per
    command)."""

    job_id: str
    command: JobCommand
    actor: str
    idempotency_key: str | None
    correlation_id: str | None
    expected_version: int | None = None
    occurred_at: datetime | None = None
    command_sha256: str | None = None
    """The digest of `command`, when it carries an idempotency key (`_digested`)."""


class _LostRace(Exception):
    """Another writer appended to the job between this command's read and its append."""

    def __init__(self, conflict: VersionConflict | DuplicateJob) -> None:
        super().__init__(str(conflict))
        self.conflict = conflict


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
        fresh_read: bool = False,
    ) -> Outcome:
        """Decide `command` on the job's current state and append what it causes.

        With `expected_version`, the command applies only to that version of
        the job (`VersionConflict` otherwise). Without it, a command that loses
        a race to another writer is decided again on the newer state. A command
        repeated with an idempotency key it already used returns the first
        outcome and appends nothing; the same key with another command (another
        kind, or other fields) is refused with `IdempotencyKeyReused`.

        The job's state comes from this process's cache when it holds one (for a
        registration it finds none for: no job), as a guess: an append decided on
        it is refused by the log if it was stale, and a refusal or a no-op decided
        on it is not believed. Either way the command is decided again on a fresh
        read.

        With `fresh_read`, the command is decided on a fresh read at once: its caller
        tried the cache's guess already (`execute_on_loop`), and the log refused it.

        The events record `correlation_id`, and the command's outcome is logged with it
        (`ledger.command_log`).
        """
        called = _Request(
            job_id, command, actor, idempotency_key, correlation_id, expected_version, occurred_at
        )
        request = _digested(called)
        return self._logged(request, fresh_read)

    def _logged(self, request: _Request, fresh_read: bool) -> Outcome:
        """`execute` of `request`, its outcome logged (`ledger.command_log`)."""
        name = COMMAND_NAMES[type(request.command)]
        with logged_command(
            name, job_id=request.job_id, actor=request.actor, correlation_id=request.correlation_id
        ) as line:
            outcome = self._execute(request, fresh_read)
            if outcome.replayed:
                line.outcome = REPLAYED
        return outcome

    def _execute(self, request: _Request, fresh_read: bool = False) -> Outcome:
        if isinstance(request.command, StartJob):
            raise InvalidCommand("a job is started through the queue, which opens its lease")
        with telling_refusals(self.store.observers):
            outcome = None if fresh_read else self._decide_on_cache(request)
            if outcome is None:
                outcome = self._decide_with_retries(request)
        return outcome

    def register_many(
        self,
        registrations: Sequence[Registration],
        *,
        actor: str,
        correlation_id: str | None = None,
        refused_before: int = 0,
    ) -> list[RegistrationOutcome]:
        """Register many jobs in one transaction (see `ledger.registrations`). The batch's
        log line counts `refused_before` more refused jobs: items of the same batch its
        caller refused before they got here (the HTTP API's invalid items)."""
        command = COMMAND_NAMES[RegisterJob]
        try:
            outcomes = register_many(
                self.store, registrations, actor=actor, correlation_id=correlation_id
            )
        except Exception as failure:
            counts = {REFUSED: refused_before, FAILED: 0}
            counts[refusal_outcome(failure)] += len(registrations)
            log_batch(
                command,
                actor=actor,
                correlation_id=correlation_id,
                outcomes=counts,
                kind=error_kind(failure),
            )
            raise
        self.cache.put_many(
            outcome.state for outcome in outcomes if isinstance(outcome, Registered)
        )
        _log_registrations(registrations, outcomes, actor, correlation_id, refused_before)
        return outcomes

    def register_each(self, registrations: Sequence[Registration]) -> list[RegistrationOutcome]:
        """Registrations of many callers (each naming its `actor`), gathered into one
        transaction: each recorded, logged and counted as its own `execute` would be. A
        failure of that transaction (nothing recorded) is raised, and logs nothing: the
        caller decides what becomes of each registration (`log_unrecorded`)."""
        outcomes = register_many(self.store, registrations, actor="")
        self._registered_each(registrations, outcomes)
        return outcomes

    async def register_each_on_loop(
        self, registrations: Sequence[Registration], appends: LoopAppends
    ) -> list[RegistrationOutcome | None] | None:
        """`register_each`, its statement sent from the event loop by `appends`
        (`register_many_on_loop`): each registration recorded (or refused as decided),
        logged and counted; None, with nothing logged, for each the log left out (a job
        that was there already, which only a fresh read tells: `tell_each`), and for all
        when `appends` is not ready or there are more than `MAX_REGISTRATIONS`."""
        outcomes = await register_many_on_loop(self.store, registrations, appends)
        if outcomes is not None:
            self._registered_each(registrations, outcomes)
        return outcomes

    def tell_each(self, registrations: Sequence[Registration]) -> list[RegistrationOutcome]:
        """What became of registrations that `register_each_on_loop` left out (their jobs
        were there already): each judged on a fresh read (`ledger.registrations.told`),
        logged and counted as its own `execute` would be; nothing is appended. A failure
        of the read is raised, and logs nothing, as `register_each`'s."""
        outcomes = told(self.store, registrations)
        self._registered_each(registrations, outcomes)
        return outcomes

    def _registered_each(
        self,
        registrations: Sequence[Registration],
        outcomes: Sequence[RegistrationOutcome | None],
    ) -> None:
        """Cache, log and count what became of each registration (None: nothing yet)."""
        self.cache.put_many(
            outcome.state for outcome in outcomes if isinstance(outcome, Registered)
        )
        observers = self.store.observers
        for registration, outcome in zip(registrations, outcomes, strict=True):
            if outcome is None:
                continue
            line = _registration_line(registration)
            if isinstance(outcome, LedgerError):
                if not isinstance(outcome, StorageError):
                    observers.command_refused(outcome.kind)
                log_refusal(line, outcome)
            else:
                log_line(line, REPLAYED if outcome.replayed else ACCEPTED)

    def register_alone(self, registration: Registration, *, fresh_read: bool = False) -> Registered:
        """`execute` of one registration (naming its actor): the job as registered, or as
        an earlier registration with the same key left it (`replayed`)."""
        outcome = self._logged(_registration_request(registration), fresh_read)
        return Registered(outcome.state, outcome.replayed)

    async def register_on_loop(
        self, registration: Registration, appends: LoopAppends
    ) -> Registered | None:
        """`execute_on_loop` of a registration (`registration` naming its actor): tried
        when the cache does not hold the job, on the guess that there is none (`_guess`)."""
        outcome = await self._on_loop(_registration_request(registration), appends)
        return None if outcome is None else Registered(outcome.state)

    async def execute_on_loop(
        self,
        job_id: str,
        command: JobCommand,
        *,
        actor: str,
        idempotency_key: str | None,
        correlation_id: str | None,
        appends: LoopAppends,
    ) -> Outcome | None:
        """`execute`'s first try, its append made on the event loop by `appends`: decided
        on the cache's guess (`_guess`), then recorded, logged and counted as `execute`
        would. None, with nothing logged, when the guess cannot be tried (`appends` is not
        ready, or only a fresh read can tell) or was wrong (another writer was first, or
        the key is used): only `execute` can tell what becomes of the command then, on a
        fresh read (`fresh_read`, when this tried the guess: the log refused it once
        already)."""
        request = _digested(_Request(job_id, command, actor, idempotency_key, correlation_id))
        return await self._on_loop(request, appends)

    async def _on_loop(self, request: _Request, appends: LoopAppends) -> Outcome | None:
        if not appends.ready() or isinstance(request.command, StartJob):
            return None
        guess = self._guess(request)
        if guess is None:
            return None
        state, events = guess
        job_id = request.job_id
        line = CommandLine(
            command=COMMAND_NAMES[type(request.command)],
            job_id=job_id,
            actor=request.actor,
            correlation_id=request.correlation_id,
        )
        try:
            prepared = prepare_append(
                job_id,
                state,
                events,
                actor=request.actor,
                idempotency_key=request.idempotency_key,
                command_sha256=request.command_sha256,
                correlation_id=request.correlation_id,
            )
            with telling_refusals(self.store.observers):
                try:
                    appended = await appends.append(prepared)
                except (VersionConflict, DuplicateJob, IdempotencyKeyTaken):
                    self.cache.drop(job_id)
                    return None  # the guess was stale, or the key is used: a fresh read tells
        except Exception as failure:
            log_refusal(line, failure)
            raise
        self.cache.put(appended.state)
        log_line(line, ACCEPTED)
        return Outcome(appended.state, appended.events)

    def log_unrecorded(
        self, registrations: Sequence[Registration], failures: Sequence[Exception]
    ) -> None:
        """Log each registration of `register_each` that its failure left unrecorded, as
        `execute` logs a command that failed."""
        for registration, failure in zip(registrations, failures, strict=True):
            log_refusal(_registration_line(registration), failure)

    def _decide_on_cache(self, request: _Request) -> Outcome | None:
        """Decide on the cache's guess (`_guess`) and append; None when only a fresh read
        can tell."""
        guess = self._guess(request)
        if guess is None:
            return None
        try:
            return self._append(*guess, request)
        except (_LostRace, IdempotencyKeyTaken):
            return None  # the guess was stale, or the same command landed first

    def _guess(self, request: _Request) -> tuple[JobState | None, list[JobEvent]] | None:
        """The job's cached state and the events `request` causes there; None when only a
        fresh read can tell: the cache does not hold the job, holds another version than
        the one expected, or `request` is refused or already satisfied there (neither is
        believed on a guess).

        A registration of a job the cache does not hold is decided on the guess that
        there is no such job: the log's unique `(job_id, seq)` refuses its first event
        when there is one, so a new job costs one round trip, not a read and a write."""
        state = self.cache.get(request.job_id)
        if state is None and not isinstance(request.command, RegisterJob):
            return None
        if request.expected_version not in (None, state.version if state else 0):
            return None
        try:
            events = decide(state, request.command, job_id=request.job_id)
        except LedgerError:
            return None
        return (state, events) if events else None

    def _decide_with_retries(self, request: _Request) -> Outcome:
        """Decide on a fresh read. A decision that could not be appended is decided again
        on a new read, up to `CONFLICT_RETRIES` times: after a lost race (unless the
        caller expected a version) with a jittered backoff, and at once when the same
        command landed first (the new read returns its outcome)."""
        retries = 0
        while True:
            try:
                return self._decide_on_fresh_read(request)
            except IdempotencyKeyTaken as taken:
                if retries == CONFLICT_RETRIES:  # the key's append never became readable
                    raise VersionConflict(request.job_id, taken.decided_on) from taken
            except _LostRace as lost:
                conflict = lost.conflict
                if request.expected_version is not None or retries == CONFLICT_RETRIES:
                    raise conflict from conflict.__cause__
                time.sleep(random.uniform(0, BACKOFF_SECONDS) * (retries + 1))
            retries += 1

    def _decide_on_fresh_read(self, request: _Request) -> Outcome:
        """Read the job (and an earlier use of the idempotency key), decide and append."""
        job_id = request.job_id
        loaded = self.store.load_for_command(job_id, request.idempotency_key)
        if loaded.earlier_outcome is not None and loaded.state is not None:
            earlier = loaded.earlier_command_sha256
            if earlier is not None and earlier != request.command_sha256:
                assert request.idempotency_key is not None
                raise IdempotencyKeyReused(job_id, request.idempotency_key)
            return Outcome(loaded.state, loaded.earlier_outcome, replayed=True)
        state = loaded.state
        current = state.version if state else 0
        expected = request.expected_version
        if expected is not None and expected != current:
            raise VersionConflict(job_id, expected, current)
        events = decide(state, request.command, job_id=job_id)
        if not events:
            assert state is not None
            return Outcome(state, [])
        return self._append(state, events, request)

    def _append(self, state: JobState | None, events: list[JobEvent], request: _Request) -> Outcome:
        """Append `events` decided on `state`; raise `_LostRace` when another writer was first."""
        try:
            appended = self.store.append(
                request.job_id,
                state,
                events,
                actor=request.actor,
                idempotency_key=request.idempotency_key,
                command_sha256=request.command_sha256,
                correlation_id=request.correlation_id,
                occurred_at=request.occurred_at,
            )
        except (VersionConflict, DuplicateJob) as conflict:
            self.cache.drop(request.job_id)
            raise _LostRace(conflict) from conflict
        self.cache.put(appended.state)
        return Outcome(appended.state, appended.events)


def _registration_request(registration: Registration) -> _Request:
    """The request of one caller's registration (`registration` naming its actor)."""
    return _digested(
        _Request(
            registration.job_id,
            registration.command,
            registration.actor or "",
            registration.idempotency_key,
            registration.correlation_id,
        )
    )


def _digested(request: _Request) -> _Request:
    """`request` with the digest of its command, when it carries an idempotency key: made
    once, as the key's first event records it and a repeat of the key compares it."""
    if request.idempotency_key is None:
        return request
    return request._replace(command_sha256=command_digest(request.command))


def _registration_line(registration: Registration) -> CommandLine:
    """The log line of one caller's registration (`registration` naming its actor)."""
    return CommandLine(
        command=COMMAND_NAMES[RegisterJob],
        job_id=registration.job_id,
        actor=registration.actor or "",
        correlation_id=registration.correlation_id,
    )


def _log_registrations(
    registrations: Sequence[Registration],
    outcomes: Sequence[RegistrationOutcome],
    actor: str,
    correlation_id: str | None,
    refused_before: int,
) -> None:
    """A line for each job the ledger refused and, at DEBUG, one for each other; then the
    batch's line."""
    command = COMMAND_NAMES[RegisterJob]
    each_job = command_log.isEnabledFor(logging.DEBUG)
    counts = dict.fromkeys((ACCEPTED, REPLAYED, REFUSED, FAILED), 0)
    counts[REFUSED] = refused_before
    for registration, outcome in zip(registrations, outcomes, strict=True):
        if isinstance(outcome, LedgerError):
            ended = refusal_outcome(outcome)
        else:
            ended = REPLAYED if outcome.replayed else ACCEPTED
        counts[ended] += 1
        if each_job or isinstance(outcome, LedgerError):
            line = CommandLine(
                command=command,
                job_id=registration.job_id,
                actor=actor,
                correlation_id=correlation_id,
            )
            if isinstance(outcome, LedgerError):
                log_refusal(line, outcome)
            else:
                log_line(line, ended, level=logging.DEBUG)
    log_batch(command, actor=actor, correlation_id=correlation_id, outcomes=counts)
