"""Log lines that a caller can cause, at most one of a kind per interval.

A flood of connections must not become a flood of log: when the process runs out of
file handles asyncio logs each failed accept() with its traceback, and uvicorn logs a
warning for every malformed request. `PacedLog` lets the first line of each kind
through, holds back the same kind for `every_s`, and the next line through says how
many were held back.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

PACED_LOGGERS = ("asyncio", "uvicorn.error")
"""The loggers whose lines a caller can cause: failed accepts, bad requests."""
LOG_EVERY_S = 10.0
MAX_KINDS = 1000
"""Kinds remembered at most; past it the oldest are forgotten."""


@dataclass(slots=True)
class _Kind:
    quiet_until: float
    held: int = 0


class PacedLog(logging.Filter):
    """At most one record of a kind (its logger and the first line of its message) per
    `every_s`; the next one through counts the ones held back."""

    def __init__(self, every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self.kinds: dict[tuple[str, str], _Kind] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg).split("\n", 1)[0])
        now = self.clock()
        kind = self.kinds.get(key)
        if kind is not None and now < kind.quiet_until:
            kind.held += 1
            return False
        if kind is not None and kind.held:
            record.msg = f"{record.msg}\n({kind.held} more like this not logged since the last)"
        self.kinds.pop(key, None)
        if len(self.kinds) >= MAX_KINDS:
            del self.kinds[next(iter(self.kinds))]
        self.kinds[key] = _Kind(quiet_until=now + self.every_s)
        return True


def pace_caller_driven_logs(every_s: float = LOG_EVERY_S) -> PacedLog:
    """Installs one `PacedLog` on each of `PACED_LOGGERS`; returns it."""
    paced = PacedLog(every_s)
    for name in PACED_LOGGERS:
        logging.getLogger(name).addFilter(paced)
    return paced
