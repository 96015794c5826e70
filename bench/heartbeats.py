"""Heartbeats at fleet scale: a paced stream of heartbeats over HTTP while lifecycles run.

10,000 GPUs heartbeating every 30 s is 333 heartbeats/s on top of the commands. The aim:
`jobledger serve` answers 1,000 heartbeats/s with p99 under 50 ms while lifecycle clients
keep registering, claiming and completing jobs.

Setup (not measured): a scratch database and a real server subprocess (as `bench.http`
starts it, with `--workers` processes), and `--runs` jobs registered and started over
HTTP: their leases are what the heartbeats renew.

Each round measures, for `--seconds` each:

- lifecycles alone: `--lifecycle-clients` connections, each registering a job, claiming
  the next one (`POST /v1/queue/claim`) and completing it, in a loop;
- the same lifecycles with heartbeats, once for each figure of `--per-request`:
  `--senders` connections send `--rate` heartbeats per second between them on a fixed
  schedule. With 1 a request, each is `POST /v1/jobs/{id}/heartbeat` to the next run in
  turn, as a process per GPU sends them; with K, each request is `POST /v1/heartbeats`
  for the next host's K runs, as one agent per host of K GPUs (or a training server
  for all its runs) sends them, and the rate of requests is the rate over K. A
  heartbeat's latency is counted from the time it was due, not from when it was sent,
  so a server that falls behind shows in the latency instead of in fewer heartbeats
  sent. Any answer but a 2xx, or a run not renewed, stops the benchmark.

The clients speak HTTP/1.1 on plain keep-alive sockets, with each request's bytes built
once: the load generator costs the shared machine as little CPU as it can, so the figure
is the server's. The summary gives the median of the rounds: heartbeats answered per
second, the p50 and p99 of every heartbeat's latency, and the lifecycle rate with
heartbeats beside the rate without.

Run: python -m bench.heartbeats [--seconds 10] [--rounds 2] [--rate 1000] [--per-request 1,8]
[--workers 1] [--quick]
"""

import argparse
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bench.http import HOST, TOKEN, free_port, percentile, running_server
from bench.scratch import benchmark_parser, scratch_database
from bench.threads import BenchError, settled_heap
from ledger.leases import MAX_HEARTBEATS

AIM_RATE = 1000.0
AIM_P99_MS = 50.0
TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Options:
    server_url: str
    seconds: float
    rounds: int
    rate: float
    senders: int
    lifecycle_clients: int
    runs: int
    workers: int
    per_request: tuple[int, ...]


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--seconds", type=float, help="length of each measurement (default 10)")
    parser.add_argument("--rounds", type=int, help="rounds (default 2)")
    parser.add_argument("--rate", type=float, default=AIM_RATE, help="heartbeats per second")
    parser.add_argument("--senders", type=int, default=64, help="heartbeat connections")
    parser.add_argument("--lifecycle-clients", type=int, default=4, help="lifecycle connections")
    parser.add_argument("--runs", type=int, default=256, help="running jobs heartbeating")
    parser.add_argument("--workers", type=int, default=1, help="the server's processes")
    parser.add_argument(
        "--per-request",
        type=_counts,
        default=(1, 8),
        help="heartbeats per request, each figure measured in turn (default 1,8)",
    )
    parser.add_argument("--quick", action="store_true", help="5 s per measurement, 1 round")
    args = parser.parse_args(argv)
    seconds = args.seconds or (5.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if args.quick else 2)
    numbers = (seconds, rounds, args.rate, args.senders, args.runs, args.workers)
    if min(numbers) <= 0 or args.lifecycle_clients < 0:
        parser.error("every figure must be positive")
    if max(args.per_request) > min(args.runs, MAX_HEARTBEATS):
        parser.error("--per-request must be at most --runs and the server's limit")
    return Options(
        args.database_url,
        seconds,
        rounds,
        args.rate,
        args.senders,
        args.lifecycle_clients,
        args.runs,
        args.workers,
        args.per_request,
    )


def _counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(","))
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("positive whole numbers, separated by commas")
    return counts


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=TIMEOUT_S)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    @staticmethod
    def post(path: str, body: dict[str, Any]) -> bytes:
        """The bytes of `POST path` with `body` as JSON."""
        content = orjson.dumps(body)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n\r\n"
        )
        return head.encode() + content

    def send(self, request: bytes) -> tuple[int, bytes]:
        """The answer's status and body."""
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buffer) < length:
            self._receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, body

    def json(self, request: bytes) -> Any:
        status, body = self.send(request)
        if not 200 <= status < 300:
            raise BenchError(f"{request.split(b' ', 2)[1].decode()}: {status} {body[:300]!r}")
        return orjson.loads(body) if body else None

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise BenchError("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def start_runs(port: int, count: int) -> list[dict[str, Any]]:
    """`count` jobs registered and started: each run as a heartbeat names it."""
    conn = Connection(port)
    runs = []
    try:
        for n in range(count):
            job_id = f"hb-{n:05d}"
            conn.json(Connection.post("/v1/jobs", {"job_id": job_id}))
            worker = {"worker_id": f"gpu-{n:05d}", "host": f"node-{n // 8:04d}"}
            claim = conn.json(Connection.post(f"/v1/jobs/{job_id}/start", worker))
            runs.append(
                {"job_id": job_id, "attempt": claim["attempt"], "run_token": claim["run_token"]}
            )
    finally:
        conn.close()
    return runs


def heartbeat_requests(runs: list[dict[str, Any]], per_request: int) -> list[bytes]:
    """The requests that heartbeat every run once, `per_request` runs each, built once."""
    if per_request == 1:
        return [
            Connection.post(
                f"/v1/jobs/{run['job_id']}/heartbeat",
                {"attempt": run["attempt"], "run_token": run["run_token"]},
            )
            for run in runs
        ]
    hosts = [runs[first : first + per_request] for first in range(0, len(runs), per_request)]
    return [
        Connection.post("/v1/heartbeats", {"runs": host})
        for host in hosts
        if len(host) == per_request
    ]


@dataclass(slots=True)
class Load:
    """What the threads of one measurement share."""

    stop: threading.Event
    lifecycles: list[int]
    latencies_ms: list[list[float]]
    errors: list[BaseException]


def run_lifecycles(conn: Connection, label: str, load: Load, index: int) -> None:
    claim = Connection.post("/v1/queue/claim", {"worker_id": f"{label}-{index}", "host": "bench"})
    n = 0
    while not load.stop.is_set():
        conn.json(Connection.post("/v1/jobs", {"job_id": f"{label}-{index}-{n}"}))
        claimed = conn.json(claim)
        if claimed is not None:  # None: another client took the job (204)
            run = {"attempt": claimed["attempt"], "run_token": claimed["run_token"]}
            job_id = claimed["job"]["job_id"]
            conn.json(Connection.post(f"/v1/jobs/{job_id}/complete", run))
            load.lifecycles[index] += 1
        n += 1


@dataclass(frozen=True, slots=True)
class Schedule:
    start: float
    every_s: float


def send_heartbeats(
    conn: Connection, requests: list[bytes], schedule: Schedule, load: Load, index: int
) -> None:
    """Requests due at `start + k * every_s`, each the next of `requests`; a request of
    many heartbeats must renew every one."""
    latencies = load.latencies_ms[index]
    k = 0
    while not load.stop.is_set():
        due = schedule.start + k * schedule.every_s
        wait = due - time.perf_counter()
        if wait > 0 and load.stop.wait(wait):
            break
        answer = conn.json(requests[k % len(requests)])
        latencies.append((time.perf_counter() - due) * 1000)
        if answer.get("refused"):
            raise BenchError(f"{answer['refused']} heartbeat(s) refused: {answer['results'][:3]}")
        k += 1


def on_connection(port: int, load: Load, work: Callable[..., None], *args: Any) -> None:
    """`work(connection, *args)` on a connection of its own; a failure stops every client."""
    conn = Connection(port)
    try:
        work(conn, *args)
    except BaseException as exc:
        load.errors.append(exc)
        load.stop.set()
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class Beside:
    """Heartbeats sent `per_request` a request beside the lifecycles."""

    per_request: int
    lifecycles: float
    heartbeats: float
    latencies_ms: list[float]


@dataclass(frozen=True, slots=True)
class Round:
    lifecycles_alone: float
    beside: list[Beside]


def measure(
    options: Options, port: int, requests: list[bytes], per_request: int, label: str
) -> tuple[float, float, list[float]]:
    """Lifecycles (and heartbeats, when there are `requests`) for `options.seconds`:
    lifecycles/s, heartbeats/s, each request's latency."""
    senders = min(options.senders, len(requests))  # no heartbeats without requests
    rate = options.rate / per_request
    load = Load(
        threading.Event(),
        [0] * options.lifecycle_clients,
        [[] for _ in range(senders)],
        [],
    )
    with settled_heap():
        start = time.perf_counter() + 0.5
        shares = [requests[index::senders] for index in range(senders)]
        interval = senders / rate
        schedules = [Schedule(start + index / rate, interval) for index in range(senders)]
        threads = [
            threading.Thread(
                target=on_connection, args=(port, load, run_lifecycles, label, load, index)
            )
            for index in range(options.lifecycle_clients)
        ] + [
            threading.Thread(
                target=on_connection,
                args=(port, load, send_heartbeats, shares[index], schedules[index], load, index),
            )
            for index in range(senders)
        ]
        for thread in threads:
            thread.start()
        time.sleep(max(0.0, start - time.perf_counter()))
        lifecycles_before = sum(load.lifecycles)
        load.stop.wait(options.seconds)
        elapsed = time.perf_counter() - start
        lifecycles = sum(load.lifecycles) - lifecycles_before
        answered = per_request * sum(len(latencies) for latencies in load.latencies_ms)
        load.stop.set()
        for thread in threads:
            thread.join()
    if load.errors:
        raise BenchError(f"{len(load.errors)} client(s) failed") from load.errors[0]
    latencies = [latency for per_sender in load.latencies_ms for latency in per_sender]
    return lifecycles / elapsed, answered / elapsed, latencies


def bench(options: Options) -> list[Round]:
    rounds = []
    with (
        scratch_database(options.server_url) as url,
        running_server(url, free_port(), workers=options.workers) as server,
    ):
        port = int(server.base_url.rpartition(":")[2])
        runs = start_runs(port, options.runs)
        requests = {k: heartbeat_requests(runs, k) for k in options.per_request}
        for number in range(1, options.rounds + 1):
            alone, _, _ = measure(options, port, [], 1, f"a{number}")
            print(f"  round={number}  lifecycles {alone:5.0f}/s alone", flush=True)
            beside = []
            for k in options.per_request:
                label = f"b{number}-{k}"
                lifecycles, rate, latencies = measure(options, port, requests[k], k, label)
                beside.append(Beside(k, lifecycles, rate, latencies))
                print(
                    f"  round={number}  {k:>3} a request: heartbeats {rate:6.0f}/s "
                    f"({latency_text(latencies)})  lifecycles {lifecycles:5.0f}/s beside them",
                    flush=True,
                )
            rounds.append(Round(alone, beside))
    return rounds


def latency_text(latencies_ms: list[float]) -> str:
    return (
        f"p50 {statistics.median(latencies_ms):.1f} ms, "
        f"p99 {percentile(latencies_ms, 0.99):.1f} ms from when due"
    )


def summary(rounds: list[Round]) -> str:
    alone = statistics.median(r.lifecycles_alone for r in rounds)
    lines = []
    for index, k in enumerate(b.per_request for b in rounds[0].beside):
        measured = [r.beside[index] for r in rounds]
        rate = statistics.median(b.heartbeats for b in measured)
        p99 = statistics.median(percentile(b.latencies_ms, 0.99) for b in measured)
        p50 = statistics.median(statistics.median(b.latencies_ms) for b in measured)
        beside = statistics.median(b.lifecycles for b in measured)
        met = rate >= 0.98 * AIM_RATE and p99 < AIM_P99_MS
        lines.append(
            f"{k:>3} a request: heartbeats={rate:.0f}/s (p50 {p50:.1f} ms, p99 {p99:.1f} ms)  "
            f"lifecycles={beside:.0f}/s beside them, {alone:.0f}/s alone "
            f"(ratio {beside / alone:.2f}); aim ({AIM_RATE:,.0f} heartbeats/s, "
            f"p99 < {AIM_P99_MS:g} ms): " + ("met" if met else "NOT met")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    print(
        f"heartbeat benchmark: {options.rate:g} heartbeats/s over {options.senders} "
        f"connections to {options.runs} runs, "
        f"{' and '.join(map(str, options.per_request))} a request, "
        f"{options.lifecycle_clients} lifecycle "
        f"client(s), {options.workers} server process(es), {options.seconds:g} s per "
        f"measurement, {options.rounds} round(s)",
        flush=True,
    )
    rounds = bench(options)
    print(f"median of {options.rounds} round(s)")
    print(summary(rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
