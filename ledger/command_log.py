"""One log line per command, at INFO on `jobledger.commands`: the command, its job, its
actor, how it ended and the correlation id of the request that sent it.

    register 'job-7' by 'trainer': accepted, correlation 4bf92f3577b34da6a3ce929d0e0e4736
    cancel 'job-7' by 'alice': refused illegal-transition, correlation 4bf92f35…

The outcome is `accepted`, `replayed` (a repeat of an idempotency key: nothing new was
appended), `refused` or `failed` (a refusal by the rules or the input, a 4xx; a failure
of the ledger, a 5xx), each of these two with the error's kind. The fields are also the
record's attributes (`job_id`, `actor`, `command`, `outcome`, `kind`, `correlation_id`),
which a JSON log shows as keys. A claim that finds the queue empty starts nothing: it is
logged at DEBUG.

A batch of registrations is one command with one line, its jobs counted by outcome, after
a line for each job it refused; each job it registered or replayed has a line at DEBUG:

    register 1000 jobs by 'trainer': 998 accepted, 1 replayed, 1 refused, correlation …
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

from ledger.errors import LedgerError

LOGGER = "jobledger.commands"
log = logging.getLogger(LOGGER)

ACCEPTED = "accepted"
REPLAYED = "replayed"
REFUSED = "refused"
"""Refused by the rules or the input: a 4xx."""
FAILED = "failed"
"""A failure of the ledger: a 5xx."""
EMPTY = "empty"
"""A claim of an empty queue."""


@dataclass(slots=True, kw_only=True)
class CommandLine:
    """What the line of a command in progress says; its outcome may be set before it ends."""

    command: str
    job_id: str | None
    actor: str
    correlation_id: str | None
    outcome: str = ACCEPTED


def logged_command(
    command: str, *, job_id: str | None, actor: str, correlation_id: str | None
) -> "LoggedCommand":
    """Log the command's line when the block ends: its `outcome` when it ends normally,
    or the refusal or failure it raised (which propagates)."""
    line = CommandLine(command=command, job_id=job_id, actor=actor, correlation_id=correlation_id)
    return LoggedCommand(line)


class LoggedCommand:
    """What `logged_command` returns: a class rather than a generator, which would cost
    several times more on every command."""

    __slots__ = ("line",)

    def __init__(self, line: CommandLine) -> None:
        self.line = line

    def __enter__(self) -> CommandLine:
        return self.line

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None:
            log_line(self.line, self.line.outcome)
        elif isinstance(error, Exception):
            log_refusal(self.line, error)


def log_refusal(line: CommandLine, error: Exception) -> None:
    """Log the command's line as refused (a 4xx) or failed, with the error's kind."""
    log_line(line, refusal_outcome(error), error_kind(error))


def error_kind(error: Exception) -> str:
    """The problem kind a line names for `error`: its own, or the ledger's generic one."""
    return error.kind if isinstance(error, LedgerError) else LedgerError.kind


def refusal_outcome(error: Exception) -> str:
    """`REFUSED` for a ledger error of a 4xx, else `FAILED`."""
    refused = isinstance(error, LedgerError) and error.status_code < 500
    return REFUSED if refused else FAILED


def log_batch(
    command: str,
    *,
    actor: str,
    correlation_id: str | None,
    outcomes: Mapping[str, int],
    kind: str | None = None,
) -> None:
    """Log a batch's line: how many of its jobs ended with each outcome (`ACCEPTED`,
    `REPLAYED`, `REFUSED`, `FAILED`), each count also a field of the record by that name,
    and the `kind` of the failure that ended the whole batch, if one did. Its `outcome`
    field is `batch`."""
    if not log.isEnabledFor(logging.INFO):
        return
    counted = ", ".join(f"{count} {outcome}" for outcome, count in outcomes.items() if count)
    jobs = sum(outcomes.values())
    fields = {
        "command": command,
        "job_id": None,
        "actor": actor,
        "outcome": "batch",
        "correlation_id": correlation_id,
        **outcomes,
    }
    if kind is not None:
        fields["kind"] = kind
        counted += f" {kind}"
    log.info(
        "%s %d %s by %r: %s, correlation %s",
        command,
        jobs,
        "job" if jobs == 1 else "jobs",
        actor,
        counted or "none",
        correlation_id or "none",
        extra=fields,
    )


def log_line(
    line: CommandLine, outcome: str, kind: str | None = None, *, level: int | None = None
) -> None:
    """Log the command's line with this outcome (at INFO, or DEBUG for `EMPTY`, unless
    given a `level`)."""
    if level is None:
        level = logging.DEBUG if outcome == EMPTY else logging.INFO
    if not log.isEnabledFor(level):
        return
    fields = {
        "command": line.command,
        "job_id": line.job_id,
        "actor": line.actor,
        "outcome": outcome,
        "correlation_id": line.correlation_id,
    }
    if kind is not None:
        fields["kind"] = kind
    job = "" if line.job_id is None else f" {line.job_id!r}"
    ended = outcome if kind is None else f"{outcome} {kind}"
    log.log(
        level,
        "%s%s by %r: %s, correlation %s",
        line.command,
        job,
        line.actor,
        ended,
        line.correlation_id or "none",
        extra=fields,
    )
