"""`jobledger`: the command line."""

import argparse
import getpass
import json
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psutil

from api.bootstrap import open_ledger
from api.cli_audit_chain import add_chain_commands, chain_keeping
from api.cli_audit_events import add_audit_events_command
from api.cli_submit import add_submit_command
from api.cli_text import render_health, render_history, render_table, visible
from api.log_format import configure_logging
from api.presenters import health_view, job_view, reconcile_view
from api.statuses_export import json_schema, typescript_module
from ledger.commands import (
    CancelJob,
    CompleteJob,
    JobCommand,
    MarkFailed,
    PauseJob,
    RegisterJob,
    RequeueJob,
    ResumeJob,
    SaveCheckpoint,
    SubmitJob,
    WorkerIdentity,
)
from ledger.database import create_ledger_engine, database_url
from ledger.database_roles import create_service_role
from ledger.errors import InvalidSetting, JobNotFound, LedgerError
from ledger.migrate import upgrade_database
from ledger.settings import Settings
from ledger.statuses import JobStatus
from projections.current_status.as_of import parse_moment
from projections.current_status.rebuild import rebuild_current_status
from projections.current_status.verify import verify_current_status
from projections.history import transitions
from projections.recovery.leader import LeaderLock
from projections.recovery.monitor import HealthMonitor, MonitorTiming

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 3
LOG_LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)
"""The log's level by how many times `-v` is given."""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except InvalidSetting as exc:
        print(f"error: {visible(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_format, log_level(args.verbose))
    try:
        result: int = args.handler(settings, args)
    except JobNotFound as exc:
        print(f"error: {visible(str(exc))}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except LedgerError as exc:
        print(f"error: {visible(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    return result


def log_level(verbose: int) -> int:
    """The log's level when `-v` is given `verbose` times."""
    return LOG_LEVELS[min(verbose, len(LOG_LEVELS) - 1)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobledger", description=__doc__)
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log what happens; -vv also every job of a batch and every claim of an empty queue",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the HTTP API (and run the health monitor)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes answering on the port (default 1); recovery and the monitor run once",
    )
    serve.set_defaults(handler=run_serve)

    demo = commands.add_parser(
        "demo", help="record one job's whole lifecycle and print its history"
    )
    demo.set_defaults(handler=run_demo)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.set_defaults(handler=run_migrate)

    add_submit_command(commands)

    history = commands.add_parser("history", help="a job's transitions: when, from -> to, who, why")
    history.add_argument("job_id")
    history.add_argument("--json", action="store_true", help="print JSON")
    history.add_argument("--until", type=_moment, help="only the events recorded by this moment")
    history.set_defaults(handler=run_history)

    jobs = commands.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--status", choices=[status.value for status in JobStatus])
    jobs.add_argument("--search", help="only jobs whose id contains this text")
    jobs.add_argument("--limit", type=int, default=100)
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.add_argument("--as-of", type=_moment, help="the jobs as they were at this moment")
    jobs.set_defaults(handler=run_jobs)

    _add_recovery_commands(commands)
    _add_operator_commands(commands)

    _add_audit_commands(commands)

    role = commands.add_parser(
        "create-role", help="create a login role with only SELECT and INSERT on the event log"
    )
    role.add_argument("name")
    role.add_argument("--password", help="or set JOBLEDGER_ROLE_PASSWORD")
    role.set_defaults(handler=run_create_role)

    statuses = commands.add_parser(
        "statuses", help="print the job statuses for other languages (no database needed)"
    )
    statuses.add_argument(
        "--format", choices=["ts", "json"], default="ts", help="TypeScript module or JSON Schema"
    )
    statuses.set_defaults(handler=run_statuses)
    return parser


def _add_recovery_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> None:
    """projections rebuild and verify, health, reconcile and monitor."""
    projections = commands.add_parser("projections", help="rebuild or verify the read models")
    actions = projections.add_subparsers(required=True, metavar="ACTION")
    rebuild = actions.add_parser("rebuild", help="replay the whole log into a fresh projection")
    rebuild.set_defaults(handler=run_rebuild)
    verify = actions.add_parser(
        "verify", help="compare the projection with a replay; exit 1 on drift"
    )
    verify.set_defaults(handler=run_verify)

    health = commands.add_parser(
        "health", help="orphaned runs, stale pending jobs, queue depth; exit 1 when unhealthy"
    )
    health.add_argument("--json", action="store_true", help="print JSON")
    health.set_defaults(handler=run_health)

    reconcile = commands.add_parser(
        "reconcile", help="fail orphaned runs and stale pending jobs (one pass)"
    )
    reconcile.add_argument("--dry-run", action="store_true", help="report, change nothing")
    reconcile.add_argument(
        "--max-age-minutes", type=float, help="pending longer than this is stale"
    )
    reconcile.add_argument("--json", action="store_true", help="print JSON")
    reconcile.set_defaults(handler=run_reconcile)

    monitor = commands.add_parser(
        "monitor", help="run the health monitor: a pass now, then every interval on the leader"
    )
    monitor.set_defaults(handler=run_monitor)


def _add_audit_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`jobledger audit events`, `digest` and `verify`."""
    audit = commands.add_parser(
        "audit", help="questions of the log, and proof its history was not rewritten"
    )
    actions = audit.add_subparsers(required=True, metavar="ACTION")
    add_audit_events_command(actions)
    add_chain_commands(actions)


def _add_operator_commands(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> None:
    """force-start, mark-failed, cancel and requeue: one job, a reason, a guard."""
    for name, help_text in (
        ("force-start", "queue a stuck job (a running one only when orphaned)"),
        ("mark-failed", "declare a job failed (needs --reason)"),
        ("cancel", "cancel a job"),
        ("requeue", "send a failed or cancelled job back to the queue"),
    ):
        operator = commands.add_parser(name, help=help_text)
        operator.add_argument("job_id")
        operator.add_argument("--reason", required=name == "mark-failed")
        operator.add_argument("--expected-version", type=int)
        operator.add_argument("--json", action="store_true", help="print JSON")
        operator.set_defaults(handler=run_operator_command, operation=name)


def _moment(text: str) -> datetime:
    try:
        return parse_moment(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a moment with its time zone, like 2026-11-30T14:00:00Z: {text!r}"
        ) from None


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    from api.auth import TokenBook, TokenBookError
    from api.serve import serve

    try:
        tokens = TokenBook.from_env()
    except TokenBookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    serve(settings, args.host, args.port, tokens, args.workers)
    return EXIT_OK


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    job_id = f"demo-{uuid.uuid4().hex[:8]}"
    process = psutil.Process()
    worker = WorkerIdentity(
        worker_id=f"demo-worker-{os.getpid()}",
        host=socket.gethostname(),
        pid=os.getpid(),
        pid_started_at=process.create_time(),
    )
    with open_ledger(settings) as ledger:
        run = ledger.service.execute
        run(job_id, RegisterJob(initial_status=JobStatus.PENDING, spec={"epochs": 2}), actor="demo")
        run(job_id, SubmitJob(), actor="demo")
        claim = ledger.queue.start(job_id, worker, actor="demo-worker")  # opens its lease
        attempt, token = claim.attempt, claim.run_token
        for step in (1, 2):
            checkpoint = SaveCheckpoint(
                attempt=attempt, run_token=token, path=f"/checkpoints/{job_id}/{step}", step=step
            )
            run(job_id, checkpoint, actor="demo-worker")
        run(job_id, PauseJob(attempt=attempt, run_token=token), actor="demo-worker")
        run(job_id, ResumeJob(attempt=attempt, run_token=token), actor="demo-worker")
        run(
            job_id,
            CompleteJob(attempt=attempt, run_token=token, result={"loss": 0.1}),
            actor="demo-worker",
        )
        print(f"job {job_id}: recorded in the ledger\n")
        print(render_history(transitions(ledger.store.history(job_id))))
    return EXIT_OK


def run_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with database_url(settings) as url:
        upgrade_database(url)
    print("schema is current")
    return EXIT_OK


def run_history(settings: Settings, args: argparse.Namespace) -> int:
    with open_ledger(settings, catch_up=False) as ledger:
        events = ledger.store.history(args.job_id, until=args.until)
    if not events:
        raise JobNotFound(args.job_id)
    history = transitions(events)
    if args.json:
        print(json.dumps([_transition_json(item) for item in history], indent=2, default=str))
    else:
        print(render_history(history))
    return EXIT_OK


def run_jobs(settings: Settings, args: argparse.Namespace) -> int:
    status = JobStatus(args.status) if args.status else None
    with open_ledger(settings, catch_up=False) as ledger:
        if args.as_of:
            jobs = ledger.past.page(args.as_of, status, search=args.search, limit=args.limit).jobs
            print(f"as of {args.as_of.isoformat()} (the past, read-only)", file=sys.stderr)
        else:
            jobs = ledger.listing.page(status, search=args.search, limit=args.limit).jobs

    if args.json:
        print(json.dumps([state._asdict() for state in jobs], indent=2, default=str))
        return EXIT_OK
    rows = [
        [job.job_id, job.status, str(job.attempt), job.worker_id or "", str(job.updated_at)]
        for job in jobs
    ]
    print(render_table(["job", "status", "attempt", "worker", "updated"], rows))
    return EXIT_OK


def run_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    # A fold of the whole log takes as long as the log is long: no statement timeout.
    with open_ledger(settings.unbounded(), catch_up=False, maintenance=True) as ledger:
        report = rebuild_current_status(ledger.engine)
    rate = report.events / report.seconds if report.seconds else 0.0
    print(
        f"rebuilt current_status: {report.events} events, {report.jobs} jobs "
        f"in {report.seconds:.2f} s ({rate:,.0f} events/s)"
    )
    return EXIT_OK


def run_verify(settings: Settings, args: argparse.Namespace) -> int:
    with open_ledger(settings.unbounded(), catch_up=False, maintenance=True) as ledger:
        report = verify_current_status(ledger.engine)
    for unreadable in report.unreadable:
        print(visible(f"unreadable event: {unreadable.describe()}"))
    for drift in report.drifts:
        print(visible(drift.describe()))
    if report.unreadable:
        print(f"the log holds {len(report.unreadable)} events this code cannot read")
    if report.drifts:
        print(f"current_status drifted on {len(report.drifts)} of {report.jobs} jobs")
    if not report.clean:
        return EXIT_FAILURE
    print(f"current_status matches the log ({report.jobs} jobs)")
    return EXIT_OK


def run_health(settings: Settings, args: argparse.Namespace) -> int:
    with open_ledger(settings, catch_up=False) as ledger:
        report = ledger.health.check()
    if args.json:
        print(health_view(report).model_dump_json(indent=2))
    else:
        print(render_health(report))
    return EXIT_OK if report.healthy else EXIT_FAILURE


def run_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    stale_after = None if args.max_age_minutes is None else timedelta(minutes=args.max_age_minutes)
    with open_ledger(settings) as ledger:
        report = ledger.reconciler.run_once(
            dry_run=args.dry_run, stale_pending_after=stale_after, actor=operator_actor()
        )
    if args.json:
        print(reconcile_view(report).model_dump_json(indent=2))
        return EXIT_OK
    verb = "would" if args.dry_run else "did"
    for action in report.actions:
        state = f"skipped: {action.skipped}" if action.skipped else verb
        print(visible(f"{action.job_id}: {action.action} ({action.reason}) [{state}]"))
    print(f"{len(report.actions)} action(s){' (dry run)' if args.dry_run else ''}")
    return EXIT_OK


def run_monitor(settings: Settings, args: argparse.Namespace) -> int:
    with open_ledger(settings) as ledger:
        monitor = HealthMonitor(
            ledger.reconciler,
            LeaderLock(ledger.url),
            MonitorTiming.of(settings),
            on_pass=lambda report: print(
                f"pass: {len(report.of('mark_failed'))} failed, "
                f"{len(report.of('requeue'))} requeued",
                flush=True,
            ),
            on_leadership=lambda leading: print("leader" if leading else "follower", flush=True),
            chain=chain_keeping(ledger),
        )
        monitor.recover()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: monitor.stop.set())
        monitor.run()
    return EXIT_OK


def operator_actor() -> str:
    """Who an operator command is recorded as: `JOBLEDGER_ACTOR`, else `cli:<user>`."""
    return os.environ.get("JOBLEDGER_ACTOR") or f"cli:{getpass.getuser()}"


def run_operator_command(settings: Settings, args: argparse.Namespace) -> int:
    actor = operator_actor()
    expected = args.expected_version
    with open_ledger(settings, catch_up=False) as ledger:
        if args.operation == "force-start":
            reading = ledger.force_starter.force_start(
                args.job_id, actor=actor, reason=args.reason, expected_version=expected
            )
        else:
            command = _operator_command(args.operation, args.reason)
            outcome = ledger.service.execute(
                args.job_id, command, actor=actor, expected_version=expected
            )
            reading = ledger.reader.reading_of(outcome.state)
        view = job_view(reading)
    if args.json:
        print(view.model_dump_json(indent=2))
    else:
        where = f", queue position {view.queue_position}" if view.queue_position else ""
        print(visible(f"{args.job_id}: {view.status}{where}"))
    return EXIT_OK


def _operator_command(operation: str, reason: str | None) -> JobCommand:
    if operation == "mark-failed":
        return MarkFailed(reason=reason or "")
    if operation == "cancel":
        return CancelJob(reason=reason)
    return RequeueJob(reason=reason)


def run_create_role(settings: Settings, args: argparse.Namespace) -> int:
    password = args.password or os.environ.get("JOBLEDGER_ROLE_PASSWORD")
    with database_url(settings) as url:
        engine = create_ledger_engine(url, settings)
        try:
            create_service_role(engine, args.name, password)
        finally:
            engine.dispose()
    print(f"role {args.name}: SELECT and INSERT on job_events, nothing more on the log")
    return EXIT_OK


def run_statuses(settings: Settings, args: argparse.Namespace) -> int:
    print(typescript_module() if args.format == "ts" else json_schema(), end="")
    return EXIT_OK


def _transition_json(item: Any) -> dict[str, Any]:
    event = item.event
    return {
        "seq": event.seq,
        "type": event.type,
        "from_status": item.from_status,
        "to_status": item.to_status,
        "attempt": event.attempt,
        "actor": event.actor,
        "reason": event.reason,
        "recorded_at": event.recorded_at.isoformat(),
        "correlation_id": event.correlation_id,
    }


if __name__ == "__main__":
    sys.exit(main())
