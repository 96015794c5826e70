"""The queue is the ledger: claiming the next queued job starts it, atomically.

A job is started here and nowhere else, so every run has a lease from its
first moment. A claim is one statement: it locks the next queued job's
projection row (`FOR UPDATE SKIP LOCKED`), appends its `job_started`, projects
the start and opens the attempt's lease. Two workers never get the same job,
and a job is never started twice for one attempt. A direct start of a chosen
job is the same statement; when it starts nothing, `decide` says why.

A claim or start with an idempotency key is answered once per caller and key: a
retry (after an answer was lost) gets the run the key started, with the same
attempt and run token, and starts nothing else. The key's starts are serialised
by an advisory lock, so two identical retries racing each other start one run: the
start statement goes on only when it gets the lock at once, in one round trip; when
the lock is busy (or a twin committed as the statement began), it is run again in a
transaction that waits for the lock first. The token of a keyed start is kept in
its lease row (which the API never shows), so the retry is answered while the run
is open; once the run has ended, the retry is refused as the run's own commands
would be (`StaleAttempt`, naming the job's current attempt): its token fences
nothing any more.
"""

import dataclasses
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from ledger.command_log import (
    ACCEPTED,
    EMPTY,
    CommandLine,
    log_line,
    log_refusal,
    logged_command,
)
from ledger.commands import COMMAND_NAMES, StartJob, WorkerIdentity, request_digest
from ledger.decide import decide
from ledger.errors import IdempotencyKeyReused, StaleAttempt, VersionConflict
from ledger.events import JobStarted, event_to_record
from ledger.loop_appends import LoopAppends
from ledger.queries import (
    CLAIM_NEXT_QUEUED_JOB,
    CLAIM_NEXT_QUEUED_JOB_BY_KEY,
    LOCK_START_KEY,
    START_KEY_USED,
    START_QUEUED_JOB,
    START_QUEUED_JOB_BY_KEY,
    START_ROW_TAIL,
)
from ledger.run_tokens import new_run_token
from ledger.settings import DEFAULT_LEASE_SECONDS
from ledger.state import JobState, worker_fields
from ledger.state_cache import StateCache
from ledger.statuses import ACTIVE_RUN_STATUSES
from ledger.store import EventStore, IdempotencyKeyTaken, state_from_row
from ledger.telemetry import telling_refusals


class _Sender(NamedTuple):
    """Who asked for a start, with which idempotency key, in which request."""

    actor: str
    idempotency_key: str | None
    correlation_id: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """A started attempt: what the worker needs to run it and to write about it."""

    job: JobState
    attempt: int
    run_token: str
    resume_from: str | None
    lease_expires_at: datetime
    replayed: bool = False
    """An earlier start by the same idempotency key, answered again; False when this call
    started the run (its lease was just written and has had no heartbeat)."""


def start_params(
    command: StartJob,
    *,
    actor: str,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    idempotency_key: str | None = None,
    command_sha256: str | None = None,
    correlation_id: str | None = None,
    job_id: str = "",
) -> dict[str, Any]:
    """The parameters of a start statement (`CLAIM_NEXT_QUEUED_JOB` and the others of
    `ledger.queries`): `job_id` for a start of a chosen job, none for a claim. The event's
    payload is as `decide` makes it; the statement fills in `resume_from` from the row it
    locks. A keyed start keeps its run token, to answer a retry with it."""
    started = JobStarted.of(command.worker, run_token=command.run_token, resume_from=None)
    _, payload, _ = event_to_record(started)
    return (
        ({"job_id": job_id} if job_id else {})
        | worker_fields(command.worker)
        | {
            "run_token_sha256": started.run_token_sha256,
            "keyed_run_token": None if idempotency_key is None else command.run_token,
            "idempotency_key": idempotency_key,
            "command_sha256": command_sha256,
            "payload": orjson.dumps(payload).decode(),
            "actor": actor,
            "correlation_id": correlation_id,
            "lease_seconds": lease_seconds,
        }
    )


class JobQueue:
    """Starts queued jobs. `run_tokens` makes the run token of each start; each started
    job's state goes into `cache` (the `JobService`'s), so the run's next command is
    decided without a read."""

    def __init__(
        self,
        store: EventStore,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        run_tokens: Callable[[], str] = new_run_token,
        cache: StateCache | None = None,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.run_tokens = run_tokens
        self.cache = cache

    def claim(
        self,
        worker: WorkerIdentity,
        *,
        actor: str,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Claim | None:
        """Start the next queued job for `worker`; None at once when the queue is empty.

        With `idempotency_key`, a repeat by the same `actor` answers the run the key
        started (see the module's docstring) instead of starting another."""
        command = StartJob(worker=worker, run_token=self.run_tokens())
        sender = _Sender(actor, idempotency_key, correlation_id)
        with (
            logged_command(
                "claim", job_id=None, actor=actor, correlation_id=correlation_id
            ) as line,
            telling_refusals(self.store.observers),
        ):
            claim = self._start(
                _claim_statement(idempotency_key), command, sender, request=_claim_request(worker)
            )
            if claim is None:
                line.outcome = EMPTY
            else:
                line.job_id = claim.job.job_id
        if claim is None:
            self.store.observers.claim_made(None)
        return claim

    def start(
        self,
        job_id: str,
        worker: WorkerIdentity,
        *,
        actor: str,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
    ) -> Claim:
        """Start this queued job for `worker` (the caller chose it): the same path as a
        claim, idempotent by key in the same way."""
        command = StartJob(worker=worker, run_token=self.run_tokens())
        statement = START_QUEUED_JOB if idempotency_key is None else START_QUEUED_JOB_BY_KEY
        request = ("start", {"job_id": job_id, "worker": dataclasses.asdict(worker)})
        sender = _Sender(actor, idempotency_key, correlation_id)
        name = COMMAND_NAMES[StartJob]
        with (
            logged_command(name, job_id=job_id, actor=actor, correlation_id=correlation_id),
            telling_refusals(self.store.observers),
        ):
            claim = self._start(statement, command, sender, request=request, job_id=job_id)
            if claim is not None:
                return claim
            # Not queued when the statement ran: the rules say why (no such job, or its
            # status).
            state = self.store.load(job_id)
            decide(state, command, job_id=job_id)
            # Queued again by now: it changed under the caller, who may simply retry.
            assert state is not None
            raise VersionConflict(job_id, state.version)

    def _start(
        self,
        statement: str,
        command: StartJob,
        sender: _Sender,
        *,
        request: tuple[str, dict[str, Any]],
        job_id: str = "",
    ) -> Claim | None:
        """Run a start `statement`; with a `key`, answer the caller's earlier start by it
        when there is one (`request`, its name and fields, must be the same)."""
        key = sender.idempotency_key
        values, digest = self._start_values(command, sender, request, job_id)
        try:
            row = self._start_row(statement, values, job_id)
        except IdempotencyKeyTaken as taken:
            # The chosen job already has an event with this key, of another request.
            assert key is not None
            raise IdempotencyKeyReused(job_id, key) from taken
        if row is None:
            return None
        return self._claim_of_row(row, command, key, digest)

    def _start_values(
        self,
        command: StartJob,
        sender: _Sender,
        request: tuple[str, dict[str, Any]],
        job_id: str = "",
    ) -> tuple[dict[str, Any], str | None]:
        """A start statement's values, and the digest of `request` (its name and fields)
        when the sender's key asks for one."""
        key = sender.idempotency_key
        digest = None if key is None else request_digest(*request)
        values = start_params(
            command,
            actor=sender.actor,
            lease_seconds=self.lease_seconds,
            idempotency_key=key,
            command_sha256=digest,
            correlation_id=sender.correlation_id,
            job_id=job_id,
        )
        return values, digest

    def _claim_of_row(
        self, row: Sequence[Any], command: StartJob, key: str | None, digest: str | None
    ) -> Claim:
        """The claim a start statement's `row` answers: the run it started, or the run the
        caller's `key` started earlier."""
        job = state_from_row(row[:-START_ROW_TAIL])
        if self.cache is not None:
            self.cache.put(job)
        expires_at, kept_token, earlier_attempt, earlier_digest = row[-START_ROW_TAIL:]
        if earlier_attempt is None:
            self._tell_started(job)
            return Claim(job, job.attempt, command.run_token, job.resume_from, expires_at)
        assert key is not None
        if earlier_digest != digest:
            raise IdempotencyKeyReused(job.job_id, key)
        run_is_open = job.attempt == earlier_attempt and job.status in ACTIVE_RUN_STATUSES
        if not run_is_open or kept_token is None:
            raise StaleAttempt(
                job.job_id,
                earlier_attempt,
                job.attempt,
                f"the run this idempotency key started has ended (the job is {job.status})",
            )
        return Claim(job, earlier_attempt, kept_token, job.resume_from, expires_at, replayed=True)

    async def claim_on_loop(
        self,
        worker: WorkerIdentity,
        *,
        actor: str,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        appends: LoopAppends,
    ) -> "Claim | Untold | None":
        """`claim`, its statements sent on the event loop by `appends`: the run it started
        (or the key's earlier one), or None for an empty queue, logged and counted as
        `claim` does. `UNTOLD`, with nothing logged, when only `claim` can tell: `appends`
        is not ready, or a keyed claim's twin may be in flight (`_start_row`: the key's
        lock was busy, the key ran into another start's, or the key has been used)."""
        if not appends.ready():
            return UNTOLD
        command = StartJob(worker=worker, run_token=self.run_tokens())
        key = idempotency_key
        sender = _Sender(actor, key, correlation_id)
        values, digest = self._start_values(command, sender, _claim_request(worker))
        statement = _claim_statement(key)
        line = CommandLine(command="claim", job_id=None, actor=actor, correlation_id=correlation_id)
        try:
            with telling_refusals(self.store.observers):
                try:
                    rows = await appends.rows(statement, values)
                except IdempotencyKeyTaken:
                    return UNTOLD
                row = rows[0] if rows else None
                if row is None:
                    if key is not None and not await _no_twin(appends, values):
                        return UNTOLD
                    log_line(line, EMPTY)
                    self.store.observers.claim_made(None)
                    return None
                if row[0] is None:  # the key's lock was busy
                    return UNTOLD
                claim = self._claim_of_row(row, command, key, digest)
        except Exception as failure:
            log_refusal(line, failure)
            raise
        line.job_id = claim.job.job_id
        log_line(line, ACCEPTED)
        return claim

    def _start_row(self, statement: str, values: dict[str, Any], job_id: str) -> Any:
        """The answer of a start `statement`: the job's row and its `START_ROW_TAIL`, or
        None when it started nothing. A keyed start runs on its own when its key's lock is
        free (`ledger.queries`), and again in a transaction that waits for the lock when
        a twin may be in flight or have committed as it began: when the lock was busy,
        when it ran into the key's unique index, when a claim found no job although the
        key has been used meanwhile, and when a start of a chosen job started nothing."""
        keyed = values["idempotency_key"] is not None
        try:
            with self.store.connection(job_id) as conn:
                row = conn.execute(statement, values).fetchone()
                if not keyed or (row is not None and row[0] is not None):
                    return row
                if row is None and not job_id:
                    used = conn.execute(START_KEY_USED, values).fetchone()
                    if used is not None and not used[0]:
                        return None  # an empty queue, and no twin of this claim
        except IdempotencyKeyTaken:
            if not keyed:
                raise
        with self.store.transaction(job_id) as conn, conn.pipeline():
            conn.execute(LOCK_START_KEY, values)
            return conn.execute(statement, values).fetchone()

    def _tell_started(self, job: JobState) -> None:
        """Tell the observers of a start: its `job_started`, and how long the job was
        queued (both times on the database clock)."""
        observers = self.store.observers
        observers.events_appended([JobStarted.TYPE])
        if job.queued_at is not None and job.started_at is not None:
            observers.claim_made(max((job.started_at - job.queued_at).total_seconds(), 0.0))


class Untold(enum.Enum):
    """What `claim_on_loop` answers when only `claim` can tell."""

    UNTOLD = "untold"


UNTOLD = Untold.UNTOLD


async def _no_twin(appends: LoopAppends, values: dict[str, Any]) -> bool:
    """Whether a keyed claim that found the queue empty has no twin: its key has not been
    used meanwhile (`_start_row`'s check). False when that cannot be asked at once."""
    if not appends.ready():
        return False
    used = await appends.rows(START_KEY_USED, values)
    return bool(used) and not used[0][0]


def _claim_statement(key: str | None) -> str:
    return CLAIM_NEXT_QUEUED_JOB if key is None else CLAIM_NEXT_QUEUED_JOB_BY_KEY


def _claim_request(worker: WorkerIdentity) -> tuple[str, dict[str, Any]]:
    """A claim's name and fields, as its idempotency key's digest is made of them."""
    return "claim", {"worker": dataclasses.asdict(worker)}
