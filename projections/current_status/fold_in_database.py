"""The whole log folded into current-status rows by PostgreSQL, in one statement.

`ledger.evolve` states the rules one event at a time; this is the same rules
compiled for a whole log at once, which is what a rebuild needs: every field
of a job's row is the value some event set last, so one aggregate pass finds,
for each job, the last event of each kind that sets a field, and one lookup per
kind reads the values. The server does the work; no event is sent to Python.

`projections verify` replays through `evolve` and compares, so a rule changed
in one place and not the other shows up as drift; the tests fold random
histories both ways and compare them too.
"""

from typing import Any

import psycopg

from ledger.schema import JOB_STATUS_COLUMNS

QUEUEING = ("job_submitted", "job_force_started", "job_requeued")
"""Events that put a job in the queue (as does registering it as queued)."""
FINISHING = ("job_completed", "job_failed", "job_marked_failed", "job_cancelled")
FAILING = ("job_failed", "job_marked_failed")

STATUS_AFTER = {
    "job_started": "running",
    "job_resumed": "running",
    "job_paused": "paused",
    "job_completed": "completed",
    "job_failed": "failed",
    "job_marked_failed": "failed",
    "job_cancelled": "cancelled",
    **dict.fromkeys(QUEUEING, "queued"),
}
"""The status each event leaves a job in; `job_registered` leaves its initial status,
and `checkpoint_saved` changes none."""

FOLDED_EVENT_TYPES = frozenset({*STATUS_AFTER, "job_registered", "checkpoint_saved"})


def _among(types: tuple[str, ...]) -> str:
    return "type IN (" + ", ".join(f"'{type_}'" for type_ in types) + ")"


_LAST_SEQ_OF = {
    # alias: the events whose latest one sets the fields read from that alias
    "st": "type <> 'checkpoint_saved'",
    "sta": "type = 'job_started'",
    "q": f"{_among(QUEUEING)} OR (type = 'job_registered' "
    "AND payload->>'initial_status' = 'queued')",
    # finished_at: set by finishing, cleared by queueing or starting again
    "fin": _among((*FINISHING, *QUEUEING, "job_started")),
    # failure_reason: set by failing, cleared by queueing again
    "fl": _among((*FAILING, *QUEUEING)),
    "ck": "type = 'checkpoint_saved'",
    # resume_from: set by starting and by queueing (submitting clears it)
    "rs": _among((*QUEUEING, "job_started")),
    "res": "type = 'job_completed'",
}


_READ_FROM_STA = frozenset({"rs"})
"""The last start or queueing is usually the last start, which is read for its worker."""


def _of(alias: str, expression: str) -> str:
    """`expression` (written over the event `{e}`) read from the event `alias` names.

    That event is often the job's first or last, which are read anyway: then it
    is taken from those, and the lookup of its own is skipped.
    """
    cases = [f"WHEN m.version THEN {expression.format(e='lst')}"]
    cases.append(f"WHEN 1 THEN {expression.format(e='reg')}")
    if alias in _READ_FROM_STA:
        cases.append(f"WHEN m.sta_seq THEN {_of('sta', expression)}")
    return f"CASE m.{alias}_seq {' '.join(cases)} ELSE {expression.format(e=alias)} END"


def _lookup(alias: str) -> str:
    """The join reading the event `alias` names, unless the first or last is that event."""
    seq = f"m.{alias}_seq"
    # seq 0 is no event's: a job never started has no start to read from
    read = "1, m.version, coalesce(m.sta_seq, 0)" if alias in _READ_FROM_STA else "1, m.version"
    return (
        f"LEFT JOIN job_events {alias} ON {alias}.job_id = m.job_id "
        f"AND {alias}.seq = CASE WHEN {seq} NOT IN ({read}) THEN {seq} END"
    )


_STATUS_CASE = " ".join(
    [
        "CASE {e}.type WHEN 'job_registered' THEN reg.payload->>'initial_status'",
        *(f"WHEN '{type_}' THEN '{status}'" for type_, status in STATUS_AFTER.items()),
        "END",
    ]
)

_VALUES = {
    "job_id": "m.job_id",
    "status": _of("st", _STATUS_CASE),
    "version": "m.version",
    "created_at": "reg.recorded_at",
    "updated_at": "lst.recorded_at",
    "status_changed_at": _of("st", "{e}.recorded_at"),
    # A key the payload lacks takes the event class's default, as in `event_from_record`.
    "priority": "coalesce((reg.payload->>'priority')::int, 0)",
    "max_attempts": "coalesce((reg.payload->>'max_attempts')::int, 1)",
    "auto_retry": "coalesce((reg.payload->>'auto_retry')::boolean, false)",
    "spec": "CASE WHEN reg.payload ? 'spec' THEN NULLIF(reg.payload->'spec', 'null'::jsonb) "
    "ELSE '{}'::jsonb END",
    "attempt": "m.attempts::int",
    "run_token": _of("sta", "{e}.payload->>'run_token'"),
    "queued_at": _of("q", "{e}.recorded_at"),
    "started_at": _of("sta", "{e}.recorded_at"),
    "finished_at": _of("fin", f"CASE WHEN {{e}}.{_among(FINISHING)} THEN {{e}}.recorded_at END"),
    "worker_id": _of("sta", "{e}.payload->>'worker_id'"),
    "worker_host": _of("sta", "{e}.payload->>'host'"),
    "worker_pid": _of("sta", "({e}.payload->>'pid')::int"),
    "worker_pid_started_at": _of("sta", "({e}.payload->>'pid_started_at')::float8"),
    "worker_boot_id": _of("sta", "{e}.payload->>'boot_id'"),
    "failure_reason": _of("fl", f"CASE WHEN {{e}}.{_among(FAILING)} THEN {{e}}.reason END"),
    "checkpoint_path": _of("ck", "{e}.payload->>'path'"),
    "checkpoint_step": _of("ck", "({e}.payload->>'step')::bigint"),
    "resume_from": _of("rs", "{e}.payload->>'resume_from'"),
    "result": _of("res", "NULLIF({e}.payload->'result', 'null'::jsonb)"),
}
assert tuple(_VALUES) == JOB_STATUS_COLUMNS, "one value per job_status column, in order"


def fold_log_sql(table: str) -> str:
    """INSERT into `table` the row of every job whose events all committed in
    transactions below `%(xmin)s`."""
    last_seqs = ",\n".join(
        f"max(seq) FILTER (WHERE {condition}) AS {alias}_seq"
        for alias, condition in _LAST_SEQ_OF.items()
    )
    lookups = "\n".join(_lookup(alias) for alias in _LAST_SEQ_OF)
    columns = ", ".join(_VALUES)
    values = ",\n".join(_VALUES.values())
    return f"""
        INSERT INTO {table} ({columns})
        WITH m AS (
            SELECT job_id, max(seq) AS version,
                   count(*) FILTER (WHERE type = 'job_started') AS attempts,
                   {last_seqs}
            FROM job_events
            WHERE tx_id < %(xmin)s::xid8
            GROUP BY job_id
        )
        SELECT {values}
        FROM m
        JOIN job_events reg ON reg.job_id = m.job_id AND reg.seq = 1
        JOIN job_events lst ON lst.job_id = m.job_id AND lst.seq = m.version
        {lookups}
    """


def fold_log_into(conn: psycopg.Connection[Any], table: str, xmin: int) -> tuple[int, int]:
    """Fold the log below `xmin` into `table`; return (events, jobs) folded."""
    with conn.transaction():
        # The aggregate holds one small row per job: let it stay in memory.
        conn.execute("SET LOCAL work_mem = '128MB'")
        conn.execute(fold_log_sql(table), {"xmin": str(xmin)})
        row = conn.execute(f"SELECT coalesce(sum(version), 0), count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
