"""W3C Trace Context's `traceparent` (https://www.w3.org/TR/trace-context/): reading one
as the specification says a receiver must, writing one, and making new ids.

A `traceparent` names a trace (`trace_id`, 32 lowercase hex digits) and the caller's span
in it (`parent_id`, 16), with flags of which only `sampled` is defined. A value that
breaks any rule is not a trace context at all: `TraceParent.parse` answers None and the
receiver starts a trace of its own.
"""

import random
import re
from dataclasses import dataclass

VERSION = "00"
"""The version this code writes, the only one the specification defines."""

_SAMPLED = 0x01
"""The one flag version 00 defines; every other bit is sent as zero."""

_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL
)
"""Version 00's fields; a later version begins with them, and whatever follows them (after
a dash) is that version's own, not read here."""

_INVALID_TRACE_ID = "0" * 32
_INVALID_PARENT_ID = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid trace context: a trace, the span that sent it, and whether it is sampled."""

    trace_id: str
    parent_id: str
    sampled: bool = False

    @classmethod
    def parse(cls, value: str) -> "TraceParent | None":
        """The trace context of a `traceparent` value, or None when it is not a valid one:
        its version is not two lowercase hex digits, or is `ff`; a version 00 value is
        not exactly 55 characters; an id is not lowercase hex of its length, or is all
        zeros. A later version is read by version 00's fields, which it must begin with."""
        match = _TRACEPARENT.fullmatch(value.strip(" \t"))
        if match is None:
            return None
        version, trace_id, parent_id, flags, later_fields = match.groups()
        if version == "ff" or (version == VERSION and later_fields is not None):
            return None
        if trace_id == _INVALID_TRACE_ID or parent_id == _INVALID_PARENT_ID:
            return None
        return cls(trace_id, parent_id, sampled=bool(int(flags, 16) & _SAMPLED))

    @classmethod
    def start(cls, sampled: bool = False) -> "TraceParent":
        """A span of a new trace."""
        return cls(new_trace_id(), new_span_id(), sampled)

    def child(self) -> "TraceParent":
        """A new span of the same trace, sampled as this one is: what a receiver sends on."""
        return TraceParent(self.trace_id, new_span_id(), self.sampled)

    def __str__(self) -> str:
        flags = _SAMPLED if self.sampled else 0
        return f"{VERSION}-{self.trace_id}-{self.parent_id}-{flags:02x}"


def new_trace_id() -> str:
    """32 random lowercase hex digits, never all zeros.

    Trace ids must be unique, not secret: like OpenTelemetry's `RandomIdGenerator`, they
    come from `random` (seeded from the system's entropy, and again in a forked process),
    which costs a request no system call, rather than from `secrets`."""
    while (trace_id := f"{random.getrandbits(128):032x}") == _INVALID_TRACE_ID:
        pass  # pragma: no cover - one chance in 2**128
    return trace_id


def new_span_id() -> str:
    """16 random lowercase hex digits, never all zeros."""
    while (span_id := f"{random.getrandbits(64):016x}") == _INVALID_PARENT_ID:
        pass  # pragma: no cover - one chance in 2**64
    return span_id
