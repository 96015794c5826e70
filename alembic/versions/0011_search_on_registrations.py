"""The trigram index that serves a search of job ids moves to the log's registrations,
beside an index of the registrations newest first.

On `job_status` every change of a job's row (a claim, a heartbeat's state, a completion)
wrote new entries into it, as into every index of a row updated in place; the log's
registrations are never updated, so only a new job costs it anything.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_job_events_registered_job_id_trigrams ON job_events "
        "USING gin (job_id gin_trgm_ops) WHERE seq = 1"
    )
    op.execute(
        "CREATE INDEX ix_job_events_registered_at ON job_events (recorded_at, job_id) WHERE seq = 1"
    )
    op.execute("DROP INDEX ix_job_status_job_id_trigrams")


def downgrade() -> None:
    op.execute("DROP INDEX ix_job_events_registered_at")
    op.execute(
        "CREATE INDEX ix_job_status_job_id_trigrams ON job_status USING gin (job_id gin_trgm_ops)"
    )
    op.execute("DROP INDEX ix_job_events_registered_job_id_trigrams")
