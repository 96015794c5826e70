"""Fuzz the HTTP API from its own OpenAPI document with schemathesis.

Whatever is sent, the server never answers 5xx, and every error it answers is an
`application/problem+json` document with `type`, `title`, `status` and `detail`,
its `status` the HTTP status. Three passes, one app on this test's own database:
each operation with a token of a role it admits (positive and negative data),
every operation as the auditor (403 on the writes), and every operation without
a token (401). Path parameters are often the ids of jobs seeded in each status,
and the run endpoints then often carry the run's real attempt and token, so the
fuzz reaches the ledger's commands, not only the 404s; or they are edge-case ids
(unknown, too long, not ASCII, a NUL, a `/`).

Failures of every operation are gathered and reported together, each with the
request that caused it.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.core import NotSet
from schemathesis.core.result import Err
from schemathesis.specs.openapi.schemas import OpenApiSchema

from api.app import create_app
from api.auth import Role, TokenBook
from api.bootstrap import Ledger
from ledger.state import JobState
from ledger.statuses import JobStatus
from tests.api.conftest import TOKENS, auth, token_of
from tests.api.operations import DOCUMENT, OPERATIONS
from tests.api.operations import Operation as Declared
from tests.conftest import JobFactory

PROBLEM_FIELDS = ("type", "title", "status", "detail")
PROBLEM_TYPE_BASE = "https://jobledger.dev/problems/"
Operation = APIOperation[Any, Any, Any, Any]
FuzzCase = Case[Operation]

# What Starlette's router answers before any route (and its auth) runs, e.g. for an
# id holding a `/` once the path is decoded.
ROUTER_KINDS = frozenset(
    {PROBLEM_TYPE_BASE + "not-found", PROBLEM_TYPE_BASE + "method-not-allowed"}
)

SEEDED = [
    JobStatus.QUEUED,
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.RUNNING,
    JobStatus.PAUSED,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
]


@dataclass(frozen=True, slots=True)
class Seeded:
    job_id: str
    attempt: int
    run_token: str


@dataclass(frozen=True, slots=True)
class Pass:
    name: str
    max_examples: int
    caller: Callable[[Declared], str | None]  # the token's owner, or None: no token
    negative: bool = False


def allowed_caller(declared: Declared) -> str:
    """The operator where the route admits one, else the training server (emitter)."""
    return "alice" if Role.OPERATOR in declared.roles else "trainer"


PASSES = [
    Pass("allowed role", 20, allowed_caller, negative=True),
    Pass("auditor", 5, lambda declared: "audrey"),
    Pass("no token", 4, lambda declared: None),
]

# Ids no job has: unknown, too long for a job id, not ASCII, a NUL, a `/` once decoded.
EDGE_IDS = ["no-such-job", "x" * 300, "j\u00e9b", "a\x00b", "a/b"]

RUN_BODY_PATHS = ("/heartbeat", "/pause", "/resume", "/checkpoint", "/complete", "/fail")


def test_the_api_never_fails_and_every_error_is_a_problem(
    ledger: Ledger, job_factory: JobFactory
) -> None:
    seeded = [
        _seed(job_factory(status, f"fuzz-{n}-{status.value}")) for n, status in enumerate(SEEDED)
    ]
    spec = ",".join(f"{name}:{role}:{token_of(name)}" for name, role in TOKENS.items())
    app = create_app(ledger, TokenBook.from_env({"JOBLEDGER_TOKENS": spec}))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=auth("audrey"))
    declared = {(d.method, d.path): d for d in OPERATIONS}

    failures: list[str] = []
    report: list[str] = []
    for fuzz_pass in PASSES:
        started, sent = time.monotonic(), 0
        for operation in _operations(schema):
            route = declared[(operation.method.upper(), operation.path)]
            caller = fuzz_pass.caller(route)
            if route.streams and _admits(route, caller):
                continue  # the stream never ends for a caller it admits: tests/e2e reads it
            sent += _run(
                operation=operation,
                strategy=_cases(operation, caller, seeded, negative=fuzz_pass.negative),
                fuzz_pass=fuzz_pass,
                route=route,
                caller=caller,
                failures=failures,
            )
        report.append(f"{fuzz_pass.name}: {sent} requests in {time.monotonic() - started:.1f}s")
    print("\nfuzz passes: " + "; ".join(report))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


def _admits(route: Declared, caller: str | None) -> bool:
    return route.public or (caller is not None and Role(TOKENS[caller]) in route.roles)


def _seed(state: JobState) -> Seeded:
    return Seeded(state.job_id, state.attempt, f"token-{state.job_id}")


def _operations(schema: OpenApiSchema) -> list[Operation]:
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    return operations


def _cases(
    operation: Operation, caller: str | None, seeded: list[Seeded], *, negative: bool
) -> st.SearchStrategy[FuzzCase]:
    """Half the cases as generated; with a `{job_id}`, half on a seeded or an edge-case id."""
    headers = auth(caller) if caller else {}
    modes = [GenerationMode.POSITIVE]
    if negative and (operation.body or operation.query or operation.path_parameters):
        modes.append(GenerationMode.NEGATIVE)
    generated = st.one_of(
        [operation.as_strategy(generation_mode=mode, headers=headers) for mode in modes]
    )
    if not operation.path_parameters:
        return generated
    if not (operation.body or operation.query):
        modes = [GenerationMode.POSITIVE]  # with the id fixed, nothing is left to make invalid
    runs = {job.job_id: job for job in seeded}
    on_id: dict[str, st.SearchStrategy[FuzzCase]] = {}
    for job_id in [*runs, *EDGE_IDS]:
        strategy = st.one_of(
            [
                operation.as_strategy(
                    generation_mode=mode, headers=headers, path_parameters={"job_id": job_id}
                )
                for mode in modes
            ]
        )
        if job_id in runs and operation.path.endswith(RUN_BODY_PATHS):
            strategy = st.one_of(strategy, strategy.map(_with_run(runs[job_id])))
        on_id[job_id] = strategy
    known = st.sampled_from(list(on_id)).flatmap(lambda job_id: on_id[job_id])
    return st.one_of(generated, known)


def _with_run(job: Seeded) -> Callable[[FuzzCase], FuzzCase]:
    """Give a generated run body the seeded run's real attempt and token."""

    def apply(case: FuzzCase) -> FuzzCase:
        if isinstance(case.body, dict):
            case.body = {**case.body, "attempt": job.attempt, "run_token": job.run_token}
        return case

    return apply


def _run(
    *,
    operation: Operation,
    strategy: st.SearchStrategy[FuzzCase],
    fuzz_pass: Pass,
    route: Declared,
    caller: str | None,
    failures: list[str],
) -> int:
    sent = 0
    seen: list[str] = []  # every failure, in case a replay does not fail again (flaky)

    @settings(
        max_examples=fuzz_pass.max_examples,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    @given(case=strategy)
    def fuzz(case: FuzzCase) -> None:
        nonlocal sent
        sent += 1
        try:
            try:
                response = case.call()
            except Exception as exc:  # the app raised: Starlette answered 500 and re-raised
                raise AssertionError(f"the server raised {exc!r}\n{_request(case)}") from exc
            _check(case, response)
            _check_auth(case, response, route, caller)
        except AssertionError as failure:
            seen.append(str(failure))
            raise

    try:
        fuzz()
    except AssertionError as failure:  # shrunk to a minimal failing case
        failures.append(f"[{fuzz_pass.name}] {operation.label}: {failure}")
    except Exception as error:  # e.g. flaky: the ledger's state changed under the replay
        shortest = f"\nthe shortest failure seen: {min(seen, key=len)}" if seen else ""
        failures.append(f"[{fuzz_pass.name}] {operation.label}: {error!r}"[:500] + shortest)
    return sent


def _check(case: FuzzCase, response: Response) -> None:
    status = response.status_code
    content_type = _content_type(response)
    where = f"{_request(case)}\n-> {status} {content_type}: {response.content[:500]!r}"
    assert status < 500, f"a server error\n{where}"
    if status >= 400:
        assert content_type.startswith("application/problem+json"), f"not a problem\n{where}"
        body = _json(response, where)
        assert isinstance(body, dict), f"a problem is an object\n{where}"
        missing = [field for field in PROBLEM_FIELDS if field not in body]
        assert not missing, f"the problem lacks {missing}\n{where}"
        assert body["status"] == status, f"the problem's status is not the HTTP status\n{where}"
    elif response.content:
        declared = _declared_media_types(case, status)
        assert content_type.split(";")[0] in declared, f"not a declared {declared}\n{where}"
        if content_type.startswith("application/json"):
            _json(response, where)


def _declared_media_types(case: FuzzCase, status: int) -> list[str]:
    """The media types the document declares for this operation's answer with `status`."""
    answers = DOCUMENT["paths"][case.operation.path][case.method.lower()]["responses"]
    return [media.split(";")[0] for media in answers.get(str(status), {}).get("content", {})]


def _check_auth(case: FuzzCase, response: Response, route: Declared, caller: str | None) -> None:
    """No token: 401; a role the route does not admit: 403 (unless no route matched at all);
    a public route answers anyone."""
    if route.public:
        return
    if caller is None:
        expected = 401
    elif Role(TOKENS[caller]) not in route.roles:
        expected = 403
    else:
        return
    if response.status_code == expected:
        return
    where = f"{_request(case)}\n-> {response.status_code}: {response.content[:500]!r}"
    assert response.status_code in (404, 405), f"expected {expected}\n{where}"
    assert _json(response, where).get("type") in ROUTER_KINDS, f"expected {expected}\n{where}"


def _content_type(response: Response) -> str:
    values = response.headers.get("content-type") or [""]
    return values[0]


def _json(response: Response, where: str) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        raise AssertionError(f"the body is not JSON\n{where}") from None


def _request(case: FuzzCase) -> str:
    body = "" if isinstance(case.body, NotSet) else f" body={case.body!r}"
    return (
        f"{case.method} {case.formatted_path} query={case.query!r} headers={case.headers!r}{body}"
    )
