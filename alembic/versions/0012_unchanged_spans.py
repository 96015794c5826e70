"""An index of each job's span from its registration to the last change of its status.

The ledger as of a past moment asks which jobs' status then is not their status now:
those whose span holds the moment. The SP-GiST index finds them, however many jobs were
registered before the moment or changed after it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_job_status_unchanged_span ON job_status "
        "USING spgist (tstzrange(created_at, greatest(created_at, status_changed_at), '[)'))"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_job_status_unchanged_span")
