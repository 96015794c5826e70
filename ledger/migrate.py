"""Bringing a database's schema to this version of JobLedger, with Alembic."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

from ledger.database import sqlalchemy_url
from ledger.errors import DatabaseUnavailable, SchemaOutOfDate

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "alembic"))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    # The process's log stays as its entry point set it up (text or JSON lines): the
    # logging section of alembic.ini is for the `alembic` command alone.
    config.attributes["configure_logger"] = False
    return config


def upgrade_database(url: str, revision: str = "head") -> None:
    """Apply every migration up to `revision`."""
    command.upgrade(alembic_config(url), revision)


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def check_schema_current(engine: Engine) -> None:
    """Raise `SchemaOutOfDate`, naming the fix, unless the database is at head."""
    url = engine.url.render_as_string(hide_password=False)
    head = head_revision(url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except sa_exc.DBAPIError as exc:
        raise DatabaseUnavailable(f"the database cannot be reached: {exc.orig}") from exc
    if current != head:
        raise SchemaOutOfDate(
            f"the database schema is at {current or 'nothing'}, this JobLedger needs {head}: "
            "run `jobledger migrate`"
        )
