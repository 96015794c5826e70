"""Keeping the chain: follow the feed and add a block of links for what it shows.

One writer at a time: each block is written under a transaction-level advisory lock,
and the table refuses a second block continuing the same place (`uq_audit_chain_after_*`),
so two processes can never fork the chain.
Appending to the log pays nothing for the chain: it is built after the fact, from the feed.
"""

import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors
from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.errors import StorageError
from ledger.store import FeedCursor
from projections.audit_chain.encoding import GENESIS, chain_lines, copy_lines, cursor_of

CHAIN_LOCK_KEY = 0x4A4C_4155_4449_5443  # "JLAUDITC"
"""The advisory lock key of the chain's writer (a signed bigint)."""

NEVER = threading.Event()
"""A stop that is never set: `advance_chain` then rests its whole time."""

PAGE_EVENTS = 10_000
"""Events chained per block (and per transaction) at most."""

READ_HEAD = """
    SELECT c.tx_id::text, c.position, c.events, substring(c.links FROM octet_length(c.links) - 31)
    FROM audit_chain c ORDER BY c.tx_id DESC, c.position DESC LIMIT 1
"""

ADD_BLOCK = """
    INSERT INTO audit_chain (
        after_tx_id, after_position, tx_id, position, events, positions, links
    ) VALUES (%s::xid8, %s, %s::xid8, %s, %s, %s::bigint[], %s)
"""


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where the chain ends: after `events` events, the last at `cursor`, its link `head`."""

    cursor: FeedCursor
    events: int
    head: bytes


EMPTY = ChainHead(FeedCursor(), 0, GENESIS)


def read_head(conn: psycopg.Connection[Any]) -> ChainHead:
    """The end of the chain as stored (the empty chain before the first block)."""
    row = conn.execute(READ_HEAD).fetchone()
    if row is None:
        return EMPTY
    tx_id, position, events, head = row
    return ChainHead(FeedCursor(int(tx_id), position), events, bytes(head))


def advance_chain(
    engine: Engine,
    *,
    most_blocks: int | None = None,
    rest: float = 0.0,
    stop: threading.Event = NEVER,
) -> ChainHead:
    """Chain every event the feed shows now, a block per transaction; return the new end.

    With `most_blocks`, add at most that many blocks (the rest is chained by a later
    call). With `rest`, wait after each block that may not be the last `rest` times as
    long as it took: a process that serves requests keeps most of its CPU for them while
    a long log is chained. The wait is on `stop`: once it is set, chaining ends after the
    block it is on."""
    if most_blocks is not None and most_blocks < 1:
        raise ValueError(f"most_blocks must be at least 1, not {most_blocks}")
    blocks = 0
    while True:
        started = time.monotonic()
        with driver_connection(engine) as conn:
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHAIN_LOCK_KEY,))
                    head = read_head(conn)
                    added = _add_block(conn, head)
            except psycopg.errors.UniqueViolation as exc:
                raise StorageError(
                    f"the chain was continued from {head.cursor} by a writer that does not "
                    "take its lock: nothing was added"
                ) from exc
        if added is None:
            return head
        blocks += 1
        if added.events - head.events < PAGE_EVENTS or blocks == most_blocks:
            return added
        if stop.wait(rest * (time.monotonic() - started)):
            return added


def _add_block(conn: psycopg.Connection[Any], head: ChainHead) -> ChainHead | None:
    """Chain the next page of the feed after `head` as one block; None when there is none."""
    cursor = head.cursor
    params = {"tx_id": str(cursor.tx_id), "position": cursor.position, "limit": PAGE_EVENTS}
    statement = copy_lines(after_cursor=True, limit=True)
    with conn.cursor() as copy_cursor, copy_cursor.copy(statement, params) as copy:
        lines = [bytes(line) for line in copy]
    if not lines:
        return None
    links = bytearray()
    last = chain_lines(head.head, lines, links)
    end = cursor_of(lines[-1])
    events = head.events + len(lines)
    # The positions as an array literal: their text is the line's first field already.
    positions = b"{%s}" % b",".join(line[: line.index(b"\t")] for line in lines)
    after, ending = (str(cursor.tx_id), cursor.position), (str(end.tx_id), end.position)
    conn.execute(ADD_BLOCK, (*after, *ending, events, positions.decode(), links))
    return ChainHead(end, events, last)
