"""Two builds of the server side by side: one client's commands, in chunks alternating.

On a small, noisy machine two runs minutes apart can differ by a third, more than most
changes are worth. Here each build (a checkout of the project: `--builds A B`) serves
its own scratch database on the same PostgreSQL at the same time, and one client sends
them chunks of single commands in turn, the order flipped each chunk, so that whatever
the machine does meanwhile weighs on both alike. It prints each build's rate per chunk,
their medians, and B's rate over A's chunk by chunk with the median of those ratios.

`--mode enqueue` sends registrations (`Prefer: return=minimal`, as `bench.peers`);
`--mode lifecycle`, a registration, a claim and a completion; `--mode batch`, each chunk
one sweep of `--ops` jobs through `POST /v1/jobs/batch` (batches of 1000, two in flight,
as `bench.peers`), its rate in jobs per second. Beside the rates, the CPU an operation
cost each build's server (its processes) and the client, chunk by chunk: a change's cost
shows there even when the machine's noise hides it in the rates.

    python -m bench.side_by_side --builds /tmp/before . --chunks 20 --ops 400
"""

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
        clients = []
        meters = []
        for build in builds:
            url = stack.enter_context(scratch_database(admin_url))
            with build_imported(build):
                server = stack.enter_context(running_server(url, free_port()))
            prefix = uuid.uuid4().hex[:8]
            client: HttpClient | HttpBatchClient
            if batched:
                client = HttpBatchClient(
                    server.base_url,
                    TOKEN,
                    prefix,
                    batch=BATCH_JOBS,
                    in_flight=BATCHES_IN_FLIGHT,
                    batches=args.ops // BATCH_JOBS,
                )
            else:
                client = HttpClient(
                    server.base_url, TOKEN, prefix, lifecycle=args.mode == "lifecycle"
                )
            stack.callback(client.close)
            clients.append(client)
            meters.append(CpuMeter(None, server.pid))
        sent = [0, 0]
        rates: list[list[float]] = [[], []]
        cpu: list[list[dict[str, float]]] = [[], []]

        def send(which: int, count: int) -> float:
            """Send `count` operations (of one command, or of one sweep) and return the
            rate: commands, or jobs, per second. The CPU each operation cost the client
            and the server goes to `cpu`."""
            before = meters[which].start()
            started = time.perf_counter()
            for _ in range(count):
                clients[which].op(sent[which])
                sent[which] += 1
            rate = count * (args.ops if batched else 1) / (time.perf_counter() - started)
            cpu[which].append(meters[which].spent_since(before).per_op_us(count))
            return rate

        per_chunk = 1 if batched else args.ops
        for which in (0, 1):
            send(which, 1 if batched else WARM_UP)
            cpu[which].clear()
        for chunk in range(args.chunks):
            for which in (0, 1) if chunk % 2 == 0 else (1, 0):
                rates[which].append(send(which, per_chunk))
        for which in (0, 1):
            clients[which].check(sent[which])
    print_results(builds, rates, cpu, f"{args.mode}, 1 client", "job" if batched else "operation")


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
        by_chunk = statistics.median(b / a for a, b in zip(*spent, strict=True))
        print(
            f"{part} CPU per {unit}: A {medians[0]:,.1f} µs, B {medians[1]:,.1f} µs; "
            f"median B / A by chunk {by_chunk:.2f}"
        )


if __name__ == "__main__":
    main()
