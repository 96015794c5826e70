"""Alembic's entry: the URL comes from JobLedger's settings, as the CLI's does."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Engine, create_engine, pool
from sqlalchemy.dialects.postgresql.base import PGDialect

from ledger.database import database_url, sqlalchemy_url
from ledger.schema import Xid8, metadata
from ledger.settings import Settings

config = context.config
# Reflection does not know xid8; tell it, so `alembic check` compares like with like.
PGDialect.ischema_names["xid8"] = Xid8
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_with_engine(engine: Engine) -> None:
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        run_with_engine(create_engine(url, poolclass=pool.NullPool))
        return
    with database_url(Settings.from_env()) as found:
        run_with_engine(create_engine(sqlalchemy_url(found), poolclass=pool.NullPool))


if context.is_offline_mode():
    raise SystemExit("JobLedger migrations run online only: they need the database")
run_migrations_online()
