"""Digests of everything appended so far: the feed shows an event once every older
transaction on the server has ended, which another session can hold back for a moment."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.queries import FEED_HORIZON_CONDITION
from projections.audit_chain.digest import Digest, take_digest
from tests.integration.recovery_helpers import poll


def events_in_log(engine: Engine) -> int:
    with driver_connection(engine) as conn:
        row = conn.execute("SELECT count(*) FROM job_events").fetchone()
    assert row is not None
    return int(row[0])


def digest_of_all(engine: Engine) -> Digest:
    """A digest of every event the log holds now, once the feed shows them all."""
    appended = events_in_log(engine)

    def covering() -> Digest | None:
        digest = take_digest(engine)
        return digest if digest.events >= appended else None

    return poll(covering, timeout=600)


def feed_shows_all(engine: Engine) -> None:
    """Return once the feed shows every event the log holds now."""
    appended = events_in_log(engine)

    def shown() -> bool:
        with driver_connection(engine) as conn:
            query = f"SELECT count(*) FROM job_events e WHERE {FEED_HORIZON_CONDITION}"
            row = conn.execute(query).fetchone()
        return row is not None and row[0] >= appended

    poll(shown, timeout=600)


LOG_GUARDS = ("job_events_no_update_or_delete", "job_events_no_truncate", "job_events_guard_insert")
"""The log's triggers (migrations 0001 and 0007): a superuser can switch them off."""


@contextmanager
def triggers_disabled(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """The log without its guards, as a superuser who means to rewrite it has it."""
    for trigger in LOG_GUARDS:
        conn.execute(f"ALTER TABLE job_events DISABLE TRIGGER {trigger}")
    try:
        yield
    finally:
        for trigger in LOG_GUARDS:
            conn.execute(f"ALTER TABLE job_events ENABLE ALWAYS TRIGGER {trigger}")
