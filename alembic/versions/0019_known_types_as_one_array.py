"""The log's known-type CHECK names the types as one array constant, not an `IN` list.

PostgreSQL reads the stored expression of every CHECK of a table anew at each statement
that writes it (0018). The `IN` list of the twelve types is stored as twelve constants,
2,701 characters read at every append; one `text[]` constant holding the same types is
about a third of that. The types and their meaning are unchanged. The new CHECK is added
`NOT VALID` and then validated, so the log's existing rows are read under a lock that
lets appends go on.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TYPES = (
    "job_registered",
    "job_submitted",
    "job_started",
    "job_paused",
    "job_resumed",
    "checkpoint_saved",
    "job_completed",
    "job_failed",
    "job_cancelled",
    "job_force_started",
    "job_marked_failed",
    "job_requeued",
)
AS_ARRAY = "type = ANY ('{" + ",".join(TYPES) + "}'::text[])"
AS_LIST = "type IN (" + ", ".join(f"'{type_}'" for type_ in TYPES) + ")"


def _replace_known_type(rule: str) -> None:
    op.drop_constraint(op.f("ck_job_events_known_type"), "job_events", type_="check")
    op.execute(
        f"ALTER TABLE job_events ADD CONSTRAINT ck_job_events_known_type CHECK ({rule}) NOT VALID"
    )
    op.execute("ALTER TABLE job_events VALIDATE CONSTRAINT ck_job_events_known_type")


def upgrade() -> None:
    _replace_known_type(AS_ARRAY)


def downgrade() -> None:
    _replace_known_type(AS_LIST)
