"""How far each projection has read the log, and which version of its code built it."""

from dataclasses import dataclass
from typing import Any

import psycopg

from ledger.store import FeedCursor


@dataclass(frozen=True, slots=True)
class ProjectionCheckpoint:
    name: str
    version: int
    cursor: FeedCursor


def read_checkpoint(conn: psycopg.Connection[Any], name: str) -> ProjectionCheckpoint | None:
    row = conn.execute(
        "SELECT version, tx_id::text, position FROM projection_checkpoints WHERE name = %s",
        (name,),
    ).fetchone()
    if row is None:
        return None
    version, tx_id, position = row
    return ProjectionCheckpoint(name, version, FeedCursor(int(tx_id), position))


def write_checkpoint(conn: psycopg.Connection[Any], checkpoint: ProjectionCheckpoint) -> None:
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
