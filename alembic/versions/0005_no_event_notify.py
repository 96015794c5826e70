"""Stop notifying on every append: each notifying commit takes one global lock.

Event streams now watch the head of the log instead (`api.stream.FeedWatcher`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP TRIGGER job_events_notify ON job_events")
    op.execute("DROP FUNCTION job_events_notify()")


def downgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION job_events_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('jobledger_events', '');
            RETURN NULL;
        END;
        $$;
        CREATE TRIGGER job_events_notify
            AFTER INSERT ON job_events
            FOR EACH STATEMENT EXECUTE FUNCTION job_events_notify();
        """
    )
