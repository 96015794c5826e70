"""The chain kept by the monitor's leader: chained on every poll, a digest every interval."""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from projections.audit_chain.digest import Digest, digest_at
from projections.audit_chain.keeper import NEVER, advance_chain

BLOCKS_PER_POLL = 60
"""The most blocks one poll (or one digest request) chains: a long unchained log (a ledger
upgraded to keep the chain, an import) is chained over several polls, and the monitor's
passes still run between them. 60 blocks a poll keep up with about 6,600 events/s at the
default 90 s poll."""
REST = 1.0
"""After each block of a poll, the monitor rests as long as the block took: the process's
requests keep at least half of its CPU while a long log is chained."""


@dataclass(slots=True)
class ChainKeeping:
    """What the leading monitor does for the chain at each poll: chain what the feed shows,
    and every `digest_every_s` (0: never) take a digest and hand it to `on_digest`, which
    keeps it off the database (a file, a log line)."""

    engine: Engine
    digest_every_s: float
    on_digest: Callable[[Digest], None]
    next_digest_at: float | None = field(default=None)
    blocks_per_poll: int = BLOCKS_PER_POLL

    def tick(self, clock: float, stop: threading.Event = NEVER) -> None:
        """One poll at `clock` (seconds of the monitor's own clock): at most
        `blocks_per_poll` blocks chained, resting on `stop` between them (once it is set,
        the poll ends after the block it is on), then the digest of the chain's end if
        one is due."""
        head = advance_chain(self.engine, most_blocks=self.blocks_per_poll, rest=REST, stop=stop)
        due = self.next_digest_at is None or clock >= self.next_digest_at
        if self.digest_every_s > 0 and due:
            self.on_digest(digest_at(self.engine, head))
            self.next_digest_at = clock + self.digest_every_s
