"""Health view and claim throughput on a large ledger.

Setup (not measured): the `bench.rebuild` generator writes ~1,000,000 events
over 100,000 jobs; a rebuild derives `job_status`; every running job gets a
live lease except 5% whose lease has lapsed (orphans for the reconciler);
20,000 more jobs are queued for the claim measurements (and 200,000 rows in the
raw loop's table, which must not run dry either); then VACUUM ANALYZE,
as autovacuum would soon do after that churn.

Measured:
- the health view (`HealthCheck.check`): p50 and p99 over repeated calls;
- one reconciler pass over that ledger;
- claims per second (`JobQueue.claim`) with 1 and 8 worker threads, beside a
  raw loop on a plain table measured in the same run:
  BEGIN; SELECT id ... FOR UPDATE SKIP LOCKED LIMIT 1; UPDATE ...; COMMIT.

Run: python -m bench.health [--events 1000000] [--jobs 100000] [--quick]
"""

import logging
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
import psycopg

from bench.rebuild import generate, wait_for_horizon
from bench.scratch import benchmark_parser, scratch_database
from ledger.commands import WorkerIdentity
from ledger.database import create_ledger_engine, libpq_url
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.settings import Settings
from ledger.store import EventStore
from projections.audit_chain.keeper import advance_chain
from projections.current_status.catchup import catch_up_current_status
from projections.current_status.rebuild import rebuild_current_status
from projections.recovery.health import HealthCheck
from projections.recovery.reconciler import Reconciler

QUEUED_FOR_CLAIMS = 20_000
RAW_QUEUE_ROWS = 200_000
"""The raw loop is faster than the ledger: its table must outlast both of its runs."""


@dataclass(frozen=True, slots=True)
class Options:
    server_url: str
    events: int
    jobs: int
    seconds: float
    health_calls: int
    running: int


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=4.0, help="per claim measurement")
    parser.add_argument("--running", type=int, default=1_000, help="live runs when measuring")
    parser.add_argument("--quick", action="store_true", help="a tiny run, as a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        return Options(args.database_url, 20_000, 2_000, 0.5, 20, 100)
    return Options(args.database_url, args.events, args.jobs, args.seconds, 200, args.running)


def prepare_leases(url: str, running: int) -> None:
    """Leases for the runs: `running` of them live; the rest already lapsed."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO job_leases (job_id, attempt, run_token_sha256, worker_id, host, pid,
                                    started_at, heartbeat_at, expires_at)
            SELECT job_id, attempt, coalesce(run_token_sha256, 'token'), coalesce(worker_id, 'w'),
                   coalesce(worker_host, 'gpu-node'), worker_pid, started_at, now(),
                   CASE WHEN row_number() OVER (ORDER BY job_id) <= %s
                        THEN now() + interval '1 hour' ELSE now() - interval '1 minute' END
            FROM job_status WHERE status IN ('running', 'paused')
            """,
            (running,),
        )


def chain_the_log(url: str) -> None:
    """The log's hash chain kept to its end, as the leading monitor of a ledger that grew
    to this size keeps it. A server started on an unchained log would spend its first
    minutes chaining it while it is timed."""
    engine = create_ledger_engine(url, Settings().unbounded())
    try:
        advance_chain(engine)
    finally:
        engine.dispose()


def lapse_some(url: str, every: int) -> tuple[int, int]:
    """Let one live lease in `every` lapse: the orphans the measured pass will find."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "UPDATE job_leases SET expires_at = now() - interval '1 minute' "
            "WHERE expires_at > now() AND abs(hashtext(job_id)) %% %s = 0",
            (every,),
        )
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE l.expires_at < now()) "
            "FROM job_leases l JOIN job_status s USING (job_id, attempt) "
            "WHERE s.status IN ('running', 'paused')"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def queue_jobs(url: str, count: int) -> None:
    """Register `count` queued jobs straight into the log, then let catch-up project them."""
    payload = orjson.dumps(
        {"initial_status": "queued", "spec": {}, "priority": 0, "max_attempts": 1}
    ).decode()
    copy_sql = "COPY job_events (job_id, seq, type, payload, actor) FROM STDIN"
    with (
        psycopg.connect(libpq_url(url), autocommit=True) as conn,
        conn.transaction(),
        conn.cursor() as cursor,
        cursor.copy(copy_sql) as copy,
    ):
        for index in range(count):
            copy.write_row((f"claimable-{index:06d}", 1, "job_registered", payload, "bench"))
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_raw_queue (id bigserial PRIMARY KEY, status text NOT NULL, "
            "priority int NOT NULL DEFAULT 0, queued_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE INDEX ON bench_raw_queue (priority DESC, queued_at, id) WHERE status = 'queued'"
        )
        conn.execute(
            "INSERT INTO bench_raw_queue (status) SELECT 'queued' FROM generate_series(1, %s)",
            (RAW_QUEUE_ROWS,),
        )
        conn.execute("VACUUM ANALYZE")


def vacuum(url: str) -> None:
    """VACUUM ANALYZE after the setup's churn, as autovacuum would soon do on a live ledger."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE job_status")
        conn.execute("VACUUM ANALYZE job_leases")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def time_health(check: HealthCheck, calls: int) -> list[float]:
    check.check()
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        check.check()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def run_threads(workers: int, seconds: float, claim_once: Callable[[int], bool]) -> float:
    """Claims per second: `workers` threads calling `claim_once` until time is up."""
    counts = [0] * workers
    failures: list[BaseException] = []
    barrier = threading.Barrier(workers + 1)
    deadline = [0.0]

    def work(index: int) -> None:
        barrier.wait()
        try:
            while time.perf_counter() < deadline[0]:
                if not claim_once(index):
                    raise RuntimeError("the queue ran dry: the figures would be too low")
                counts[index] += 1
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(workers)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sum(counts) / (time.perf_counter() - started)


def raw_claimer(url: str, workers: int) -> Callable[[int], bool]:
    conns = [psycopg.connect(libpq_url(url)) for _ in range(workers)]

    def claim_once(index: int) -> bool:
        conn = conns[index]
        row = conn.execute(
            "SELECT id FROM bench_raw_queue WHERE status = 'queued' "
            "ORDER BY priority DESC, queued_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
        ).fetchone()
        if row is None:
            conn.rollback()
            return False
        conn.execute("UPDATE bench_raw_queue SET status = 'running' WHERE id = %s", (row[0],))
        conn.commit()
        return True

    return claim_once


def ledger_claimer(queue: JobQueue) -> Callable[[int], bool]:
    def claim_once(index: int) -> bool:
        worker = WorkerIdentity(worker_id=f"bench-{index}", host="gpu-node-bench")
        return queue.claim(worker, actor=f"bench-{index}") is not None

    return claim_once


def run(options: Options) -> None:
    logging.getLogger("projections.recovery.reconciler").setLevel(logging.ERROR)
    print(f"health benchmark: {options.events:,} events over {options.jobs:,} jobs")
    with scratch_database(options.server_url) as url:
        generated = generate(url, options.events, options.jobs)
        # As `jobledger projections rebuild` runs: without statement timeouts (on a loaded
        # machine the fold of the whole log outlasts the service's 10 s), once older
        # transactions on the server have ended (else the whole log is applied as late).
        wait_for_horizon(url)
        rebuilding = create_ledger_engine(url, Settings().unbounded())
        try:
            rebuilt = rebuild_current_status(rebuilding)
        finally:
            rebuilding.dispose()
        engine = create_ledger_engine(url, Settings(pool_size=20))
        try:
            prepare_leases(url, options.running)
            check = HealthCheck(engine)
            # Settle on `running` live runs: the generator leaves more running than that.
            Reconciler(JobService(EventStore(engine)), check).run_once()
            leases, lapsed = lapse_some(url, 20)
            queue_jobs(url, QUEUED_FOR_CLAIMS)
            catch_up_current_status(engine)
            vacuum(url)
            print(
                f"setup (not measured): {generated.events:,} events, {rebuilt.jobs:,} jobs, "
                f"{leases} running with leases ({lapsed} lapsed), "
                f"{QUEUED_FOR_CLAIMS:,} more queued"
            )
            timings = time_health(check, options.health_calls)
            report = check.check()
            print(
                f"health view: p50 {statistics.median(timings):.1f} ms, "
                f"p99 {percentile(timings, 0.99):.1f} ms over {len(timings)} calls "
                f"(running {report.total_running}, orphaned {len(report.orphaned)}, "
                f"queue {report.queue_depth})"
            )
            reconciler = Reconciler(JobService(EventStore(engine)), check)
            started = time.perf_counter()
            passed = reconciler.run_once()
            print(
                f"reconciler pass: {(time.perf_counter() - started) * 1000:.0f} ms, "
                f"{len(passed.of('mark_failed'))} orphans marked failed"
            )
            queue = JobQueue(EventStore(engine))
            for workers in (1, 8):
                raw = run_threads(workers, options.seconds, raw_claimer(url, workers))
                ours = run_threads(workers, options.seconds, ledger_claimer(queue))
                print(
                    f"claims workers={workers}: raw={raw:,.0f}/s  ledger={ours:,.0f}/s  "
                    f"ratio={ours / raw:.2f}"
                )
        finally:
            engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_options(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
