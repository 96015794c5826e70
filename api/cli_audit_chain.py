"""`jobledger audit digest` and `jobledger audit verify`: the log's hash chain from the
command line."""

import argparse
import sys
from pathlib import Path

from api.bootstrap import Ledger, open_ledger
from api.cli_text import visible
from ledger.errors import InvalidDigest
from ledger.settings import Settings
from projections.audit_chain.digest import Digest, append_digest, read_digests, take_digest
from projections.audit_chain.keeping import ChainKeeping
from projections.audit_chain.verify import ChainReport, DigestCheck, verify_chain

EXIT_INTACT, EXIT_BROKEN, EXIT_USAGE = 0, 1, 2


def add_chain_commands(actions: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """`digest` and `verify`, as actions of `jobledger audit`."""
    digest = actions.add_parser(
        "digest", help="chain what the log holds now and print the digest to keep off it"
    )
    digest.set_defaults(handler=run_audit_digest)
    verify = actions.add_parser(
        "verify",
        help="recompute the hash chain and check it and each digest; exit 1 when broken",
    )
    verify.add_argument(
        "--digest",
        dest="digests",
        metavar="FILE",
        type=Path,
        action="append",
        default=[],
        help="a digest, or JSON Lines of them (repeatable)",
    )
    verify.set_defaults(handler=run_audit_verify)


def chain_keeping(ledger: Ledger) -> ChainKeeping:
    """The chain as `serve` and `monitor` keep it: digests to `audit_digest_file` as JSON
    Lines, or to standard output (the service's log) as `audit digest {...}` lines."""
    path = ledger.settings.audit_digest_file

    def keep(digest: Digest) -> None:
        if path is None:
            print(f"audit digest {digest.line()}", flush=True)
        else:
            append_digest(path, digest)

    return ChainKeeping(ledger.engine, ledger.settings.audit_digest_minutes * 60, keep)


def run_audit_digest(settings: Settings, args: argparse.Namespace) -> int:
    # The first digest of a long log chains all of it: no statement timeout.
    with open_ledger(settings.unbounded(), catch_up=False) as ledger:
        digest = take_digest(ledger.engine)
    print(digest.line())
    return EXIT_INTACT


def run_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    try:
        digests = [kept for path in args.digests for kept in read_digests(path)]
    except InvalidDigest as exc:
        print(f"error: {visible(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    with open_ledger(settings.unbounded(), catch_up=False, maintenance=True) as ledger:
        report = verify_chain(ledger.engine, digests)
    print(render_chain_report(report))
    return EXIT_INTACT if report.intact else EXIT_BROKEN


def render_chain_report(report: ChainReport) -> str:
    lines = [
        f"recomputed {report.events:,} events: head {report.head.hex()} at cursor "
        f"{report.cursor}; the stored chain holds {report.chained:,}"
    ]
    if report.first_break is not None:
        lines.append(visible(f"BROKEN: {report.first_break.describe()}"))
    lines.extend(_digest_line(check) for check in report.digests)
    failed = [check for check in report.digests if not check.holds]
    if failed and report.first_break is None:
        lines.append(_rewritten(report, failed[0]))
    if report.intact:
        lines.append(f"intact: the log matches its chain and {len(report.digests)} digest(s)")
    else:
        lines.append(f"broken: {len(failed)} of {len(report.digests)} digest(s) fail")
    return "\n".join(lines)


def _digest_line(check: DigestCheck) -> str:
    digest = check.kept.digest
    taken = f"cursor {digest.cursor}, {digest.events:,} events, taken {digest.taken_at.isoformat()}"
    verdict = "holds" if check.holds else f"FAILS: {check.found}, not {digest.head.hex()}"
    return visible(f"digest {check.kept.source} ({taken}): {verdict}")


def _rewritten(report: ChainReport, first_failed: DigestCheck) -> str:
    """Where the change lies when only the digests show it: the stored chain was rewritten
    to match the log, between the last digest that holds and the first that fails."""
    before = [
        check.kept
        for check in report.digests
        if check.holds and check.kept.digest.events < first_failed.kept.digest.events
    ]
    after = max(before, key=lambda kept: kept.digest.events) if before else None
    since = (
        f"after cursor {after.digest.cursor} (digest {after.source}, which holds)"
        if after
        else "after the start of the log"
    )
    return visible(
        "the stored chain agrees with the log, so it was rewritten with it: the change lies "
        f"{since} and at or before cursor {first_failed.kept.digest.cursor}"
    )
