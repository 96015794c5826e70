"""What a handler is given besides its body and its caller: the ledger, and typed
path, query and header parameters.

Every parameter is validated from its type, so a value that does not fit is a 422
`invalid-request` naming it: by the framework, or, for a header a dependency reads
itself, by `api.read_headers` with the same type. Text that reaches PostgreSQL
never holds a NUL character, and an empty query value means the parameter was
not given.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from pydantic import AfterValidator, BeforeValidator
from pydantic_core import PydanticUseDefault

from api.bootstrap import Ledger
from api.correlation import correlation_of
from api.direct_handler import in_thread
from api.gathered_registrations import LOOP_SPEC_BYTES
from api.on_to_its_end import to_its_end
from api.read_headers import ReadHeader, reading
from ledger.commands import JobCommand, WorkerIdentity
from ledger.job_listing import JobsCursor
from ledger.loop_appends import LoopAppends
from ledger.queue import UNTOLD, Claim
from ledger.service import Outcome
from ledger.store import FeedCursor
from projections.current_status.as_of import parse_moment


async def ledger_of(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


TheLedger = Annotated[Ledger, Depends(ledger_of)]


def _stored_text(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain a NUL character")
    return text


def _blank_is_absent(value: Any) -> Any:
    if value == "":
        raise PydanticUseDefault()
    return value


StoredText = AfterValidator(_stored_text)
"""Text PostgreSQL can store: no NUL character."""

BlankIsAbsent = BeforeValidator(_blank_is_absent)
"""`?name=` is the same as no `name` at all: the parameter's default."""

Stripped = BeforeValidator(lambda value: value.strip() if isinstance(value, str) else value)
"""Text without its leading and trailing white space (before any length is checked)."""


def _parsed_by(parse: Callable[[str], object], must_be: str) -> AfterValidator:
    def check(text: str) -> str:
        try:
            parse(text)
        except ValueError:
            raise ValueError(f"must be {must_be}") from None
        return text

    return AfterValidator(check)


BIGINT_MAX = 2**63 - 1


def _feed_cursor(text: str) -> FeedCursor | None:
    """A cursor the feed's query can compare with: both its numbers are 64-bit and not
    negative (a stream checks this before it starts, as the feed does)."""
    if text == "now":
        return None
    cursor = FeedCursor.parse(text)
    if not (0 <= cursor.tx_id <= BIGINT_MAX and 0 <= cursor.position <= BIGINT_MAX):
        raise ValueError("out of range")
    return cursor


JobId = Annotated[str, Path(description="the job's id"), StoredText]
IDEMPOTENCY_KEY = ReadHeader(
    "Idempotency-Key",
    max_length=255,
    description="a retry with the same key returns the first answer and appends nothing",
    checks=(StoredText,),
)


RETURN_MINIMAL = "return=minimal"


def prefers_minimal(prefer: str | None) -> bool:
    """Whether a `Prefer` header (RFC 7240) asks for `return=minimal`: an answer of what
    the command recorded, without what only a read would add."""
    if not prefer:
        return False
    preferences = (part.split(";", 1)[0].strip().lower() for part in prefer.split(","))
    return RETURN_MINIMAL in {preference.replace(" ", "") for preference in preferences}


PREFER = ReadHeader(
    "Prefer",
    max_length=255,
    description="`return=minimal`: answer the job as recorded, without its queue "
    "position and health (which take a read); the answer then carries "
    "`Preference-Applied: return=minimal`",
    checks=(),
)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """What a command's handler is given besides its body and its caller: the ledger, and
    what the request is known by. One dependency for all three, as FastAPI solves each
    dependency anew on every request."""

    ledger: Ledger
    key: str | None
    """The idempotency key it was sent with."""
    correlation: str | None
    """Its correlation id (`api.correlation`)."""
    appends: LoopAppends | None = None
    """The server's appends on its event loop, while it runs (`ledger.loop_appends`), for a
    request whose body is small enough to be encoded and digested there (at most
    `LOOP_SPEC_BYTES`, as a registration's spec); None for any other."""

    def execute(
        self, job_id: str, command: JobCommand, *, actor: str, expected_version: int | None = None
    ) -> Outcome:
        """`command` decided and appended by the ledger's service, with this request's
        idempotency key and correlation id."""
        return self.ledger.service.execute(
            job_id,
            command,
            actor=actor,
            expected_version=expected_version,
            idempotency_key=self.key,
            correlation_id=self.correlation,
        )

    async def execute_soon(self, job_id: str, command: JobCommand, *, actor: str) -> Outcome:
        """`execute`, called from the event loop: tried first on the loop itself, when the
        server's appends there are ready (`JobService.execute_on_loop`: no thread's hop
        there and back); else, or when that try cannot tell, on a thread of the handlers'
        pool."""
        service, appends, tried = self.ledger.service, self.appends, False
        if appends is not None and appends.ready():
            outcome = await to_its_end(
                service.execute_on_loop(
                    job_id,
                    command,
                    actor=actor,
                    idempotency_key=self.key,
                    correlation_id=self.correlation,
                    appends=appends,
                )
            )
            if outcome is not None:
                return outcome
            tried = True
        values = {
            "job_id": job_id,
            "command": command,
            "actor": actor,
            "idempotency_key": self.key,
            "correlation_id": self.correlation,
            "fresh_read": tried,
        }
        executed: Outcome = await in_thread(service.execute, values)
        return executed

    async def claim_soon(self, worker: WorkerIdentity, *, actor: str) -> Claim | None:
        """The ledger queue's `claim` for `worker`, with this request's idempotency key and
        correlation id, called from the event loop: tried first on the loop itself, when
        the server's appends there are ready (`JobQueue.claim_on_loop`); else, or when
        that try cannot tell, on a thread of the handlers' pool."""
        queue, appends, key, correlation_id = (
            self.ledger.queue,
            self.appends,
            self.key,
            self.correlation,
        )
        if appends is not None and appends.ready():
            claim = await to_its_end(
                queue.claim_on_loop(
                    worker,
                    actor=actor,
                    idempotency_key=key,
                    correlation_id=correlation_id,
                    appends=appends,
                )
            )
            if claim is not UNTOLD:
                return claim
        values = {
            "worker": worker,
            "actor": actor,
            "idempotency_key": key,
            "correlation_id": correlation_id,
        }
        claimed: Claim | None = await in_thread(queue.claim, values)
        return claimed


def _command_request(request: Request, key: str | None) -> CommandRequest:
    correlation = correlation_of(request)
    correlation_id = None if correlation is None else correlation.correlation_id
    state = request.app.state
    size = request.headers.get("content-length", "")
    small = size.isdigit() and int(size) <= LOOP_SPEC_BYTES
    appends: LoopAppends | None = state.appends if small else None
    return CommandRequest(state.ledger, key, correlation_id, appends)


@reading(IDEMPOTENCY_KEY)
async def command_request_of(request: Request) -> CommandRequest:
    return _command_request(request, IDEMPOTENCY_KEY.read(request))


TheCommandRequest = Annotated[CommandRequest, Depends(command_request_of)]


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    """A registration's request: a command's, and whether it prefers a minimal answer."""

    sent: CommandRequest
    minimal: bool


@reading(IDEMPOTENCY_KEY, PREFER)
async def registration_of(request: Request) -> RegistrationRequest:
    sent = _command_request(request, IDEMPOTENCY_KEY.read(request))
    return RegistrationRequest(sent, prefers_minimal(PREFER.read(request)))


TheRegistration = Annotated[RegistrationRequest, Depends(registration_of)]
JobsCursorText = Annotated[
    str, StoredText, _parsed_by(JobsCursor.parse, "a next_cursor of this list")
]
FeedAfter = Annotated[str, StoredText, _parsed_by(_feed_cursor, "a cursor like 1234-56, or now")]
MomentText = Annotated[
    str,
    StoredText,
    _parsed_by(
        parse_moment,
        "a moment in ISO 8601 with its time zone, like 2026-11-30T14:00:00Z "
        "(in a URL, write a + of an offset as %2B)",
    ),
]
