"""PostgreSQL's side of the ledger: its statements beside raw SQL's, with the least Python.

`bench.peers` measures whole paths, Python and all. This one sends statements alone, on
one connection in autocommit, prepared, as `EventStore.append` sends its own; each is
built before the clock starts, except a completion, built from its claim's row by the
ledger's own functions (`state_from_row`, `decide`, `prepare_append`).

Registrations, one at a time:
- raw SQL: `bench.peers`' INSERT of one row (a primary key and a partial queue index);
- the ledger: a new job's append (`ledger.store.prepare_append`): its `job_registered`
  event and its current-status row, in one statement, with every index of the schema;
- the ledger without its secondary indexes: the same statement on a database where only
  the primary keys and the unique indexes are left (no index of the queue, the
  operators' reads or the audits), which is what those indexes cost each write;
- the ledger stripped: the same statement on a database left with the primary keys, the
  unique indexes (the log's `(job_id, seq)` among them) and the queue's index, which
  raw SQL's table has too, and nothing else: no other index, no trigger (the log's
  guard of each event's sequence) and no check (the rules of a job's row). It is about
  the least a log of events with each job's current status in the same transaction
  writes: the bound of any such ledger's rate beside raw SQL's;
- the event alone: the `job_registered` row without the current-status row, with every
  index, which is what the inline projection costs; and the event alone stripped, one
  row with its key and unique indexes, as near raw SQL's one row as a log of events gets.

Lifecycles (enqueue, claim, complete): raw SQL's three statements (`bench.peers`'
INSERT, `SKIP LOCKED` claim and UPDATE) beside the ledger's three (the registration,
`CLAIM_NEXT_QUEUED_JOB` and the completion's append), one at a time; then 8 at once,
each on a connection of its own, where the cores, not the round trips, set the rate:
there the ledger without its secondary indexes, and stripped, runs too. A job's row
changes status at each step, so each of its updates writes a new entry into every index
of the row.

The ratio of the ledger's statements to raw SQL's bounds what any client of the ledger,
in process or over HTTP, can reach.

Each variant writes to a scratch database of its own on one server (`--database-url`,
or an embedded PostgreSQL 18 with `--embedded`), and they take turns chunk by chunk, the
order rotated each chunk, so that the machine's drift weighs on all alike. It prints each
chunk's rates, then each variant's median, its ratio to raw SQL's median and its WAL
bytes per job.

    python -m bench.floor [--embedded] [--chunks 8] [--jobs 500] [--quick]
"""

import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.peer_clients import (
    ACTOR,
    RAW_CLAIM,
    RAW_COMPLETE,
    RAW_ENQUEUE,
    RESULT,
    claimed_or_fail,
    create_raw_schema,
    job_spec,
)
from bench.peers import postgres_server, server_version, wal_lsn
from bench.scratch import benchmark_parser, scratch_database
from bench.threads import BenchError, at_once
from ledger.commands import CompleteJob, RegisterJob, StartJob, WorkerIdentity
from ledger.database import libpq_url
from ledger.decide import decide
from ledger.queries import CLAIM_NEXT_QUEUED_JOB, START_ROW_TAIL, append_events_alone
from ledger.queue import start_params
from ledger.run_tokens import new_run_token
from ledger.store import prepare_append, state_from_row

Connection = psycopg.Connection[Any]
Statement = tuple[str, Any]
Workload = Callable[[Connection, list[str]], Callable[[], None]]
"""Given a connection and the chunk's job ids: build what can be built beforehand, and
return what the clock times."""

SECONDARY_INDEXES_QUERY = """
    SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid IN ('job_events'::regclass, 'job_status'::regclass)
      AND NOT i.indisunique AND NOT i.indisprimary
"""
"""The names of the indexes of the two tables that neither key nor refuse anything: the
queue's, the operators' reads' and the audits'."""

QUEUE_INDEX = "ix_job_status_queue"
"""The index of the queued jobs, in claim order: raw SQL's table has its own."""

GUARDS_QUERY = """
    SELECT format('DROP TRIGGER %I ON %s', tgname, tgrelid::regclass) FROM pg_trigger
    WHERE tgrelid IN ('job_events'::regclass, 'job_status'::regclass) AND NOT tgisinternal
    UNION ALL
    SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname)
    FROM pg_constraint
    WHERE conrelid IN ('job_events'::regclass, 'job_status'::regclass) AND contype = 'c'
"""
"""The statements that drop the two tables' triggers and check constraints."""

WORKER = WorkerIdentity(worker_id="floor", host="bench-host", pid=os.getpid())
AT_ONCE = 8
"""Clients of the lifecycles sent at once."""


def registration(job_id: str) -> Statement:
    events = decide(None, RegisterJob(spec=job_spec(job_id)), job_id=job_id)
    prepared = prepare_append(job_id, None, events, actor=ACTOR)
    return prepared.statement, prepared.params


def send(statements: Callable[[str], Statement]) -> Workload:
    """Each job's statement, all built before the clock starts, then sent one by one."""

    def run(conn: Connection, job_ids: list[str]) -> Callable[[], None]:
        built = [statements(job_id) for job_id in job_ids]

        def timed() -> None:
            for query, params in built:
                conn.execute(query, params, prepare=True)

        return timed

    return run


def raw_insert(job_id: str) -> Statement:
    """Raw SQL's INSERT, its spec already JSON (as the ledger's parameters are)."""
    return RAW_ENQUEUE, (job_id, json_already(job_spec(job_id)))


def json_already(value: Any) -> Jsonb:
    """`value` as a JSONB parameter serialised now, so that sending it costs no more."""
    text = orjson.dumps(value).decode()
    return Jsonb(text, dumps=lambda already: already)


def event_alone(job_id: str) -> Statement:
    return append_events_alone(one_event=True), registration(job_id)[1]


def raw_lifecycles(conn: Connection, job_ids: list[str]) -> Callable[[], None]:
    """Each job enqueued, then a job claimed (the one just enqueued, when alone) and
    completed."""
    built = [raw_insert(job_id) for job_id in job_ids]
    result = json_already(RESULT)

    def claim() -> Any:
        return conn.execute(RAW_CLAIM, (WORKER.worker_id,), prepare=True).fetchone()

    def timed() -> None:
        for query, params in built:
            conn.execute(query, params, prepare=True)
            (claimed,) = claimed_or_fail(claim)
            done = conn.execute(RAW_COMPLETE, (result, claimed), prepare=True)
            assert done.rowcount == 1, f"{claimed}: not completed"

    return timed


def _claim_next(conn: Connection, params: dict[str, Any]) -> Any:
    return conn.execute(CLAIM_NEXT_QUEUED_JOB, params, prepare=True).fetchone()


def ledger_lifecycles(conn: Connection, job_ids: list[str]) -> Callable[[], None]:
    built = [registration(job_id) for job_id in job_ids]
    tokens = [new_run_token() for _ in job_ids]
    claims = [start_params(StartJob(worker=WORKER, run_token=t), actor=ACTOR) for t in tokens]

    def timed() -> None:
        for (query, params), token, claim in zip(built, tokens, claims, strict=True):
            conn.execute(query, params, prepare=True)
            row = claimed_or_fail(partial(_claim_next, conn, claim))
            state = state_from_row(row[:-START_ROW_TAIL])
            complete = CompleteJob(attempt=state.attempt, run_token=token, result=RESULT)
            events = decide(state, complete, job_id=state.job_id)
            done = prepare_append(state.job_id, state, events, actor=ACTOR)
            conn.execute(done.statement, done.params, prepare=True)

    return timed


@dataclass(slots=True)
class Variant:
    """One way of writing jobs, on a database of its own."""

    name: str
    url: str
    workload: Workload
    rates: list[float] = field(default_factory=list)
    wal_bytes: list[float] = field(default_factory=list)

    def run_chunk(self, conns: list[Connection], chunk: int, jobs: int) -> None:
        """Write `jobs` jobs, shared among `conns`, each sending its share from a thread
        of its own; record the rate and the WAL per job."""
        job_ids = [f"f-{chunk}-{i}" for i in range(jobs)]
        timed = [self.workload(conn, job_ids[i :: len(conns)]) for i, conn in enumerate(conns)]
        wal_before = wal_lsn(self.url)
        elapsed = _all_timed(timed)
        self.wal_bytes.append((wal_lsn(self.url) - wal_before) / jobs)
        self.rates.append(jobs / elapsed)


def _all_timed(timed: list[Callable[[], None]]) -> float:
    """Seconds from the start of every `timed` at once (a thread each) to the end of the
    last."""
    clock: list[float] = []
    start = threading.Barrier(len(timed), action=lambda: clock.append(time.perf_counter()))

    def released(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            start.wait()
            work()

        return run

    at_once([released(work) for work in timed])
    return time.perf_counter() - clock[0]


Measured = tuple[int, list[Variant]]
"""A workload's clients at once, and its variants."""


def variants(admin_url: str, stack: ExitStack) -> dict[str, Measured]:
    """Each workload's clients at once and variants, raw SQL first, each on a database
    created now."""

    def ledger_database() -> str:
        return libpq_url(stack.enter_context(scratch_database(admin_url)))

    def raw_database() -> str:
        url = libpq_url(stack.enter_context(scratch_database(admin_url, migrate=False)))
        create_raw_schema(url)
        return url

    def bare_database(*, stripped: bool = False) -> str:
        """Without the secondary indexes; `stripped`: with the queue's index still, and
        without the triggers and checks."""
        url = ledger_database()
        with psycopg.connect(url, autocommit=True) as conn:
            names = [name for (name,) in conn.execute(SECONDARY_INDEXES_QUERY).fetchall()]
            kept = {QUEUE_INDEX} if stripped else set()
            if not kept <= set(names):
                raise BenchError(f"the schema has no index {QUEUE_INDEX} to keep")
            for name in names:
                if name not in kept:
                    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            guards = conn.execute(GUARDS_QUERY).fetchall() if stripped else []
            for (statement,) in guards:
                conn.execute(statement)
        return url

    return {
        "registrations, one at a time": (
            1,
            [
                Variant("raw SQL INSERT", raw_database(), send(raw_insert)),
                Variant("ledger registration", ledger_database(), send(registration)),
                Variant(
                    "ledger registration, no secondary indexes",
                    bare_database(),
                    send(registration),
                ),
                Variant(
                    "ledger registration, stripped",
                    bare_database(stripped=True),
                    send(registration),
                ),
                Variant("ledger event alone", ledger_database(), send(event_alone)),
                Variant(
                    "ledger event alone, stripped", bare_database(stripped=True), send(event_alone)
                ),
            ],
        ),
        "lifecycles, one at a time": (
            1,
            [
                Variant("raw SQL lifecycle", raw_database(), raw_lifecycles),
                Variant("ledger lifecycle", ledger_database(), ledger_lifecycles),
                Variant(
                    "ledger lifecycle, stripped", bare_database(stripped=True), ledger_lifecycles
                ),
            ],
        ),
        f"lifecycles, {AT_ONCE} at once": (
            AT_ONCE,
            [
                Variant("raw SQL lifecycle", raw_database(), raw_lifecycles),
                Variant("ledger lifecycle", ledger_database(), ledger_lifecycles),
                Variant(
                    "ledger lifecycle, no secondary indexes", bare_database(), ledger_lifecycles
                ),
                Variant(
                    "ledger lifecycle, stripped", bare_database(stripped=True), ledger_lifecycles
                ),
            ],
        ),
    }


def measure(measured: list[Variant], clients: int, chunks: int, jobs: int) -> None:
    """Every variant's chunks in turn, after a warm-up chunk each (plans prepared, caches
    filled), each on `clients` connections of its own for this workload; then the table
    of medians."""
    with ExitStack() as stack:
        order = [
            (
                variant,
                [
                    stack.enter_context(psycopg.connect(variant.url, autocommit=True))
                    for _ in range(clients)
                ],
            )
            for variant in measured
        ]
        for variant, conns in order:
            variant.run_chunk(conns, -1, min(jobs, 100))
            variant.rates.clear()
            variant.wal_bytes.clear()
        for chunk in range(chunks):
            for i in range(len(order)):
                variant, conns = order[(i + chunk) % len(order)]
                variant.run_chunk(conns, chunk, jobs)
            rates = ", ".join(f"{v.name} {v.rates[-1]:,.0f}/s" for v in measured)
            print(f"  chunk {chunk + 1}: {rates}")
    raw = statistics.median(measured[0].rates)
    print("| Statements | Median | Ratio to raw | WAL per job |\n|---|---|---|---|")
    for variant in measured:
        rate = statistics.median(variant.rates)
        wal = statistics.median(variant.wal_bytes)
        print(f"| {variant.name} | {rate:,.0f}/s | x{rate / raw:.2f} | {wal:,.0f} B |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__ or "")
    parser.add_argument("--embedded", action="store_true", help="an embedded PostgreSQL 18")
    parser.add_argument("--chunks", type=int, help="turns of every variant (default 8)")
    parser.add_argument("--jobs", type=int, help="jobs per chunk (default 500)")
    parser.add_argument("--quick", action="store_true", help="2 chunks of 200")
    args = parser.parse_args(argv)
    chunks = args.chunks or (2 if args.quick else 8)
    jobs = args.jobs or (200 if args.quick else 500)
    if min(chunks, jobs) < 1:
        parser.error("--chunks and --jobs must be positive")
    with ExitStack() as stack:
        admin_url = stack.enter_context(
            postgres_server(None if args.embedded else args.database_url)
        )
        print(f"{server_version(admin_url)}; {chunks} chunks of {jobs} jobs each")
        for workload, (clients, measured) in variants(admin_url, stack).items():
            print(f"{workload}:")
            measure(measured, clients, chunks, jobs)


if __name__ == "__main__":
    main()
