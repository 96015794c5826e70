"""Open runs by job id: the reconciler gives unleased runs a lease a batch at a time.

A partial index (only open runs are in it), so each batch reads the next open runs after
the last one it saw, never the whole projection and never the runs before it again; with
each run's attempt, so finding the runs without a lease reads the index alone.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = "status IN ('running', 'paused')"


def upgrade() -> None:
    op.execute(
        f"CREATE INDEX ix_job_status_active_job_id ON job_status (job_id, attempt) WHERE {ACTIVE}"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_job_status_active_job_id")
