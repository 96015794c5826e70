"""Two builds of the server side by side: clients' commands, in chunks alternating.

On a small, noisy machine two runs minutes apart can differ by a third, more than most
changes are worth. Here each build (a checkout of the project: `--builds A B`) serves
its own scratch database on the same PostgreSQL at the same time, and the clients send
them chunks of single commands in turn, the order flipped each chunk, so that whatever
the machine does meanwhile weighs on both alike. It prints each build's rate per chunk,
their medians, and B's rate over A's chunk by chunk with the median of those ratios.

`--mode enqueue` sends registrations (`Prefer: return=minimal`, as `bench.peers`);
`--mode lifecycle`, a registration, a claim and a completion; `--mode batch`, each chunk
one sweep of `--ops` jobs through `POST /v1/jobs/batch` (batches of 1000, two in flight,
as `bench.peers`), its rate in jobs per second. `--clients N` sends each chunk from N
clients at once, `--ops` operations each (one by default). Beside the rates, the CPU an
operation cost each build's server (its processes) and the clients, chunk by chunk: a
change's cost shows there even when the machine's noise hides it in the rates.

    python -m bench.side_by_side --builds /tmp/before . --chunks 20 --ops 400
"""

import functools
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.cpu_share import CLIENT, SERVER, CpuMeter
from bench.http import TOKEN, free_port, running_server
from bench.peer_clients import HttpBatchClient, HttpClient
from bench.peers import postgres_server
from bench.scratch import benchmark_parser, scratch_database
from bench.threads import at_once
from ledger.client import BATCH_JOBS, BATCHES_IN_FLIGHT

WARM_UP = 100
"""Commands sent to each build before any chunk is timed."""


@contextmanager
def build_imported(build: Path) -> Iterator[None]:
    """Processes started inside import the project from `build` (`python -m` puts the
    working directory first on the path, then `PYTHONPATH`)."""
    before, here = os.environ.get("PYTHONPATH"), Path.cwd()
    os.environ["PYTHONPATH"] = str(build)
    os.chdir(build)
    try:
        yield
    finally:
        os.chdir(here)
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def main() -> None:
    parser = benchmark_parser(__doc__ or "")
    parser.add_argument("--embedded", action="store_true", help="an embedded PostgreSQL 18")
    parser.add_argument("--builds", nargs=2, type=Path, required=True, metavar=("A", "B"))
    parser.add_argument("--mode", choices=("enqueue", "lifecycle", "batch"), default="enqueue")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument(
        "--clients", type=int, default=1, help="clients sending at once, each --ops a chunk"
    )
    parser.add_argument(
        "--ops", type=int, default=400, help="commands per chunk (batch: jobs, 1000 a request)"
    )
    args = parser.parse_args()
    batched = args.mode == "batch"
    if batched and args.ops % BATCH_JOBS:
        parser.error(f"--ops must be a multiple of {BATCH_JOBS} with --mode batch")
    builds = [build.resolve() for build in args.builds]
    with ExitStack() as stack:
        admin_url = stack.enter_context(
            postgres_server(None if args.embedded else args.database_url)
        )
        clients: list[list[HttpClient | HttpBatchClient]] = []
        meters = []
        for build in builds:
            url = stack.enter_context(scratch_database(admin_url))
            with build_imported(build):
                server = stack.enter_context(running_server(url, free_port()))
            made = made_clients(server.base_url, args.clients, args.mode, args.ops)
            for client in made:
                stack.callback(client.close)
            clients.append(made)
            meters.append(CpuMeter(None, server.pid))
        sent = [[0] * args.clients, [0] * args.clients]
        rates: list[list[float]] = [[], []]
        cpu: list[list[dict[str, float]]] = [[], []]

        def send_from(which: int, index: int, count: int) -> None:
            for _ in range(count):
                clients[which][index].op(sent[which][index])
                sent[which][index] += 1

        def send(which: int, count: int) -> float:
            """Send `count` operations (of one command, or of one sweep) from each client
            at once and return the rate: commands, or jobs, per second. The CPU each
            operation cost the clients and the server goes to `cpu`."""
            before = meters[which].start()
            started = time.perf_counter()
            at_once(
                [functools.partial(send_from, which, index, count) for index in range(args.clients)]
            )
            done: int = count * args.clients * (args.ops if batched else 1)
            rate = done / (time.perf_counter() - started)
            cpu[which].append(meters[which].spent_since(before).per_op_us(done))
            return rate

        per_chunk = 1 if batched else args.ops
        for which in (0, 1):
            send(which, 1 if batched else WARM_UP)
            cpu[which].clear()
        for chunk in range(args.chunks):
            for which in (0, 1) if chunk % 2 == 0 else (1, 0):
                rates[which].append(send(which, per_chunk))
        for which in (0, 1):
            for index, client in enumerate(clients[which]):
                client.check(sent[which][index])
    measured_what = f"{args.mode}, {args.clients} client{'s' if args.clients > 1 else ''}"
    print_results(builds, rates, cpu, measured_what, "job" if batched else "operation")


def made_clients(
    base_url: str, count: int, mode: str, ops: int
) -> list[HttpClient | HttpBatchClient]:
    """`count` clients of the server at `base_url`, each with a prefix of its own."""
    made: list[HttpClient | HttpBatchClient] = []
    for _ in range(count):
        prefix = uuid.uuid4().hex[:8]
        if mode == "batch":
            made.append(
                HttpBatchClient(
                    base_url,
                    TOKEN,
                    prefix,
                    batch=BATCH_JOBS,
                    in_flight=BATCHES_IN_FLIGHT,
                    batches=ops // BATCH_JOBS,
                )
            )
        else:
            made.append(HttpClient(base_url, TOKEN, prefix, lifecycle=mode == "lifecycle"))
    return made


def print_results(
    builds: list[Path],
    rates: list[list[float]],
    cpu: list[list[dict[str, float]]],
    measured_what: str,
    unit: str,
) -> None:
    """Each build's rates and CPU per `unit`, chunk by chunk, and B's over A's."""
    for name, build, measured in zip("AB", builds, rates, strict=True):
        runs = ", ".join(f"{rate:,.0f}" for rate in measured)
        print(f"{name} {build}: median {statistics.median(measured):,.0f}/s  (chunks: {runs})")
    ratios = [b / a for a, b in zip(*rates, strict=True)]
    print(f"B / A by chunk: {', '.join(f'{ratio:.2f}' for ratio in ratios)}")
    print(f"median B / A: {statistics.median(ratios):.2f} ({measured_what})")
    for part in (SERVER, CLIENT):
        spent = [[chunk[part] for chunk in chunks] for chunks in cpu]
        medians = [statistics.median(each) for each in spent]
        print(
            f"{part} CPU per {unit}: A {medians[0]:,.1f} µs, B {medians[1]:,.1f} µs; "
            f"median B / A by chunk {ratio_by_chunk(spent[0], spent[1])}"
        )


def ratio_by_chunk(a: list[float], b: list[float]) -> str:
    """The median of B's CPU over A's, chunk by chunk, over the chunks where A's CPU
    read above zero: the kernel counts CPU in ticks, and a short chunk can fall
    between two."""
    ratios = [spent_b / spent_a for spent_a, spent_b in zip(a, b, strict=True) if spent_a > 0]
    if not ratios:
        return "not measured (no chunk of A read above the kernel's tick)"
    return f"{statistics.median(ratios):.2f}"


if __name__ == "__main__":
    main()
