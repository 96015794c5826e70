"""Every SQL statement the store runs, beside one another and named for what they do."""

from sqlalchemy import TextClause, text

from ledger.schema import JOB_STATUS_COLUMNS
from ledger.state import TIMESTAMP_FIELDS

STATUS_SELECT = ", ".join(f"s.{column}" for column in JOB_STATUS_COLUMNS)
EVENT_SELECT = (
    "e.position, e.job_id, e.seq, e.type, e.payload, e.actor, e.reason, e.attempt, "
    "e.idempotency_key, e.correlation_id, e.occurred_at, e.recorded_at, e.tx_id::text"
)


def _projected_value(column: str) -> str:
    # A timestamp set by this very append is sent as the APPEND_TIME marker and
    # written as now(): the transaction's clock, the same that fills recorded_at.
    if column in TIMESTAMP_FIELDS:
        value = f"CAST(:{column} AS timestamptz)"
        return f"CASE WHEN {value} = CAST(:append_time AS timestamptz) THEN now() ELSE {value} END"
    if column in ("spec", "result"):
        return f"CAST(:{column} AS jsonb)"
    return f":{column}"


LOAD_STATE: TextClause = text(f"SELECT {STATUS_SELECT} FROM job_status s WHERE s.job_id = :job_id")

LOAD_STATE_AND_KEY: TextClause = text(
    f"""
    SELECT {STATUS_SELECT}, k.tx_id::text AS key_tx_id
    FROM (SELECT 1) AS one
    LEFT JOIN job_status s ON s.job_id = :job_id
    LEFT JOIN job_events k ON k.job_id = :job_id AND k.idempotency_key = :idempotency_key
    """
)
"""The job's state and, when the idempotency key was used before, that append's transaction."""

EVENTS_OF_TRANSACTION: TextClause = text(
    f"""
    SELECT {EVENT_SELECT} FROM job_events e
    WHERE e.job_id = :job_id AND e.tx_id = CAST(:tx_id AS xid8)
    ORDER BY e.seq
    """
)

APPEND_EVENTS: TextClause = text(
    f"""
    WITH appended AS (
        INSERT INTO job_events (
            job_id, seq, type, payload, actor, reason, attempt,
            idempotency_key, correlation_id, occurred_at
        )
        SELECT :job_id, e.seq, e.type, e.payload::jsonb, :actor, e.reason, e.attempt,
               CASE WHEN e.ord = 1 THEN :idempotency_key END, :correlation_id,
               CAST(:occurred_at AS timestamptz)
        FROM unnest(
            CAST(:seqs AS int[]), CAST(:types AS text[]), CAST(:payloads AS text[]),
            CAST(:reasons AS text[]), CAST(:attempts AS int[])
        ) WITH ORDINALITY AS e(seq, type, payload, reason, attempt, ord)
        RETURNING position, seq, recorded_at, tx_id::text AS tx_id
    ), projected AS (
        INSERT INTO job_status ({", ".join(JOB_STATUS_COLUMNS)})
        VALUES ({", ".join(_projected_value(column) for column in JOB_STATUS_COLUMNS)})
        ON CONFLICT (job_id) DO UPDATE SET {
        ", ".join(f"{column} = EXCLUDED.{column}" for column in JOB_STATUS_COLUMNS[1:])
    }
    )
    SELECT position, seq, recorded_at, tx_id FROM appended ORDER BY seq
    """
)
"""Append a job's new events and write its projected state: one statement, one transaction.

The unique `(job_id, seq)` makes a concurrent writer of the same version fail."""

JOB_HISTORY: TextClause = text(
    f"SELECT {EVENT_SELECT} FROM job_events e WHERE e.job_id = :job_id ORDER BY e.seq"
)

READ_FEED: TextClause = text(
    f"""
    SELECT {EVENT_SELECT} FROM job_events e
    WHERE (e.tx_id, e.position) > (CAST(:tx_id AS xid8), :position)
      AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY e.tx_id, e.position
    LIMIT :limit
    """
)
"""The global feed after a cursor: only events of transactions older than every
transaction still running, in (transaction, position) order, so an event that
commits late is never skipped."""

JOBS_BY_STATUS: TextClause = text(
    f"""
    SELECT {STATUS_SELECT} FROM job_status s
    WHERE (CAST(:status AS text) IS NULL OR s.status = :status)
      AND s.job_id > :after_job_id
    ORDER BY s.job_id
    LIMIT :limit
    """
)

QUEUE_POSITION: TextClause = text(
    """
    SELECT 1 + (
        SELECT count(*) FROM job_status q
        WHERE q.status = 'queued'
          AND (q.priority > s.priority
               OR (q.priority = s.priority AND (q.queued_at, q.job_id) < (s.queued_at, s.job_id)))
    )
    FROM job_status s
    WHERE s.job_id = :job_id AND s.status = 'queued'
    """
)
"""Where a queued job stands in the queue (1 = next): higher priority first, then
the longest waiting."""
