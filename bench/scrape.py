"""Scrape: what a Prometheus scrape of /metrics costs on a ledger of 1,000,000 jobs beside
one of 10,000, healthy and with 50,000 dead runs.

Setup, for each ledger (not measured): the `bench.growth` ledgers (a scratch database
filled by the `bench.rebuild` generator, the projection rebuilt), every open run given a
live lease, VACUUM ANALYZE; then a real `jobledger serve` on it whose monitor makes its
first pass at once and its next an hour later (JOBLEDGER_RECONCILE_INTERVAL_S): scrapes
are timed once that first pass is done, and no pass runs while they are.

Measured on each ledger, one after another, each once untimed and then `--calls` times
(25), with their p50 and p90:

- `GET /metrics` over HTTP (one keep-alive client), the ledger healthy;
- the same once `--dead` open runs (50,000; at most half the open runs) have had their
  lease lapse, as after a disaster the monitor has not recovered yet;
- `GET /v1/health`, the whole health view over HTTP, which every scrape ran before;
- in this process on the same database, with the dead runs: the scrape's one statement
  (`read_ledger_figures`), and the baseline, the reads the scrape made before it kept to
  bounded ones: the whole health view (`HealthCheck.check`) and up to 10,000 events of
  the feed after the projection's checkpoint.

The aim, printed met or not (the exit code is 0 either way): the scrape's p50 on the large
ledger, with its dead runs, at most 20 ms. Also printed: the scrape's statement's p50 as a
share of the baseline's, and every figure's growth from the small ledger to the large.
`--quick` makes the ledgers 2,000 jobs / 10,000 events and 50,000 / 250,000, with 5,000
dead runs and 5 calls each; its aim is checked at that size. The machine's other load is
in every figure.

Run: python -m bench.scrape [--calls 25] [--quick]
"""

import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
import psycopg

from bench.growth import (
    OPERATOR_TOKEN,
    TOKENS,
    Size,
    Timing,
    answer_any,
    built_ledger,
    client,
    environment,
    timed,
)
from bench.http import free_port, running_server
from bench.scratch import benchmark_parser, scratch_database, server_address
from bench.threads import BenchError
from ledger.database import create_ledger_engine, driver_connection, libpq_url
from ledger.settings import Settings
from ledger.store import EventStore
from projections import current_status
from projections.checkpoints import read_checkpoint
from projections.ledger_figures import read_ledger_figures
from projections.recovery.health import HealthCheck

MAX_P50_MS = 20.0
OLD_FEED_READ = 10_000
"""The events the scrape read after the checkpoint before it counted only those unapplied."""
NO_PASS_S = "3600"
PASS_WAIT_S = 300.0
STALE_PENDING_S = 600.0
HEALTHY = "GET /metrics, healthy"
WITH_DEAD = "GET /metrics, with dead runs"
HEALTH_VIEW = "GET /v1/health (the whole view)"
FIGURES = "in process: the scrape's statement"
BASELINE = "in process: the reads before (baseline)"


@dataclass(frozen=True, slots=True)
class Options:
    server_url: str
    small: Size
    large: Size
    dead: int
    calls: int


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--calls", type=int, help="timed calls of each kind (default 25)")
    parser.add_argument("--quick", action="store_true", help="50,000 jobs at most; 5 calls")
    args = parser.parse_args(argv)
    calls = args.calls or (5 if args.quick else 25)
    if calls < 1:
        parser.error("--calls must be positive")
    if args.quick:
        return Options(args.database_url, Size(2_000, 10_000), Size(50_000, 250_000), 5_000, calls)
    return Options(
        args.database_url, Size(10_000, 50_000), Size(1_000_000, 5_000_000), 50_000, calls
    )


def live_leases(url: str) -> int:
    """A live lease for every open run (an hour long); return how many runs are open."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO job_leases (job_id, attempt, run_token_sha256, worker_id, host, pid,
                                    started_at, heartbeat_at, expires_at)
            SELECT job_id, attempt, coalesce(run_token_sha256, 'token'),
                   coalesce(worker_id, 'w'), coalesce(worker_host, 'gpu-node'), worker_pid,
                   started_at, now(), now() + interval '1 hour'
            FROM job_status WHERE status IN ('running', 'paused')
            """
        )
        conn.execute("VACUUM ANALYZE job_status")
        conn.execute("VACUUM ANALYZE job_leases")
        row = conn.execute("SELECT count(*) FROM job_leases").fetchone()
    return int(row[0]) if row else 0


def lapse(url: str, dead: int) -> int:
    """Let `dead` leases lapse; return how many did."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        lapsed = conn.execute(
            "UPDATE job_leases SET expires_at = now() - interval '1 minute' WHERE job_id IN "
            "(SELECT job_id FROM job_leases ORDER BY job_id LIMIT %s)",
            (dead,),
        ).rowcount
        conn.execute("VACUUM ANALYZE job_leases")
    return lapsed


def time_old_scrape_reads(url: str, calls: int) -> Timing:
    """The reads of the scrape before, timed: the whole health view, and the feed after
    the projection's checkpoint up to `OLD_FEED_READ` events."""
    engine = create_ledger_engine(url, Settings())
    health = HealthCheck(engine)
    store = EventStore(engine)

    def read() -> object:
        report = health.check()
        with driver_connection(engine) as conn:
            checkpoint = read_checkpoint(conn, current_status.NAME)
        assert checkpoint is not None
        return report, len(store.read_feed(checkpoint.cursor, OLD_FEED_READ).events)

    try:
        return timed(read, calls)
    finally:
        engine.dispose()


def wait_for_first_monitor_pass(operator: httpx.Client) -> None:
    """Poll until the monitor leads and has made its first pass (after the start-up
    recovery pass): scrapes are timed on a server at rest, not during its start."""
    deadline = time.monotonic() + PASS_WAIT_S
    while True:
        scraped = operator.get("/metrics").text
        passes = re.search(r"^jobledger_reconciler_passes_total (\S+)$", scraped, re.MULTILINE)
        if "jobledger_monitor_leader 1.0" in scraped and passes and float(passes[1]) >= 2:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"the monitor made no pass within {PASS_WAIT_S:g} s")
        time.sleep(0.2)


def time_figures_read(url: str, calls: int) -> Timing:
    """The scrape's one statement of bounded reads, timed in this process."""
    engine = create_ledger_engine(url, Settings())
    try:
        return timed(lambda: read_ledger_figures(engine, STALE_PENDING_S), calls)
    finally:
        engine.dispose()


def scrape(operator: httpx.Client) -> Callable[[], object]:
    def call() -> object:
        scraped = operator.get("/metrics")
        answer_any(scraped)
        if "jobledger_database_up 1" not in scraped.text:
            raise BenchError("a scrape did not read the ledger's figures")
        return scraped

    return call


def measure(url: str, size: Size, dead_wanted: int, calls: int) -> dict[str, Timing]:
    timings: dict[str, Timing] = {}
    built_ledger(url, size)
    open_runs = live_leases(url)
    dead = min(dead_wanted, open_runs // 2)
    print(f"  {open_runs:,} open runs, each with a live lease", flush=True)
    with (
        environment(JOBLEDGER_RECONCILE_INTERVAL_S=NO_PASS_S),
        running_server(url, free_port(), TOKENS) as server,
        client(server.base_url, OPERATOR_TOKEN) as operator,
    ):
        print(f"  server {server.base_url}: {server.recovery}", flush=True)
        wait_for_first_monitor_pass(operator)
        timings[HEALTHY] = timed(scrape(operator), calls)
        print(f"  {lapse(url, dead):,} leases lapsed", flush=True)
        timings[WITH_DEAD] = timed(scrape(operator), calls)
        timings[HEALTH_VIEW] = timed(lambda: answer_any(operator.get("/v1/health")), calls)
        timings[FIGURES] = time_figures_read(url, calls)
        timings[BASELINE] = time_old_scrape_reads(url, calls)
    for name, timing in timings.items():
        print(f"    {name:<38} {timing}", flush=True)
    return timings


def report(options: Options, small: dict[str, Timing], large: dict[str, Timing]) -> None:
    print(f"\n{options.calls} timed calls each; p50 / p90 ms")
    print(f"{'':<40}{options.small.jobs:>12,} jobs{options.large.jobs:>12,} jobs  growth")
    for label, at_small in small.items():
        at_large = large[label]
        growth = at_large.p50_ms / at_small.p50_ms
        cells = f"{at_small.p50_ms:6.1f} / {at_small.p90_ms:6.1f}"
        cells += f"  {at_large.p50_ms:8.1f} / {at_large.p90_ms:6.1f}"
        print(f"{label:<40}{cells}  {growth:5.2f}x")
    for size, timings in ((options.small, small), (options.large, large)):
        share = timings[FIGURES].p50_ms / timings[BASELINE].p50_ms
        print(
            f"at {size.jobs:,} jobs the scrape's statement takes {share:.3f} of the "
            "baseline's p50 (both in process)"
        )
    dead_scrape = large[WITH_DEAD]
    met = dead_scrape.p50_ms <= MAX_P50_MS
    print(
        f"\naim {'met' if met else 'NOT MET'}: scrape p50 with dead runs at "
        f"{options.large.jobs:,} jobs {dead_scrape.p50_ms:.1f} ms "
        f"{'<=' if met else '>'} {MAX_P50_MS:g} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    print(
        f"scrape benchmark on {server_address(options.server_url)}: ledgers of {options.small} "
        f"and {options.large}; up to {options.dead:,} dead runs; {options.calls} timed calls",
        flush=True,
    )
    results = []
    try:
        for size in (options.small, options.large):
            print(f"ledger of {size}", flush=True)
            with scratch_database(options.server_url) as url:
                results.append(measure(url, size, options.dead, options.calls))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report(options, *results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
