"""How far each projection has read the log, and which version of its code built it."""

from dataclasses import dataclass
from typing import Any

import psycopg

from ledger.store import FeedCursor


@dataclass(frozen=True, slots=True)
class Checkpoint:
    name: str
    version: int
    cursor: FeedCursor


def read_checkpoint(conn: psycopg.Connection[Any], name: str) -> Checkpoint | None:
    row = conn.execute(
        "SELECT version, tx_id::text, position FROM projection_checkpoints WHERE name = %s",
        (name,),
    ).fetchone()
    if row is None:
        return None
    version, tx_id, position = row
    return Checkpoint(name, version, FeedCursor(int(tx_id), position))


def write_checkpoint(conn: psycopg.Connection[Any], checkpoint: Checkpoint) -> None:
    """Record the checkpoint; call it in the transaction that wrote the projection."""
    conn.execute(
        """
        INSERT INTO projection_checkpoints (name, version, tx_id, position, updated_at)
        VALUES (%s, %s, CAST(%s AS xid8), %s, now())
        ON CONFLICT (name) DO UPDATE SET
            version = EXCLUDED.version, tx_id = EXCLUDED.tx_id,
            position = EXCLUDED.position, updated_at = now()
        """,
        (
            checkpoint.name,
            checkpoint.version,
            str(checkpoint.cursor.tx_id),
            checkpoint.cursor.position,
        ),
    )


def oldest_running_xid(conn: psycopg.Connection[Any]) -> int:
    """Every transaction below this id has finished (`pg_snapshot_xmin`)."""
    row = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()
    assert row is not None
    return int(row[0])
