"""`jobledger audit verify`: recompute the chain from the log and hold it against what was kept.

Two things are checked, on one snapshot of the database:

- the stored chain (`audit_chain`): the first event at which the recomputed links part
  from the stored ones is named, with how it parts (changed, removed, inserted, reordered);
- each digest given: the first `events` events of the log, in feed order, must chain to
  its head. Any edit, removal, insertion or reordering before its cursor changes that head.

A superuser who rewrites the log and the stored chain together escapes the first check,
not the second: the digests kept off the database are what prove the history.
"""

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.store import FeedCursor
from projections.audit_chain.digest import KeptDigest
from projections.audit_chain.encoding import (
    GENESIS,
    LINK_BYTES,
    Line,
    chain_lines,
    copy_lines,
    cursor_of,
    first_difference,
    link_at,
)

STORED_BLOCKS = """
    SELECT c.tx_id::text, c.position, c.links FROM audit_chain c ORDER BY c.tx_id, c.position
"""
BLOCK_POSITION = """
    SELECT c.positions[%(index)s] FROM audit_chain c
    WHERE c.tx_id = %(tx_id)s::xid8 AND c.position = %(position)s
"""
STORED_BLOCKS_PER_FETCH = 20
"""Up to 20 x 10,000 links and positions (8 MB) at a time."""
UNCHAINED_PAGE = 10_000
"""Events recomputed at a time past the end of the stored chain."""

Connection = psycopg.Connection[Any]

NO_IDLE_TIMEOUT = "SET LOCAL idle_in_transaction_session_timeout = 0"


@dataclass(frozen=True, slots=True)
class Break:
    """The first event at which the log parts from the stored chain."""

    index: int
    """Events before it in feed order."""
    position: int
    kind: str
    """"changed" (not the event chained at its position), "removed" (the event chained
    there is gone), "inserted" (never chained), or "reordered" (chained elsewhere)."""
    job_id: str | None = None
    seq: int | None = None

    def describe(self) -> str:
        event = f" (job {self.job_id}, seq {self.seq})" if self.job_id is not None else ""
        what = {
            "changed": "is not the event chained there: edited or replaced",
            "removed": "was chained, and is no longer in the log",
            "inserted": "is in the log, and was never chained",
            "reordered": "is not where it was chained in feed order",
        }[self.kind]
        return f"position {self.position}{event} {what} (event {self.index + 1} of the feed)"


@dataclass(frozen=True, slots=True)
class DigestCheck:
    kept: KeptDigest
    holds: bool
    found: str
    """What the log gives at the digest's count of events."""


@dataclass(frozen=True, slots=True)
class ChainReport:
    events: int
    """Events recomputed: the whole feed as the snapshot shows it."""
    cursor: FeedCursor
    head: bytes
    chained: int
    """Events the stored chain holds."""
    first_break: Break | None
    digests: list[DigestCheck] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return self.first_break is None and all(check.holds for check in self.digests)


@dataclass(slots=True)
class _Mismatch:
    index: int
    stored: tuple[str, int, int] | None
    """The stored block's end cursor (tx_id, position) and the event's place in it (from 1)."""
    log_line: bytes | None


class _Recomputation:
    """The chain recomputed from the log's lines, a run of them at a time, with the link
    and cursor at each count a digest names."""

    def __init__(self, lines: Iterator[Line], counts: set[int]) -> None:
        self.lines = lines
        self.counts = counts
        self.link = GENESIS
        self.cursor = FeedCursor()
        self.events = 0
        self.at_count: dict[int, tuple[bytes, FeedCursor]] = {0: (GENESIS, FeedCursor())}

    def take(self, wanted: int) -> tuple[list[Line], bytearray]:
        """The next `wanted` lines (fewer at the end of the log) and their links."""
        lines = list(islice(self.lines, wanted))
        links = bytearray()
        if not lines:
            return lines, links
        start = self.events
        self.link = chain_lines(self.link, lines, links)
        self.events += len(lines)
        self.cursor = cursor_of(lines[-1])
        for count in self.counts:
            if start < count <= self.events:
                index = count - start - 1
                self.at_count[count] = (link_at(links, index), cursor_of(lines[index]))
        return lines, links


def verify_chain(engine: Engine, digests: Sequence[KeptDigest] = ()) -> ChainReport:
    """Recompute the chain and check it against the stored chain and each digest."""
    with _one_snapshot(engine) as (log_conn, chain_conn):
        counts = {kept.digest.events for kept in digests}
        statement = copy_lines(after_cursor=False, limit=False)
        with log_conn.cursor() as cursor, cursor.copy(statement) as copy:
            walk = _Recomputation(iter(copy), counts)
            chained, mismatch = _compare_with_stored(walk, chain_conn)
            while walk.take(UNCHAINED_PAGE)[0]:
                pass
        first_break = _name(log_conn, mismatch) if mismatch else None
    checks = [_check(kept, walk) for kept in digests]
    return ChainReport(walk.events, walk.cursor, walk.link, chained, first_break, checks)


def _compare_with_stored(walk: _Recomputation, conn: Connection) -> tuple[int, _Mismatch | None]:
    """Recompute block by block beside the stored chain; the first place they part."""
    chained = 0
    mismatch: _Mismatch | None = None
    with conn.cursor(name="jobledger_audit_chain") as blocks:
        blocks.itersize = STORED_BLOCKS_PER_FETCH
        blocks.execute(STORED_BLOCKS)
        for tx_id, end, stored_links in blocks:
            start = chained
            chained += len(stored_links) // LINK_BYTES
            if mismatch is not None:
                continue  # the links after a break all differ: only count the stored chain
            lines, links = walk.take(len(stored_links) // LINK_BYTES)
            if links == stored_links:
                continue
            at = first_difference(links, stored_links)
            mismatch = _Mismatch(
                start + at,
                (tx_id, end, at + 1) if at < len(stored_links) // LINK_BYTES else None,
                bytes(lines[at]) if at < len(lines) else None,
            )
    return chained, mismatch


def _name(conn: Connection, mismatch: _Mismatch) -> Break:
    """What happened at the first mismatch, from the log and the stored chain."""
    stored = _stored_position(conn, *mismatch.stored) if mismatch.stored else None
    found = cursor_of(mismatch.log_line).position if mismatch.log_line is not None else None
    if found is not None and found == stored:
        kind, position = "changed", found
    elif stored is not None and not _in_log(conn, stored):
        kind, position = "removed", stored
    elif found is not None and not _in_stored_chain(conn, found):
        kind, position = "inserted", found
    else:
        assert found is not None or stored is not None
        kind, position = "reordered", found if found is not None else stored  # type: ignore[assignment]
    row = conn.execute(
        "SELECT job_id, seq FROM job_events WHERE position = %s", (position,)
    ).fetchone()
    job_id, seq = row if row is not None else (None, None)
    return Break(mismatch.index, position, kind, job_id, seq)


def _stored_position(conn: Connection, tx_id: str, end: int, index: int) -> int:
    row = conn.execute(BLOCK_POSITION, {"tx_id": tx_id, "position": end, "index": index})
    found = row.fetchone()
    assert found is not None
    return int(found[0])


def _in_log(conn: Connection, position: int) -> bool:
    row = conn.execute("SELECT 1 FROM job_events WHERE position = %s", (position,))
    return row.fetchone() is not None


def _in_stored_chain(conn: Connection, position: int) -> bool:
    row = conn.execute("SELECT 1 FROM audit_chain WHERE %s = ANY(positions) LIMIT 1", (position,))
    return row.fetchone() is not None


def _check(kept: KeptDigest, walk: _Recomputation) -> DigestCheck:
    digest = kept.digest
    if digest.events > walk.events:
        found = f"the log shows {walk.events} events, fewer than the digest's {digest.events}"
        return DigestCheck(kept, False, found)
    link, cursor = walk.at_count[digest.events]
    holds = link == digest.head and cursor == digest.cursor
    found = f"head {link.hex()} at cursor {cursor} after {digest.events} events"
    return DigestCheck(kept, holds, found)


@contextlib.contextmanager
def _one_snapshot(engine: Engine) -> Iterator[tuple[Connection, Connection]]:
    """Two connections reading one snapshot: one streams the log, the other the chain.

    Each waits while the other works, as long as the log is long: no idle timeout."""
    with driver_connection(engine) as log_conn, log_conn.transaction():
        log_conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        log_conn.execute(NO_IDLE_TIMEOUT)
        row = log_conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        with driver_connection(engine) as chain_conn, chain_conn.transaction():
            chain_conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            chain_conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(row[0])))
            chain_conn.execute(NO_IDLE_TIMEOUT)
            yield log_conn, chain_conn
