"""An append that updates its job's row in place refuses itself when the row is not at
the version the append was decided on.

The append updates the row in the columns it changes only (no document of the whole
state is sent or parsed, so its cost does not grow with the job's spec). Should the row
not be at the decided version, the statement calls this function, which raises: nothing
of the append is written, and the store appends again writing the row whole.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION_SQL = """
CREATE FUNCTION job_status_not_at_version(job_id text, version integer) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the row of job % is not at version %', job_id, version
        USING ERRCODE = 'check_violation',
              CONSTRAINT = 'job_status_at_decided_version',
              HINT = 'The append is made again, writing the row whole.';
END;
$$;
"""


def upgrade() -> None:
    op.execute(FUNCTION_SQL)


def downgrade() -> None:
    op.execute("DROP FUNCTION job_status_not_at_version(text, integer)")
