"""Leases: the liveness of running attempts, kept out of the immutable log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("job_id", sa.Text(collation="C"), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("run_token", sa.Text, nullable=False),
        sa.Column("worker_id", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("boot_id", sa.Text),
        sa.Column("pid", sa.Integer),
        sa.Column("pid_started_at", sa.Double),
        sa.Column("started_at", TIMESTAMP, nullable=False, server_default=sa.text("now()")),
        sa.Column("heartbeat_at", TIMESTAMP),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_leases")),
    )
    op.create_index(
        "ix_job_status_status_status_changed_at", "job_status", ["status", "status_changed_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_job_status_status_status_changed_at", table_name="job_status")
    op.drop_table("job_leases")
