"""Replay throughput: `rebuild_current_status` and `verify_current_status` in events/s.

Setup (timed, but not part of the figures): a fresh database is filled with
legal job histories written straight into `job_events` with COPY, in several
transactions, the jobs' events interleaved as concurrent jobs' would be:
job_registered, job_started, checkpoint_saved..., then job_completed or
job_failed; a few jobs fail and run again, pause and resume, or are still
running. `job_status` is left empty: the rebuild fills it. Then
VACUUM ANALYZE, as autovacuum would have done on a live ledger.

What is measured:

- raw streaming read, the baseline: the replay's own query,
  `SELECT job_id, seq, type, payload, reason, attempt, recorded_at FROM job_events
  ORDER BY job_id, seq`, through a psycopg server-side cursor (fetchmany 10,000),
  doing nothing with the rows (psycopg still decodes them: JSON payloads,
  timestamps). It runs just before the rebuild, on the same warm cache.
- rebuild: `rebuild_current_status` (replay into a staging table, swap it in).
- verify: `verify_current_status` (replay in memory, compare with every stored
  row of `job_status`; it reads that table as well as the log).
- chain kept: `advance_chain`, the log's hash chain built from the feed, from nothing.
- verify chain: `verify_chain` with the digest of that chain: every event's canonical
  line recomputed and chained, compared with the stored chain and the digest. Its aim is
  at least 200,000 events/s at 1,000,000 events.

`rebuild = 1.7x raw streaming read` means the rebuild took 1.7 times as long
as reading its rows: the remainder is the library's own work (decoding, folding
with `evolve`, writing the projection). Only the ratios mean much across machines.

Run: python -m bench.rebuild [--events 1000000] [--jobs 100000] [--quick] [--profile]
"""

import cProfile
import json
import pstats
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine

from bench.scratch import benchmark_parser, scratch_database, server_address
from ledger.database import create_ledger_engine, libpq_url
from ledger.events import (
    CheckpointSaved,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobPaused,
    JobRegistered,
    JobRequeued,
    JobResumed,
    JobStarted,
    event_to_record,
)
from ledger.settings import Settings
from ledger.statuses import JobStatus
from ledger.store import feed_horizon
from projections.audit_chain.digest import KeptDigest, take_digest
from projections.audit_chain.verify import verify_chain
from projections.current_status.rebuild import RebuildReport, rebuild_current_status
from projections.current_status.verify import VerifyReport, verify_current_status

SEED = 20_261_128
VERIFY_CHAIN_AIM = 200_000
"""Events/s `verify_chain` reads at 1,000,000 events at least."""

MAX_ROWS_PER_TRANSACTION = 100_000
ACTIVE_JOBS = 1_000
"""How many jobs are in flight at once while the log is written: their events interleave."""
STILL_RUNNING_SHARE = 0.05
RETRIED_SHARE = 0.10
FAILED_SHARE = 0.10
PAUSED_SHARE = 0.20
"""Of the jobs with enough checkpoints, the share that paused and resumed once."""

RAW_READ = (
    "SELECT job_id, seq, type, payload, reason, attempt, recorded_at "
    "FROM job_events ORDER BY job_id, seq"
)
FETCH_SIZE = 10_000
HORIZON_WAIT_S = 120.0
HORIZON_POLL_S = 0.2
PROFILE_LINES = 25

Row = tuple[str, int, str, str, str, str | None, int]
"""job_id, seq, type, payload (JSON text), actor, reason, attempt: a COPY row of job_events."""
COPY_EVENTS = "COPY job_events (job_id, seq, type, payload, actor, reason, attempt) FROM STDIN"

T = TypeVar("T")


# -- options -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    server_url: str
    events: int
    jobs: int
    profile: bool


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--events", type=int, help="events to generate (default 1,000,000)")
    parser.add_argument("--jobs", type=int, help="jobs they belong to (default 100,000)")
    parser.add_argument("--quick", action="store_true", help="20,000 events over 2,000 jobs")
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"after the figures, rebuild again under cProfile; print its top {PROFILE_LINES}",
    )
    args = parser.parse_args(argv)
    events = args.events or (20_000 if args.quick else 1_000_000)
    jobs = args.jobs or (2_000 if args.quick else 100_000)
    if not 1 <= jobs <= events:
        parser.error("need 1 <= --jobs <= --events")
    return Options(args.database_url, events, jobs, args.profile)


# -- job histories -------------------------------------------------------------------


def job_lengths(events: int, jobs: int, rng: random.Random) -> list[int]:
    """Events per job: varied, at least 1 each, `events` in all."""
    base, extra = divmod(events, jobs)
    lengths = [base + (1 if index < extra else 0) for index in range(jobs)]
    for index in range(0, jobs - 1, 2):  # move events between pairs: the mean stays put
        shift = rng.randrange(min(lengths[index], lengths[index + 1]))
        lengths[index] -= shift
        lengths[index + 1] += shift
    return lengths


def registered(index: int) -> JobRegistered:
    spec = {
        "image": f"registry.example/trainer:1.{index % 7}",
        "command": ["python", "train.py", "--seed", str(index)],
        "resources": {"cpu": 4, "memory_gb": 16, "gpu": index % 2},
        "dataset": f"s3://bench-data/shard-{index % 100:03d}",
    }
    return JobRegistered(initial_status=JobStatus.QUEUED, spec=spec)


def started(rng: random.Random, resume_from: str | None) -> JobStarted:
    return JobStarted(
        run_token_sha256=f"{rng.getrandbits(256):064x}",
        worker_id=f"worker-{rng.randrange(64):02d}",
        host=f"node-{rng.randrange(16):02d}.bench.internal",
        pid=rng.randrange(1_000, 4_000_000),
        pid_started_at=1_790_000_000 + rng.random() * 1_000_000,
        boot_id=str(uuid.UUID(int=rng.getrandbits(128))),
        resume_from=resume_from,
    )


def checkpoint(job_id: str, attempt: int, step: int) -> CheckpointSaved:
    return CheckpointSaved(path=f"/checkpoints/{job_id}/a{attempt}/step-{step:06d}.pt", step=step)


def completed(job_id: str, rng: random.Random) -> JobCompleted:
    metrics = {"loss": round(rng.random(), 4), "accuracy": round(rng.random(), 4)}
    return JobCompleted(result={"metrics": metrics, "artifact": f"s3://bench-out/{job_id}.pt"})


def attempt_events(
    job_id: str,
    attempt: int,
    checkpoints: int,
    *,
    ending: JobEvent | None,
    rng: random.Random,
    resume_from: str | None = None,
) -> list[JobEvent]:
    """One run: started, `checkpoints` events (two may be a pause and resume), then `ending`."""
    body: list[JobEvent] = [checkpoint(job_id, attempt, step) for step in range(1, checkpoints + 1)]
    if checkpoints >= 3 and rng.random() < PAUSED_SHARE:
        at = rng.randrange(1, checkpoints - 1)
        body[at : at + 2] = [JobPaused(), JobResumed()]
    return [started(rng, resume_from), *body, *([ending] if ending else [])]


def last_checkpoint_path(history: list[JobEvent]) -> str | None:
    saved = [event.path for event in history if isinstance(event, CheckpointSaved)]
    return saved[-1] if saved else None


def job_history(index: int, job_id: str, length: int, rng: random.Random) -> list[JobEvent]:
    """A legal history of exactly `length` events, ending in a random fate."""
    after = length - 1  # events after the registration
    history: list[JobEvent] = [registered(index)]
    fate = rng.random()
    if after == 0:
        return history
    if after == 1 or fate < STILL_RUNNING_SHARE:
        return history + attempt_events(job_id, 1, after - 1, ending=None, rng=rng)
    if after >= 6 and fate < STILL_RUNNING_SHARE + RETRIED_SHARE:
        first = max(1, (after - 5) // 2)  # failed, requeued, started again: 5 events + checkpoints
        failure = JobFailed(reason="exit code 137: out of memory")
        history += attempt_events(job_id, 1, first, ending=failure, rng=rng)
        resume_from = last_checkpoint_path(history)
        history.append(JobRequeued(reason="retry with more memory", resume_from=resume_from))
        second = attempt_events(
            job_id,
            2,
            after - 5 - first,
            ending=completed(job_id, rng),
            rng=rng,
            resume_from=resume_from,
        )
        return history + second
    if fate < STILL_RUNNING_SHARE + RETRIED_SHARE + FAILED_SHARE:
        ending_event: JobEvent = JobFailed(reason="exit code 1: assertion failed in step")
    else:
        ending_event = completed(job_id, rng)
    return history + attempt_events(job_id, 1, after - 2, ending=ending_event, rng=rng)


def event_rows(job_id: str, history: list[JobEvent]) -> list[Row]:
    """The COPY rows of one job: seq from 1, attempt as the store records it."""
    rows: list[Row] = []
    attempt = 0
    for seq, event in enumerate(history, start=1):
        if isinstance(event, JobStarted):
            attempt += 1
        type_, payload, reason = event_to_record(event)
        actor = "api" if seq == 1 else "operator" if isinstance(event, JobRequeued) else "worker"
        rows.append((job_id, seq, type_, json.dumps(payload), actor, reason, attempt))
    return rows


def all_jobs(lengths: list[int], rng: random.Random) -> Iterator[list[Row]]:
    for index, length in enumerate(lengths):
        job_id = f"job-{rng.getrandbits(40):010x}-{index}"  # random order: unrelated to time
        yield event_rows(job_id, job_history(index, job_id, length, rng))


def interleaved(jobs: Iterator[list[Row]], active_jobs: int, rng: random.Random) -> Iterator[Row]:
    """Every job's rows in order, picking the next row from a random job in flight."""
    active = [iter(rows) for rows in islice(jobs, active_jobs)]
    while active:
        slot = int(rng.random() * len(active))
        row = next(active[slot], None)
        if row is not None:
            yield row
            continue
        following = next(jobs, None)
        if following is None:
            active[slot] = active[-1]
            active.pop()
        else:
            active[slot] = iter(following)


# -- writing the log -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Generated:
    events: int
    transactions: int
    copy_seconds: float
    vacuum_seconds: float


def generate(url: str, events: int, jobs: int) -> Generated:
    """Fill `job_events` with COPY, a transaction per chunk; then VACUUM ANALYZE."""
    rng = random.Random(SEED)
    rows = interleaved(all_jobs(job_lengths(events, jobs, rng), rng), ACTIVE_JOBS, rng)
    chunk = min(MAX_ROWS_PER_TRANSACTION, max(1_000, events // 10))
    started_at = time.perf_counter()
    written = transactions = 0
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        while count := copy_chunk(conn, islice(rows, chunk)):
            written += count
            transactions += 1
        copied_at = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) job_events")
    if written != events:
        raise RuntimeError(f"generated {written} events, not {events}")
    vacuum_seconds = time.perf_counter() - copied_at
    return Generated(written, transactions, copied_at - started_at, vacuum_seconds)


def copy_chunk(conn: psycopg.Connection[Any], rows: Iterable[Row]) -> int:
    """COPY `rows` into job_events in a transaction of their own; return how many."""
    count = 0
    with conn.transaction(), conn.cursor() as cursor, cursor.copy(COPY_EVENTS) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


# -- measuring -----------------------------------------------------------------------


def wait_for_horizon(url: str) -> float:
    """Poll until every transaction older than the log's last has ended (up to
    `HORIZON_WAIT_S`); return the seconds waited.

    The rebuild folds the events below the server's oldest open transaction and applies
    the rest, as late events, under its lock: on a shared server someone else's open
    transaction would otherwise turn the whole log late and time that path instead."""
    started = time.monotonic()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(tx_id), '0')::text FROM job_events").fetchone()
        last = int(row[0]) if row else 0
        while feed_horizon(conn) <= last and time.monotonic() - started < HORIZON_WAIT_S:
            time.sleep(HORIZON_POLL_S)
    return time.monotonic() - started


def timed(function: Callable[[], T]) -> tuple[T, float]:
    started_at = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started_at


def raw_streaming_read(url: str) -> int:
    """Stream the replay's rows through a server-side cursor, doing nothing with them."""
    count = 0
    with psycopg.connect(libpq_url(url)) as conn:
        with conn.cursor(name="bench_raw_read") as cursor:
            cursor.itersize = FETCH_SIZE
            cursor.execute(RAW_READ)
            while rows := cursor.fetchmany(FETCH_SIZE):
                count += len(rows)
        conn.rollback()
    return count


def rate_line(name: str, events: int, seconds: float) -> str:
    return f"{name}: {events:,} events in {seconds:.2f} s = {events / seconds:,.0f} events/s"


def timed_raw_read(url: str, events: int) -> float:
    count, seconds = timed(lambda: raw_streaming_read(url))
    if count != events:
        raise RuntimeError(f"the raw read saw {count} events, not {events}")
    print(rate_line("raw streaming read (baseline)", count, seconds), flush=True)
    return seconds


def timed_rebuild(engine: Engine, options: Options) -> float:
    report, seconds = timed(lambda: rebuild_current_status(engine))
    check_rebuild(report, options)
    detail = f"  ({report.jobs:,} jobs written, {report.late_events} late events)"
    print(rate_line("rebuild", report.events, seconds) + detail, flush=True)
    return seconds


def check_rebuild(report: RebuildReport, options: Options) -> None:
    if report.events != options.events or report.jobs != options.jobs:
        raise RuntimeError(f"rebuild replayed {report}, expected {options.events} events")


def timed_verify(engine: Engine, events: int) -> tuple[VerifyReport, float]:
    report, seconds = timed(lambda: verify_current_status(engine))
    detail = f"  ({report.jobs:,} jobs compared) clean={report.clean}"
    print(rate_line("verify", events, seconds) + detail, flush=True)
    for drift in report.drifts[:5]:
        print(f"  drift: {drift.describe()}")
    return report, seconds


def timed_chain(engine: Engine, events: int) -> tuple[bool, float]:
    """Keep the chain from nothing, then verify it against its digest: whether it holds,
    and how long verify took."""
    digest, kept = timed(lambda: take_digest(engine))
    print(rate_line("chain kept", digest.events, kept), flush=True)
    report, seconds = timed(lambda: verify_chain(engine, [KeptDigest("bench", digest)]))
    rate = report.events / seconds
    print(
        rate_line("verify chain", report.events, seconds)
        + f"  intact={report.intact}; aim {VERIFY_CHAIN_AIM:,} events/s: "
        + ("met" if rate >= VERIFY_CHAIN_AIM else "not met"),
        flush=True,
    )
    if digest.events != events:
        raise RuntimeError(f"the chain holds {digest.events} events, not {events}")
    return report.intact, seconds


def profile_rebuild(engine: Engine) -> None:
    """Rebuild once more under cProfile and print where the time went."""
    profile = cProfile.Profile()
    profile.runcall(rebuild_current_status, engine)
    print(f"\nprofile of one more rebuild (cProfile, top {PROFILE_LINES} by cumulative time):")
    stats = pstats.Stats(profile, stream=sys.stdout)
    stats.strip_dirs().sort_stats("cumulative").print_stats(PROFILE_LINES)


def run(options: Options) -> bool:
    """Generate, measure and print; return whether verify found the projection clean."""
    with scratch_database(options.server_url) as url:
        made = generate(url, options.events, options.jobs)
        print(
            f"setup (not measured): {made.events:,} events over {options.jobs:,} jobs written "
            f"with COPY in {made.copy_seconds:.1f} s ({made.transactions} transactions), "
            f"VACUUM ANALYZE {made.vacuum_seconds:.1f} s",
            flush=True,
        )
        # As `jobledger projections rebuild` and `verify` run: without statement timeouts.
        engine = create_ledger_engine(url, Settings().unbounded())
        try:
            baseline = timed_raw_read(url, options.events)
            rebuild = timed_rebuild(engine, options)
            report, verify = timed_verify(engine, options.events)
            chain_intact, verify_chain_seconds = timed_chain(engine, options.events)
            print(f"rebuild = {rebuild / baseline:.1f}x raw streaming read")
            print(f"verify = {verify / baseline:.1f}x raw streaming read")
            print(f"verify chain = {verify_chain_seconds / baseline:.1f}x raw streaming read")
            if options.profile:
                profile_rebuild(engine)
        finally:
            engine.dispose()
    return report.clean and chain_intact


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    print(
        f"rebuild benchmark on {server_address(options.server_url)}: "
        f"{options.events:,} events over {options.jobs:,} jobs",
        flush=True,
    )
    if not run(options):
        print("verify found drift: the figures above are not to be trusted", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
