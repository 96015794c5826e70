"""The operator console's first paint of the jobs list, in headless Chromium, on a big ledger.

Setup (not measured): a scratch database filled by the `bench.rebuild`
generator (10,000 jobs by default, about 4 events each), its projection rebuilt,
every open run given a live lease and the log's hash chain kept to its end (a
healthy ledger: its monitor keeps the chain as the log grows), a real
`jobledger serve` on it, Debian's Chromium driven by Playwright.

Measured, each in a fresh browser context (no cache, no session), rounds
alternating so drift on a noisy machine hits every figure alike:

- console: navigation start to the `jobs-list-painted` mark, which the page
  sets in the first animation frame after it has drawn the list's first page;
  for the unfiltered list, a status filter and a search;
- baseline: the same page's two data reads (`GET /v1/jobs?limit=50` and
  `GET /v1/health`, in parallel), fetched from an empty page of the same origin:
  what the list costs before any page exists around it;
- floor: navigation start to the load event of a tiny page (`/livez`) in a
  fresh context: what the browser costs before any page of ours runs.

The summary gives medians, `ratio` = console / baseline, and the 300 ms aim for
each first paint, which holds at a million jobs (`--jobs 1000000`).

Run: python -m bench.console [--jobs 10000] [--rounds 5] [--quick]
"""

import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psycopg
from playwright.sync_api import Browser, sync_playwright

from bench.chromium import CHROMIUM_FLAGS, find_chromium
from bench.health import chain_the_log, prepare_leases
from bench.http import TOKEN, free_port, running_server
from bench.rebuild import generate
from bench.scratch import benchmark_parser, scratch_database
from ledger.database import create_ledger_engine, libpq_url
from ledger.settings import Settings
from projections.current_status.rebuild import rebuild_current_status

EVENTS_PER_JOB = 4
AIM_MS = 300.0
TOKEN_KEY = "jobledger.token"

DATA_READS = """async (token) => {
    const headers = { Authorization: `Bearer ${token}` };
    const started = performance.now();
    const answers = await Promise.all(
        ["/v1/jobs?limit=50", "/v1/health"].map((path) => fetch(path, { headers })));
    await Promise.all(answers.map((answer) => answer.json()));
    return performance.now() - started;
}"""


LIST_PAINTED = """() => new Promise((resolve) => {
    new PerformanceObserver((marks, observer) => {
        const mark = marks.getEntriesByName("jobs-list-painted")[0];
        if (mark) {
            observer.disconnect();
            resolve(mark.startTime);
        }
    }).observe({ type: "mark", buffered: true });
})"""


@dataclass(frozen=True, slots=True)
class Options:
    server_url: str
    jobs: int
    rounds: int


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, as a smoke test")
    args = parser.parse_args(argv)
    return Options(args.database_url, args.jobs, 2 if args.quick else args.rounds)


def first_paint_ms(browser: Browser, url: str) -> float:
    """Navigation start to the list drawn, in a fresh context signed in with the token."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        context.add_init_script(f"sessionStorage.setItem({TOKEN_KEY!r}, {TOKEN!r})")
        page = context.new_page()
        page.goto(url)
        painted: float = page.evaluate(LIST_PAINTED)
        return painted
    finally:
        context.close()


def data_reads_ms(browser: Browser, base_url: str) -> float:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(base_url + "/livez")
        elapsed: float = page.evaluate(DATA_READS, TOKEN)
        return elapsed
    finally:
        context.close()


def empty_page_ms(browser: Browser, base_url: str) -> float:
    """Navigation start to the load event of a tiny page, in a fresh context."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(base_url + "/livez")
        loaded: float = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        return loaded
    finally:
        context.close()


def run(options: Options, chromium: str) -> None:
    with scratch_database(options.server_url) as url:
        made = generate(url, options.jobs * EVENTS_PER_JOB, options.jobs)
        built_projection(url, options.jobs)
        print(
            f"setup (not measured): {made.events:,} events over {options.jobs:,} jobs", flush=True
        )
        with running_server(url, free_port()) as server, sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            base = server.base_url
            views: dict[str, Callable[[], float]] = {
                "console, all jobs": lambda: first_paint_ms(browser, base + "/"),
                "console, status=running": lambda: first_paint_ms(
                    browser, base + "/#/?status=running"
                ),
                "console, search": lambda: first_paint_ms(browser, base + "/#/?q=-77"),
                "baseline: data reads": lambda: data_reads_ms(browser, base),
                "floor: an empty page loads": lambda: empty_page_ms(browser, base),
            }
            first_paint_ms(browser, base + "/")  # warm the server's pool and plans
            timings: dict[str, list[float]] = {name: [] for name in views}
            for _ in range(options.rounds):
                for name, measure in views.items():
                    timings[name].append(measure())
            browser.close()
    medians = {name: statistics.median(values) for name, values in timings.items()}
    baseline = medians["baseline: data reads"]
    for name, median in medians.items():
        spread = ", ".join(f"{value:.0f}" for value in timings[name])
        print(f"{name:28} median {median:7.1f} ms  ({spread})")
    for name, median in medians.items():
        if name.startswith("console"):
            verdict = "met" if median <= AIM_MS else "NOT met"
            print(
                f"{name}: ratio {median / baseline:.2f} x baseline; "
                f"aim <= {AIM_MS:.0f} ms for {options.jobs:,} jobs: {verdict}"
            )


def built_projection(url: str, jobs: int) -> None:
    """Rebuild the projection, lease every open run and analyze, as a healthy ledger
    that grew to this size would have them: the server then starts at once, whatever
    the size, and its monitor has no dead runs to recover while the console is timed."""
    engine = create_ledger_engine(url, Settings(database_url=url).unbounded())
    try:
        rebuild_current_status(engine)
    finally:
        engine.dispose()
    prepare_leases(url, running=jobs)  # a healthy ledger: every open run's lease live
    chain_the_log(url)  # and its chain kept
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE job_status")
        conn.execute("VACUUM ANALYZE job_leases")


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    chromium = find_chromium()
    if chromium is None:
        print("no Chromium: install Debian's chromium package", file=sys.stderr)
        return 1
    run(options, chromium)
    return 0


if __name__ == "__main__":
    sys.exit(main())
