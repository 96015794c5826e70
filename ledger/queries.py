"""Every SQL statement the store runs, beside one another and named for what they do.

Statements are plain psycopg SQL (`%(name)s` placeholders): the store runs
them on the driver connection, where they are prepared after a few uses.
"""

import functools

from ledger.events import JobStarted
from ledger.schema import ACTIVE_RUN_IN, JOB_STATUS_COLUMNS
from ledger.state import TIMESTAMP_FIELDS, WORKER_FIELDS
from ledger.statuses import JobStatus

SNAPSHOT_XMIN = "pg_snapshot_xmin(pg_current_snapshot())"
"""Every transaction below this id has ended: the feed's horizon."""

FEED_HORIZON = f"SELECT {SNAPSHOT_XMIN}::text"

FEED_HORIZON_CONDITION = f"e.tx_id < {SNAPSHOT_XMIN}"
"""Event `e` is in the feed: its transaction ended, and so did every earlier one."""

LEASE_PERIOD = "make_interval(secs => %(lease_seconds)s)"
"""How long a run stays alive without a heartbeat, as a SQL interval."""

STATUS_SELECT = ", ".join(f"s.{column}" for column in JOB_STATUS_COLUMNS)

_LEFT_OUT_OF_LISTS = frozenset({"spec", "result"})
LISTED_STATUS_SELECT = ", ".join(
    f"NULL::jsonb AS {column}" if column in _LEFT_OUT_OF_LISTS else f"s.{column}"
    for column in JOB_STATUS_COLUMNS
)
"""`STATUS_SELECT` without a job's spec and result, which can be large: a list of jobs
carries neither (the job's own view does)."""
EVENT_SELECT = (
    "e.position, e.job_id, e.seq, e.type, e.payload, e.actor, e.reason, e.attempt, "
    "e.idempotency_key, e.correlation_id, e.occurred_at, e.recorded_at, e.tx_id::text"
)


def _projected_value(column: str) -> str:
    # A timestamp set by this very append is sent as the APPEND_TIME marker and
    # written as now(): the transaction's clock, the same that fills recorded_at.
    if column in TIMESTAMP_FIELDS:
        return f"CASE WHEN r.{column} = %(append_time)s::timestamptz THEN now() ELSE r.{column} END"
    return f"r.{column}"


LOAD_STATE = f"SELECT {STATUS_SELECT} FROM job_status s WHERE s.job_id = %(job_id)s"

LOAD_STATE_AND_KEY = f"""
    SELECT {STATUS_SELECT}, k.tx_id::text AS key_tx_id, k.command_sha256 AS key_command_sha256
    FROM (SELECT 1) AS one
    LEFT JOIN job_status s ON s.job_id = %(job_id)s
    LEFT JOIN job_events k ON k.job_id = %(job_id)s AND k.idempotency_key = %(idempotency_key)s
"""
"""The job's state and, when the idempotency key was used before, that append's transaction
and the digest of the command it was used with."""

EVENTS_OF_TRANSACTION = f"""
    SELECT {EVENT_SELECT} FROM job_events e
    WHERE e.job_id = %(job_id)s AND e.tx_id = %(tx_id)s::xid8
    ORDER BY e.seq
"""

_INSERT_EVENTS = """
        INSERT INTO job_events (
            job_id, seq, type, payload, actor, reason, attempt,
            idempotency_key, command_sha256, correlation_id, occurred_at
        )"""
_RETURNING = "RETURNING position, seq, recorded_at, tx_id::text AS tx_id"

_APPENDED = f"""
    WITH appended AS ({_INSERT_EVENTS}
        SELECT %(job_id)s, e.seq, e.type, e.payload, %(actor)s, e.reason, e.attempt,
               e.idempotency_key, e.command_sha256, %(correlation_id)s,
               %(occurred_at)s::timestamptz
        FROM jsonb_to_recordset(%(events)s::jsonb) AS e(
            seq int, type text, payload jsonb, reason text, attempt int,
            idempotency_key text, command_sha256 text
        )
        {_RETURNING}
    )"""
"""The job's new events, from one JSON document (`events`): the first part of an append."""

_APPENDED_ONE = f"""
    WITH appended AS ({_INSERT_EVENTS}
        VALUES (
            %(job_id)s, %(seq)s, %(type)s, %(payload)s::jsonb, %(actor)s, %(reason)s,
            %(attempt)s, %(idempotency_key)s, %(command_sha256)s, %(correlation_id)s,
            %(occurred_at)s::timestamptz
        )
        {_RETURNING}
    )"""
"""`_APPENDED` of a single event, from a parameter per column: most appends are one event,
and a row of values costs the server less than a JSON document made into rows."""


def _appended(one_event: bool) -> str:
    return _APPENDED_ONE if one_event else _APPENDED


_ROW_WRITTEN_WHOLE = f"""
        INSERT INTO job_status ({", ".join(JOB_STATUS_COLUMNS)})
        SELECT {", ".join(_projected_value(column) for column in JOB_STATUS_COLUMNS)}
        FROM jsonb_populate_record(NULL::job_status, %(state)s::jsonb) AS r
        ON CONFLICT (job_id) DO UPDATE SET {
    ", ".join(f"{column} = EXCLUDED.{column}" for column in JOB_STATUS_COLUMNS[1:])
}"""
"""The job's projected row written whole from one JSON document (`state`)."""


def _appended_rows(where: str = "true") -> str:
    """The appended events' positions and times, in order: what an append answers."""
    return f" SELECT position, seq, recorded_at, tx_id FROM appended WHERE {where} ORDER BY seq"


@functools.cache
def append_events_alone(one_event: bool) -> str:
    """`append_events` without the job's row: the events alone. The ledger never appends
    so; `bench.floor` measures what the row costs against it."""
    return f"{_appended(one_event)} {_appended_rows()}"


@functools.cache
def append_events(one_event: bool) -> str:
    """Append a job's new events and write its projected state: one statement, one
    transaction (`one_event`: the events are one, sent as `_APPENDED_ONE` takes it).

    The unique `(job_id, seq)` makes a concurrent writer of the same version fail."""
    return f"{_appended(one_event)}, projected AS ({_ROW_WRITTEN_WHOLE}) {_appended_rows()}"


_ROW_UPDATED_OR_REFUSED = """CASE WHEN EXISTS (SELECT FROM updated) THEN true
    ELSE job_status_not_at_version(%(job_id)s, %(expected_version)s) END"""
"""True once `updated` changed the row; otherwise the whole statement is refused."""


@functools.cache
def append_to_row(
    set_columns: tuple[str, ...], now_columns: tuple[str, ...], one_event: bool
) -> str:
    """`append_events` for a job whose row exists: the row is updated in place, in the
    columns the append changes only — `set_columns` to parameters named `new_<column>`,
    `now_columns` to the append's time. No document of the whole state is sent or
    parsed, so the cost does not grow with the job's spec, and an update that touches no
    indexed column stays on its page (a HOT update).

    The row must hold the version the append was decided on (`expected_version`); when
    it does not (a projection being repaired), `job_status_not_at_version` refuses the
    whole statement (`ROW_NOT_AT_VERSION`) and nothing is written."""
    changes = [f"{column} = %(new_{column})s" for column in set_columns]
    changes += [f"{column} = now()" for column in now_columns]
    return f"""{_appended(one_event)}, updated AS (
        UPDATE job_status SET {", ".join(changes)}
        WHERE job_id = %(job_id)s AND version = %(expected_version)s
        RETURNING 1
    ) {_appended_rows(_ROW_UPDATED_OR_REFUSED)}"""


ROW_NOT_AT_VERSION = "job_status_at_decided_version"
"""The constraint named when an in-place append finds the job's row at another version."""

REGISTER_MANY = f"""
    WITH appended AS (
        INSERT INTO job_events (
            job_id, seq, type, payload, actor, reason, attempt,
            idempotency_key, command_sha256, correlation_id, occurred_at
        )
        SELECT e.job_id, e.seq, e.type, e.payload, e.actor, e.reason, e.attempt,
               e.idempotency_key, e.command_sha256, e.correlation_id,
               %(occurred_at)s::timestamptz
        FROM ROWS FROM (jsonb_to_recordset(%(events)s::jsonb) AS (
            job_id text, seq int, type text, payload jsonb, reason text, attempt int,
            idempotency_key text, command_sha256 text, actor text, correlation_id text
        )) WITH ORDINALITY AS e(
            job_id, seq, type, payload, reason, attempt, idempotency_key, command_sha256,
            actor, correlation_id, ord
        )
        ORDER BY e.ord
        ON CONFLICT DO NOTHING
        RETURNING job_id, position, seq, recorded_at, tx_id::text AS tx_id
    ), projected AS (
        INSERT INTO job_status ({", ".join(JOB_STATUS_COLUMNS)})
        SELECT {", ".join(_projected_value(column) for column in JOB_STATUS_COLUMNS)}
        FROM jsonb_populate_recordset(NULL::job_status, %(states)s::jsonb) AS r
        JOIN appended a ON a.job_id = r.job_id
    )
    SELECT job_id, position, seq, recorded_at, tx_id FROM appended
"""
"""Register many new jobs in one statement: each job's first event and its row. A job
whose first event the log refuses (it exists: the unique `(job_id, seq)`) is left out,
event and row alike; the answer names the jobs registered."""

REGISTRATIONS_FOUND = f"""
    SELECT {STATUS_SELECT}, i.idempotency_key, k.command_sha256 AS key_command_sha256,
           k.seq AS key_seq
    FROM unnest(%(job_ids)s::text[], %(keys)s::text[]) AS i(job_id, idempotency_key)
    JOIN job_status s ON s.job_id = i.job_id
    LEFT JOIN job_events k ON k.job_id = i.job_id AND k.idempotency_key = i.idempotency_key
"""
"""The jobs a registration of many found already there, with the event each one's
idempotency key was first used on (its seq and command digest), if any."""

JOB_HISTORY = f"SELECT {EVENT_SELECT} FROM job_events e WHERE e.job_id = %(job_id)s ORDER BY e.seq"

JOB_HISTORY_UNTIL = f"""
    SELECT {EVENT_SELECT} FROM job_events e
    WHERE e.job_id = %(job_id)s AND e.recorded_at <= %(until)s
    ORDER BY e.seq
"""
"""A job's events recorded at or before a moment."""

_FEED = f"""
    FROM job_events e
    WHERE (e.tx_id, e.position) > (%(tx_id)s::xid8, %(position)s)
      AND {FEED_HORIZON_CONDITION}
    ORDER BY e.tx_id, e.position
    LIMIT %(limit)s
"""

READ_FEED = f"SELECT {EVENT_SELECT} {_FEED}"
"""The global feed after a cursor: only events of transactions older than every
transaction still running, in (transaction, position) order, so an event that
commits late is never skipped."""

_SPEC_LEFT_OUT = "CASE WHEN e.payload ? 'spec' THEN e.payload - 'spec' ELSE e.payload END"
EVENT_SELECT_WITHOUT_SPECS = (
    f"{EVENT_SELECT.replace('e.payload', _SPEC_LEFT_OUT)}, octet_length((e.payload->'spec')::text)"
)
"""`EVENT_SELECT` with a registration's spec left out of its payload, and the spec's size
(NULL for any other event) as one more column."""

READ_FEED_WITHOUT_SPECS = f"SELECT {EVENT_SELECT_WITHOUT_SPECS} {_FEED}"
"""`READ_FEED` for readers who are shown the size of a registration's spec, not the spec:
the database leaves it out, so a page of large specs costs no memory here."""


def jobs_newest_first(*, by_status: bool, after_cursor: bool, search: str | None) -> str:
    """A page of jobs, newest first, keyset-paged on (created_at, job_id).

    One statement per combination of filters, so each is planned on its own
    index: `(created_at, job_id)` or `(status, created_at, job_id)`, read backwards.
    A search of `SUBSTRING_SEARCH_MIN` characters or more finds its page among the
    registrations first (`newest_matching_registrations`).
    """
    where = ["TRUE"]
    if by_status:
        where.append("s.status = %(status)s")
    if after_cursor:
        where.append("(s.created_at, s.job_id) < (%(created_at)s, %(job_id)s)")
    if search and not by_status and len(search) >= SUBSTRING_SEARCH_MIN:
        registrations = newest_matching_registrations(after_cursor=after_cursor)
        where.append(f"s.job_id IN ({registrations})")
    elif search:
        where.append(matching_ids(search))
    return f"""
        SELECT {LISTED_STATUS_SELECT} FROM job_status s
        WHERE {" AND ".join(where)}
        ORDER BY s.created_at DESC, s.job_id DESC
        LIMIT %(limit)s
    """


SUBSTRING_SEARCH_MIN = 3
"""A search this long or longer matches ids containing it (the trigram index serves it);
a shorter one matches ids starting with it (the primary key's index serves that)."""

FEW_MATCHES_PER_ROW = 3
"""A search matching fewer ids than this many for each row of its page (153 for a page of
50, 1,503 for one of 500) reads them all and keeps the newest; one matching as many or
more reads its page from the newest registrations in order (see
`newest_matching_registrations`)."""

SEARCH_WINDOW = 20_000
"""How many of the newest registrations a search matching many ids reads in order, before
(if it found less than a page there) it reads every match through the trigram index."""


def newest_matching_registrations(*, after_cursor: bool) -> str:
    """The ids of the newest `%(limit)s` registrations (after the cursor) whose id matches
    `%(pattern)s`, before any job's row is read: a job's created_at is its registration's
    recorded_at.

    It first reads up to `FEW_MATCHES_PER_ROW` matches a row, through the trigram index
    as the planner mostly chooses, each on a page of the log of its own (about 1.5 µs
    cached, 10 µs from the disk). When it found fewer, that is every match, and it keeps
    the newest of them. A search matching as many or more would read
    every match that way to keep a page of them: it reads the newest `SEARCH_WINDOW`
    registrations in order instead, from `ix_job_events_registered_at` (the index alone,
    no row, about 0.2 µs an entry), checking each id, and stops at a page. A search
    matching one id in 400 or more finds its page there, whatever the ledger's size; only
    when the window holds less than a page does it read every match through the trigram
    index after all. Which way is taken is decided by the statement itself, from what it
    read, not by the counts (`bounded_status_counts`), which stop at 101 matches: on a
    ledger of 50,000 jobs a three-character search matches about 100 ids, too few for the
    window to hold a page of them."""
    after = "AND (e.recorded_at, e.job_id) < (%(created_at)s, %(job_id)s)" if after_cursor else ""
    newest_first = "ORDER BY e.recorded_at DESC, e.job_id DESC"
    every_match = f"""
        SELECT e.job_id, e.recorded_at FROM job_events e
        WHERE e.seq = 1 AND e.job_id LIKE %(pattern)s {after}"""
    few = f"{FEW_MATCHES_PER_ROW} * %(limit)s"
    many = f"(SELECT count(*) FROM first_matches) >= {few}"  # more than were read first
    return f"""
        WITH first_matches AS MATERIALIZED ({every_match} LIMIT {few}),
        in_window AS MATERIALIZED (
            SELECT e.job_id FROM (
                SELECT e.job_id, e.recorded_at FROM job_events e
                WHERE e.seq = 1 {after} AND {many}
                {newest_first} LIMIT {SEARCH_WINDOW}
            ) e
            WHERE e.job_id LIKE %(pattern)s {newest_first} LIMIT %(limit)s
        )
        (SELECT e.job_id FROM first_matches e WHERE NOT {many} {newest_first} LIMIT %(limit)s)
        UNION ALL SELECT job_id FROM in_window
        UNION ALL (
            SELECT e.job_id FROM ({every_match}) e
            WHERE {many} AND (SELECT count(*) FROM in_window) < %(limit)s
            {newest_first} LIMIT %(limit)s
        )"""


def matching_ids(search: str) -> str:
    """Job `s`'s id matches `search` (as `search_pattern` of it): three characters or more
    through the trigram index on the log's registrations (insert-only: updating a job's
    row costs that index nothing), fewer as a prefix on the primary key."""
    if len(search) >= SUBSTRING_SEARCH_MIN:
        return (
            "s.job_id IN (SELECT e.job_id FROM job_events e "
            "WHERE e.seq = 1 AND e.job_id LIKE %(pattern)s)"
        )
    return "s.job_id LIKE %(pattern)s"


def search_pattern(search: str) -> str:
    """The LIKE pattern of a search of job ids (see `SUBSTRING_SEARCH_MIN`)."""
    literal = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{literal}%" if len(search) >= SUBSTRING_SEARCH_MIN else f"{literal}%"


EXACT_COUNT = 10_000
"""Counts of jobs are exact up to this; a larger one is an estimate."""

EXACT_SEARCH_COUNT = 100
"""Counts of the jobs a search matches are exact up to this many matches in all. Each match
counted is a row of the log and one of the projection, wherever they are: a bound near a
page's size keeps a search's counts as cheap as its page."""


def bounded_status_counts(*, search: str | None) -> str:
    """Per status: how many jobs, counted up to `EXACT_COUNT` + 1 on the status's index:
    a bounded read whatever the ledger's size. With a search, the jobs whose id matches,
    up to `EXACT_SEARCH_COUNT` + 1 in all, read once: past the bound each count is of
    the first matches only."""
    if search:
        return f"""
            SELECT matched.status, count(*) FROM (
                SELECT s.status FROM job_status s WHERE {matching_ids(search)}
                LIMIT {EXACT_SEARCH_COUNT + 1}
            ) matched
            GROUP BY matched.status
        """
    return f"""
        SELECT st.status, (
            SELECT count(*) FROM (
                SELECT 1 FROM job_status s WHERE s.status = st.status
                LIMIT {EXACT_COUNT + 1}
            ) bounded
        )
        FROM unnest(%(statuses)s::text[]) AS st(status)
    """


_STATUS_SHARES = """
    FROM pg_stats st
    JOIN pg_class c ON c.oid = 'job_status'::regclass
    CROSS JOIN unnest(st.most_common_vals::text::text[], st.most_common_freqs) AS v(status, share)
    WHERE st.schemaname = current_schema() AND st.tablename = 'job_status'
      AND st.attname = 'status'
"""
_ESTIMATE = "(v.share * greatest(c.reltuples, 0))::bigint"

STATUS_ESTIMATES = f"SELECT v.status, {_ESTIMATE} {_STATUS_SHARES}"
"""The planner's estimate of the jobs in each status, from the statistics ANALYZE keeps
(autovacuum refreshes them as the table changes): no scan."""


def status_estimate(status: JobStatus) -> str:
    """`STATUS_ESTIMATES` of one status, as a scalar subquery (NULL without statistics)."""
    return f"(SELECT {_ESTIMATE} {_STATUS_SHARES} AND v.status = '{status}')"


QUEUE_ORDER = "s.priority DESC, s.queued_at, s.job_id"
"""The order claims take queued jobs in: higher priority first, then the longest waiting
(the partial index `ix_job_status_queue` holds it)."""

EXACT_QUEUE_POSITIONS = 1_000
"""Queue positions are exact up to this; a job further back is "more than this" ahead."""

QUEUE_FRONT = f"""
    SELECT s.job_id, row_number() OVER (ORDER BY {QUEUE_ORDER}) AS position
    FROM (SELECT job_id, priority, queued_at FROM job_status
          WHERE status = '{JobStatus.QUEUED}'
          ORDER BY priority DESC, queued_at, job_id
          LIMIT {EXACT_QUEUE_POSITIONS}) s
"""
"""The front of the queue in `QUEUE_ORDER`, with each job's position (1 = next): one
bounded read of the queue's index, whatever the queue's depth and however many jobs
are asked about (the tests claim a queue and compare)."""

QUEUE_POSITION = f"CASE WHEN s.status = '{JobStatus.QUEUED}' THEN coalesce(front.position, 0) END"
"""Where job `s` (joined to `QUEUE_FRONT` as `front`) stands: its position, 0 when it is
behind the front, NULL when it is not queued."""


_STARTED_WORKER = ", ".join(f"{name} = %({name})s" for name in WORKER_FIELDS.values())

_LEASE_RENEWED = ", ".join(
    f"{column} = EXCLUDED.{column}"
    for column in (
        "attempt",
        "run_token_sha256",
        "run_token",
        *WORKER_FIELDS,
        "started_at",
        "heartbeat_at",
        "expires_at",
    )
)
"""A job's lease row taken over by its new attempt: every column but the job's id."""


_CHOSEN_COLUMNS = "s.job_id, s.version, s.attempt, s.resume_from"

KEYED_START_COLUMNS = ("run_token", "earlier_attempt", "earlier_command_sha256")
"""The columns after a start's row and its lease's expiry: the token a keyed start's
lease keeps, the attempt the key started and the digest of the request it came with
(NULL for a start made now)."""

START_ROW_TAIL = 1 + len(KEYED_START_COLUMNS)
"""How many columns follow the job's row in a start's answer: the lease's expiry, then
the `KEYED_START_COLUMNS`."""


START_KEY_LOCK = "hashtextextended(length(%(actor)s) || ':' || %(actor)s || %(idempotency_key)s, 0)"
"""The advisory lock of one caller's idempotency key for starts."""

_STARTED_BY_KEY = f"""e.actor = %(actor)s AND e.idempotency_key = %(idempotency_key)s
          AND e.type = '{JobStarted.TYPE}' AND e.idempotency_key IS NOT NULL"""
"""The condition on an event `e` that it is the caller's start made with this key."""

START_KEY_USED = f"SELECT EXISTS (SELECT 1 FROM job_events e WHERE {_STARTED_BY_KEY})"
"""Whether the caller has started a run with this key."""


def _start_queued_job(choose: str, *, keyed: bool) -> str:
    """Lock the queued job `choose` picks, append its `job_started`, project the start and
    open the attempt's lease: one statement, so one round trip and one transaction.

    `keyed`: the start comes with an idempotency key. The caller's start made earlier
    with that key (`earlier`) is answered instead, and no job is chosen then; the event
    records the key and the digest of the request (the unique index on caller and key
    refuses a second start by the same key). No job is chosen either unless the
    statement gets the key's advisory lock (`START_KEY_LOCK`) at once (`gate`): while
    another start by the key is in flight, it answers one row of NULLs (busy), and its
    caller runs it again once the lock is theirs.

    The start's rules (`decide` and `evolve` for `StartJob` on a queued job) written
    for the database: only a queued job starts; the event's payload is `JobStarted`'s
    (`payload`, built in Python), resuming from where the job says; the attempt counts
    up; the run token's digest, worker and start time are set, the finish cleared. The
    lease copies the run from the projected row (and keeps the token itself only for a
    start made with an idempotency key: `run_token`, NULL otherwise). A property test
    compares every start and every refusal with `decide` and `evolve` over random histories.
    """
    earlier = f"""earlier AS (
        SELECT e.job_id, e.attempt, e.command_sha256 FROM job_events e
        WHERE {_STARTED_BY_KEY}
    ),"""
    answered_earlier = f"""
    UNION ALL
    SELECT {STATUS_SELECT}, l.expires_at, l.run_token, e.attempt, e.command_sha256
    FROM earlier e
    JOIN job_status s ON s.job_id = e.job_id
    LEFT JOIN job_leases l ON l.job_id = e.job_id AND l.attempt = e.attempt
    UNION ALL
    SELECT {", ".join(["NULL"] * (len(JOB_STATUS_COLUMNS) + START_ROW_TAIL))}
    FROM gate WHERE NOT gate.got AND NOT EXISTS (SELECT 1 FROM earlier)"""
    gate = f"gate AS MATERIALIZED (SELECT pg_try_advisory_xact_lock({START_KEY_LOCK}) AS got),"
    unless_earlier = (
        "AND NOT EXISTS (SELECT 1 FROM earlier) AND (SELECT got FROM gate)" if keyed else ""
    )
    return f"""
    WITH {gate + earlier if keyed else ""}
    chosen AS ({choose.format(unless_earlier=unless_earlier)}),
    appended AS (
        INSERT INTO job_events (
            job_id, seq, type, payload, actor, attempt, idempotency_key, command_sha256,
            correlation_id
        )
        SELECT c.job_id, c.version + 1, '{JobStarted.TYPE}',
               %(payload)s::jsonb || jsonb_build_object('resume_from', c.resume_from),
               %(actor)s, c.attempt + 1, %(idempotency_key)s, %(command_sha256)s,
               %(correlation_id)s
        FROM chosen c
        RETURNING job_id, seq, recorded_at
    ), started AS (
        UPDATE job_status s SET
            status = '{JobStatus.RUNNING}', version = a.seq, updated_at = a.recorded_at,
            status_changed_at = a.recorded_at, attempt = s.attempt + 1,
            run_token_sha256 = %(run_token_sha256)s, started_at = a.recorded_at, finished_at = NULL,
            {_STARTED_WORKER}
        FROM appended a
        WHERE s.job_id = a.job_id
        RETURNING {STATUS_SELECT}
    ), leased AS (
        INSERT INTO job_leases (
            job_id, attempt, run_token_sha256, run_token, {", ".join(WORKER_FIELDS)},
            started_at, heartbeat_at, expires_at
        )
        SELECT s.job_id, s.attempt, s.run_token_sha256, %(keyed_run_token)s,
               {", ".join(f"s.{column}" for column in WORKER_FIELDS.values())},
               now(), NULL, now() + {LEASE_PERIOD}
        FROM started s
        ON CONFLICT (job_id) DO UPDATE SET {_LEASE_RENEWED}
        RETURNING expires_at
    )
    SELECT started.*, (SELECT expires_at FROM leased), NULL::text, NULL::int, NULL::text
    FROM started{answered_earlier if keyed else ""}"""


_NEXT_QUEUED = f"""SELECT {_CHOSEN_COLUMNS} FROM job_status s
       WHERE s.status = '{JobStatus.QUEUED}' {{unless_earlier}}
       ORDER BY {QUEUE_ORDER}
       LIMIT 1
       FOR UPDATE SKIP LOCKED"""

_THIS_QUEUED = f"""SELECT {_CHOSEN_COLUMNS} FROM job_status s
       WHERE s.job_id = %(job_id)s AND s.status = '{JobStatus.QUEUED}' {{unless_earlier}}
       FOR UPDATE"""

CLAIM_NEXT_QUEUED_JOB = _start_queued_job(_NEXT_QUEUED, keyed=False)
"""Start the next queued job: higher priority first, then the longest waiting; a job
another claim has locked is skipped, never waited for."""

CLAIM_NEXT_QUEUED_JOB_BY_KEY = _start_queued_job(_NEXT_QUEUED, keyed=True)
"""Answer the caller's start made earlier with this key, else start the next queued job."""

START_QUEUED_JOB = _start_queued_job(_THIS_QUEUED, keyed=False)
"""Start this job, if it is queued."""

START_QUEUED_JOB_BY_KEY = _start_queued_job(_THIS_QUEUED, keyed=True)
"""Answer the caller's start made earlier with this key, else start this job if queued."""

LOCK_START_KEY = f"SELECT pg_advisory_xact_lock({START_KEY_LOCK})"
"""Serialise the starts of one caller's key until the transaction ends: a retry racing
the first try waits for it, and its start statement (a later snapshot) then sees it."""


def _renew_leases(wanted: str) -> str:
    """Renew the leases of the `wanted` runs (rows of job_id, attempt, run_token_sha256)."""
    return f"""
    WITH wanted AS ({wanted}), held AS (
        SELECT l.job_id FROM job_leases l
        JOIN wanted w USING (job_id, attempt, run_token_sha256)
        JOIN job_status s
          ON s.job_id = l.job_id AND s.attempt = l.attempt AND s.status IN ({ACTIVE_RUN_IN})
        ORDER BY l.job_id
        FOR NO KEY UPDATE OF l
    )
    UPDATE job_leases l
    SET heartbeat_at = now(), expires_at = now() + {LEASE_PERIOD}
    WHERE l.job_id IN (SELECT job_id FROM held)
    RETURNING l.job_id, l.attempt, l.run_token_sha256, l.expires_at
"""


RENEW_LEASES = _renew_leases(
    "SELECT * FROM unnest(%(job_ids)s::text[], %(attempts)s::int[], %(digests)s::text[])"
    " AS w(job_id, attempt, run_token_sha256)"
)
"""Renews the leases of the runs named (`job_ids`, `attempts`, `digests`, in step) that
are their jobs' current, open attempts with the right token (by its digest: the lease
keeps no token it could be read from), in one statement. The leases are locked in job id
order, so two statements that share runs never deadlock."""

RENEW_ONE_LEASE = _renew_leases(
    "SELECT %(job_id)s::text AS job_id, %(attempt)s::int AS attempt,"
    " %(digest)s::text AS run_token_sha256"
)
"""`RENEW_LEASES` of one run (`job_id`, `attempt`, `digest`): the driver sends three values
instead of three arrays, which it builds at several times the cost."""

LOAD_STATES = f"SELECT {STATUS_SELECT} FROM job_status s WHERE s.job_id = ANY(%(job_ids)s)"

LEASE_UNLEASED_RUNS = f"""
    WITH scanned AS (
        SELECT s.job_id, s.attempt FROM job_status s
        WHERE s.status IN ({ACTIVE_RUN_IN}) AND s.job_id > %(after)s
        ORDER BY s.job_id
        LIMIT %(batch)s
    ), unleased AS (
        SELECT c.job_id FROM scanned c
        WHERE NOT EXISTS (SELECT 1 FROM job_leases l
                          WHERE l.job_id = c.job_id AND l.attempt = c.attempt OFFSET 0)
    ), leased AS (
        INSERT INTO job_leases (
            job_id, attempt, run_token_sha256, {", ".join(WORKER_FIELDS)},
            started_at, heartbeat_at, expires_at
        )
        SELECT s.job_id, s.attempt, s.run_token_sha256,
               {", ".join(f"s.{column}" for column in WORKER_FIELDS.values())},
               s.started_at, NULL, s.started_at + {LEASE_PERIOD}
        FROM job_status s
        WHERE s.job_id = ANY (ARRAY(SELECT job_id FROM unleased))
          AND s.status IN ({ACTIVE_RUN_IN})
        ON CONFLICT (job_id) DO UPDATE SET
            attempt = EXCLUDED.attempt, run_token_sha256 = EXCLUDED.run_token_sha256,
            run_token = NULL,
            {", ".join(f"{name} = EXCLUDED.{name}" for name in WORKER_FIELDS)},
            started_at = EXCLUDED.started_at, heartbeat_at = NULL,
            expires_at = EXCLUDED.expires_at
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM leased), (SELECT max(job_id) FROM scanned)
"""
"""Give each of the next `batch` open runs after job `after` that holds no lease (its
projection rebuilt from a log written before leases, or by hand) the lease a claim gives,
counted from its start; say how many, and the last job looked at (NULL: none was left).
Batch after batch, every open run's liveness is then in `job_leases`, and the health view
reads only leases that lapsed. The open runs are read from `ix_job_status_active_job_id`
alone, each looked up in the leases (OFFSET 0 keeps the look-ups from being planned as a
join of every lease); only the runs without a lease are read in full."""

PRUNE_LEASES = f"""
    WITH scanned AS (
        SELECT l.job_id FROM job_leases l
        WHERE l.job_id > %(after)s
        ORDER BY l.job_id
        LIMIT %(batch)s
    ), pruned AS (
        DELETE FROM job_leases l
        WHERE l.job_id = ANY (ARRAY(SELECT job_id FROM scanned))
          AND NOT EXISTS (
            SELECT 1 FROM job_status s
            WHERE s.job_id = l.job_id AND s.attempt = l.attempt
              AND s.status IN ({ACTIVE_RUN_IN})
            OFFSET 0
          )
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM pruned), (SELECT max(job_id) FROM scanned)
"""
"""Forget the leases of closed attempts among the next `batch` leases after job `after`:
liveness of runs that no longer run. Says how many, and the last job looked at (NULL:
none was left). Each lease looks its run up by the projection's key."""
