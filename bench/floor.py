"""PostgreSQL's side of a registration: the ledger's statement beside raw SQL's INSERT.

`bench.peers` measures whole paths, Python and all. This one measures the statements
alone, each built before the clock starts and sent on one connection in autocommit,
prepared, as `EventStore.append` sends its own:

- raw SQL: `bench.peers`' INSERT of one row (a primary key and a partial queue index);
- the ledger: a new job's append (`ledger.store.prepare_append`): its `job_registered`
  event and its current-status row, in one statement, with every index of the schema;
- the ledger without its secondary indexes: the same statement on a database where only
  the primary keys and the unique indexes are left (no index of the queue, the
  operators' reads or the audits), which is what those indexes cost each write;
- the event alone: the `job_registered` row without the current-status row, with every
  index, which is what the inline projection costs.

The ratio of the ledger's statement to raw SQL's bounds what any client of the ledger,
in process or over HTTP, can reach on registrations one at a time.

Each variant writes to a scratch database of its own on one server (`--database-url`,
or an embedded PostgreSQL 18 with `--embedded`), and they take turns chunk by chunk, the order
rotated each chunk, so that the machine's drift weighs on all alike. It prints each
chunk's rates, then each variant's median, its ratio to raw SQL's median and its WAL
bytes per job.

    python -m bench.floor [--embedded] [--chunks 8] [--jobs 500] [--quick]
"""

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.peer_clients import ACTOR, RAW_ENQUEUE, create_raw_schema, job_spec
from bench.peers import postgres_server, server_version, wal_lsn
from bench.scratch import benchmark_parser, scratch_database
from ledger.commands import RegisterJob
from ledger.database import libpq_url
from ledger.decide import decide
from ledger.store import prepare_append

Statement = tuple[str, Any]

EVENT_ALONE = """
    INSERT INTO job_events (
        job_id, seq, type, payload, actor, reason, attempt,
        idempotency_key, command_sha256, correlation_id, occurred_at
    )
    VALUES (
        %(job_id)s, %(seq)s, %(type)s, %(payload)s::jsonb, %(actor)s, %(reason)s,
        %(attempt)s, %(idempotency_key)s, %(command_sha256)s, %(correlation_id)s,
        %(occurred_at)s::timestamptz
    )
    RETURNING position, seq, recorded_at, tx_id::text
"""
"""The ledger's registration without its current-status row."""

SECONDARY_INDEXES = """
    SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE i.indrelid IN ('job_events'::regclass, 'job_status'::regclass)
      AND NOT i.indisunique AND NOT i.indisprimary
"""


def raw_insert(job_id: str) -> Statement:
    return RAW_ENQUEUE, (job_id, Jsonb(job_spec(job_id)))


def registration(job_id: str) -> Statement:
    events = decide(None, RegisterJob(spec=job_spec(job_id)), job_id=job_id)
    prepared = prepare_append(job_id, None, events, actor=ACTOR)
    return prepared.statement, prepared.params


def event_alone(job_id: str) -> Statement:
    return EVENT_ALONE, registration(job_id)[1]


@dataclass(slots=True)
class Variant:
    """One statement, on a database of its own."""

    name: str
    url: str
    statement: Callable[[str], Statement]
    rates: list[float] = field(default_factory=list)
    wal_bytes: list[float] = field(default_factory=list)

    def run_chunk(self, conn: psycopg.Connection[Any], chunk: int, jobs: int) -> None:
        """Send `jobs` statements, built beforehand; record the rate and WAL per job."""
        statements = [self.statement(f"f-{chunk}-{i}") for i in range(jobs)]
        wal_before = wal_lsn(self.url)
        started = time.perf_counter()
        for query, params in statements:
            conn.execute(query, params, prepare=True)
        elapsed = time.perf_counter() - started
        self.wal_bytes.append((wal_lsn(self.url) - wal_before) / jobs)
        self.rates.append(jobs / elapsed)


def variants(admin_url: str, stack: ExitStack) -> list[Variant]:
    def fresh(migrate: bool) -> str:
        return libpq_url(stack.enter_context(scratch_database(admin_url, migrate=migrate)))

    raw_url = fresh(False)
    create_raw_schema(raw_url)
    bare_url = fresh(True)
    with psycopg.connect(bare_url, autocommit=True) as conn:
        for (name,) in conn.execute(SECONDARY_INDEXES).fetchall():
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
    return [
        Variant("raw SQL INSERT", raw_url, raw_insert),
        Variant("ledger registration", fresh(True), registration),
        Variant("ledger registration, no secondary indexes", bare_url, registration),
        Variant("ledger event alone", fresh(True), event_alone),
    ]


def rotated(items: Sequence[Variant], by: int) -> Iterator[Variant]:
    for i in range(len(items)):
        yield items[(i + by) % len(items)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = benchmark_parser(__doc__ or "")
    parser.add_argument("--embedded", action="store_true", help="an embedded PostgreSQL 18")
    parser.add_argument("--chunks", type=int, default=8, help="turns of every variant")
    parser.add_argument("--jobs", type=int, default=500, help="registrations per chunk")
    parser.add_argument("--quick", action="store_true", help="2 chunks of 200")
    args = parser.parse_args(argv)
    chunks, jobs = (2, 200) if args.quick else (args.chunks, args.jobs)
    if min(chunks, jobs) < 1:
        parser.error("--chunks and --jobs must be positive")
    with ExitStack() as stack:
        admin_url = stack.enter_context(
            postgres_server(None if args.embedded else args.database_url)
        )
        print(f"{server_version(admin_url)}; {chunks} chunks of {jobs} registrations each")
        measured = variants(admin_url, stack)
        connections = {
            v.name: stack.enter_context(psycopg.connect(v.url, autocommit=True)) for v in measured
        }
        for variant in measured:  # warm up: plans prepared, caches filled
            variant.run_chunk(connections[variant.name], -1, min(jobs, 100))
            variant.rates.clear()
            variant.wal_bytes.clear()
        for chunk in range(chunks):
            for variant in rotated(measured, chunk):
                variant.run_chunk(connections[variant.name], chunk, jobs)
            print(f"  chunk {chunk + 1}: " + ", ".join(f"{v.rates[-1]:,.0f}/s" for v in measured))
        raw = statistics.median(measured[0].rates)
        print("| Statement | Median | Ratio to raw | WAL per job |\n|---|---|---|---|")
        for variant in measured:
            rate = statistics.median(variant.rates)
            wal = statistics.median(variant.wal_bytes)
            print(f"| {variant.name} | {rate:,.0f}/s | x{rate / raw:.2f} | {wal:,.0f} B |")


if __name__ == "__main__":
    main()
