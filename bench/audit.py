"""Questions across jobs: the first page of each audit filter on a small ledger and a
large one, and the memory of an export.

Setup (not measured), for each ledger: a scratch database filled with COPY by the
`bench.rebuild` generator's legal histories, given what a live ledger's log has and the
generator leaves out: times spread over the 60 days to 2026-11-30 in log order (each
`recorded_at`, written with the log's insert guard off, as only a scratch database may;
an `occurred_at` a few seconds earlier on the training server's events);
the training server `trainer` registers and runs the jobs; of the failures, 40% are a
`job_marked_failed` by `health-monitor` (a dead run) and 10% one by an operator (`alice`,
`bob` or `carol`), who also requeue jobs, 30% of them by a force start. Then VACUUM
ANALYZE, as autovacuum would do.

- small: 10,000 jobs, 50,000 events; large: 1,000,000 jobs, 5,000,000 events.

Measured on each: `GET /v1/audit/events` (100 events a page) for each filter below, made
once untimed, then timed `--calls` times (15) one after another, through the whole app
(routing, the caller's token, the query, the JSON answer) in this process over ASGI,
without a socket (`bench.growth` times the rest of the API over a real one). The
baseline, measured the same way on the same ledger: the event feed's first page
(`GET /v1/events?after=0-0&limit=100`). The table gives each filter's p50 and p90 on
both ledgers, the growth (large p50 / small p50) and the large p50 over the baseline's.
Aim: every first page's p50 at most 50 ms on the large ledger.

The size of each index the filters read is printed. Then the export's memory on the
large ledger: every `job_completed` (about 800,000 on the large ledger) written as JSON
Lines and as CSV through the same code as the route's streamed answer, the lines thrown away; the
process's RSS is printed after the first batch and at the end, with the events per
second. The machine's other load is in every figure.

`--quick`: ledgers of 2,000 jobs / 10,000 events and 50,000 / 250,000; 5 calls each.

Run: python -m bench.audit [--calls 15] [--quick]
"""

import random
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import psutil
import psycopg
from starlette.testclient import TestClient

from api.app import create_app
from api.audit_export import ExportFormat, exported_lines
from api.auth import TokenBook
from api.bootstrap import wire_ledger
from bench.growth import Size
from bench.http import percentile
from bench.rebuild import SEED, Row, all_jobs, interleaved, job_lengths, wait_for_horizon
from bench.scratch import benchmark_parser, scratch_database, server_address
from bench.threads import BenchError
from ledger.audit_events import AuditFilter, AuditLog
from ledger.database import create_ledger_engine, libpq_url
from ledger.settings import Settings

READER_TOKEN = "t-audit-0123456789abcdef"
TOKENS = f"audrey:auditor:{READER_TOKEN}"
MONITOR = "health-monitor"
OPERATORS = ("alice", "bob", "carol")
EMITTER = "trainer"
MONITOR_SHARE, PERSON_SHARE, FORCE_START_SHARE = 0.4, 0.1, 0.3
LOG_STARTS = datetime(2026, 10, 1, tzinfo=UTC)
LOG_SPAN = timedelta(days=60)
NOVEMBER = ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
LAST_NIGHT = ("2026-11-20T22:00:00Z", "2026-11-21T06:00:00Z")
ONE_DAY = ("2026-11-15T00:00:00Z", "2026-11-16T00:00:00Z")
MAX_P50_MS = 50.0
COPY_AUDITED = (
    "COPY job_events (job_id, seq, type, payload, actor, reason, attempt, recorded_at, "
    "occurred_at) FROM STDIN"
)
CHUNK = 100_000
INSERT_GUARD = "job_events_guard_insert"
FEED = "/v1/events?after=0-0&limit=100"


@dataclass(frozen=True, slots=True)
class Options:
    server_url: str
    small: Size
    large: Size
    calls: int


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--calls", type=int, help="timed calls of each filter (default 15)")
    parser.add_argument("--quick", action="store_true", help="2,000 and 50,000 jobs; 5 calls")
    args = parser.parse_args(argv)
    calls = args.calls or (5 if args.quick else 15)
    if calls < 1:
        parser.error("--calls must be positive")
    if args.quick:
        return Options(args.database_url, Size(2_000, 10_000), Size(50_000, 250_000), calls)
    return Options(args.database_url, Size(10_000, 50_000), Size(1_000_000, 5_000_000), calls)


# -- the ledger ----------------------------------------------------------------------

AuditedRow = tuple[str, int, str, str, str, str | None, int, datetime, datetime | None]


def audited_rows(rows: Iterator[Row], events: int, rng: random.Random) -> Iterator[AuditedRow]:
    """The generator's rows with times, and the actors and recoveries of a live ledger."""
    step = LOG_SPAN / events
    for index, (job_id, seq, stored_type, payload, _actor, stored_reason, attempt) in enumerate(
        rows
    ):
        at = LOG_STARTS + index * step
        type_, reason = stored_type, stored_reason
        occurred: datetime | None = at - timedelta(seconds=rng.random() * 3)
        actor = EMITTER
        if type_ == "job_failed" and (share := rng.random()) < MONITOR_SHARE + PERSON_SHARE:
            type_, occurred = "job_marked_failed", None
            if share < MONITOR_SHARE:
                actor, reason = MONITOR, "process terminated unexpectedly (lease expired)"
            else:
                actor, reason = rng.choice(OPERATORS), "stuck: no progress for 6 hours"
        elif type_ == "job_requeued":
            actor, occurred = rng.choice(OPERATORS), None
            if rng.random() < FORCE_START_SHARE:
                type_ = "job_force_started"
        yield (job_id, seq, type_, payload, actor, reason, attempt, at, occurred)


def generate(url: str, size: Size) -> None:
    rng = random.Random(SEED)
    jobs = all_jobs(job_lengths(size.events, size.jobs, rng), rng)
    rows = audited_rows(interleaved(jobs, 1_000, rng), size.events, rng)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        # The guard stamps every insert with now(): off while a two-month-old log is written.
        conn.execute(f"ALTER TABLE job_events DISABLE TRIGGER {INSERT_GUARD}")
        while True:
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY_AUDITED) as copy:
                written = 0
                for row in islice(rows, CHUNK):
                    copy.write_row(row)
                    written += 1
            if written < CHUNK:
                break
        conn.execute(f"ALTER TABLE job_events ENABLE ALWAYS TRIGGER {INSERT_GUARD}")
        conn.execute("VACUUM (ANALYZE) job_events")


def force_started_job(url: str) -> str:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT job_id FROM job_events WHERE type = 'job_force_started' "
            "ORDER BY recorded_at DESC LIMIT 1"
        ).fetchone()
    if row is None:
        raise BenchError("the generated ledger has no force start")
    return str(row[0])


# -- the calls -----------------------------------------------------------------------


def filters(job_id: str) -> dict[str, dict[str, Any]]:
    """Each filter's query, by the label it is printed with."""
    return {
        "every event": {},
        "actor=alice": {"actor": "alice"},
        "actor=trainer, since a day": {"actor": EMITTER, "since": ONE_DAY[0]},
        "actor=nobody (no match)": {"actor": "nobody"},
        "mark-failed by a person in November": {
            "type": "job_marked_failed",
            "not_actor": MONITOR,
            "since": NOVEMBER[0],
            "until": NOVEMBER[1],
        },
        "monitor failed last night": {
            "actor": MONITOR,
            "status": "failed",
            "since": LAST_NIGHT[0],
            "until": LAST_NIGHT[1],
        },
        "who force-started job X": {"job_id": job_id, "type": "job_force_started"},
        "type=job_completed": {"type": "job_completed"},
        "type=job_paused&type=job_resumed": {"type": ["job_paused", "job_resumed"]},
        "status=queued (4 types)": {"status": "queued"},
        "status=pending (no match)": {"status": "pending"},
        "status=running": {"status": "running"},
        "job_id_prefix=job-0 (1/16 of jobs)": {"job_id_prefix": "job-0"},
        "job_id_prefix=10 characters of job X": {"job_id_prefix": job_id[:10]},
        "actor=alice&type=job_marked_failed": {"actor": "alice", "type": "job_marked_failed"},
        "actor=health-monitor&type=job_completed (none)": {
            "actor": MONITOR,
            "type": "job_completed",
        },
        "one day on recorded_at": {"since": ONE_DAY[0], "until": ONE_DAY[1]},
        "one day on occurred_at": {
            "clock": "occurred_at",
            "since": ONE_DAY[0],
            "until": ONE_DAY[1],
        },
    }


@dataclass(frozen=True, slots=True)
class Timing:
    p50_ms: float
    p90_ms: float
    events: int  # on the first page


def time_get(client: TestClient, path: str, params: dict[str, Any], calls: int) -> Timing:
    def call() -> int:
        response = client.get(path, params=params)
        if response.status_code != 200:
            raise BenchError(f"GET {path} {params}: {response.status_code} {response.text}")
        return len(response.json()["events"])

    events = call()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000)
    return Timing(statistics.median(latencies), percentile(latencies, 0.9), events)


def time_filters(url: str, calls: int) -> tuple[dict[str, Timing], Timing]:
    """Every filter's timing, and the feed's (the baseline), on the ledger at `url`."""
    job_id = force_started_job(url)
    wait_for_horizon(url)  # the feed shows what no open transaction on the server precedes
    settings = Settings()
    engine = create_ledger_engine(url, settings)
    tokens = TokenBook.from_env({"JOBLEDGER_TOKENS": TOKENS})
    try:
        app = create_app(wire_ledger(url, engine, settings), tokens)
        auth = {"Authorization": f"Bearer {READER_TOKEN}"}
        with TestClient(app, headers=auth) as client:
            baseline = time_get(client, "/v1/events", {"after": "0-0", "limit": 100}, calls)
            print(f"    {'baseline: the feed, first page':<40} {line(baseline)}", flush=True)
            timings: dict[str, Timing] = {}
            for label, params in filters(job_id).items():
                timings[label] = time_get(client, "/v1/audit/events", params, calls)
                print(f"    {label:<40} {line(timings[label])}", flush=True)
    finally:
        engine.dispose()
    return timings, baseline


def line(timing: Timing) -> str:
    return f"p50 {timing.p50_ms:6.1f} ms  p90 {timing.p90_ms:6.1f} ms  ({timing.events} events)"


AUDIT_INDEXES = """
    SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c
    WHERE c.relname IN (
        'ix_job_events_recorded_at_position', 'ix_job_events_type_recorded_at_position',
        'ix_job_events_actor_type_recorded_at_position',
        'ix_job_events_registered_status_recorded_at',
        'ix_job_events_occurred_at_position', 'uq_job_events_job_id_seq')
    ORDER BY 2 DESC"""


def print_index_sizes(url: str) -> None:
    """The size of each index the audit questions read (and of the log's unique index)."""
    with psycopg.connect(libpq_url(url)) as conn:
        for name, size in conn.execute(AUDIT_INDEXES).fetchall():
            print(f"  index {name}: {size / 2**20:,.1f} MiB", flush=True)


# -- an export's memory ----------------------------------------------------------------


def export_memory(url: str) -> None:
    """Export every completion as JSON Lines, then as CSV, printing RSS as it goes."""
    engine = create_ledger_engine(url, Settings().unbounded())
    process = psutil.Process()
    try:
        audit = AuditLog(wire_ledger(url, engine, Settings()).store)
        for format_ in ExportFormat:
            question = AuditFilter(types=("job_completed",))
            started, chunks, written, first_rss = time.perf_counter(), 0, 0, 0
            for chunk in exported_lines(format_, audit.batches(question)):
                chunks += 1
                written += len(chunk)
                if chunks == 2:
                    first_rss = process.memory_info().rss
            seconds = time.perf_counter() - started
            events = (chunks - (format_ is ExportFormat.CSV)) * 1000
            print(
                f"  export {format_.value}: ~{events:,} events, {written / 1e6:,.0f} MB in "
                f"{seconds:.1f} s ({events / seconds:,.0f} events/s); RSS after the first "
                f"batch {first_rss / 1e6:.0f} MB, at the end {rss_mb(process):.0f} MB",
                flush=True,
            )
    finally:
        engine.dispose()


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / 1e6


# -- the benchmark ---------------------------------------------------------------------


def run(options: Options) -> dict[Size, tuple[dict[str, Timing], Timing]]:
    results = {}
    for size in (options.small, options.large):
        print(f"ledger of {size}", flush=True)
        with scratch_database(options.server_url) as url:
            started = time.perf_counter()
            generate(url, size)
            print(f"  setup (not measured): {time.perf_counter() - started:.0f} s", flush=True)
            results[size] = time_filters(url, options.calls)
            print_index_sizes(url)
            if size == options.large:
                export_memory(url)
    return results


def report(results: dict[Size, tuple[dict[str, Timing], Timing]], options: Options) -> int:
    small, small_base = results[options.small]
    large, large_base = results[options.large]
    print(
        f"\nfirst pages (100 events), {options.calls} timed calls each; p50 / p90 ms; "
        "growth = large p50 / small p50; x feed = large p50 / the feed's large p50"
    )
    print(f"{'filter':<40} {options.small.jobs:>12,} jobs {options.large.jobs:>12,} jobs")
    rows = [("baseline: the feed, first page", small_base, large_base)]
    rows += [(label, small[label], large[label]) for label in large]
    met = 0
    for label, at_small, at_large in rows:
        growth = at_large.p50_ms / at_small.p50_ms
        versus = at_large.p50_ms / large_base.p50_ms
        print(
            f"{label:<40} {at_small.p50_ms:8.1f} / {at_small.p90_ms:6.1f} "
            f"{at_large.p50_ms:8.1f} / {at_large.p90_ms:6.1f}  growth {growth:5.2f}x  "
            f"x feed {versus:5.2f}"
        )
        met += at_large.p50_ms <= MAX_P50_MS
    print(f"\naim: p50 <= {MAX_P50_MS:g} ms on {options.large}: {met} of {len(rows)} met")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    print(
        f"audit benchmark on {server_address(options.server_url)}: {options.small} and "
        f"{options.large}; {options.calls} timed calls of each filter",
        flush=True,
    )
    try:
        results = run(options)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return report(results, options)


if __name__ == "__main__":
    sys.exit(main())
