"""`jobledger audit events`: the audit log's question from the command line, exported as
JSON Lines or CSV through the same query and the same lines as the HTTP route."""

import argparse
import sys

from api.audit_export import ExportFormat, exported_lines
from api.bootstrap import open_ledger
from ledger.audit_events import AuditFilter, AuditLog, Clock, parse_moment
from ledger.events import EVENT_CLASSES
from ledger.settings import Settings
from ledger.statuses import JobStatus

FORMATS = {"jsonl": ExportFormat.JSON_LINES, "csv": ExportFormat.CSV}


def add_audit_events_command(
    actions: "argparse._SubParsersAction[argparse.ArgumentParser]",
) -> None:
    """`audit events` under the `audit` command's actions."""
    events = actions.add_parser(
        "events", help="events across jobs, filtered, as JSON Lines or CSV on stdout"
    )
    events.add_argument("--actor", help="caused by this actor")
    events.add_argument(
        "--not-actor", action="append", default=[], help="not caused by this actor (repeatable)"
    )
    events.add_argument(
        "--type", action="append", default=[], choices=list(EVENT_CLASSES), help="(repeatable)"
    )
    events.add_argument(
        "--status",
        action="append",
        default=[],
        choices=[status.value for status in JobStatus],
        help="moving its job to this status (repeatable)",
    )
    events.add_argument("--job-id", help="of this job")
    events.add_argument("--job-id-prefix", help="of jobs whose id starts with this")
    events.add_argument(
        "--clock", choices=[clock.value for clock in Clock], default=Clock.RECORDED.value
    )
    events.add_argument("--since", help="from this RFC 3339 time or date (UTC midnight)")
    events.add_argument("--until", help="before this RFC 3339 time or date")
    events.add_argument("--format", choices=list(FORMATS), default="jsonl")
    events.set_defaults(handler=run_audit_events)


def run_audit_events(settings: Settings, args: argparse.Namespace) -> int:
    question = AuditFilter(
        actor=args.actor,
        not_actors=tuple(args.not_actor),
        types=tuple(args.type),
        statuses=tuple(JobStatus(status) for status in args.status),
        job_id=args.job_id,
        job_id_prefix=args.job_id_prefix,
        clock=Clock(args.clock),
        since=parse_moment("since", args.since) if args.since else None,
        until=parse_moment("until", args.until) if args.until else None,
    )
    with open_ledger(settings, catch_up=False) as ledger:
        batches = AuditLog(ledger.store).batches(question)
        for chunk in exported_lines(FORMATS[args.format], batches):
            sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    return 0
