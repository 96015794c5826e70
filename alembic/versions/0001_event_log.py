"""The append-only job event log, the current-status projection and projection checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from ledger.schema import Xid8

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JOB_ID = sa.Text(collation="C")
STATUSES = "'pending', 'queued', 'running', 'paused', 'completed', 'failed', 'cancelled'"


def upgrade() -> None:
    op.create_table(
        "job_events",
        sa.Column("position", sa.BigInteger, sa.Identity(always=True), nullable=False),
        sa.Column("job_id", JOB_ID, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column(
            "payload",
            postgresql.JSONB,
            nullable=False,
            server_default=sa.text("'{}'::jsonb"),
        ),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("attempt", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("correlation_id", sa.Text),
        sa.Column("occurred_at", TIMESTAMP),
        sa.Column("recorded_at", TIMESTAMP, nullable=False, server_default=sa.text("now()")),
        sa.Column(
            "tx_id",
            Xid8(),
            nullable=False,
            server_default=sa.text("pg_current_xact_id()"),
        ),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_job_events")),
        sa.UniqueConstraint("job_id", "seq", name=op.f("uq_job_events_job_id_seq")),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_job_events_seq_positive")),
    )
    op.create_index("ix_job_events_tx_id_position", "job_events", ["tx_id", "position"])
    op.create_index(
        "uq_job_events_job_id_idempotency_key",
        "job_events",
        ["job_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.execute(IMMUTABILITY_SQL)

    op.create_table(
        "job_status",
        sa.Column("job_id", JOB_ID, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("status_changed_at", TIMESTAMP, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("auto_retry", sa.Boolean, nullable=False),
        sa.Column("spec", postgresql.JSONB),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("run_token", sa.Text),
        sa.Column("queued_at", TIMESTAMP),
        sa.Column("started_at", TIMESTAMP),
        sa.Column("finished_at", TIMESTAMP),
        sa.Column("worker_id", sa.Text),
        sa.Column("worker_host", sa.Text),
        sa.Column("worker_pid", sa.Integer),
        sa.Column("worker_pid_started_at", sa.Double),
        sa.Column("worker_boot_id", sa.Text),
        sa.Column("failure_reason", sa.Text),
        sa.Column("checkpoint_path", sa.Text),
        sa.Column("checkpoint_step", sa.BigInteger),
        sa.Column("resume_from", sa.Text),
        sa.Column("result", postgresql.JSONB),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_status")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_job_status_known_status")),
    )
    op.create_index(
        "ix_job_status_status_created_at",
        "job_status",
        ["status", "created_at", "job_id"],
    )
    op.create_index(
        "ix_job_status_queue",
        "job_status",
        [sa.text("priority DESC"), "queued_at", "job_id"],
        postgresql_where=sa.text("status = 'queued'"),
    )

    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("tx_id", Xid8(), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_projection_checkpoints")),
    )


def downgrade() -> None:
    op.drop_table("projection_checkpoints")
    op.drop_table("job_status")
    op.drop_table("job_events")
    op.execute("DROP FUNCTION job_events_reject_change()")


# Kept here, not imported, so this migration never changes after it ships.
IMMUTABILITY_SQL = """
CREATE FUNCTION job_events_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'job_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'raise_exception',
              HINT = 'Record a new event instead of changing or removing one.';
END;
$$;
CREATE TRIGGER job_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_reject_change();
CREATE TRIGGER job_events_no_truncate
    BEFORE TRUNCATE ON job_events
    FOR EACH STATEMENT EXECUTE FUNCTION job_events_reject_change();
-- ALWAYS: the triggers fire under session_replication_role = replica too.
ALTER TABLE job_events ENABLE ALWAYS TRIGGER job_events_no_update_or_delete;
ALTER TABLE job_events ENABLE ALWAYS TRIGGER job_events_no_truncate;
"""
