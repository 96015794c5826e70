"""Append throughput: commands per second through the ledger, beside raw INSERTs.

What is measured, at 1 and 16 concurrent clients (threads, each on a job of its own,
so there are no conflicts), for a fixed time per measurement:

- raw: plain psycopg, one `INSERT INTO bench_raw_events ...` and one commit per
  operation. The table is a copy of `job_events` (same columns, defaults,
  identity, indexes and check constraint; no triggers) and each row carries the
  same payload as the ledger's event.
- ledger: `JobService.execute(job_id, SaveCheckpoint(...))` on a running job:
  load its state, decide, append the event with the inline projection update.

Raw and ledger measurements alternate (raw, ledger, raw, ledger, ...) so drift
on a noisy machine hits both. The summary gives the median ops/s of each path
and `ratio` = ledger / raw: the share of the raw insert rate the ledger keeps.
Only the ratios mean much across machines; absolute figures depend on the disk
(each commit waits for its WAL flush) and on the CPU.

Run: python -m bench.append [--seconds 5] [--rounds 2] [--clients 1,16] [--quick]
"""

import argparse
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Engine

from bench.scratch import benchmark_parser, scratch_database, server_address
from bench.threads import BenchError, Client, measure
from ledger.commands import RegisterJob, SaveCheckpoint, WorkerIdentity
from ledger.database import create_ledger_engine, libpq_url
from ledger.events import CheckpointSaved, event_to_record
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.settings import Settings
from ledger.store import EventStore

RAW_TABLE = "bench_raw_events"
ACTOR = "bench"
ATTEMPT = 1
"""The attempt every client's job is on: each job is started once."""
MIN_POOL_SIZE = 20

CREATE_RAW_TABLE = (
    f"CREATE TABLE {RAW_TABLE} (LIKE job_events INCLUDING DEFAULTS INCLUDING IDENTITY "
    "INCLUDING INDEXES INCLUDING CONSTRAINTS)"
)
RAW_INSERT = (
    f"INSERT INTO {RAW_TABLE} (job_id, seq, type, payload, actor, attempt) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)


# -- options -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    server_url: str
    seconds: float
    rounds: int
    clients: tuple[int, ...]


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--seconds", type=float, help="length of each measurement (default 5)")
    parser.add_argument("--rounds", type=int, help="raw/ledger pairs per concurrency (default 2)")
    parser.add_argument(
        "--clients", type=_client_counts, default=(1, 16), help="comma-separated (default 1,16)"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run, as a smoke test")
    args = parser.parse_args(argv)
    seconds = args.seconds or (0.5 if args.quick else 5.0)
    rounds = args.rounds or (1 if args.quick else 2)
    if seconds <= 0 or rounds < 1:
        parser.error("--seconds and --rounds must be positive")
    return Options(args.database_url, seconds, rounds, args.clients)


def _client_counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(",") if part.strip())
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("give positive client counts, e.g. 1,16")
    return counts


# -- clients -------------------------------------------------------------------------


def checkpoint_path(job_id: str, step: int) -> str:
    return f"/checkpoints/{job_id}/step-{step:08d}.pt"


def checkpoint_payload(job_id: str, step: int) -> dict[str, Any]:
    """The payload the ledger stores for the checkpoint: the raw path writes the same."""
    _, payload, _ = event_to_record(CheckpointSaved(path=checkpoint_path(job_id, step), step=step))
    return payload


class RawClient:
    """A psycopg connection inserting one event row per transaction."""

    def __init__(self, url: str, job_id: str) -> None:
        self.conn = psycopg.connect(url)
        self.job_id = job_id

    def op(self, n: int) -> None:
        payload = Jsonb(checkpoint_payload(self.job_id, n))
        params = (self.job_id, n + 1, CheckpointSaved.TYPE, payload, ACTOR, ATTEMPT)
        self.conn.execute(RAW_INSERT, params)
        self.conn.commit()

    def check(self, ops: int) -> None:
        query = f"SELECT count(*) FROM {RAW_TABLE} WHERE job_id = %s"
        row = self.conn.execute(query, (self.job_id,)).fetchone()
        self.conn.rollback()
        if row is None or row[0] != ops:
            raise BenchError(f"{self.job_id}: {ops} raw inserts, {row} rows")

    def close(self) -> None:
        self.conn.close()


class LedgerClient:
    """Checkpoints of one running job through `JobService.execute`."""

    def __init__(self, service: JobService, job_id: str) -> None:
        self.service = service
        self.job_id = job_id
        worker = WorkerIdentity(
            worker_id=f"bench-worker-{job_id}", host="bench-host", pid=os.getpid()
        )
        service.execute(job_id, RegisterJob(spec={"bench": "append"}), actor=ACTOR)
        self.run_token = JobQueue(service.store).start(job_id, worker, actor=ACTOR).run_token

    def op(self, n: int) -> None:
        path = checkpoint_path(self.job_id, n)
        command = SaveCheckpoint(attempt=ATTEMPT, run_token=self.run_token, path=path, step=n)
        self.service.execute(self.job_id, command, actor=ACTOR)

    def check(self, ops: int) -> None:
        state = self.service.store.load(self.job_id)
        if state is None or state.version != ops + 2:  # registered, started, then the ops
            raise BenchError(f"{self.job_id}: {ops} checkpoints, state {state}")

    def close(self) -> None:
        pass


# -- the benchmark -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Paths:
    """How to make a client of each path for one measurement."""

    url: str
    service: JobService

    def raw(self, label: str) -> Callable[[int], Client]:
        return lambda index: RawClient(libpq_url(self.url), f"raw-{label}-{index:02d}")

    def ledger(self, label: str) -> Callable[[int], Client]:
        return lambda index: LedgerClient(self.service, f"ledger-{label}-{index:02d}")


def create_raw_table(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(CREATE_RAW_TABLE)


def bench_concurrency(paths: Paths, clients: int, options: Options) -> tuple[float, float]:
    """Alternate raw and ledger measurements; return the median rate of each."""
    raw: list[float] = []
    ledger: list[float] = []
    for round_ in range(1, options.rounds + 1):
        label = f"c{clients}-r{round_}"
        for name, make_client, rates in (
            ("raw", paths.raw(label), raw),
            ("ledger", paths.ledger(label), ledger),
        ):
            result = measure(make_client, clients, options.seconds)
            rates.append(result.rate)
            print(
                f"  clients={clients:<3} round={round_}  {name:<6} {result.rate:8.0f} ops/s"
                f"  ({result.ops} ops in {result.seconds:.2f} s)",
                flush=True,
            )
    return statistics.median(raw), statistics.median(ledger)


def run(options: Options) -> list[str]:
    """Run every measurement; return the summary lines."""
    summary: list[str] = []
    with scratch_database(options.server_url) as url:
        create_raw_table(url)
        pool_size = max(MIN_POOL_SIZE, *options.clients)
        engine: Engine = create_ledger_engine(url, Settings(pool_size=pool_size))
        try:
            paths = Paths(url, JobService(EventStore(engine)))
            for clients in options.clients:
                raw, ledger = bench_concurrency(paths, clients, options)
                summary.append(
                    f"clients={clients:<3} raw={raw:.0f} ops/s  ledger={ledger:.0f} ops/s"
                    f"  ratio={ledger / raw:.2f}"
                )
        finally:
            engine.dispose()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    print(
        f"append benchmark on {server_address(options.server_url)}: clients "
        f"{','.join(map(str, options.clients))}, {options.seconds:g} s per measurement, "
        f"{options.rounds} round(s) of raw then ledger",
        flush=True,
    )
    summary = run(options)
    print(f"median of {options.rounds} round(s); ratio = ledger / raw")
    for line in summary:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
