"""Opening the ledger at an entry point: database, schema, projections caught up."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine

from ledger.database import create_ledger_engine, database_url
from ledger.migrate import check_schema_current, upgrade_database
from ledger.service import JobService
from ledger.settings import Settings
from ledger.store import EventStore
from projections.catchup import CatchUpReport, catch_up_current_status

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ledger:
    engine: Engine
    store: EventStore
    service: JobService
    catch_up: CatchUpReport | None


@contextmanager
def open_ledger(
    settings: Settings, *, catch_up: bool = True, progress: bool = False
) -> Iterator[Ledger]:
    """Connect (starting the embedded server when no URL is set) and get ready to work.

    The embedded database is migrated automatically; a configured one must
    already be current (`jobledger migrate`), or `SchemaOutOfDate` says so.
    """
    with database_url(settings) as url:
        if not settings.database_url:
            upgrade_database(url)
        engine = create_ledger_engine(url, settings)
        try:
            check_schema_current(engine)
            report = catch_up_current_status(engine, progress=progress) if catch_up else None
            store = EventStore(engine)
            yield Ledger(engine, store, JobService(store), report)
        finally:
            engine.dispose()
