"""HTTP throughput: checkpoint commands per second through `jobledger serve`, beside in-process.

Setup (not measured): a scratch database and a real server subprocess
(`python -m api.cli serve`) on it, with one emitter token; the benchmark waits
for its recovery line and for `GET /readyz` to answer 200.

What is measured, at 16 concurrent clients (threads, each on a job of its own,
so there are no conflicts), for a fixed time per measurement:

- http: each client registers its job and starts it (`POST /v1/jobs`,
  `POST /v1/jobs/{id}/start`), then sends `POST /v1/jobs/{id}/checkpoint` in a
  loop over a keep-alive `httpx.Client` of its own, with a bearer token. Every
  request's latency is recorded; any answer but a 2xx stops the benchmark.
- in-process: the same checkpoint command through
  `JobService.execute(job_id, SaveCheckpoint(...))` in this process, on jobs
  registered through the service and started through the queue (`JobQueue.start`),
  as the HTTP route starts them.

HTTP and in-process measurements alternate (http, in-process, http, ...) so
drift on a noisy machine hits both. The summary gives the median cmd/s of each
path, the p50 and p99 latency of all HTTP requests, and `ratio` = http /
in-process: the share of the store's command rate that survives the HTTP layer.
What it loses is the HTTP overhead: request parsing, routing, FastAPI's
resolution of the handler's parameters (the token check, the typed path and
header values, the body's pydantic validation), JSON in both directions, the
request metrics, and a hop to the server's thread pool per request. On a small
machine (2 cores here) the server, the 16 client threads and PostgreSQL all
share the CPU, so the clients' own httpx work counts against the HTTP figure
too; only the ratio means much across machines.

Run: python -m bench.http [--seconds 5] [--rounds 2] [--clients 16] [--quick]
"""

import contextlib
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import httpx
import psutil

from bench.scratch import benchmark_parser, scratch_database, server_address
from bench.threads import BenchError, Client, Measurement, measure
from ledger.commands import RegisterJob, SaveCheckpoint, WorkerIdentity
from ledger.database import create_ledger_engine
from ledger.queue import JobQueue
from ledger.service import JobService
from ledger.settings import Settings
from ledger.store import EventStore

TOKEN = "t-trainer-0123456789abcdef"
TOKENS = f"trainer:emitter:{TOKEN}"
ACTOR = "bench"
HOST = "127.0.0.1"
READY_SECONDS = 30.0
"""How long the server has to print its recovery line and answer /readyz with 200."""
STOP_SECONDS = 35.0
"""How long the server has to exit after SIGTERM (its graceful shutdown allows 30 s)."""
REQUEST_TIMEOUT = 30.0
POOL_SIZE = 20
STDERR_TAIL = 4000
CLEAN_EXITS = (0,)
"""`jobledger serve` returns normally from a SIGTERM once its graceful shutdown is done."""


# -- options -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    server_url: str
    seconds: float
    rounds: int
    clients: int
    port: int
    workers: int


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--seconds", type=float, help="length of each measurement (default 5)")
    parser.add_argument("--rounds", type=int, help="http/in-process pairs (default 2)")
    parser.add_argument("--clients", type=int, help="concurrent clients (default 16)")
    parser.add_argument(
        "--port", type=int, default=0, help="the server's port (default: a free one)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="the server's processes (serve --workers)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 s per measurement, 1 round, 4 clients"
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.0 if args.quick else 5.0)
    rounds = args.rounds or (1 if args.quick else 2)
    clients = args.clients or (4 if args.quick else 16)
    if seconds <= 0 or rounds < 1 or clients < 1 or args.workers < 1:
        parser.error("--seconds, --rounds, --clients and --workers must be positive")
    port = args.port or free_port()
    return Options(args.database_url, seconds, rounds, clients, port, args.workers)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


# -- the server --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Server:
    base_url: str
    recovery: str
    """The first line the server printed: its recovery summary."""
    pid: int


@contextmanager
def running_server(
    database_url: str, port: int, tokens: str = TOKENS, workers: int = 1
) -> Iterator[Server]:
    """`jobledger serve` on `database_url`, ready; stopped with SIGTERM on the way out."""
    env = os.environ | {"JOBLEDGER_DATABASE_URL": database_url, "JOBLEDGER_TOKENS": tokens}
    command = [sys.executable, "-m", "api.cli", "serve", "--host", HOST, "--port", str(port)]
    command += ["--workers", str(workers)]
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            assert process.stdout is not None
            base_url = f"http://{HOST}:{port}"
            deadline = time.monotonic() + READY_SECONDS
            recovery = first_line(process, process.stdout, deadline)
            wait_ready(process, base_url, deadline)
            yield Server(base_url, recovery, process.pid)
        except BaseException as exc:
            stop(process)
            exc.add_note(f"server stderr:\n{tail(stderr)}")
            raise
        else:
            code = stop(process)
            if code not in CLEAN_EXITS:
                raise BenchError(f"the server exited with {code}:\n{tail(stderr)}")


def first_line(process: subprocess.Popen[str], stdout: IO[str], deadline: float) -> str:
    """The server's first stdout line; the rest of its stdout is drained in the background."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        lines.put(stdout.readline())
        for _ in stdout:  # keep the pipe from filling up
            pass

    threading.Thread(target=read, name="server-stdout", daemon=True).start()
    try:
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise BenchError(f"no recovery line from the server in {READY_SECONDS:g} s") from None
    if not line:
        raise BenchError(f"the server exited ({process.wait()}) before its recovery line")
    return line.rstrip("\n")


def wait_ready(process: subprocess.Popen[str], base_url: str, deadline: float) -> None:
    """Poll GET /readyz until it answers 200."""
    last = "no answer"
    with httpx.Client(base_url=base_url, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"the server exited ({process.returncode}) before it was ready")
            try:
                response = client.get("/readyz")
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text}"
            time.sleep(0.05)
    raise BenchError(f"/readyz not 200 within {READY_SECONDS:g} s (last: {last})")


def stop(process: subprocess.Popen[str]) -> int:
    """SIGTERM, then wait; kill only if it overstays."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def tail(stream: IO[str]) -> str:
    stream.flush()
    stream.seek(0)
    return stream.read()[-STDERR_TAIL:] or "(empty)"


# -- clients -------------------------------------------------------------------------


def checkpoint_path(job_id: str, step: int) -> str:
    return f"/checkpoints/{job_id}/step-{step:08d}.pt"


class HttpClient:
    """Checkpoints of one running job over a keep-alive connection to the server."""

    def __init__(self, base_url: str, job_id: str) -> None:
        self.job_id = job_id
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=REQUEST_TIMEOUT,
        )
        try:
            self.post("/v1/jobs", {"job_id": job_id})
            worker = {"worker_id": f"bench-worker-{job_id}", "host": "bench-host"}
            claim = self.post(f"/v1/jobs/{job_id}/start", worker)
        except BaseException:
            self.http.close()
            raise
        self.attempt = int(claim["attempt"])
        self.run_token = str(claim["run_token"])
        self.checkpoint_url = f"/v1/jobs/{job_id}/checkpoint"

    def post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        return answer(self.http.post(url, json=body))

    def op(self, n: int) -> None:
        body = {
            "attempt": self.attempt,
            "run_token": self.run_token,
            "path": checkpoint_path(self.job_id, n),
            "step": n,
        }
        response = self.http.post(self.checkpoint_url, json=body)
        if not response.is_success:
            raise BenchError(
                f"{response.request.method} {response.request.url}: {describe(response)}"
            )

    def check(self, ops: int) -> None:
        job = answer(self.http.get(f"/v1/jobs/{self.job_id}"))
        if job["version"] != ops + 2:  # registered, started, then the checkpoints
            raise BenchError(f"{self.job_id}: {ops} checkpoints, version {job['version']}")

    def close(self) -> None:
        self.http.close()


def answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 2xx answer; `BenchError` for anything else."""
    if not response.is_success:
        raise BenchError(f"{response.request.method} {response.request.url}: {describe(response)}")
    body: dict[str, Any] = response.json()
    return body


def describe(response: httpx.Response) -> str:
    return f"{response.status_code} {response.text[:500]}"


class InProcessClient:
    """Checkpoints of one running job through `JobService.execute` in this process."""

    def __init__(self, service: JobService, queue: JobQueue, job_id: str) -> None:
        self.service = service
        self.job_id = job_id
        worker = WorkerIdentity(worker_id=f"bench-worker-{job_id}", host="bench-host")
        service.execute(job_id, RegisterJob(), actor=ACTOR)
        claim = queue.start(job_id, worker, actor=ACTOR)
        self.attempt, self.run_token = claim.attempt, claim.run_token

    def op(self, n: int) -> None:
        command = SaveCheckpoint(
            attempt=self.attempt,
            run_token=self.run_token,
            path=checkpoint_path(self.job_id, n),
            step=n,
        )
        self.service.execute(self.job_id, command, actor=ACTOR)

    def check(self, ops: int) -> None:
        state = self.service.store.load(self.job_id)
        if state is None or state.version != ops + 2:
            raise BenchError(f"{self.job_id}: {ops} checkpoints, state {state}")

    def close(self) -> None:
        pass


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency_text(latencies_ms: list[float]) -> str:
    return (
        f"p50 {statistics.median(latencies_ms):.1f} ms, p99 {percentile(latencies_ms, 0.99):.1f} ms"
    )


# -- the benchmark -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Paths:
    """How to make a client of each path for one measurement."""

    base_url: str
    service: JobService
    queue: JobQueue

    def http(self, label: str) -> Callable[[int], Client]:
        return lambda index: HttpClient(self.base_url, f"http-{label}-{index:02d}")

    def in_process(self, label: str) -> Callable[[int], Client]:
        return lambda index: InProcessClient(
            self.service, self.queue, f"inproc-{label}-{index:02d}"
        )


def server_cpu_s(pid: int) -> float:
    """CPU seconds the server has used so far, its worker processes included."""
    server = psutil.Process(pid)
    total = 0.0
    for process in (server, *server.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


@dataclass(slots=True)
class Results:
    http: list[Measurement] = field(default_factory=list)
    in_process: list[Measurement] = field(default_factory=list)
    server_cpu_ms: list[float] = field(default_factory=list)
    """The server's CPU time per HTTP command, each measurement: on a shared machine a
    steadier figure of the HTTP layer's cost than its rate."""

    def summary(self, clients: int) -> str:
        http = statistics.median(m.rate for m in self.http)
        in_process = statistics.median(m.rate for m in self.in_process)
        latencies = [latency for m in self.http for latency in m.latencies_ms]
        return (
            f"clients={clients}  http={http:.0f} cmd/s ({latency_text(latencies)}, "
            f"server CPU {statistics.median(self.server_cpu_ms):.2f} ms/cmd)"
            f"  in-process={in_process:.0f} cmd/s  ratio={http / in_process:.2f}"
        )


def bench(paths: Paths, options: Options, server_pid: int) -> Results:
    """Alternate HTTP and in-process measurements, printing each."""
    results = Results()
    for round_ in range(1, options.rounds + 1):
        label = f"r{round_}"
        for name, make_client, measurements in (
            ("http", paths.http(label), results.http),
            ("in-process", paths.in_process(label), results.in_process),
        ):
            cpu_before = server_cpu_s(server_pid)
            result = measure(make_client, options.clients, options.seconds)
            measurements.append(result)
            cpu = ""
            if name == "http":
                cpu_ms = (server_cpu_s(server_pid) - cpu_before) * 1000 / result.ops
                results.server_cpu_ms.append(cpu_ms)
                cpu = f", server CPU {cpu_ms:.2f} ms/cmd"
            print(
                f"  round={round_}  {name:<10} {result.rate:7.0f} cmd/s"
                f"  ({latency_text(result.latencies_ms)}; "
                f"{result.ops} commands in {result.seconds:.2f} s{cpu})",
                flush=True,
            )
    return results


def run(options: Options) -> str:
    """Set up, measure and tear down; return the summary line."""
    with (
        scratch_database(options.server_url) as url,
        running_server(url, options.port, workers=options.workers) as server,
    ):
        print(f"server {server.base_url}: {server.recovery}", flush=True)
        engine = create_ledger_engine(url, Settings(pool_size=POOL_SIZE))
        try:
            store = EventStore(engine)
            paths = Paths(server.base_url, JobService(store), JobQueue(store))
            results = bench(paths, options, server.pid)
        finally:
            engine.dispose()
    return results.summary(options.clients)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    print(
        f"http benchmark on {server_address(options.server_url)}: {options.workers} server "
        f"process(es), {options.clients} clients, "
        f"{options.seconds:g} s per measurement, {options.rounds} round(s) of http then "
        "in-process",
        flush=True,
    )
    summary = run(options)
    print(
        f"median cmd/s of {options.rounds} round(s); latency over all HTTP requests; "
        "ratio = http / in-process"
    )
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
