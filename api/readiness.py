"""`/readyz`: whether this process can serve, answered within the probe timeout.

Ready means the database answers, its schema is current and the projections were built
by this code's version. A caller without a token learns only ready or not: why not
(a socket path, the server's own words) goes to the log, once each time it changes.
"""

import logging

from api.bootstrap import Ledger
from api.bounded_read import BoundedRead
from ledger.database import driver_connection
from ledger.errors import LedgerError
from ledger.migrate import check_schema_current
from projections import current_status
from projections.checkpoints import read_checkpoint

log = logging.getLogger(__name__)


def why_not_ready(ledger: Ledger) -> str | None:
    """Why the ledger cannot serve yet, or None when it can (blocking: reads the database)."""
    try:
        check_schema_current(ledger.engine)
        with driver_connection(ledger.engine) as conn:
            checkpoint = read_checkpoint(conn, current_status.NAME)
    except LedgerError as exc:
        return str(exc)
    if not current_status.built_by_this_code(checkpoint):
        return "the projections are not built yet"
    return None


class Readiness:
    """The readiness of one app's ledger, asked off the request threads."""

    def __init__(self, ledger: Ledger) -> None:
        self.check = BoundedRead(lambda: why_not_ready(ledger), ledger.settings.probe_timeout_s)
        self._reported: str | None = None

    async def ready(self) -> bool:
        try:
            reason = await self.check()
        except TimeoutError:
            reason = f"the database did not answer within {self.check.timeout_s} s"
        if reason != self._reported:
            if reason is None:
                log.info("ready again")
            else:
                log.warning("not ready: %s", reason)
            self._reported = reason
        return reason is None
