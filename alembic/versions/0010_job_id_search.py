"""A search of job ids for what they contain is served by a trigram index (pg_trgm,
shipped with PostgreSQL), not a scan of every id.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        "CREATE INDEX ix_job_status_job_id_trigrams ON job_status USING gin (job_id gin_trgm_ops)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_job_status_job_id_trigrams")
