"""Leader election in PostgreSQL: one process of a deployment runs the periodic pass.

The leader holds a session advisory lock on a connection of its own. When the
process dies its connection closes and the lock is released at once; the
others try to take it every poll, so one of them leads within one poll.
"""

import contextlib
import logging
import os
from typing import Any

import psycopg

from ledger.database import libpq_url

log = logging.getLogger(__name__)

RECONCILER_LOCK_KEY = 0x4A4C_5245_434F_4E43  # "JLRECONC"
"""The advisory lock key of the reconciler's leadership (a signed bigint)."""


class LeaderLock:
    def __init__(self, url: str, key: int = RECONCILER_LOCK_KEY) -> None:
        self.url = libpq_url(url)
        self.key = key
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def held(self) -> bool:
        """True while this process leads (checked against the live connection)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            log.warning("lost the leader lock: its connection failed")
            self._drop()
            return False
        return True

    def try_acquire(self) -> bool:
        """Take the lead if nobody holds it; True when this process leads."""
        if self.held:
            return True
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                # Which process leads is seen in pg_stat_activity beside the lock.
                application_name=f"jobledger-leader pid={os.getpid()}",
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
        except psycopg.Error as exc:
            log.warning("cannot reach the database to take the lead: %s", exc)
            return False
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if row is None or not row[0]:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
