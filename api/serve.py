"""`jobledger serve`: recover from the log, then serve HTTP with the health monitor alongside."""

import contextlib
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from api.auth import TokenBook
from api.bootstrap import Ledger, open_ledger
from api.cli_audit_chain import chain_keeping
from api.connection_guard import (
    ConnectionLimits,
    fit_to_file_limit,
    guarded_protocol,
    raise_file_limit,
)
from api.heap import settle_heap
from api.log_format import keep_command_lines, written_line
from api.log_pacing import pace_caller_driven_logs
from api.metrics import Metrics
from api.stream import FeedWatcher
from api.workers import WorkerPlan, bind, serve_workers
from ledger.settings import Settings
from projections.recovery.health import EXACT_PROBLEM_COUNT
from projections.recovery.leader import LeaderLock
from projections.recovery.monitor import HealthMonitor, MonitorTiming

log = logging.getLogger("jobledger.serve")


class GracefulServer(uvicorn.Server):
    """uvicorn, but a SIGTERM or SIGINT returns from `run` instead of killing the process
    afterwards: the monitor stops and an embedded database shuts down cleanly. Stopping
    begins with `on_stop` (the event streams end), then waits for requests in flight."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_stop = on_stop

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.on_stop()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        stops = (signal.SIGTERM, signal.SIGINT)
        previous = {signum: signal.signal(signum, self.handle_exit) for signum in stops}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, tokens: TokenBook) -> None:
    """Without tokens the API is open to anyone who can reach it: loopback only."""
    if not tokens.enabled and not is_loopback(host):
        raise SystemExit(
            f"refusing to bind {host} without tokens: set JOBLEDGER_TOKENS or "
            "JOBLEDGER_TOKENS_FILE, or bind 127.0.0.1"
        )


def recover(ledger: Ledger) -> str:
    """The restart recovery pass; returns its one-line summary.

    It acts on the health view's first page only, so a disaster (thousands of dead
    runs) does not hold back serving: the monitor recovers the rest, a page at a time."""
    report = ledger.reconciler.run_once(max_batches=1)
    health = report.health
    assert health is not None
    replayed = ledger.catch_up.events_read if ledger.catch_up else 0
    stale = set(report.about("stale_pending"))
    failed = report.of("mark_failed")
    left = health.orphaned_count + health.stale_pending_count - len(report.actions)
    counted = max(health.orphaned_count, health.stale_pending_count) <= EXACT_PROBLEM_COUNT
    return (
        f"recovered: {replayed} events replayed, "
        f"{health.total_running_alive} running jobs confirmed alive, "
        f"{len([job for job in failed if job not in stale])} orphans failed, "
        f"{len(report.of('requeue'))} orphans re-queued, "
        f"{health.queue_depth} queued jobs intact, "
        f"{len(stale)} stale pending handled"
        + (f", {'' if counted else 'at least '}{left} more left to the monitor" if left > 0 else "")
    )


def connection_limits(settings: Settings) -> ConnectionLimits:
    """The connection limits `settings` ask for, fitted to the open file limit, which is
    raised as far as the system lets it first."""
    try:
        limits = ConnectionLimits.of(settings)
        return fit_to_file_limit(limits, raise_file_limit(), settings.pool_size)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc


def serve(settings: Settings, host: str, port: int, tokens: TokenBook, workers: int = 1) -> None:
    """Recover, then serve on `host`:`port` with the health monitor alongside: in this
    process, or in `workers` processes sharing one socket (`api.workers`)."""
    if workers < 1:
        raise SystemExit(f"error: --workers must be at least 1, not {workers}")
    check_binding(host, tokens)
    limits = connection_limits(settings)
    pace_caller_driven_logs()
    if not tokens.enabled:
        log.warning("no tokens configured: serving on loopback only, every caller is trusted")
    keep_command_lines(logging.root.level)
    with open_ledger(settings) as ledger:
        app = create_app(ledger, tokens)  # its metrics count the recovery pass too
        print(written_line(settings.log_format, log.name, recover(ledger)), flush=True)
        settle_heap()
        metrics: Metrics = app.state.metrics
        with running_monitor(ledger, settings, metrics.work.leadership_changed):
            if workers == 1:
                guarded_server(app, limits, host, port).run()
            else:
                plan = WorkerPlan(ledger.url, settings, tokens, limits, logging.root.level)
                with bind(host, port, limits.backlog) as sock:
                    serve_workers(plan, sock, workers)


@contextlib.contextmanager
def running_monitor(
    ledger: Ledger, settings: Settings, on_leadership: Callable[[bool], None]
) -> Iterator[HealthMonitor]:
    """The health monitor on a thread of its own: it leads when no other process does."""
    monitor = HealthMonitor(
        ledger.reconciler,
        LeaderLock(ledger.url),
        MonitorTiming.of(settings),
        on_leadership=on_leadership,
        chain=chain_keeping(ledger),
    )
    background = threading.Thread(target=monitor.run, name="health-monitor", daemon=True)
    background.start()
    try:
        yield monitor
    finally:
        monitor.stop.set()
        background.join(timeout=10)


def guarded_server(
    app: FastAPI, limits: ConnectionLimits, host: str = "127.0.0.1", port: int = 0
) -> GracefulServer:
    """uvicorn serving `app` with the connection guard; a SIGTERM stops accepting, ends
    the event streams and finishes the requests in flight."""
    watcher: FeedWatcher = app.state.watcher
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,  # uvicorn's lines go to the process's log, written as it is
        timeout_graceful_shutdown=30,
        http=guarded_protocol(limits),
        ws="none",  # no route is a WebSocket: an upgrade request is answered as HTTP
        backlog=limits.backlog,
    )
    return GracefulServer(config, on_stop=watcher.close)
