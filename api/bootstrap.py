"""Opening the ledger at an entry point: database, schema, projections caught up."""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from ledger.database import create_ledger_engine, database_url
from ledger.database_roles import create_service_role
from ledger.job_listing import JobListing
from ledger.migrate import check_schema_current, upgrade_database
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.settings import Settings
from ledger.store import EventStore
from projections.current_status.as_of import PastLedger
from projections.current_status.catchup import CatchUpReport, catch_up_current_status
from projections.job_readings import JobReader
from projections.recovery.force_start import ForceStarter
from projections.recovery.health import HealthCheck
from projections.recovery.reconciler import Reconciler, ReconcilerPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ledger:
    """Everything an entry point works with, wired from one `Settings`."""

    url: str
    settings: Settings
    engine: Engine
    store: EventStore
    listing: JobListing
    past: PastLedger
    service: JobService
    queue: JobQueue
    health: HealthCheck
    reconciler: Reconciler
    reader: JobReader
    force_starter: ForceStarter
    catch_up: CatchUpReport | None


def wire_ledger(
    url: str, engine: Engine, settings: Settings, catch_up: CatchUpReport | None = None
) -> Ledger:
    store = EventStore(engine)
    service = JobService(store)
    health = HealthCheck(
        engine,
        lease_seconds=settings.lease_seconds,
        stale_pending_after=timedelta(minutes=settings.stale_pending_minutes),
    )
    reader = JobReader(engine, health)
    policy = ReconcilerPolicy(auto_start_pending=settings.auto_start_pending)
    return Ledger(
        url=url,
        settings=settings,
        engine=engine,
        store=store,
        listing=JobListing(store),
        past=PastLedger(store),
        service=service,
        queue=JobQueue(store, lease_seconds=settings.lease_seconds, cache=service.cache),
        health=health,
        reconciler=Reconciler(service, health, policy),
        reader=reader,
        force_starter=ForceStarter(service, reader),
        catch_up=catch_up,
    )


@contextmanager
def open_ledger(
    settings: Settings, *, catch_up: bool = True, maintenance: bool = False
) -> Iterator[Ledger]:
    """Connect (starting the embedded server when no URL is set) and get ready to work.

    The embedded database is migrated automatically; a configured one must
    already be current (`jobledger migrate`), or `SchemaOutOfDate` says so. The
    returned ledger's connections carry the settings' statement and lock timeouts.

    On the embedded server, the ledger then works as `EMBEDDED_SERVICE_ROLE`, a
    least-privilege role made at the first start (see `create_service_role`): the
    superuser migrates, catches the projections up (a rebuild owns indexes) and,
    for `maintenance` (rebuild, verify), does the work; it never serves.
    """
    with database_url(settings) as admin_url:
        embedded = not settings.database_url
        if embedded:
            upgrade_database(admin_url)
        url = admin_url
        engine = create_ledger_engine(url, settings)
        try:
            check_schema_current(engine)
            report = _catch_up(url, settings) if catch_up else None
            if embedded and not maintenance:
                create_service_role(engine, EMBEDDED_SERVICE_ROLE)
                engine.dispose()
                url = as_role(admin_url, EMBEDDED_SERVICE_ROLE)
                engine = create_ledger_engine(url, settings)
            yield wire_ledger(url, engine, settings, report)
        finally:
            engine.dispose()


EMBEDDED_SERVICE_ROLE = "jobledger_service"
"""The role the ledger works as on the embedded server: SELECT and INSERT on the log."""


def as_role(url: str, role: str) -> str:
    """`url` logging in as `role` instead (the embedded server trusts its local socket)."""
    return make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def _catch_up(url: str, settings: Settings) -> CatchUpReport:
    """The projections caught up on connections of their own without statement timeouts:
    a rebuild folds the whole log, which takes as long as the log is long."""
    engine = create_ledger_engine(url, settings.unbounded())
    try:
        return catch_up_current_status(engine)
    finally:
        engine.dispose()
