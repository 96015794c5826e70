"""The tables of the ledger: the event log and its inline current-status projection.

The log (`job_events`) is append-only, enforced by triggers in the database
itself. `job_status` holds one row per job, written in the same transaction
as the job's events by the store, from the same `evolve` that replays use.
Its columns follow `JobState`'s fields in order.
"""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Double,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import UserDefinedType

from ledger.events import EVENT_CLASSES, JobStarted
from ledger.statuses import ACTIVE_RUN_STATUSES, TERMINAL_STATUSES, JobStatus


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (`xid8`)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JOB_ID = Text(collation="C")
"""Job ids sort bytewise, as Python sorts them: replays merge streams on them."""

KNOWN_TYPE = "type = ANY ('{" + ",".join(EVENT_CLASSES) + "}'::text[])"
"""The log's CHECK that an event's type is one the ledger knows. The types are one array
constant rather than an `IN` list: PostgreSQL reads a CHECK's stored text anew at each
statement that inserts into the table, and a list of constants is three times as long."""

job_events = Table(
    "job_events",
    metadata,
    Column("position", BigInteger, Identity(always=True), primary_key=True),
    Column("job_id", JOB_ID, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", Text, nullable=False),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("actor", Text, nullable=False),
    Column("reason", Text),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("idempotency_key", Text),
    Column("correlation_id", Text),
    Column("occurred_at", DateTime(timezone=True)),
    Column(
        "recorded_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=text("now()"),
    ),
    Column("tx_id", Xid8, nullable=False, server_default=text("pg_current_xact_id()")),
    # The digest of the command an idempotency key was first used with (on the event
    # that carries the key): the key answers again only for that command.
    Column("command_sha256", Text),
    UniqueConstraint("job_id", "seq"),  # the optimistic-concurrency check
    CheckConstraint("seq >= 1", name="seq_positive"),
    CheckConstraint(KNOWN_TYPE, name="known_type"),
    Index("ix_job_events_tx_id_position", "tx_id", "position"),
    # a search of ids for what they contain (pg_trgm): `LIKE '%...%'` without a scan; on
    # the registrations, which are never updated, so only a new job costs it anything
    Index(
        "ix_job_events_registered_job_id_trigrams",
        "job_id",
        postgresql_using="gin",
        postgresql_ops={"job_id": "gin_trgm_ops"},
        postgresql_where=text("seq = 1"),
    ),
    # registrations newest first: a search that matches many ids finds its newest at once
    Index(
        "ix_job_events_registered_at",
        "recorded_at",
        "job_id",
        postgresql_where=text("seq = 1"),
    ),
    # questions across jobs (`ledger.audit_events`): events in time order, of every type,
    # of one type, and of one actor's one type
    Index("ix_job_events_recorded_at_position", "recorded_at", "position"),
    Index("ix_job_events_type_recorded_at_position", "type", "recorded_at", "position"),
    Index(
        "ix_job_events_actor_type_recorded_at_position", "actor", "type", "recorded_at", "position"
    ),
    Index(
        "ix_job_events_registered_status_recorded_at",
        text("(payload->>'initial_status')"),
        "recorded_at",
        "position",
        postgresql_where=text("seq = 1"),
    ),
    Index(
        "ix_job_events_occurred_at_position",
        "occurred_at",
        "position",
        postgresql_where=text("occurred_at IS NOT NULL"),
    ),
    Index(
        "uq_job_events_job_id_idempotency_key",
        "job_id",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
    ),
    # A keyed start (a claim or a start of a chosen job) is found by its caller and key,
    # and one key starts one run: two racing retries cannot both start a job.
    Index(
        "uq_job_events_actor_idempotency_key",
        "actor",
        "idempotency_key",
        unique=True,
        postgresql_where=text(f"type = '{JobStarted.TYPE}' AND idempotency_key IS NOT NULL"),
    ),
)


def sql_statuses(statuses: Iterable[JobStatus]) -> str:
    """`statuses` as the items of a SQL `IN (...)` list, in the order `JobStatus` declares them."""
    chosen = set(statuses)
    return ", ".join(f"'{status.value}'" for status in JobStatus if status in chosen)


_TERMINAL = sql_statuses(TERMINAL_STATUSES)
ACTIVE_RUN_IN = sql_statuses(ACTIVE_RUN_STATUSES)
"""The statuses of a job whose run is open, for a SQL `IN (...)`."""

JOB_STATUS_RULES: dict[str, str] = {
    "known_status": f"status IN ({sql_statuses(JobStatus)})",
    "version_positive": "version >= 1",
    "attempt_not_negative": "attempt >= 0",
    "max_attempts_positive": "max_attempts >= 1",
    "finished_exactly_when_terminal": f"(finished_at IS NOT NULL) = (status IN ({_TERMINAL}))",
    "active_run_started": f"status NOT IN ({ACTIVE_RUN_IN}) OR attempt >= 1",
    "run_recorded_exactly_when_started": (
        "num_nulls(run_token_sha256, started_at, worker_id, worker_host)"
        " = CASE WHEN attempt = 0 THEN 4 ELSE 0 END"
    ),
    "queued_at_when_queued": f"status <> '{JobStatus.QUEUED}' OR queued_at IS NOT NULL",
    "failure_reason_exactly_when_failed": (
        f"(failure_reason IS NOT NULL) = (status = '{JobStatus.FAILED}')"
    ),
}
"""What `evolve` guarantees of every row, stated to the database too: a copy of a rule
that drifts (the claim statement, the rebuild's fold) fails at once, not in a week.

- every job is at version 1 or more, with 0 or more attempts and at least 1 allowed;
- a job is finished exactly when its status is terminal (`TERMINAL_STATUSES`);
- a running or paused job (`ACTIVE_RUN_STATUSES`) has had an attempt;
- a job has a run token's digest, a worker and a start time exactly when it has had an attempt
  (they stay after the run, for the record): so a running or paused job has them all;
- a queued job has the time it was queued;
- a job has a failure reason exactly when it is failed (queueing clears it).
"""

JOB_STATUS_RULE_COLUMNS = (
    "status",
    "version",
    "max_attempts",
    "attempt",
    "run_token_sha256",
    "queued_at",
    "started_at",
    "finished_at",
    "worker_id",
    "worker_host",
    "failure_reason",
)
"""The columns `JOB_STATUS_RULES` read, in the table's order: the arguments of the
function that tests them, named as the columns so that the rules read the same there."""

JOB_STATUS_RULES_CHECK = f"job_status_rules_hold({', '.join(JOB_STATUS_RULE_COLUMNS)})"
"""The one CHECK of `job_status`: every rule of `JOB_STATUS_RULES` holds of the row.

The rules are one PL/pgSQL function (`job_status_rules_function`) rather than a CHECK
each: PostgreSQL reads every CHECK's stored expression anew at each statement that
writes the table, and the nine rules' texts (about 8,000 characters) cost an append
that updates a job's row more than the rest of its update did. A broken rule is refused
as its own CHECK would be: `check_violation` naming `ck_job_status_<rule>`."""


def job_status_rules_function(rules: dict[str, str]) -> str:
    """The body of `job_status_rules_hold`: `rules` tested together, and when they do not
    all hold, one by one to name the first that is broken. A rule that is NULL passes,
    as in a CHECK."""
    broken = "".join(
        f"""
    IF NOT ({rule}) THEN
        RAISE EXCEPTION 'new row for relation "job_status" violates check constraint '
            '"ck_job_status_{name}"'
            USING ERRCODE = 'check_violation', TABLE = 'job_status',
                  CONSTRAINT = 'ck_job_status_{name}';
    END IF;"""
        for name, rule in rules.items()
    )
    together = "\n        AND ".join(f"({rule})" for rule in rules.values())
    return f"""
BEGIN
    IF {together} THEN
        RETURN true;
    END IF;{broken}
    RETURN true;
END;
"""


UNCHANGED_SPAN = "tstzrange(created_at, greatest(created_at, status_changed_at), '[)')"
"""From a job's registration to the last change of its status: a moment in it is one at
which the job existed and its status was not yet the one it has now. A row whose status
changed before its registration by the clock (a clock stepped back) has an empty span:
the expression must never raise, or it would refuse the row and the append writing it."""

job_status = Table(
    "job_status",
    metadata,
    Column("job_id", JOB_ID, primary_key=True),
    Column("status", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("status_changed_at", DateTime(timezone=True), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("auto_retry", Boolean, nullable=False),
    Column("spec", JSONB),
    Column("attempt", Integer, nullable=False),
    Column("run_token_sha256", Text),
    Column("queued_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("worker_id", Text),
    Column("worker_host", Text),
    Column("worker_pid", Integer),
    Column("worker_pid_started_at", Double),
    Column("worker_boot_id", Text),
    Column("failure_reason", Text),
    Column("checkpoint_path", Text),
    Column("checkpoint_step", BigInteger),
    Column("resume_from", Text),
    Column("result", JSONB),
    CheckConstraint(JOB_STATUS_RULES_CHECK, name="rules_hold"),
    Index("ix_job_status_status_created_at", "status", "created_at", "job_id"),
    Index("ix_job_status_created_at", "created_at", "job_id"),
    Index("ix_job_status_status_status_changed_at", "status", "status_changed_at"),
    # the jobs whose status at a past moment is not their status now (the ledger as of then)
    Index("ix_job_status_unchanged_span", text(UNCHANGED_SPAN), postgresql_using="spgist"),
    Index(
        "ix_job_status_queue",
        text("priority DESC"),
        "queued_at",
        "job_id",
        postgresql_where=text(f"status = '{JobStatus.QUEUED}'"),
    ),
    # the health view's open runs: those started longest ago, and those on one host
    Index(
        "ix_job_status_active_started_at",
        "started_at",
        postgresql_where=text(f"status IN ({ACTIVE_RUN_IN})"),
    ),
    # the reconciler's batches of open runs, by id
    Index(
        "ix_job_status_active_job_id",
        "job_id",
        "attempt",
        postgresql_where=text(f"status IN ({ACTIVE_RUN_IN})"),
    ),
    Index(
        "ix_job_status_active_host",
        "worker_host",
        "started_at",
        postgresql_where=text(f"status IN ({ACTIVE_RUN_IN})"),
    ),
)

job_leases = Table(
    "job_leases",
    metadata,
    Column("job_id", JOB_ID, primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("run_token_sha256", Text, nullable=False),
    Column("worker_id", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("boot_id", Text),
    Column("pid", Integer),
    Column("pid_started_at", Double),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("heartbeat_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("run_token", Text),
    Index("ix_job_leases_expires_at", "expires_at"),
)
"""Liveness of running attempts: one row per job, updated in place by heartbeats.

Not part of the log (heartbeats would bloat it) and not needed to rebuild
anything: a lease only says whether the worker of the current attempt is
still alive. `heartbeat_at` is NULL until the first heartbeat.

`run_token_sha256` fences heartbeats. `run_token` is the token itself, kept only
for a start made with an idempotency key, so that a retry of that start can be
answered with it while the run is open; the API never shows this table, and the
row goes when the run's lease is pruned or taken over by the next attempt."""

projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("name", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("tx_id", Xid8, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column(
        "updated_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=text("now()"),
    ),
)
"""How far each projection has read the log (the feed cursor), and which
version of its code built it."""

unreadable_events = Table(
    "unreadable_events",
    metadata,
    Column("job_id", JOB_ID, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("type", Text, nullable=False),
    Column("problem", Text, nullable=False),
    Column("found_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)
"""Events of the log this code could not read or apply, each the first time a
reader met it: the feed, a history, catch-up, a rebuild or verify. The event
itself stays in the log and in the feed; this register is what the health view
and `/metrics` count and what an operator looks up."""

audit_chain = Table(
    "audit_chain",
    metadata,
    Column("after_tx_id", Xid8, nullable=False),
    Column("after_position", BigInteger, nullable=False),
    Column("tx_id", Xid8, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("positions", ARRAY(BigInteger), nullable=False),
    Column("links", LargeBinary, nullable=False),
    Column("chained_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("tx_id", "position"),
    # one block continues each place of the feed: two writers cannot fork the chain
    UniqueConstraint("after_tx_id", "after_position"),
    CheckConstraint(
        "cardinality(positions) >= 1 AND octet_length(links) = 32 * cardinality(positions)"
        " AND events >= cardinality(positions)",
        name="one_link_per_event",
    ),
)
"""The log's hash chain (`projections.audit_chain`), a block per stretch of the feed read at
once: the feed cursor the block continues from (`after_*`) and the one after its last event,
how many events are chained up to its end, and each event's position and link (32 bytes of
SHA-256 each, in feed order). The service may add blocks, never change one."""

JOB_STATUS_COLUMNS: tuple[str, ...] = tuple(str(column.name) for column in job_status.columns)
