"""Indexes for reads that stay bounded on a ledger of any size.

- A search of job ids for what they contain: a trigram index (pg_trgm, shipped with
  PostgreSQL), not a scan of every id.
- The health view's open runs: those started longest ago, those on one host, and the
  leases that lapsed first (partial indexes: only open runs are in them).

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

ACTIVE = "status IN ('running', 'paused')"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(
        "CREATE INDEX ix_job_status_job_id_trigrams ON job_status USING gin (job_id gin_trgm_ops)"
    )
    op.execute(
        f"CREATE INDEX ix_job_status_active_started_at ON job_status (started_at) WHERE {ACTIVE}"
    )
    op.execute(
        "CREATE INDEX ix_job_status_active_host ON job_status (worker_host, started_at) "
        f"WHERE {ACTIVE}"
    )
    op.execute("CREATE INDEX ix_job_leases_expires_at ON job_leases (expires_at)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_job_leases_expires_at")
    op.execute("DROP INDEX ix_job_status_active_host")
    op.execute("DROP INDEX ix_job_status_active_started_at")
    op.execute("DROP INDEX ix_job_status_job_id_trigrams")
