"""Index jobs by creation time, so every status's newest jobs are read in index order.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_job_status_created_at", "job_status", ["created_at", "job_id"])


def downgrade() -> None:
    op.drop_index("ix_job_status_created_at", table_name="job_status")
