"""The chain kept by the monitor's leader: chained on every poll, a digest every interval."""

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from projections.audit_chain.digest import Digest, take_digest
from projections.audit_chain.keeper import advance_chain


@dataclass(slots=True)
class ChainKeeping:
    """What the leading monitor does for the chain at each poll: chain what the feed shows,
    and every `digest_every_s` (0: never) take a digest and hand it to `on_digest`, which
    keeps it off the database (a file, a log line)."""

    engine: Engine
    digest_every_s: float
    on_digest: Callable[[Digest], None]
    next_digest_at: float | None = field(default=None)

    def tick(self, clock: float) -> None:
        """One poll at `clock` (seconds of the monitor's own clock)."""
        due = self.next_digest_at is None or clock >= self.next_digest_at
        if self.digest_every_s > 0 and due:
            self.on_digest(take_digest(self.engine))
            self.next_digest_at = clock + self.digest_every_s
        else:
            advance_chain(self.engine)
