"""Digests: the chain's head at a feed cursor, as a small JSON document kept off the database.

    {"chain": "sha256-copy-v1", "cursor": "812-40311", "events": 40311,
     "head": "<64 hex digits>", "taken_at": "2026-11-30T15:00:00.123456+00:00"}

A file of digests holds one document, or one per line (JSON Lines) as the monitor writes.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.errors import InvalidDigest
from ledger.store import FeedCursor
from projections.audit_chain.encoding import CHAIN
from projections.audit_chain.keeper import ChainHead, advance_chain

_CURSOR = re.compile(r"^\d{1,20}-\d{1,20}$")
_HEAD = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Digest:
    cursor: FeedCursor
    events: int
    head: bytes
    taken_at: datetime
    chain: str = CHAIN

    def document(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "cursor": str(self.cursor),
            "events": self.events,
            "head": self.head.hex(),
            "taken_at": self.taken_at.isoformat(),
        }

    def line(self) -> str:
        """The digest as one line of JSON."""
        return json.dumps(self.document(), separators=(", ", ": "))

    @classmethod
    def of(cls, document: Any) -> "Digest":
        """The digest a parsed JSON document holds; `InvalidDigest` names what is wrong."""
        if not isinstance(document, Mapping):
            raise InvalidDigest("a digest is a JSON object")
        chain = document.get("chain")
        if chain != CHAIN:
            raise InvalidDigest(f"a digest of chain {chain!r}: this ledger checks {CHAIN!r}")
        cursor, events, head = document.get("cursor"), document.get("events"), document.get("head")
        if not isinstance(cursor, str) or not _CURSOR.match(cursor):
            raise InvalidDigest(f"cursor {cursor!r} is not a feed cursor (1234-56)")
        if not isinstance(events, int) or isinstance(events, bool) or events < 0:
            raise InvalidDigest(f"events {events!r} is not a count")
        if not isinstance(head, str) or not _HEAD.match(head):
            raise InvalidDigest(f"head {head!r} is not 64 lowercase hex digits")
        try:
            taken_at = datetime.fromisoformat(str(document.get("taken_at")))
        except ValueError as exc:
            raise InvalidDigest(f"taken_at {document.get('taken_at')!r} is not a time") from exc
        return cls(FeedCursor.parse(cursor), events, bytes.fromhex(head), taken_at)


def take_digest(engine: Engine) -> Digest:
    """Chain what the feed shows now, then the digest of the chain's end."""
    return digest_at(engine, advance_chain(engine))


def digest_at(engine: Engine, head: ChainHead) -> Digest:
    """The digest of the chain ending at `head`, taken now."""
    with driver_connection(engine) as conn:
        row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return Digest(head.cursor, head.events, head.head, row[0])


@dataclass(frozen=True, slots=True)
class KeptDigest:
    """A digest read from a file, named by where it was found."""

    source: str
    """`path:line`"""
    digest: Digest


def read_digests(path: Path) -> list[KeptDigest]:
    """Every digest in `path`: one JSON document, or one per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidDigest(f"{path}: cannot be read ({exc})") from exc
    try:
        return [KeptDigest(f"{path}:1", Digest.of(json.loads(text)))]
    except json.JSONDecodeError:
        pass  # not one document: JSON Lines
    except InvalidDigest as exc:
        raise InvalidDigest(f"{path}:1: {exc}") from exc
    kept = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            kept.append(KeptDigest(f"{path}:{number}", Digest.of(json.loads(line))))
        except (json.JSONDecodeError, InvalidDigest) as exc:
            raise InvalidDigest(f"{path}:{number}: {exc}") from exc
    if not kept:
        raise InvalidDigest(f"{path}: holds no digest")
    return kept


def append_digest(path: Path, digest: Digest) -> None:
    """Add `digest` to the JSON Lines file `path` (created if need be)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(digest.line() + "\n")
