"""Wake event-stream readers: NOTIFY after every statement that appends events.

The notification carries nothing; readers wake up and read the ordered feed,
which alone decides what is delivered.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
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


def downgrade() -> None:
    op.execute("DROP TRIGGER job_events_notify ON job_events")
    op.execute("DROP FUNCTION job_events_notify()")
