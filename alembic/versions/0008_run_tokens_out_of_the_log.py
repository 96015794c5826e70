"""Run tokens out of the stored tables, and idempotency keys bound to their requests.

- `job_status.run_token` becomes `run_token_sha256` and `job_leases.run_token` becomes
  `run_token_sha256`: each stored token is replaced by its SHA-256 digest (hex of its
  UTF-8 bytes), which is what the fence compares now. Runs open during the upgrade
  keep working with their tokens. The events already in the log are immutable: a
  legacy `job_started` keeps its plaintext `run_token`, which readers derive the
  digest from and never show.
- `job_leases.run_token` (new, nullable) keeps the token of a start made with an
  idempotency key, so a retry of it is answered with the same token.
- `job_events.command_sha256` (new, nullable) holds the digest of the command an
  idempotency key was first used with.
- `uq_job_events_actor_idempotency_key`: a caller's keyed start is found by its key,
  and one key starts one run.

The expressions are written out, so this migration means the same on every database.
A downgrade renames the columns back, but the tokens stay digests: runs open then
cannot heartbeat or report under the old code, and are reconciled as dead.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_RECORDED = "ck_job_status_run_recorded_exactly_when_started"


def _run_recorded(token_column: str) -> str:
    return (
        f"num_nulls({token_column}, started_at, worker_id, worker_host)"
        " = CASE WHEN attempt = 0 THEN 4 ELSE 0 END"
    )


def upgrade() -> None:
    op.drop_constraint(op.f(RUN_RECORDED), "job_status", type_="check")
    op.alter_column("job_status", "run_token", new_column_name="run_token_sha256")
    op.execute(
        "UPDATE job_status SET run_token_sha256 = "
        "encode(sha256(convert_to(run_token_sha256, 'UTF8')), 'hex') "
        "WHERE run_token_sha256 IS NOT NULL"
    )
    op.create_check_constraint(op.f(RUN_RECORDED), "job_status", _run_recorded("run_token_sha256"))

    op.alter_column("job_leases", "run_token", new_column_name="run_token_sha256")
    op.execute(
        "UPDATE job_leases SET run_token_sha256 = "
        "encode(sha256(convert_to(run_token_sha256, 'UTF8')), 'hex')"
    )
    op.add_column("job_leases", sa.Column("run_token", sa.Text(), nullable=True))

    op.add_column("job_events", sa.Column("command_sha256", sa.Text(), nullable=True))
    op.create_index(
        "uq_job_events_actor_idempotency_key",
        "job_events",
        ["actor", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("type = 'job_started' AND idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_job_events_actor_idempotency_key", table_name="job_events")
    op.drop_column("job_events", "command_sha256")
    op.drop_column("job_leases", "run_token")
    op.alter_column("job_leases", "run_token_sha256", new_column_name="run_token")
    op.drop_constraint(op.f(RUN_RECORDED), "job_status", type_="check")
    op.alter_column("job_status", "run_token_sha256", new_column_name="run_token")
    op.create_check_constraint(op.f(RUN_RECORDED), "job_status", _run_recorded("run_token"))
