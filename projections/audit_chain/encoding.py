"""What the chain hashes: each event's canonical line, and the link it makes.

An event's line is its row as PostgreSQL's COPY writes it in text format, in UTF-8 and
with its newline: the fields below in this order, a tab between two, `\\N` for NULL and
backslash escapes for a backslash, newline, carriage return or tab inside a field. Times
are whole microseconds since 1970-01-01 UTC, so no session setting changes a line; the
payload is its `jsonb` text, PostgreSQL's own canonical form of the stored value.

    link(0) = 32 zero bytes
    link(n) = SHA-256(link(n - 1) || line(n))

The chain's head after n events is link(n). Anyone can recompute it from a copy of the
log with these rules, without this code.
"""

import hashlib
from collections.abc import Iterable, Sequence

from ledger.queries import FEED_HORIZON_CONDITION
from ledger.store import FeedCursor

CHAIN = "sha256-copy-v1"
"""The name of these rules: digests carry it, and verify refuses a digest of other rules."""

Line = bytes | bytearray | memoryview
"""A canonical line as COPY hands it over."""

GENESIS = bytes(32)
LINK_BYTES = 32

_MICROSECONDS = "(extract(epoch FROM e.{0}) * 1000000)::bigint"

LINE_FIELDS: tuple[str, ...] = (
    "e.position",
    "e.tx_id",
    "e.job_id",
    "e.seq",
    "e.type",
    "e.payload",
    "e.actor",
    "e.reason",
    "e.attempt",
    "e.idempotency_key",
    "e.correlation_id",
    _MICROSECONDS.format("occurred_at"),
    _MICROSECONDS.format("recorded_at"),
    "e.command_sha256",
)
"""Every stored field of an event: position and transaction first (a line's feed cursor)."""


def copy_lines(*, after_cursor: bool, limit: bool) -> str:
    """COPY of the canonical lines of the events the feed can show now, in feed order;
    with `after_cursor`, only those after `%(tx_id)s`-`%(position)s`, with `limit`, at
    most `%(limit)s` of them."""
    after = "(e.tx_id, e.position) > (%(tx_id)s::xid8, %(position)s) AND" if after_cursor else ""
    return f"""
        COPY (
            SELECT {", ".join(LINE_FIELDS)} FROM job_events e
            WHERE {after} {FEED_HORIZON_CONDITION}
            ORDER BY e.tx_id, e.position
            {"LIMIT %(limit)s" if limit else ""}
        ) TO STDOUT (FORMAT text, ENCODING 'UTF8')
    """


def chain_lines(link: bytes, lines: Iterable[Line], links: bytearray) -> bytes:
    """Chain `lines` after `link`: append each line's link to `links`; return the last."""
    sha256 = hashlib.sha256
    for line in lines:
        link = sha256(link + line).digest()
        links += link
    return link


def link_at(links: bytes | bytearray, index: int) -> bytes:
    """The `index`-th link (from 0) of links laid end to end."""
    return bytes(links[index * LINK_BYTES : (index + 1) * LINK_BYTES])


def cursor_of(line: Line) -> FeedCursor:
    """The feed cursor just after the event of `line` (its first two fields)."""
    position, tx_id, _ = bytes(line).split(b"\t", 2)
    return FeedCursor(int(tx_id), int(position))


def first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    """The index of the first link at which two runs of links differ (the shorter run's
    length when one is the start of the other)."""
    for index in range(0, min(len(a), len(b)), LINK_BYTES):
        if a[index : index + LINK_BYTES] != b[index : index + LINK_BYTES]:
            return index // LINK_BYTES
    return min(len(a), len(b)) // LINK_BYTES
