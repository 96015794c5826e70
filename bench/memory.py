"""Server memory under concurrent maximal requests: what the largest bodies, specs and
pages cost the `jobledger serve` process.

Setup (not measured): a scratch database and a real server subprocess with an
emitter's token; the resident set size (RSS) of the server process is sampled
every 10 ms by a thread of this process (psutil) throughout.

Phases, each at `--clients` concurrent clients:

1. oversized bodies: each client sends bodies of `--oversized-mib` MiB (over the
   1 MiB body limit): each must be a 413, refused before the body is read whole;
2. maximal specs: each client registers jobs whose spec is just under the 64 KiB
   spec limit, `--jobs` in all;
3. maximal pages: each client reads, for `--seconds`, the largest pages there are
   of those jobs: `GET /v1/jobs?limit=500` and `GET /v1/events?limit=1000`.

It prints the RSS after start-up (the baseline), the peak in each phase and its
rise over the baseline, and the size of the largest pages: a list page and a feed
page carry no specs (`spec` is null in lists; a registration in the feed has
`spec_bytes`), so they stay small whatever the specs weigh.

Run: python -m bench.memory [--clients 8] [--jobs 400] [--seconds 5] [--quick]
"""

import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import psutil

from bench.http import free_port, running_server
from bench.scratch import benchmark_parser, scratch_database
from bench.threads import BenchError

TOKEN = "t-trainer-0123456789abcdef"
TOKENS = f"trainer:emitter:{TOKEN}"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
SPEC_BYTES = 64 * 1024 - 64
"""A spec just under the limit, as JSON."""
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Options:
    database_url: str
    clients: int
    jobs: int
    seconds: float
    oversized_mib: int


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = benchmark_parser(__doc__ or "")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--oversized-mib", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="fewer jobs, shorter reads (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.seconds, args.oversized_mib = 120, 2.0, 20
    return Options(args.database_url, args.clients, args.jobs, args.seconds, args.oversized_mib)


class PeakSampler:
    """The largest RSS of a process, sampled on a thread of its own."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    @contextmanager
    def sampling(self) -> Iterator["PeakSampler"]:
        self.peak = self.rss()
        self.stop.clear()
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join()

    def _sample(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, self.rss())


def concurrently(clients: int, work: Callable[[httpx.Client, int], None]) -> None:
    def run(index: int) -> None:
        with httpx.Client(headers=HEADERS, timeout=60) as client:
            work(client, index)

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(run, index) for index in range(clients)]:
            future.result()


def oversized(base_url: str, megabytes: int) -> Callable[[httpx.Client, int], None]:
    def work(client: httpx.Client, index: int) -> None:
        body = b'{"spec": {"x": "' + b"x" * (megabytes * MIB) + b'"}}'
        for _ in range(2):
            response = client.post(
                f"{base_url}/v1/jobs", content=body, headers={"Content-Type": "application/json"}
            )
            if response.status_code != 413:
                raise BenchError(f"an oversized body got {response.status_code}, not 413")

    return work


def maximal_specs(base_url: str, jobs: int, clients: int) -> Callable[[httpx.Client, int], None]:
    filler = "x" * (SPEC_BYTES - len('{"x":""}'))

    def work(client: httpx.Client, index: int) -> None:
        for n in range(index, jobs, clients):
            body = {"job_id": f"big-{n}", "spec": {"x": filler}}
            response = client.post(f"{base_url}/v1/jobs", json=body)
            if response.status_code != 201:
                raise BenchError(f"registering a maximal spec got {response.status_code}")

    return work


def maximal_pages(
    base_url: str, seconds: float, sizes: dict[str, list[int]]
) -> Callable[[httpx.Client, int], None]:
    pages = {"jobs": "/v1/jobs?limit=500", "feed": "/v1/events?after=0-0&limit=1000"}

    def work(client: httpx.Client, index: int) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for name, path in pages.items():
                response = client.get(base_url + path)
                if response.status_code != 200:
                    raise BenchError(f"GET {path} got {response.status_code}")
                sizes[name].append(len(response.content))

    return work


def megabytes(size: int) -> str:
    return f"{size / MIB:,.1f} MiB"


def run(options: Options) -> str:
    lines = []
    with (
        scratch_database(options.database_url) as url,
        running_server(url, free_port(), TOKENS) as server,
    ):
        sampler = PeakSampler(server.pid)
        baseline = sampler.rss()
        lines.append(f"server RSS after start-up: {megabytes(baseline)}")
        sizes: dict[str, list[int]] = {"jobs": [], "feed": []}
        phases = [
            (
                f"{options.clients} clients x 2 bodies of {options.oversized_mib} MiB (413)",
                oversized(server.base_url, options.oversized_mib),
            ),
            (
                f"{options.jobs} specs of 64 KiB by {options.clients} clients",
                maximal_specs(server.base_url, options.jobs, options.clients),
            ),
            (
                f"{options.clients} clients reading the largest pages for {options.seconds:g} s",
                maximal_pages(server.base_url, options.seconds, sizes),
            ),
        ]
        for title, work in phases:
            with sampler.sampling():
                concurrently(options.clients, work)
            rise = sampler.peak - baseline
            lines.append(f"{title}: peak {megabytes(sampler.peak)} (+{megabytes(rise)})")
        for name, measured in sizes.items():
            lines.append(
                f"largest {name} page: {max(measured):,} bytes "
                f"(median {statistics.median(measured):,.0f}, {len(measured)} reads)"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    print(run(parse_options(argv)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
