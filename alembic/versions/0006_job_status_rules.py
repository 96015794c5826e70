"""The current-status projection states what `evolve` guarantees of its rows, as CHECKs.

A copy of a rule that drifts (the claim statement, the rebuild's fold) is then
refused by the database at once. The expressions are `ledger.schema.JOB_STATUS_RULES`
as of this revision, written out: a migration means the same on every database it
ever runs on, and the migration tests check the result equals the declared schema.

The projection is derived data: when a row already breaks a rule (the projection
drifted from the log), the rows and their checkpoint are dropped instead of stopping
the upgrade, and the next start-up rebuilds them from the log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TERMINAL = "'completed', 'failed', 'cancelled'"
ACTIVE_RUN = "'running', 'paused'"

RULES = {
    "version_positive": "version >= 1",
    "attempt_not_negative": "attempt >= 0",
    "max_attempts_positive": "max_attempts >= 1",
    "finished_exactly_when_terminal": f"(finished_at IS NOT NULL) = (status IN ({TERMINAL}))",
    "active_run_started": f"status NOT IN ({ACTIVE_RUN}) OR attempt >= 1",
    "run_recorded_exactly_when_started": (
        "num_nulls(run_token, started_at, worker_id, worker_host)"
        " = CASE WHEN attempt = 0 THEN 4 ELSE 0 END"
    ),
    "queued_at_when_queued": "status <> 'queued' OR queued_at IS NOT NULL",
    "failure_reason_exactly_when_failed": "(failure_reason IS NOT NULL) = (status = 'failed')",
}


def upgrade() -> None:
    broken = " OR ".join(f"NOT ({rule})" for rule in RULES.values())
    if (
        op.get_bind()
        .execute(text(f"SELECT EXISTS (SELECT 1 FROM job_status WHERE {broken})"))
        .scalar()
    ):
        op.execute("TRUNCATE job_status")
        op.execute("DELETE FROM projection_checkpoints WHERE name = 'current_status'")
    for name, rule in RULES.items():
        op.create_check_constraint(op.f(f"ck_job_status_{name}"), "job_status", rule)


def downgrade() -> None:
    for name in reversed(RULES):
        op.drop_constraint(op.f(f"ck_job_status_{name}"), "job_status", type_="check")
