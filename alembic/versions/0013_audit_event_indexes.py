"""Indexes for questions across jobs: the log's events in time order on the database's
clock, all of them, by type, and by actor and type (a question of one actor's events reads
each type's and merges them: the log's CHECK names every type there is); and those that
carry the emitter's clock, on it. The first page of any filter is a short ordered read.

Registrations are also found by the status they registered their job in. A job's events
are found by the unique (job_id, seq) index already there; ids starting with a prefix are
a range of it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_job_events_recorded_at_position ON job_events (recorded_at, position)"
    )
    op.execute(
        "CREATE INDEX ix_job_events_type_recorded_at_position "
        "ON job_events (type, recorded_at, position)"
    )
    op.execute(
        "CREATE INDEX ix_job_events_actor_type_recorded_at_position "
        "ON job_events (actor, type, recorded_at, position)"
    )
    op.execute(
        "CREATE INDEX ix_job_events_registered_status_recorded_at "
        "ON job_events ((payload->>'initial_status'), recorded_at, position) WHERE seq = 1"
    )
    op.execute(
        "CREATE INDEX ix_job_events_occurred_at_position ON job_events (occurred_at, position) "
        "WHERE occurred_at IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_job_events_occurred_at_position")
    op.execute("DROP INDEX ix_job_events_registered_status_recorded_at")
    op.execute("DROP INDEX ix_job_events_actor_type_recorded_at_position")
    op.execute("DROP INDEX ix_job_events_type_recorded_at_position")
    op.execute("DROP INDEX ix_job_events_recorded_at_position")
