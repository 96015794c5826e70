"""The log refuses what its guarantees depend on, whoever writes it.

- `recorded_at` and `tx_id` are set by the database on every insert, whatever the
  writer sends: the feed's order ("delivered late, never skipped") and every age
  are measured on them.
- `type` is a known event type (this list grows with the migrations that add types).
- `seq` continues the job's sequence: 1, or the successor of an event already
  there (the unique `(job_id, seq)` refuses a repeat), so a job's events have no gap.

The trigger fires ALWAYS, under `session_replication_role = replica` too. The
expressions are written out, so this migration means the same on every database.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KNOWN_TYPES = (
    "'job_registered', 'job_submitted', 'job_started', 'job_paused', 'job_resumed', "
    "'checkpoint_saved', 'job_completed', 'job_failed', 'job_cancelled', "
    "'job_force_started', 'job_marked_failed', 'job_requeued'"
)

GUARD_SQL = """
CREATE FUNCTION job_events_guard_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.recorded_at := now();
    NEW.tx_id := pg_current_xact_id();
    IF NEW.seq > 1 AND NOT EXISTS (
        SELECT 1 FROM job_events WHERE job_id = NEW.job_id AND seq = NEW.seq - 1
    ) THEN
        RAISE EXCEPTION 'job % has no event % for event % to follow',
            NEW.job_id, NEW.seq - 1, NEW.seq
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'job_events_seq_continues',
                  HINT = 'A job''s events are numbered 1, 2, 3... without a gap.';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER job_events_guard_insert
    BEFORE INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_guard_insert();
ALTER TABLE job_events ENABLE ALWAYS TRIGGER job_events_guard_insert;
"""


def upgrade() -> None:
    op.create_check_constraint(
        op.f("ck_job_events_known_type"), "job_events", f"type IN ({KNOWN_TYPES})"
    )
    op.execute(GUARD_SQL)


def downgrade() -> None:
    op.execute("DROP TRIGGER job_events_guard_insert ON job_events")
    op.execute("DROP FUNCTION job_events_guard_insert()")
    op.drop_constraint(op.f("ck_job_events_known_type"), "job_events", type_="check")
