"""Growth: every call's latency on a ledger of 1,000,000 jobs beside one of 10,000, and the
rebuild's rate as the log grows.

Setup, for each ledger (not measured, except the rebuild): a scratch database, filled by
the `bench.rebuild` generator (legal histories written with COPY, then VACUUM ANALYZE):

- small: 10,000 jobs, 50,000 events;
- reference: 200,000 jobs, 1,000,000 events (rebuilt only: the rebuild rate's yardstick);
- large: 1,000,000 jobs, 5,000,000 events.

Measured on each: `rebuild_current_status`, in events/s. It starts once every transaction
older than the log's last has ended (the benchmark waits up to 2 minutes for that: on a
shared server another's open transaction would send the whole log down the rebuild's
late-event path, which is not the path meant to be timed).

Then, on the small and large ledgers (not measured): every open run gets a live lease, as
its worker's heartbeats would keep it, so the health view sees a healthy ledger and the
reconciler has nothing to do while calls are timed; the log's hash chain kept to its end,
as the monitor keeps it on a ledger that grew to this size; VACUUM ANALYZE of `job_status` and
`job_leases`, as autovacuum would do after the rebuild; and a real `jobledger serve` on
the ledger, with an operator and an emitter token and a lease of 2 s
(JOBLEDGER_LEASE_SECONDS), started once every open run is older than that: on a live
ledger, training runs have started long before their last lease, and the health view
reads them all. (The generator leaves about 14% of its jobs running: some 140,000 open
runs on the large ledger, far more than a real one would have at once.)

Then, over HTTP with one keep-alive `httpx.Client` per token, each call is made once
untimed, then timed `--calls` times (15), one after another; the table gives its p50 and
p90, on the small and on the large ledger, and the growth factor (large p50 / small p50):

- the console's list: `GET /v1/jobs`, by status (`?status=queued`), searched by three and
  by eight characters from the middle of an existing id (the trigram index), and by two
  (ids starting with them: the two every generated id starts with, and two no id does);
- the health view (`GET /v1/health`) and the old frontend's (`GET /api/training/health`);
- registering a queued job and a pending one (`POST /v1/jobs`, a fresh id each call);
- `POST /v1/jobs/{id}/force-start` of a pending job (registered beforehand, untimed);
- `GET /v1/jobs/{id}` of the last job in the queue and of the first one;
- the event feed's first page (`GET /v1/events?after=0-0&limit=100`) and the history of
  the completed job with the most events (`GET /v1/jobs/{id}/history`);
- a metrics scrape (`GET /metrics`); how many said `jobledger_database_up 0` (their read
  of the ledger's figures outlasted the probe timeout) is printed beside it.

Then, on the same server, the leases of 5% of the ledger's jobs lapse at once (open runs,
the first by id: 500 on the small ledger, 50,000 on the large one, as after an outage of a
cluster; not measured, then VACUUM ANALYZE of `job_leases`), and the two health views are
timed again, as rows of their own ("... (5% of jobs dead)"), with the orphans the last
answer counted. The monitor's next pass is `reconcile_interval_s` (300 s) after its first,
so the dead runs are still there while they are timed.

Any answer but a 2xx stops the benchmark with an error naming the call. The aims checked
and printed, met or not (either way the exit code is 0): every call's p50 on the large
ledger at most 50 ms, and at most 3 times its p50 on the small one; the rebuild's rate on
the large ledger at least 0.8 of its rate on the reference one. `--quick` makes the ledgers
2,000 jobs / 10,000 events, 10,000 / 50,000 and 50,000 / 250,000 (100 and 2,500 dead runs);
its aims are checked at those sizes, with as many calls as the full run (a few
milliseconds each: the p50 of 5 moved a call's growth past 3x when one or two of them met
the machine's other load). The machine's other load is in every figure.

Run: python -m bench.growth [--calls 15] [--quick]
"""

import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count, islice
from typing import Any

import httpx
import psycopg

from bench.health import chain_the_log, prepare_leases
from bench.http import answer, free_port, percentile, running_server
from bench.rebuild import HORIZON_POLL_S, HORIZON_WAIT_S, generate, registered, wait_for_horizon
from bench.scratch import benchmark_parser, scratch_database, server_address
from bench.threads import BenchError
from ledger.database import create_ledger_engine, libpq_url
from ledger.queries import QUEUE_ORDER
from ledger.settings import Settings
from projections.current_status.rebuild import rebuild_current_status

OPERATOR_TOKEN = "t-op-0123456789abcdef"
EMITTER_TOKEN = "t-trainer-0123456789abcdef"
TOKENS = f"op:operator:{OPERATOR_TOKEN},trainer:emitter:{EMITTER_TOKEN}"
REQUEST_TIMEOUT = 60.0

MAX_P50_MS = 50.0
MAX_GROWTH = 3.0
MIN_REBUILD_RATE_SHARE = 0.8
HORIZON_NOTE_S = 0.5
LEASE_SECONDS = 2.0
"""The served ledger's lease (JOBLEDGER_LEASE_SECONDS). Its runs are timed once they are
older than it, as a live ledger's long training runs are: the health view then reads every
open run, as it does in production, whether the ledger was built a minute ago or an hour."""
OPEN_RUNS = """
    SELECT count(*), coalesce(bool_and(started_at < now() - make_interval(secs => %s)), true)
    FROM job_status WHERE status IN ('running', 'paused')"""
"""How many runs are open, and whether all of them started more than a lease ago."""
DEAD_SHARE = 20
"""One job in this many has its run's lease lapse for the health views' second timing."""
DEAD = "(5% of jobs dead)"
HEALTH_VIEWS = ("/v1/health", "/api/training/health")
LAPSE_LEASES = """
    UPDATE job_leases SET expires_at = now() - interval '1 minute'
    WHERE job_id IN (
        SELECT l.job_id FROM job_leases l JOIN job_status s USING (job_id, attempt)
        WHERE s.status IN ('running', 'paused') AND l.expires_at > now()
        ORDER BY l.job_id LIMIT %s
    )"""
"""Let the leases of `n` open runs lapse, as if their workers had stopped heartbeating."""
NO_ID_PREFIX = "zq"
LABEL_WIDTH = 44
METRICS = "GET /metrics"
DATABASE_DOWN = "jobledger_database_up 0"
"""Two characters no job id starts with: a search that matches nothing."""


# -- options -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Size:
    jobs: int
    events: int

    def __str__(self) -> str:
        return f"{self.jobs:,} jobs / {self.events:,} events"


@dataclass(frozen=True, slots=True)
class Options:
    server_url: str
    small: Size
    reference: Size
    large: Size
    calls: int


FULL = (Size(10_000, 50_000), Size(200_000, 1_000_000), Size(1_000_000, 5_000_000))
QUICK = (Size(2_000, 10_000), Size(10_000, 50_000), Size(50_000, 250_000))


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--calls", type=int, help="timed calls of each kind (default 15)")
    parser.add_argument(
        "--quick", action="store_true", help="ledgers of 2,000, 10,000 and 50,000 jobs"
    )
    args = parser.parse_args(argv)
    calls = args.calls or 15
    if calls < 1:
        parser.error("--calls must be positive")
    small, reference, large = QUICK if args.quick else FULL
    return Options(args.database_url, small, reference, large, calls)


# -- a ledger ------------------------------------------------------------------------


def built_ledger(url: str, size: Size) -> float:
    """Generate `size` into `url` and rebuild its projection; return the rebuild's events/s."""
    made = generate(url, size.events, size.jobs)
    print(
        f"  setup (not measured): {made.events:,} events written with COPY in "
        f"{made.copy_seconds:.1f} s, VACUUM ANALYZE {made.vacuum_seconds:.1f} s",
        flush=True,
    )
    waited = wait_for_horizon(url)
    if waited >= HORIZON_NOTE_S:
        print(f"  waited {waited:.1f} s for older transactions on the server to end", flush=True)
    # As `jobledger projections rebuild` runs: without statement timeouts.
    engine = create_ledger_engine(url, Settings().unbounded())
    try:
        started = time.perf_counter()
        report = rebuild_current_status(engine)
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    if report.events != size.events:
        raise BenchError(f"rebuild replayed {report}, expected {size}")
    rate = report.events / seconds
    # Late events: committed after the oldest transaction open on the server when the
    # rebuild began (anyone's, on a shared server); applied under the swap's lock.
    print(
        f"  rebuild: {report.events:,} events in {seconds:.2f} s = {rate:,.0f} events/s "
        f"({report.late_events:,} of them late)",
        flush=True,
    )
    return rate


def settle(url: str, size: Size) -> int:
    """Live leases for every open run, then VACUUM ANALYZE, as on a running ledger; wait
    until every open run started more than `LEASE_SECONDS` ago; return how many are open."""
    prepare_leases(url, running=size.jobs)  # every open run's lease live
    chain_the_log(url)  # the chain kept to the end of the log
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE job_status")
        conn.execute("VACUUM ANALYZE job_leases")
        deadline = time.monotonic() + HORIZON_WAIT_S
        while True:
            open_runs, all_old = conn.execute(OPEN_RUNS, (LEASE_SECONDS,)).fetchone() or (0, True)
            if all_old or time.monotonic() > deadline:
                return int(open_runs)
            time.sleep(HORIZON_POLL_S)


@dataclass(frozen=True, slots=True)
class Picked:
    """Jobs of the ledger the calls name, chosen before they are timed."""

    queue_front: str
    queue_back: str
    queue_depth: int
    longest: str
    """The completed job with the most events."""
    longest_events: int

    @property
    def searches(self) -> tuple[str, str, str]:
        """Searches of ids: three characters from the middle of an id's random part (ids are
        "job-" and 10 random hex digits, then "-" and a number), eight characters of it, and
        the first two characters of every generated id."""
        return self.longest[7:10], self.longest[4:12], self.longest[:2]


def pick_jobs(url: str) -> Picked:
    queued = f"FROM job_status s WHERE s.status = 'queued' ORDER BY {QUEUE_ORDER}"
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        depth_row = conn.execute("SELECT count(*) FROM job_status WHERE status = 'queued'")
        depth = int(one(depth_row.fetchone()))
        if depth == 0:
            raise BenchError("the generated ledger has no queued job")
        front = str(one(conn.execute(f"SELECT s.job_id {queued} LIMIT 1").fetchone()))
        back_row = conn.execute(f"SELECT s.job_id {queued} OFFSET %s LIMIT 1", (depth - 1,))
        back = str(one(back_row.fetchone()))
        longest_row = conn.execute(
            "SELECT job_id, version FROM job_status WHERE status = 'completed' "
            "ORDER BY version DESC, job_id LIMIT 1"
        ).fetchone()
    if longest_row is None:
        raise BenchError("the generated ledger has no completed job")
    return Picked(front, back, depth, str(longest_row[0]), int(longest_row[1]))


def one(row: tuple[Any, ...] | None) -> Any:
    if row is None:
        raise BenchError("a setup query found no row")
    return row[0]


# -- the calls -----------------------------------------------------------------------


Request = Callable[[], httpx.Response]


@dataclass(frozen=True, slots=True)
class Timing:
    p50_ms: float
    p90_ms: float

    def __str__(self) -> str:
        return f"p50 {self.p50_ms:7.1f} ms  p90 {self.p90_ms:7.1f} ms"


def timed(call: Callable[[], object], calls: int) -> Timing:
    """`call` once untimed, then `calls` times: the p50 and p90 of those, in ms."""
    call()
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - started) * 1000)
    return Timing(statistics.median(latencies), percentile(latencies, 0.9))


def fresh_ids(prefix: str) -> Iterator[str]:
    run = uuid.uuid4().hex[:8]
    return (f"growth-{prefix}-{run}-{n:04d}" for n in count())


def registration(emitter: httpx.Client, status: str) -> Request:
    ids = fresh_ids(status)
    return lambda: emitter.post(
        "/v1/jobs", json={"job_id": next(ids), "status": status, "spec": registered(0).spec}
    )


def force_starts(operator: httpx.Client, emitter: httpx.Client, calls: int) -> Request:
    """Register a pending job for each call (and the untimed one), untimed; force-start each."""
    pending = list(islice(fresh_ids("force"), calls + 1))
    for job_id in pending:
        body = {"job_id": job_id, "status": "pending", "spec": registered(1).spec}
        answer(emitter.post("/v1/jobs", json=body))
    ids = iter(pending)
    return lambda: operator.post(f"/v1/jobs/{next(ids)}/force-start", json={})


def calls_of(
    operator: httpx.Client, emitter: httpx.Client, picked: Picked, calls: int
) -> list[tuple[str, Callable[[], Request]]]:
    """(label, a maker of the request to time): made just before it is timed."""
    three, eight, prefix = picked.searches

    def get(url: str) -> Callable[[], Request]:
        return lambda: lambda: operator.get(url)

    return [
        ("GET /v1/jobs", get("/v1/jobs")),
        ("GET /v1/jobs?status=queued", get("/v1/jobs?status=queued")),
        ("GET /v1/jobs?q=<3 chars of an id>", get(f"/v1/jobs?q={three}")),
        ("GET /v1/jobs?q=<8 chars of an id>", get(f"/v1/jobs?q={eight}")),
        ("GET /v1/jobs?q=<2 chars, all match>", get(f"/v1/jobs?q={prefix}")),
        ("GET /v1/jobs?q=<2 chars, none match>", get(f"/v1/jobs?q={NO_ID_PREFIX}")),
        ("GET /v1/health", get("/v1/health")),
        ("GET /api/training/health", get("/api/training/health")),
        ("POST /v1/jobs (queued)", lambda: registration(emitter, "queued")),
        ("POST /v1/jobs (pending)", lambda: registration(emitter, "pending")),
        ("POST /v1/jobs/{id}/force-start", lambda: force_starts(operator, emitter, calls)),
        ("GET /v1/jobs/{id} (queue back)", get(f"/v1/jobs/{picked.queue_back}")),
        ("GET /v1/jobs/{id} (queue front)", get(f"/v1/jobs/{picked.queue_front}")),
        ("GET /v1/events?after=0-0&limit=100", get("/v1/events?after=0-0&limit=100")),
        ("GET /v1/jobs/{id}/history", get(f"/v1/jobs/{picked.longest}/history")),
        (METRICS, get("/metrics")),
    ]


def time_call(request: Request, calls: int) -> tuple[Timing, list[httpx.Response]]:
    """One untimed call, then `calls` timed ones; return their timing and answers. A non-2xx
    answer raises `BenchError`."""
    answer_any(request())
    latencies, responses = [], []
    for _ in range(calls):
        started = time.perf_counter()
        response = request()
        latencies.append((time.perf_counter() - started) * 1000)
        answer_any(response)
        responses.append(response)
    return Timing(statistics.median(latencies), percentile(latencies, 0.9)), responses


def scrapes_without_figures(responses: list[httpx.Response]) -> str:
    """A scrape whose read of the ledger outlasted the probe timeout says the database is
    down: how many did."""
    down = sum(DATABASE_DOWN in response.text for response in responses)
    return f"{down} of {len(responses)} scrapes said {DATABASE_DOWN!r}" if down else ""


def answer_any(response: httpx.Response) -> None:
    if not response.is_success:
        answer(response)  # raises, naming the call and its answer


def client(base_url: str, token: str) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """`values` in this process's environment (a server started inside inherits them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def lapse_leases(url: str, count: int) -> int:
    """The leases of `count` open runs lapsed, then VACUUM ANALYZE; return how many."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        lapsed = conn.execute(LAPSE_LEASES, (count,)).rowcount
        conn.execute("VACUUM ANALYZE job_leases")
    return lapsed


def print_timing(label: str, timing: Timing, note: str = "") -> None:
    print(f"    {label:<{LABEL_WIDTH}} {timing}" + (f"  ({note})" if note else ""), flush=True)


def time_calls(url: str, calls: int, dead_runs: int) -> dict[str, Timing]:
    """Serve the ledger at `url` and time every call on it, printing each; then let
    `dead_runs` open runs' leases lapse and time the health views again."""
    picked = pick_jobs(url)
    print(
        f"  {picked.queue_depth:,} queued; history of {picked.longest} "
        f"({picked.longest_events} events); searches {picked.searches}",
        flush=True,
    )
    timings: dict[str, Timing] = {}
    with (
        environment(JOBLEDGER_LEASE_SECONDS=str(LEASE_SECONDS)),
        running_server(url, free_port(), TOKENS) as server,
        client(server.base_url, OPERATOR_TOKEN) as operator,
        client(server.base_url, EMITTER_TOKEN) as emitter,
    ):
        print(f"  server {server.base_url}: {server.recovery}", flush=True)
        for label, make in calls_of(operator, emitter, picked, calls):
            try:
                timing, responses = time_call(make(), calls)
            except BenchError as exc:
                raise BenchError(f"{label}: {exc}") from exc
            timings[label] = timing
            print_timing(
                label, timing, scrapes_without_figures(responses) if label == METRICS else ""
            )
        print(f"  {lapse_leases(url, dead_runs):,} open runs' leases lapsed", flush=True)
        for path in HEALTH_VIEWS:
            label = f"GET {path} {DEAD}"
            timing, responses = time_call(getter(operator, path), calls)
            timings[label] = timing
            print_timing(label, timing, orphans_seen(responses[-1]))
    return timings


def getter(operator: httpx.Client, path: str) -> Request:
    return lambda: operator.get(path)


def orphans_seen(response: httpx.Response) -> str:
    """How many orphans a health view's answer counted (the old frontend's lists a page)."""
    body = response.json()
    if "orphaned_count" in body:
        return f"orphaned_count {body['orphaned_count']:,}"
    return f"{len(body['orphaned_jobs'])} orphaned_jobs listed"


# -- the benchmark -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Results:
    rebuild_rates: dict[Size, float]
    small: dict[str, Timing]
    large: dict[str, Timing]


def run(options: Options) -> Results:
    """Each ledger in a scratch database of its own, dropped before the next is built."""
    rates: dict[Size, float] = {}
    timings: dict[Size, dict[str, Timing]] = {}
    for size in (options.small, options.reference, options.large):
        print(f"ledger of {size}", flush=True)
        with scratch_database(options.server_url) as url:
            rates[size] = built_ledger(url, size)
            if size != options.reference:
                open_runs = settle(url, size)
                print(f"  {open_runs:,} open runs, each with a live lease", flush=True)
                timings[size] = time_calls(url, options.calls, size.jobs // DEAD_SHARE)
    return Results(rates, timings[options.small], timings[options.large])


def table(results: Results, options: Options) -> list[str]:
    heads = [f"p50 / p90 ms, {size.jobs:,} jobs" for size in (options.small, options.large)]
    width = max(len(head) for head in heads)

    def cell(timing: Timing) -> str:
        return f"{timing.p50_ms:.1f} / {timing.p90_ms:.1f}".rjust(width)

    lines = [f"{'call':<{LABEL_WIDTH}}  {heads[0]:>{width}}  {heads[1]:>{width}}  growth"]
    for label, at_large in results.large.items():
        at_small = results.small[label]
        growth = at_large.p50_ms / at_small.p50_ms
        lines.append(f"{label:<{LABEL_WIDTH}}  {cell(at_small)}  {cell(at_large)}  {growth:5.2f}x")
    return lines


def aims(results: Results, options: Options) -> list[tuple[bool, str]]:
    """(met, what) for every aim."""
    checked = []
    for label, at_large in results.large.items():
        growth = at_large.p50_ms / results.small[label].p50_ms
        fast = at_large.p50_ms <= MAX_P50_MS
        steady = growth <= MAX_GROWTH
        checked.append(
            (
                fast and steady,
                f"{label}: p50 {at_large.p50_ms:.1f} ms {'<=' if fast else '>'} "
                f"{MAX_P50_MS:g} ms at {options.large.jobs:,} jobs, {growth:.2f}x "
                f"{'<=' if steady else '>'} {MAX_GROWTH:g}x its p50 at {options.small.jobs:,}",
            )
        )
    share = results.rebuild_rates[options.large] / results.rebuild_rates[options.reference]
    met = share >= MIN_REBUILD_RATE_SHARE
    checked.append(
        (
            met,
            f"rebuild rate at {options.large.events:,} events = {share:.2f} of the rate at "
            f"{options.reference.events:,} ({'>=' if met else '<'} {MIN_REBUILD_RATE_SHARE:g})",
        )
    )
    return checked


def report(results: Results, options: Options) -> None:
    print("\nrebuild (rebuild_current_status):")
    for size, rate in results.rebuild_rates.items():
        print(f"  {size}: {rate:,.0f} events/s")
    print(f"\ncalls over HTTP, {options.calls} timed each; growth = large p50 / small p50")
    for line in table(results, options):
        print(line)
    print_aims(aims(results, options))


def print_aims(checked: list[tuple[bool, str]]) -> None:
    """Each aim, met or not, and how many were met."""
    print("\naims:")
    for met, what in checked:
        print(f"  {'met    ' if met else 'NOT MET'}  {what}")
    print(f"{sum(met for met, _ in checked)} of {len(checked)} aims met")


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    print(
        f"growth benchmark on {server_address(options.server_url)}: small ledger {options.small}, "
        f"reference {options.reference} (rebuild only), large {options.large}; "
        f"{options.calls} timed calls of each kind",
        flush=True,
    )
    try:
        results = run(options)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report(results, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
