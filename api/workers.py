"""`jobledger serve --workers N`: N processes answering on one listening socket.

The process started by `serve` does what must happen once: it migrates (embedded) and
catches the projections up, runs the start-up recovery pass, runs the health monitor
(leader-elected, as every replica's is) and binds the socket. Then it starts N worker
processes. Each worker opens a connection pool and a feed watcher of its own, and
serves the API on the shared socket with the connection guard and limits of a single
process; an event stream on any worker reads the one ordered feed, so it sees every
event. The workers are spawned, not forked: nothing of the first process's threads,
locks or connections is copied into them.

A worker that dies is replaced. A SIGTERM or SIGINT stops every worker gracefully (its
event streams end, its requests in flight finish), then the first process. A worker
whose first process is gone (killed) stops too: it never serves without a monitor.
"""

import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from api.auth import TokenBook
from api.connection_guard import ConnectionLimits
from ledger.settings import Settings

log = logging.getLogger("jobledger.serve")

STOP_SECONDS = 35.0
"""How long a worker has to stop after SIGTERM (its graceful shutdown allows 30 s)."""
RESPAWN_PAUSE_S = 1.0
"""Between a worker's death and its replacement: a worker that cannot start is not
restarted in a tight loop."""


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """What a worker process needs to serve: sent to it when it is spawned."""

    url: str
    settings: Settings
    tokens: TokenBook
    limits: ConnectionLimits
    log_level: int


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """The listening socket every worker accepts on (as uvicorn binds its own)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # TCP named as the protocol: asyncio sets TCP_NODELAY only on the connections of a
    # socket that says it is TCP; without it, an answer written in two parts waits for the
    # client's delayed acknowledgement (about 40 ms on Linux) before its second part.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"error: cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def serve_workers(plan: WorkerPlan, sock: socket.socket, workers: int) -> None:
    """Run `workers` processes on `sock` until SIGTERM or SIGINT; replace any that dies."""
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    wake_reader, wake_writer = socket.socketpair()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        wake_writer.send(b"x")

    previous = {
        signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    running: list[multiprocessing.process.BaseProcess] = []
    try:
        for number in range(workers):
            running.append(_start(context, plan, sock, number))
        while not stopping.is_set():
            sentinels = [process.sentinel for process in running]
            multiprocessing.connection.wait([*sentinels, wake_reader])
            for index, process in enumerate(running):
                if process.exitcode is not None and not stopping.is_set():
                    log.warning(
                        "worker %d (pid %s) exited with %s: starting another",
                        index,
                        process.pid,
                        process.exitcode,
                    )
                    if stopping.wait(RESPAWN_PAUSE_S):
                        break
                    running[index] = _start(context, plan, sock, index)
    finally:
        _stop_all(running)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        wake_reader.close()
        wake_writer.close()


def _start(
    context: multiprocessing.context.SpawnContext,
    plan: WorkerPlan,
    sock: socket.socket,
    number: int,
) -> multiprocessing.process.BaseProcess:
    process = context.Process(
        target=run_worker, args=(plan, sock), name=f"jobledger-worker-{number}", daemon=False
    )
    process.start()
    return process


def _stop_all(running: list[multiprocessing.process.BaseProcess]) -> None:
    """SIGTERM to every worker at once, then wait for each; kill one that overstays."""
    for process in running:
        if process.exitcode is None and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for process in running:
        process.join(STOP_SECONDS)
        if process.exitcode is None:
            log.warning("worker pid %s did not stop in %g s: killed", process.pid, STOP_SECONDS)
            process.kill()
            process.join()


def run_worker(plan: WorkerPlan, sock: socket.socket) -> None:
    """A worker process: its own pool, feed watcher and guarded uvicorn on `sock`."""
    # Imported here: the first process needs none of the serving stack to supervise.
    from api.app import create_app
    from api.bootstrap import wire_ledger
    from api.heap import settle_heap
    from api.log_format import configure_logging, keep_command_lines
    from api.log_pacing import pace_caller_driven_logs
    from api.serve import guarded_server
    from ledger.database import create_ledger_engine

    configure_logging(plan.settings.log_format, plan.log_level)
    keep_command_lines(plan.log_level)  # the commands this worker serves
    pace_caller_driven_logs()
    engine = create_ledger_engine(plan.url, plan.settings)
    try:
        app = create_app(wire_ledger(plan.url, engine, plan.settings), plan.tokens)
        server = guarded_server(app, plan.limits)
        settle_heap()
        stop_when_parent_exits(lambda: server.handle_exit(signal.SIGTERM, None))
        server.run(sockets=[sock])
    finally:
        engine.dispose()
    # Everything is closed. The interpreter's own teardown (a full collection of the
    # app's objects: seconds on a busy machine) would only hold up the stop.
    logging.shutdown()
    os._exit(0)


def stop_when_parent_exits(stop: Callable[[], None]) -> None:
    """In a worker: `stop` once the process that started it has exited (even killed)."""
    parent = multiprocessing.parent_process()
    assert parent is not None, "only a spawned worker has a parent to watch"

    def wait() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        log.warning("the serving process is gone: worker pid %d stops", os.getpid())
        stop()

    threading.Thread(target=wait, name="parent-watch", daemon=True).start()
