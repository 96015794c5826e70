"""The projection's rules are one CHECK calling one function, instead of a CHECK each.

PostgreSQL reads the stored expression of every CHECK of a table anew at each statement
that writes it (`ExecRelCheck` parses each from its text and plans it). The nine rules
of 0006 and 0008 are about 8,000 characters of such text, read by every append that
updates a job's row: checking constraints took 16% of the server's time in appends of
checkpoints at 16 connections, most of it parsing (`perf`, PostgreSQL 15). The same
rules in one PL/pgSQL function (its plan kept for the session), called by one CHECK of
1,500 characters, took the machine's CPU per append from 212-226 to 195-206 µs and the
rate from 8,080-8,520 to 8,890-9,190 a second (`pgbench -M prepared -c 16` of the append
statement, three runs each, alternating). A broken rule is refused as before:
`check_violation` naming `ck_job_status_<rule>`.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

# ruff: noqa: E501 (the function is written out as the database holds it)

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RULES = {
    "known_status": (
        "status IN ('pending', 'queued', 'running', 'paused', 'completed', 'failed', 'cancelled')"
    ),
    "version_positive": "version >= 1",
    "attempt_not_negative": "attempt >= 0",
    "max_attempts_positive": "max_attempts >= 1",
    "finished_exactly_when_terminal": (
        "(finished_at IS NOT NULL) = (status IN ('completed', 'failed', 'cancelled'))"
    ),
    "active_run_started": "status NOT IN ('running', 'paused') OR attempt >= 1",
    "run_recorded_exactly_when_started": (
        "num_nulls(run_token_sha256, started_at, worker_id, worker_host)"
        " = CASE WHEN attempt = 0 THEN 4 ELSE 0 END"
    ),
    "queued_at_when_queued": "status <> 'queued' OR queued_at IS NOT NULL",
    "failure_reason_exactly_when_failed": "(failure_reason IS NOT NULL) = (status = 'failed')",
}
"""The rules as 0006 and 0008 left them, one CHECK each (what a downgrade restores)."""

FUNCTION_SQL = """
CREATE FUNCTION job_status_rules_hold(
    status text,
    version integer,
    max_attempts integer,
    attempt integer,
    run_token_sha256 text,
    queued_at timestamptz,
    started_at timestamptz,
    finished_at timestamptz,
    worker_id text,
    worker_host text,
    failure_reason text
) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF (status IN ('pending', 'queued', 'running', 'paused', 'completed', 'failed', 'cancelled'))
        AND (version >= 1)
        AND (attempt >= 0)
        AND (max_attempts >= 1)
        AND ((finished_at IS NOT NULL) = (status IN ('completed', 'failed', 'cancelled')))
        AND (status NOT IN ('running', 'paused') OR attempt >= 1)
        AND (num_nulls(run_token_sha256, started_at, worker_id, worker_host) = CASE WHEN attempt = 0 THEN 4 ELSE 0 END)
        AND (status <> 'queued' OR queued_at IS NOT NULL)
        AND ((failure_reason IS NOT NULL) = (status = 'failed')) THEN
        RETURN true;
    END IF;
    IF NOT (status IN ('pending', 'queued', 'running', 'paused', 'completed', 'failed', 'cancelled')) THEN
        RAISE EXCEPTION 'new row for relation "job_status" violates check constraint '
            '"ck_job_status_known_status"'
            USING ERRCODE = 'check_violation', TABLE = 'job_status',
                  CONSTRAINT = 'ck_job_status_known_status';
    END IF;
    IF NOT (version >= 1) THEN
        RAISE EXCEPTION 'new row for relation "job_status" violates check constraint '
            '"ck_job_status_version_positive"'
            USING ERRCODE = 'check_violation', TABLE = 'job_status',
                  CONSTRAINT = 'ck_job_status_version_positive';
    END IF;
    IF NOT (attempt >= 0) THEN
        RAISE EXCEPTION 'new row for relation "job_status" violates check constraint '
            '"ck_job_status_attempt_not_negative"'
            USING ERRCODE = 'check_violation', TABLE = 'job_status',
                  CONSTRAINT = 'ck_job_status_attempt_not_negative';
    END IF;
    IF NOT (max_attempts >= 1) THEN
        RAISE EXCEPTION 'new row for relation "job_status" violates check constraint '
            '"ck_job_status_max_attempts_positive"'
            USING ERRCODE = 'check_violation', TABLE = 'job_status',
                  CONSTRAINT = 'ck_job_status_max_attempts_positive';
    END IF;
    IF NOT ((finished_at IS NOT NULL) = (status IN ('completed', 'failed', 'cancelled'))) THEN
        RAISE EXCEPTION 'new row for relation "job_status" violates check constraint '
            '"ck_job_status_finished_exactly_when_terminal"'
            USING ERRCODE = 'check_violation', TABLE = 'job_status',
                  CONSTRAINT = 'ck_job_status_finished_exactly_when_terminal';
    END IF;
    IF NOT (status NOT IN ('running', 'paused') OR attempt >= 1) THEN
        RAISE EXCEPTION 'new row for relation "job_status" violates check constraint '
            '"ck_job_status_active_run_started"'
            USING ERRCODE = 'check_violation', TABLE = 'job_status',
                  CONSTRAINT = 'ck_job_status_active_run_started';
    END IF;
    IF NOT (num_nulls(run_token_sha256, started_at, worker_id, worker_host) = CASE WHEN attempt = 0 THEN 4 ELSE 0 END) THEN
        RAISE EXCEPTION 'new row for relation "job_status" violates check constraint '
            '"ck_job_status_run_recorded_exactly_when_started"'
            USING ERRCODE = 'check_violation', TABLE = 'job_status',
                  CONSTRAINT = 'ck_job_status_run_recorded_exactly_when_started';
    END IF;
    IF NOT (status <> 'queued' OR queued_at IS NOT NULL) THEN
        RAISE EXCEPTION 'new row for relation "job_status" violates check constraint '
            '"ck_job_status_queued_at_when_queued"'
            USING ERRCODE = 'check_violation', TABLE = 'job_status',
                  CONSTRAINT = 'ck_job_status_queued_at_when_queued';
    END IF;
    IF NOT ((failure_reason IS NOT NULL) = (status = 'failed')) THEN
        RAISE EXCEPTION 'new row for relation "job_status" violates check constraint '
            '"ck_job_status_failure_reason_exactly_when_failed"'
            USING ERRCODE = 'check_violation', TABLE = 'job_status',
                  CONSTRAINT = 'ck_job_status_failure_reason_exactly_when_failed';
    END IF;
    RETURN true;
END;
$$;
"""

CHECK = (
    "job_status_rules_hold(status, version, max_attempts, attempt, run_token_sha256, "
    "queued_at, started_at, finished_at, worker_id, worker_host, failure_reason)"
)


def upgrade() -> None:
    op.execute(FUNCTION_SQL)
    op.create_check_constraint(op.f("ck_job_status_rules_hold"), "job_status", CHECK)
    for name in RULES:
        op.drop_constraint(op.f(f"ck_job_status_{name}"), "job_status", type_="check")


def downgrade() -> None:
    for name, rule in RULES.items():
        op.create_check_constraint(op.f(f"ck_job_status_{name}"), "job_status", rule)
    op.drop_constraint(op.f("ck_job_status_rules_hold"), "job_status", type_="check")
    op.execute(
        "DROP FUNCTION job_status_rules_hold(text, integer, integer, integer, text, "
        "timestamptz, timestamptz, timestamptz, text, text, text)"
    )
