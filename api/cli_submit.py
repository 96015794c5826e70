"""`jobledger submit --from FILE.jsonl`: a sweep's jobs, one JSON object a line, registered
in transactions of up to `MAX_REGISTRATIONS` jobs.

Each line is a job as `POST /v1/jobs/batch` takes it (`job_id`, `status`, `priority`,
`spec`, `max_attempts`, `auto_retry`, `idempotency_key`). A line refused (it is not a
JSON object, it is invalid, its job exists) is named with its number and why; the
others are registered. Submitting the same file again with keys on its lines registers
nothing twice: those lines are answered as replays.
"""

import argparse
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from itertools import islice
from pathlib import Path
from typing import IO, Any

import orjson

from api.bootstrap import open_ledger
from api.cli_text import visible
from api.heap import settle_heap
from api.routes_batch import ItemOutcome, register_items
from ledger.registrations import MAX_REGISTRATIONS
from ledger.settings import Settings

EXIT_OK, EXIT_REFUSED = 0, 1


def add_submit_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    submit = commands.add_parser(
        "submit", help="register the jobs of a JSON Lines file (- for standard input)"
    )
    submit.add_argument("--from", dest="source", required=True, metavar="FILE.jsonl")
    submit.add_argument("--actor", help="who the jobs are registered by (default: you)")
    submit.add_argument("--json", action="store_true", help="print every line's outcome")
    submit.set_defaults(handler=run_submit)


def run_submit(settings: Settings, args: argparse.Namespace) -> int:
    from api.cli import operator_actor

    actor = args.actor or operator_actor()
    outcomes: list[tuple[int, ItemOutcome]] = []
    source = nullcontext(sys.stdin) if args.source == "-" else Path(args.source).open()  # noqa: SIM115
    with source as lines, open_ledger(settings, catch_up=False) as ledger:
        settle_heap()  # every line's outcome is kept: a heap that grows by the file
        for chunk in _chunks(_numbered_items(lines)):
            objects = [(number, item) for number, item in chunk if isinstance(item, dict)]
            results = register_items(ledger.service, [item for _, item in objects], actor=actor)
            outcomes += zip([number for number, _ in objects], results, strict=True)
            outcomes += [(n, item) for n, item in chunk if isinstance(item, ItemOutcome)]
    outcomes.sort(key=lambda numbered: numbered[0])
    refused = [(number, outcome) for number, outcome in outcomes if outcome.status >= 400]
    if args.json:
        for number, outcome in outcomes:
            print(orjson.dumps({"line": number, **outcome.model_dump(mode="json")}).decode())
    else:
        for number, outcome in refused:
            said = f"{outcome.job_id or '-'}: {outcome.status} {outcome.kind}: {outcome.detail}"
            print(visible(f"line {number}: {said}"), file=sys.stderr)
        created = sum(1 for _, outcome in outcomes if outcome.status == 201)
        replayed = sum(1 for _, outcome in outcomes if outcome.status == 200)
        print(f"registered {created}, already registered {replayed}, refused {len(refused)}")
    return EXIT_REFUSED if refused else EXIT_OK


Line = tuple[int, dict[str, Any] | ItemOutcome]
"""A line's number, and its object or, when it holds none, its refusal."""


def _numbered_items(lines: IO[str]) -> Iterator[Line]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError as invalid:
            yield number, _not_an_object(f"not JSON ({invalid})")
            continue
        yield number, item if isinstance(item, dict) else _not_an_object("not a JSON object")


def _not_an_object(detail: str) -> ItemOutcome:
    return ItemOutcome(job_id=None, status=422, kind="invalid-request", detail=detail)


def _chunks(lines: Iterator[Line]) -> Iterator[list[Line]]:
    """`lines` in chunks of `MAX_REGISTRATIONS`."""
    while chunk := list(islice(lines, MAX_REGISTRATIONS)):
        yield chunk
