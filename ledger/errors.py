"""The ledger's errors. Every failure a caller can meet is one of these.

    LedgerError
    ├── JobNotFound
    ├── DuplicateJob
    ├── CommandRefused
    │   ├── IllegalTransition       the command is not allowed from this status
    │   └── StaleAttempt            the writer's attempt or run token is not current
    ├── InvalidCommand              the command itself is malformed
    ├── InvalidAuditFilter          a question of the audit log cannot be asked as given
    ├── InvalidDigest               a digest of the log's chain cannot be read
    ├── IdempotencyKeyReused        the key was first used with another request
    ├── VersionConflict             another writer appended first
    ├── TooManyStreams              the server serves as many event streams as it may
    ├── TooManyStreamsOfCaller      the caller holds as many event streams as it may
    ├── InvalidSetting              a setting's value is not one it can take
    ├── InvalidTraceparent          a trace context given to the client is malformed
    └── StorageError
        ├── DatabaseUnavailable     the database cannot be reached
        ├── DatabaseBusy            a statement or lock wait outlasted its timeout
        └── SchemaOutOfDate         the database's schema is behind the code

Database driver errors are translated into these where connections are handed out
(`ledger.database`) and where statements run (`ledger.store`), nowhere else.

Each class says what it means to a caller elsewhere: `status_code`, the HTTP status
it is answered with, and `kind`, the name of its problem type. The HTTP server
answers with them (`api.problems`) and the HTTP client (`ledger.client`) turns
them back into the error: one table, read from both ends. Likewise `details()`
is what an answer adds to the message, and `from_details` rebuilds the error from it.
"""

from collections.abc import Iterable, Mapping
from typing import Any, Self


class LedgerError(Exception):
    """The ledger could not carry out the request."""

    status_code: int = 500
    kind: str = "ledger-error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    def details(self) -> dict[str, Any]:
        """What an answer names besides the message (the job, its status…)."""
        return {}

    @classmethod
    def from_details(cls, details: Mapping[str, Any], message: str) -> Self:
        """The error again, from an answer's `details()` and message."""
        return cls(message)


class _OfAJob(LedgerError):
    """An error about one job, named by its id."""

    def __init__(self, job_id: str, message: str) -> None:
        self.job_id = job_id
        super().__init__(message)

    def details(self) -> dict[str, Any]:
        return {"job_id": self.job_id}

    @classmethod
    def from_details(cls, details: Mapping[str, Any], message: str) -> Self:
        return cls(str(details.get("job_id", "")))  # type: ignore[call-arg]


class JobNotFound(_OfAJob):
    """No such job."""

    status_code = 404
    kind = "job-not-found"

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, f"job {job_id!r} does not exist")


class DuplicateJob(_OfAJob):
    """A job with this id already exists."""

    status_code = 409
    kind = "duplicate-job"

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id, f"job {job_id!r} already exists")


class CommandRefused(LedgerError):
    """The job's state does not allow this command."""

    status_code = 409
    kind = "command-refused"


class IllegalTransition(CommandRefused):
    """The command is not allowed from the job's current status."""

    kind = "illegal-transition"

    def __init__(
        self,
        job_id: str,
        status: str,
        command: str,
        allowed: Iterable[str],
        detail: str = "",
    ) -> None:
        self.job_id = job_id
        self.status = status
        self.command = command
        self.allowed = tuple(sorted(allowed))
        allowed_text = ", ".join(self.allowed) or "none"
        suffix = f" ({detail})" if detail else ""
        super().__init__(
            f"cannot {command} job {job_id!r}: it is {status}{suffix}; "
            f"allowed from {status}: {allowed_text}"
        )

    def details(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "current_status": self.status,
            "command": self.command,
            "allowed_commands": list(self.allowed),
        }

    @classmethod
    def from_details(cls, details: Mapping[str, Any], message: str) -> Self:
        return cls(
            str(details.get("job_id", "")),
            str(details.get("current_status")),
            str(details.get("command")),
            details.get("allowed_commands", []),
        )


class StaleAttempt(CommandRefused):
    """The writer's attempt is no longer the job's current run."""

    kind = "stale-attempt"

    def __init__(self, job_id: str, attempt: int, current_attempt: int, detail: str) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.current_attempt = current_attempt
        super().__init__(
            f"attempt {attempt} of job {job_id!r} is fenced: {detail} "
            f"(current attempt: {current_attempt})"
        )

    def details(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "current_attempt": self.current_attempt,
        }

    @classmethod
    def from_details(cls, details: Mapping[str, Any], message: str) -> Self:
        attempt, current = int(details.get("attempt", 0)), int(details.get("current_attempt", 0))
        return cls(str(details.get("job_id", "")), attempt, current, message)


class InvalidCommand(LedgerError):
    """The command is malformed."""

    status_code = 422
    kind = "invalid-command"


class InvalidAuditFilter(LedgerError):
    """A filter of the audit log cannot be used as given."""

    status_code = 422
    kind = "invalid-audit-filter"

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")

    def details(self) -> dict[str, Any]:
        return {"field": self.field}

    @classmethod
    def from_details(cls, details: Mapping[str, Any], message: str) -> Self:
        field = str(details.get("field", ""))
        return cls(field, message.removeprefix(f"{field}: "))


class InvalidDigest(LedgerError):
    """The digest is not one of this ledger's hash chain: it cannot be checked."""

    status_code = 422
    kind = "invalid-digest"


class IdempotencyKeyReused(LedgerError):
    """This idempotency key was first used with another request."""

    status_code = 422
    kind = "idempotency-key-reused"

    def __init__(self, job_id: str, idempotency_key: str) -> None:
        self.job_id = job_id
        self.idempotency_key = idempotency_key
        of_job = f" on job {job_id!r}" if job_id else ""
        super().__init__(
            f"idempotency key {idempotency_key!r} was first used{of_job} with another "
            "request: a retry must repeat the request exactly, a new request needs a new key"
        )

    def details(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "idempotency_key": self.idempotency_key}

    @classmethod
    def from_details(cls, details: Mapping[str, Any], message: str) -> Self:
        return cls(str(details.get("job_id", "")), str(details.get("idempotency_key", "")))


class VersionConflict(LedgerError):
    """Another writer appended to the job first."""

    status_code = 409
    kind = "version-conflict"

    def __init__(self, job_id: str, expected: int, actual: int | None = None) -> None:
        self.job_id = job_id
        self.expected = expected
        self.actual = actual
        seen = "" if actual is None else f", but it is at version {actual}"
        super().__init__(f"job {job_id!r} was expected at version {expected}{seen}")

    def details(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "expected_version": self.expected}

    @classmethod
    def from_details(cls, details: Mapping[str, Any], message: str) -> Self:
        return cls(str(details.get("job_id", "")), int(details.get("expected_version", 0)))


class StorageError(LedgerError):
    """The event store failed."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached."""

    status_code = 503
    kind = "database-unavailable"


class DatabaseBusy(StorageError):
    """The database did not answer in time: a statement or a lock wait outlasted its timeout."""

    status_code = 503
    kind = "database-busy"


class LockNotGranted(DatabaseBusy):
    """A lock was not granted: another transaction held it past the lock timeout, or the
    wait for it closed a deadlock."""


class SchemaOutOfDate(StorageError):
    """The database's schema is behind this version of JobLedger."""

    status_code = 503
    kind = "schema-out-of-date"


class TooManyStreams(LedgerError):
    """The server already serves as many event streams as it may: try again shortly."""

    status_code = 503
    kind = "too-many-streams"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"the server already serves {limit} event streams, its most; try again shortly"
        )

    def details(self) -> dict[str, Any]:
        return {"max_streams": self.limit}

    @classmethod
    def from_details(cls, details: Mapping[str, Any], message: str) -> Self:
        return cls(int(details.get("max_streams", 0)))


class TooManyStreamsOfCaller(LedgerError):
    """The caller already holds as many event streams as one caller may."""

    status_code = 429
    kind = "too-many-streams-of-caller"

    def __init__(self, caller: str, limit: int) -> None:
        self.caller = caller
        self.limit = limit
        super().__init__(
            f"{caller} already holds {limit} event streams, the most one caller may; "
            "close one, or try again when one ends"
        )

    def details(self) -> dict[str, Any]:
        return {"caller": self.caller, "max_streams_per_caller": self.limit}

    @classmethod
    def from_details(cls, details: Mapping[str, Any], message: str) -> Self:
        return cls(str(details.get("caller", "")), int(details.get("max_streams_per_caller", 0)))


class InvalidSetting(LedgerError):
    """A setting's value is not one it can take."""


class InvalidTraceparent(LedgerError):
    """A `traceparent` given to the client is not a valid W3C trace context."""

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(f"not a valid W3C traceparent: {value!r}")


def tried_alone_after(failure: Exception) -> bool:
    """Whether the commands of a shared statement (commands of many callers gathered into
    one: registrations, heartbeats) that failed so are each tried again alone: when the
    failure may be one command's (a row another transaction holds past the lock timeout,
    a deadlock, a value the database cannot store), not the database's as a whole (out of
    reach, or a statement that outlasted its timeout), which no command alone would
    escape either."""
    return isinstance(failure, LockNotGranted) or not isinstance(failure, StorageError)


def failed_alike(failure: Exception, count: int) -> list[Exception]:
    """The errors of `count` commands that one statement carried and `failure` failed: the
    first's is `failure` itself, each other's an error of its own like it (`error_like`)."""
    return [failure] + [error_like(failure) for _ in range(count - 1)]


def error_like(failure: Exception) -> StorageError:
    """An error of its own for another command that `failure` failed (one statement
    carried both): a storage error of the same kind and words, caused by `failure`."""
    kind = type(failure) if isinstance(failure, StorageError) else StorageError
    error = kind(str(failure))
    error.__cause__ = failure
    return error
