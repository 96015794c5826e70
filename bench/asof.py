"""As of a moment: pages of the ledger as it was at T beside the current list, on 1,000,000 jobs.

Setup (not measured): a scratch database filled by the `bench.rebuild` generator (legal
histories written with COPY, 1,000,000 jobs and 5,000,000 events, then VACUUM ANALYZE),
its projection rebuilt, then VACUUM ANALYZE of `job_status`, as autovacuum would do.

The generator writes the log in transactions of 100,000 events, each stamped with its own
clock, 1,000 jobs in flight at once: the moments T are the last clock of the transaction
at 10%, 50% and 90% of the log, and the last of all. For each T, beside it: how many jobs
registered by T changed status after T (what a status filter folds besides its page).

Timed, in this process through `PastLedger` and `JobListing` on a pool of connections with
the server's statement timeout, each call once untimed and then `--calls` times (p50, p90):

- the baseline, in the same run: the current list's first page (`GET /v1/jobs`), and
  with `status=running`;
- at each T: the first page as of T (50 jobs), the next page (its cursor), the first page
  with status running, queued and completed, and the last job of that first page as of T;
- the incident: every running job then marked failed by the health monitor in one
  transaction (the projection rebuilt, not measured); pages as of the moment before:
  status running (every job that changed was running then: the first page, the next, and
  with a search), and statuses none of the changed jobs had (queued, paused, cancelled).
  A status common among the jobs that changed reads about a page of them, newest first; a
  status rare among them (paused, cancelled) reads the status then of every one of them.

Last, what the index of unchanged spans (`ix_job_status_unchanged_span`) costs the write
path: every claim changes a job's status, so writes its row's span into the index. In a
scratch database, `--claim-jobs` (2,000) queued jobs are registered and then claimed one
after another through `JobQueue.claim`, timed, with the index and without it (dropped
and created again), alternating, two rounds each; the ratio is claims/s with / without.

The aims, printed met or not: each page at each T, and the incident's first and next page
with status running, has a p50 of at most 50 ms at 1,000,000 jobs, and at most 5 times
the current list's first page. The incident's other pages are printed, or that they
outlasted the statement timeout a server has (10 s). `--quick`: 50,000 jobs, 250,000 events
(transactions of 25,000), 5 calls each. The machine's other load is in every figure.

Run: python -m bench.asof [--calls 15] [--quick]
"""

import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import Engine

from bench.growth import Size, Timing, built_ledger, print_aims, timed
from bench.scratch import benchmark_parser, scratch_database
from bench.threads import BenchError
from ledger.commands import RegisterJob, WorkerIdentity
from ledger.database import create_ledger_engine, libpq_url
from ledger.errors import DatabaseBusy
from ledger.events import JobMarkedFailed, event_to_record
from ledger.job_listing import JobListing
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.settings import Settings
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.current_status.as_of import PastLedger
from projections.current_status.rebuild import rebuild_current_status

FULL = Size(1_000_000, 5_000_000)
QUICK = Size(50_000, 250_000)
SHARES = (0.1, 0.5, 0.9)
MAX_P50_MS = 50.0
MAX_RATIO = 5.0
LIMIT = 50

MOMENTS = "SELECT DISTINCT recorded_at FROM job_events ORDER BY recorded_at"
CHANGED_SINCE = """
    SELECT count(*) FROM job_status
    WHERE created_at <= %(as_of)s AND status_changed_at > %(as_of)s"""
MARK_RUNNING_FAILED = """
    INSERT INTO job_events (job_id, seq, type, payload, actor, reason, attempt)
    SELECT job_id, version + 1, %(type)s, %(payload)s::jsonb, 'health-monitor', %(reason)s,
           attempt
    FROM job_status WHERE status = 'running'"""


def shown(timing: Timing) -> str:
    return f"p50 {timing.p50_ms:7.1f} ms  p90 {timing.p90_ms:7.1f} ms"


def one(conn: psycopg.Connection[Any], query: str, params: dict[str, Any] | None = None) -> Any:
    row = conn.execute(query, params or {}).fetchone()
    if row is None:
        raise BenchError(f"no row: {query}")
    return row[0]


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    timing: Timing
    aimed: bool  # an aim applies to it


def time_moment(past: PastLedger, at: datetime, calls: int, label: str) -> list[Figure]:
    first = past.page(at, limit=LIMIT)
    if first.next_cursor is None:
        raise BenchError(f"as of {at}: one page only")
    cursor = first.next_cursor
    figures = [
        Figure(f"{label} first page", timed(lambda: past.page(at, limit=LIMIT), calls), True),
        Figure(
            f"{label} next page",
            timed(lambda: past.page(at, after=cursor, limit=LIMIT), calls),
            True,
        ),
    ]

    def page_in(status: JobStatus) -> Callable[[], object]:
        return lambda: past.page(at, status, limit=LIMIT)

    for status in (JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.COMPLETED):
        figures.append(Figure(f"{label} status={status}", timed(page_in(status), calls), True))
    job_id = first.jobs[-1].job_id
    figures.append(Figure(f"{label} one job", timed(lambda: past.job(job_id, at), calls), True))
    return figures


def run(server_url: str, size: Size, calls: int) -> list[Figure]:
    with scratch_database(server_url) as url:
        built_ledger(url, size)
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE job_status")
            moments = [row[0] for row in conn.execute(MOMENTS).fetchall()]
        print(f"  {len(moments)} moments in the log (one per transaction)", flush=True)
        engine = create_ledger_engine(url, Settings())
        try:
            return measure(url, engine, moments, calls)
        finally:
            engine.dispose()


def measure(url: str, engine: Engine, moments: list[datetime], calls: int) -> list[Figure]:
    store = EventStore(engine)
    past, listing = PastLedger(store), JobListing(store)
    figures = [
        Figure(
            "now: first page (baseline)", timed(lambda: listing.page(limit=LIMIT), calls), False
        ),
        Figure(
            "now: status=running",
            timed(lambda: listing.page(JobStatus.RUNNING, limit=LIMIT), calls),
            False,
        ),
    ]
    chosen = [(f"{share:.0%}", moments[int(share * (len(moments) - 1))]) for share in SHARES]
    chosen.append(("last", moments[-1]))
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        for name, at in chosen:
            changed = int(one(conn, CHANGED_SINCE, {"as_of": at}))
            print(f"  T at {name} of the log ({at}): {changed:,} jobs changed since", flush=True)
            figures.extend(time_moment(past, at, calls, f"T {name}:"))
            for figure in figures[-6:]:
                print(f"    {figure.label:<36} {shown(figure.timing)}", flush=True)
        after_incident = incident(conn, url, past, moments[-1], calls)
    return [*figures, *after_incident]


INCIDENT_PAGES = (
    ("status=running", JobStatus.RUNNING, None, False, True),
    ("status=running, next page", JobStatus.RUNNING, None, True, True),
    ("status=running, q=job-a", JobStatus.RUNNING, "job-a", False, False),
    ("status=queued", JobStatus.QUEUED, None, False, False),
    ("status=paused", JobStatus.PAUSED, None, False, False),
    ("status=cancelled", JobStatus.CANCELLED, None, False, False),
)
"""The pages timed as of the moment before the incident (label, status, search, whether
the next page, whether an aim applies): the status every changed job had then (running),
with the next page and a search; statuses none of them had (queued is common among the
other jobs, paused and cancelled rare among all)."""


def incident(
    conn: psycopg.Connection[Any], url: str, past: PastLedger, before: datetime, calls: int
) -> list[Figure]:
    """Every running job marked failed at once, after `before`; then time the pages as of
    `before` (`INCIDENT_PAGES`); one that outlasts the statement timeout a server has is
    printed, not timed."""
    type_, payload, reason = event_to_record(JobMarkedFailed(reason="lease expired"))
    params = {"type": type_, "payload": json.dumps(payload), "reason": reason}
    marked = conn.execute(MARK_RUNNING_FAILED, params).rowcount
    rebuilding = create_ledger_engine(url, Settings().unbounded())
    try:
        rebuild_current_status(rebuilding)
    finally:
        rebuilding.dispose()
    conn.execute("VACUUM ANALYZE job_status")
    changed = int(one(conn, CHANGED_SINCE, {"as_of": before}))
    print(
        f"  incident: {marked:,} running jobs marked failed after the last moment; "
        f"{changed:,} jobs changed since it",
        flush=True,
    )
    figures = []
    for name, status, search, next_page, aimed in INCIDENT_PAGES:
        label = f"incident: {name}"
        try:
            timing = timed(incident_page(past, before, status, search, next_page), calls)
        except DatabaseBusy:
            timeout_s = Settings().statement_timeout_ms / 1000
            print(f"    {label:<36} did not answer within the statement timeout ({timeout_s:g} s)")
            continue
        print(f"    {label:<36} {shown(timing)}", flush=True)
        figures.append(Figure(label, timing, aimed))
    return figures


def incident_page(
    past: PastLedger, at: datetime, status: JobStatus, search: str | None, next_page: bool
) -> Callable[[], object]:
    """The call that reads the page: the first, or the one after it (its cursor read now)."""
    after = past.page(at, status, search=search, limit=LIMIT).next_cursor if next_page else None
    if next_page and after is None:
        raise BenchError(f"as of {at}, status {status}: one page only")
    return lambda: past.page(at, status, search=search, after=after, limit=LIMIT)


SPAN_INDEX = "ix_job_status_unchanged_span"
WORKER = WorkerIdentity(worker_id="bench-worker", host="bench-host", pid=4242)


def span_index_cost(server_url: str, jobs: int) -> tuple[list[float], list[float]]:
    """Claims per second with the span index and without it, two rounds each, alternating."""
    with_index: list[float] = []
    without: list[float] = []
    definition = f"SELECT pg_get_indexdef('{SPAN_INDEX}'::regclass)"
    with scratch_database(server_url) as url, psycopg.connect(libpq_url(url)) as admin:
        admin.autocommit = True
        create = str(one(admin, definition))
        admin.execute(f"DROP INDEX {SPAN_INDEX}")
        engine = create_ledger_engine(url, Settings())
        try:
            for round_ in range(4):
                indexed = round_ % 2 == 0
                if indexed:
                    admin.execute(create)
                rates = with_index if indexed else without
                rates.append(claims_per_second(engine, jobs, round_))
                if indexed:
                    admin.execute(f"DROP INDEX {SPAN_INDEX}")
        finally:
            engine.dispose()
    return with_index, without


def claims_per_second(engine: Engine, jobs: int, round_: int) -> float:
    store = EventStore(engine)
    service, queue = JobService(store), JobQueue(store)
    for n in range(jobs):
        service.execute(f"claim-{round_}-{n}", RegisterJob(), actor="bench")
    started = time.perf_counter()
    for _ in range(jobs):
        if queue.claim(WORKER, actor="bench") is None:
            raise BenchError("the queue ran out before every job was claimed")
    return jobs / (time.perf_counter() - started)


def report(figures: list[Figure], size: Size) -> None:
    baseline = figures[0].timing.p50_ms
    print(f"\nas of a moment on {size}; ratio = p50 / the current list's first page")
    for figure in figures:
        ratio = figure.timing.p50_ms / baseline
        print(f"  {figure.label:<36} {shown(figure.timing)}  {ratio:6.2f}x")
    checked = []
    for figure in (f for f in figures if f.aimed):
        fast = figure.timing.p50_ms <= MAX_P50_MS
        close = figure.timing.p50_ms <= MAX_RATIO * baseline
        checked.append(
            (
                fast and close,
                f"{figure.label}: p50 {figure.timing.p50_ms:.1f} ms "
                f"{'<=' if fast else '>'} {MAX_P50_MS:g} ms, "
                f"{figure.timing.p50_ms / baseline:.2f}x {'<=' if close else '>'} {MAX_RATIO:g}x",
            )
        )
    print_aims(checked)


def main(argv: Sequence[str] | None = None) -> int:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--calls", type=int, help="timed calls of each kind (default 15)")
    parser.add_argument("--quick", action="store_true", help="50,000 jobs; 5 calls")
    parser.add_argument("--claim-jobs", type=int, help="jobs claimed per round (default 2,000)")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    calls = args.calls or (5 if args.quick else 15)
    print(f"as-of benchmark: {size}, {calls} timed calls of each kind", flush=True)
    try:
        figures = run(args.database_url, size, calls)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report(figures, size)
    claim_jobs = args.claim_jobs or (500 if args.quick else 2_000)
    with_index, without = span_index_cost(args.database_url, claim_jobs)
    print(f"\nclaims of {claim_jobs:,} queued jobs, one after another (claims/s, each round):")
    print(f"  with the span index:    {', '.join(f'{rate:,.0f}' for rate in with_index)}")
    print(f"  without the span index: {', '.join(f'{rate:,.0f}' for rate in without)}")
    ratio = statistics.median(with_index) / statistics.median(without)
    print(f"  ratio (median with / median without): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
