"""The training server's side of JobLedger: a typed HTTP client and the `JobRun` context manager.

Every write is sent with an idempotency key and retried with the same key
when the connection fails or the server answers 503, so a retry never appends
twice. Problems come back as the ledger's own errors.

The lease is the server's: a claim's answer and every heartbeat's say how long it
is, and a `JobRun` heartbeats at a third of it. A run's final report is retried
until it is acknowledged or its deadline passes, before the worker can take
another job: a worker never runs on while the ledger still shows its last run.

Every call sends a W3C `traceparent`: a trace of its own, or within `trace_calls` a span
of the trace it names (a training step's, say). The ledger records the trace id as the
correlation id of the events the call appends, so the job's history names the step.
"""

import contextvars
import dataclasses
import logging
import math
import secrets
import threading
import time
import traceback
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx
import orjson

from ledger.commands import WorkerIdentity, next_claim_key
from ledger.errors import (
    DatabaseUnavailable,
    InvalidTraceparent,
    JobNotFound,
    LedgerError,
    StaleAttempt,
    StorageError,
)
from ledger.host import current_process
from ledger.http_transport import Answered, KeptAliveTransport, PlainRequests
from ledger.run_heartbeats import Beat, RunHeartbeats
from ledger.settings import DEFAULT_LEASE_SECONDS
from ledger.trace_context import TraceParent

log = logging.getLogger(__name__)


class ClientError(LedgerError):
    """The server refused the request (authentication, role, input) or failed."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.status_code = status
        self.kind = _kind(problem)
        self.problem = problem
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title') or 'error'}")


class QueueEmpty(LedgerError):
    """No queued job to claim."""


class RunFenced(StaleAttempt):
    """This run's attempt was closed by someone else: stop working on it."""


class ReportUndelivered(LedgerError):
    """The run's final report was not acknowledged in time: unless it reached the ledger
    unanswered, the ledger will judge the run by its lease (and fail or retry it once the
    lease has passed); a next job it claimed meanwhile waits out its lease the same way."""

    def __init__(self, job_id: str, attempt: int, action: str, within: float) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.action = action
        super().__init__(
            f"job {job_id!r} attempt {attempt}: the {action} report was not acknowledged"
            f" within {within:g} s; the ledger will judge the run by its lease"
        )


_calls_trace: ContextVar[TraceParent | None] = ContextVar("jobledger_calls_trace", default=None)
"""The trace that calls made in this thread (or task) belong to, set by `trace_calls`."""


@contextmanager
def trace_calls(traceparent: str | TraceParent | None = None) -> Iterator[TraceParent]:
    """Send the calls made in this thread (or task) inside the block as spans of one
    trace: the one `traceparent` names (the span of a training step, from the caller's
    tracer), or a new one. The ledger records its trace id on every event these calls
    append (`correlation_id` in the job's history and the feed) and in their log lines.

        with trace_calls(step_traceparent) as trace:
            run.checkpoint(path, step)
        log.info("step %d: trace %s", step, trace.trace_id)

    A malformed `traceparent` raises `InvalidTraceparent`. A `JobRun`'s heartbeats are
    sent from a thread of their own, each in a trace of its own."""
    if isinstance(traceparent, str):
        parsed = TraceParent.parse(traceparent)
        if parsed is None:
            raise InvalidTraceparent(traceparent)
        traceparent = parsed
    trace = traceparent or TraceParent.start()
    token = _calls_trace.set(trace)
    try:
        yield trace
    finally:
        _calls_trace.reset(token)


def _call_traceparent() -> str:
    """The `traceparent` of one call: a new span of the calls' trace, or a new trace."""
    trace = _calls_trace.get()
    return str(TraceParent.start() if trace is None else trace.child())


MAX_BACKOFF_S = 2.0
"""The longest wait between two tries of a request: a deadline of minutes still tries
often enough to be through soon after the server is back."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A started attempt, as `ledger.queue.Claim` is: the job (as the API shows it) and
    what the worker needs to run it and to write about it."""

    job: dict[str, Any]
    attempt: int
    run_token: str
    resume_from: str | None
    lease_expires_at: datetime
    lease_seconds: float | None
    """The server's lease (None from a server that does not say it)."""

    @property
    def job_id(self) -> str:
        return str(self.job["job_id"])

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "Claim":
        return cls(
            job=body["job"],
            attempt=body["attempt"],
            run_token=body["run_token"],
            resume_from=body["resume_from"],
            lease_expires_at=datetime.fromisoformat(body["lease_expires_at"]),
            lease_seconds=body.get("lease_seconds"),
        )


def _default_transport() -> httpx.BaseTransport | None:
    """The lean transport (`ledger.http_transport`); None, for httpx's own, which goes
    through the proxy the environment names, when it names one."""
    return None if urllib.request.getproxies() else KeptAliveTransport()


BATCH_JOBS = 1000
"""The most jobs `register_many` sends in one request (the server's limit)."""
BATCH_BYTES = 900 * 1024
"""The most JSON `register_many` sends in one request: under the server's default body
limit (1 MiB)."""
HEARTBEATS_PER_REQUEST = 1000
"""The most runs `heartbeat_many` sends in one request (the server's limit)."""
NEWER_ROUTE_RETRY_S = 300.0
"""How long a client whose ledger answered one of its newer routes 404 (`POST
/v1/heartbeats`, `POST /v1/jobs/{id}/complete-and-claim`) does without it before it tries
again (the ledger may have been upgraded meanwhile)."""
MANY_HEARTBEATS = "POST /v1/heartbeats"
REPORT_AND_CLAIM = "POST /v1/jobs/{id}/complete-and-claim (and fail-and-claim)"
BATCHES_IN_FLIGHT = 2
"""How many requests `register_many` sends at once by default: the server prepares the
next batch while the database writes one (1.6-1.8 times the jobs a second of one at a
time, measured on two cores)."""


class LedgerClient:
    """Typed methods for the JobLedger HTTP API."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = transport or _default_transport()
        self._http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )
        self._plain = (
            PlainRequests(transport, self._http.base_url, headers, timeout)
            if isinstance(transport, KeptAliveTransport) and self._http.base_url.scheme == "http"
            else None
        )
        """Plain HTTP over the lean transport skips httpx's client (`PlainRequests`)."""
        self.retries = retries
        self.backoff = backoff
        self._missing_until: dict[str, float] = {}
        """When (`time.monotonic`) to try a newer route again that the ledger answered 404."""
        self.run_heartbeats = RunHeartbeats(self._heartbeat_runs)
        """Heartbeats every `JobRun` of this client, one request a beat for all of them."""

    @property
    def http(self) -> httpx.Client:
        """The httpx client requests go through (but for `PlainRequests`' own)."""
        return self._http

    @http.setter
    def http(self, client: httpx.Client) -> None:
        """Another client in its place (an app served in process, say) carries every
        request from now on."""
        self._http = client
        self._plain = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "LedgerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs ----------------------------------------------------------------------

    def register(
        self,
        job_id: str | None = None,
        *,
        status: str = "queued",
        priority: int = 0,
        spec: dict[str, Any] | None = None,
        max_attempts: int = 1,
        auto_retry: bool = False,
        minimal: bool = False,
    ) -> dict[str, Any]:
        """Register a job; its view with its queue position and health, or with `minimal`
        the job as recorded without them (`Prefer: return=minimal`: the server skips the
        read they take)."""
        body: dict[str, Any] = {
            "status": status,
            "priority": priority,
            "spec": spec or {},
            "max_attempts": max_attempts,
            "auto_retry": auto_retry,
        }
        if job_id is not None:
            body["job_id"] = job_id
        headers = {"Prefer": "return=minimal"} if minimal else None
        return self._json("POST", "/v1/jobs", body, headers=headers)

    def register_many(
        self,
        jobs: Iterable[dict[str, Any]],
        *,
        in_flight: int = BATCHES_IN_FLIGHT,
        per_request: int = BATCH_JOBS,
    ) -> list[dict[str, Any]]:
        """Register `jobs` (each as `register` takes it, as a dict) through
        `POST /v1/jobs/batch`, up to `per_request` (at most `BATCH_JOBS`) a request and
        `BATCH_BYTES` of JSON; return
        each job's outcome, in order (`status` 201, 200, 409 or 422, `job_id`, and `kind`
        and `detail` when refused). Each job without an `idempotency_key` is given one,
        so a request tried again after a lost answer registers nothing twice.

        Up to `in_flight` requests are sent at once, each its own transaction, so the
        server prepares one batch while the database writes another. A batch that names
        a job (by id, or by key without one) of a batch still in flight waits for it, so
        the first mention of a job is the one registered, as when they go one at a time.
        When a request fails, the error is raised once the requests already sent have
        been answered: the batches before it, and perhaps some after it, are registered,
        and sending the same jobs again (with their keys) answers those as registered
        before."""
        if in_flight < 1 or not 1 <= per_request <= BATCH_JOBS:
            raise ValueError(f"in_flight must be 1 or more, per_request 1 to {BATCH_JOBS}")
        outcomes: list[dict[str, Any]] = []
        sent: deque[tuple[set[str], Future[list[dict[str, Any]]]]] = deque()
        with ThreadPoolExecutor(in_flight, thread_name_prefix="jobledger-batch") as senders:
            for batch in _batches(jobs, per_request):
                names = {_job_name(job) for job in batch}
                while sent and (len(sent) == in_flight or any(names & n for n, _ in sent)):
                    outcomes += sent.popleft()[1].result()
                call = contextvars.copy_context().run  # the caller's trace goes along
                sent.append((names, senders.submit(call, self._register_batch, batch)))
            while sent:
                outcomes += sent.popleft()[1].result()
        return outcomes

    def _register_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        answer = self._json("POST", "/v1/jobs/batch", {"jobs": batch})
        results: list[dict[str, Any]] = answer["results"]
        return results

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def jobs(
        self, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        params = {
            key: value
            for key, value in {"status": status, "limit": limit, "cursor": cursor}.items()
            if value
        }
        return self._json("GET", "/v1/jobs", params=params)

    def history(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/jobs/{job_id}/history")

    def force_start(self, job_id: str, reason: str | None = None) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/force-start", {"reason": reason})

    def mark_failed(self, job_id: str, reason: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/mark-failed", {"reason": reason})

    def cancel(self, job_id: str, reason: str | None = None) -> dict[str, Any]:
        return self._json("POST", f"/v1/jobs/{job_id}/cancel", {"reason": reason})

    def requeue(
        self, job_id: str, reason: str | None = None, resume_from: str | None = None
    ) -> dict[str, Any]:
        body = {"reason": reason, "resume_from": resume_from}
        return self._json("POST", f"/v1/jobs/{job_id}/requeue", body)

    # -- runs ----------------------------------------------------------------------

    def claim(self, worker: WorkerIdentity) -> Claim | None:
        return self._claim(worker)

    def _claim(self, worker: WorkerIdentity, key: str | None = None) -> Claim | None:
        response = self._send("POST", "/v1/queue/claim", dataclasses.asdict(worker), key=key)
        if response.status_code == 204:
            return None
        return Claim.from_json(response.json())

    def start(self, job_id: str, worker: WorkerIdentity) -> Claim:
        body = dataclasses.asdict(worker)
        return Claim.from_json(self._json("POST", f"/v1/jobs/{job_id}/start", body))

    def heartbeat(self, job_id: str, attempt: int, run_token: str) -> dict[str, Any]:
        run = {"attempt": attempt, "run_token": run_token}
        return self._json("POST", f"/v1/jobs/{job_id}/heartbeat", run)

    def heartbeat_many(self, runs: Iterable[tuple[str, int, str]]) -> list[dict[str, Any]]:
        """Heartbeat many runs, each a (job id, attempt, run token), through
        `POST /v1/heartbeats`, `HEARTBEATS_PER_REQUEST` a request: each run's outcome, in
        order (`status` 200 with `lease_expires_at`, or 409 for a fenced run that must
        stop, or 404, with `kind` and `detail`). A heartbeat renews in place, so a request
        tried again after a lost answer does no harm."""
        named = [
            {"job_id": job_id, "attempt": attempt, "run_token": run_token}
            for job_id, attempt, run_token in runs
        ]
        outcomes: list[dict[str, Any]] = []
        for first in range(0, len(named), HEARTBEATS_PER_REQUEST):
            chunk = named[first : first + HEARTBEATS_PER_REQUEST]
            outcomes += self._json("POST", "/v1/heartbeats", {"runs": chunk})["results"]
        return outcomes

    def _heartbeat_runs(self, runs: list[Beat]) -> list[dict[str, Any]]:
        """`heartbeat_many`; on a server without `POST /v1/heartbeats` (an older one, which
        answers it 404 `not-found`), one heartbeat a run for `NEWER_ROUTE_RETRY_S`,
        each answered in the same form: a run fenced or gone is its outcome, any other
        failure the beat's."""
        if self._may_have(MANY_HEARTBEATS):
            try:
                return self.heartbeat_many(runs)
            except ClientError as exc:
                self._lacks(MANY_HEARTBEATS, exc, "one heartbeat a run")
        outcomes: list[dict[str, Any]] = []
        for job_id, attempt, run_token in runs:
            run = {"job_id": job_id, "attempt": attempt}
            try:
                outcomes.append(run | self.heartbeat(job_id, attempt, run_token) | {"status": 200})
            except (StaleAttempt, JobNotFound) as refused:
                current = refused.details().get("current_attempt")
                refusal = {"kind": refused.kind, "detail": str(refused), "current_attempt": current}
                outcomes.append(run | {"status": refused.status_code} | refusal)
        return outcomes

    def _may_have(self, route: str) -> bool:
        """False for `NEWER_ROUTE_RETRY_S` after the ledger answered `route` 404."""
        return time.monotonic() >= self._missing_until.get(route, 0.0)

    def _lacks(self, route: str, refusal: ClientError, instead: str) -> None:
        """Note that the ledger has no `route` when `refusal` is its 404 `not-found` (an
        older ledger); any other refusal is raised."""
        if refusal.kind != "not-found":
            raise refusal
        log.warning("the ledger has no %s: %s", route, instead)
        self._missing_until[route] = time.monotonic() + NEWER_ROUTE_RETRY_S

    def report(
        self,
        job_id: str,
        action: str,
        attempt: int,
        run_token: str,
        *,
        within: float | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """pause, resume, checkpoint (path, step), complete (result) or fail (reason).

        With `within`, an unreachable or unavailable server is tried again (with the same
        idempotency key) until `within` seconds have passed, however many tries it takes."""
        body = {"attempt": attempt, "run_token": run_token, **fields}
        return self._json("POST", f"/v1/jobs/{job_id}/{action}", body, within=within)

    def report_and_claim(
        self,
        job_id: str,
        action: str,
        attempt: int,
        run_token: str,
        worker: WorkerIdentity,
        *,
        within: float | None = None,
        **fields: Any,
    ) -> tuple[dict[str, Any], Claim | None]:
        """complete (result) or fail (reason), then claim the next job for `worker`, in one
        request: the job after the report, and the next claim (None when none was claimed:
        the queue was empty, or on a retry the run its first try claimed has ended). Tried
        again as `report` is, with one key. A ledger without the route (an older one, which
        answers it 404 `not-found`) gets a report, then a claim, for `NEWER_ROUTE_RETRY_S`
        (a claim that fails then answers None: the report is recorded).

        The report and the claim sent instead carry the keys the route gives them (the
        request's, and `next_claim_key` of it): a retry that meets an older replica after
        a newer one recorded its first try (a rolling upgrade) replays that try's report
        and its claim, instead of being refused as stale and leaving the job it claimed
        to wait out its lease."""
        key = _new_key()
        run = {"attempt": attempt, "run_token": run_token, **fields}
        if self._may_have(REPORT_AND_CLAIM):
            body = {**run, "worker": dataclasses.asdict(worker)}
            path = f"/v1/jobs/{job_id}/{action}-and-claim"
            try:
                answer = self._json("POST", path, body, within=within, key=key)
            except ClientError as exc:
                self._lacks(REPORT_AND_CLAIM, exc, "a report, then a claim")
            else:
                following = answer["next"]
                return answer["job"], None if following is None else Claim.from_json(following)
        job = self._json("POST", f"/v1/jobs/{job_id}/{action}", run, within=within, key=key)
        try:
            return job, self._claim(worker, key=next_claim_key(key, job_id))
        except StaleAttempt:  # replayed: the run an earlier try claimed has ended since
            return job, None
        except StorageError:  # the report is recorded: the caller may claim again
            return job, None

    # -- health and audit ----------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/v1/health")

    def reconcile(
        self, dry_run: bool = False, max_age_minutes: int | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"dry_run": str(dry_run).lower()}
        if max_age_minutes is not None:
            params["max_age_minutes"] = max_age_minutes
        return self._json("POST", "/v1/admin/reconcile", params=params)

    def events(self, after: str | None = None, limit: int = 100) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        return self._json("GET", "/v1/events", params=params)

    # -- plumbing ------------------------------------------------------------------

    def _json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        *,
        within: float | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        sent = self._send(method, path, body, params, within=within, headers=headers, key=key)
        result: dict[str, Any] = orjson.loads(sent.content)
        return result

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        *,
        within: float | None = None,
        headers: dict[str, str] | None = None,
        key: str | None = None,
    ) -> Answered:
        """One logical request: one idempotency key (a POST's: `key`, or a new one) and one
        `traceparent`, however many tries. A failed connection or a 503 is tried again
        `retries` times or, given `within`, until that many seconds have passed; the waits
        grow from `backoff` to `MAX_BACKOFF_S`."""
        headers = {**(headers or {}), "traceparent": _call_traceparent()}
        content = None
        if body is not None:  # orjson: several times faster than the json httpx would use
            content = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        if method == "POST":
            headers["Idempotency-Key"] = key or _new_key()
        deadline = None if within is None else time.monotonic() + within
        tries = 0
        while True:
            tries += 1
            try:
                response: Answered
                if self._plain is not None:
                    response = self._plain.request(method, path, params, headers, content)
                else:
                    response = self.http.request(
                        method, path, content=content, params=params, headers=headers
                    )
            except httpx.TransportError as exc:
                wait = self._wait_before_next_try(tries, deadline)
                if wait is None:
                    raise DatabaseUnavailable(f"the ledger cannot be reached: {exc}") from exc
            else:
                if response.status_code != 503:
                    break
                wait = self._wait_before_next_try(tries, deadline)
                if wait is None:
                    break
            time.sleep(wait)
        if response.status_code >= 400:
            raise problem_error(response)
        return response

    def _wait_before_next_try(self, tries: int, deadline: float | None) -> float | None:
        """How long to wait before try `tries + 1`; None when there is to be none."""
        wait = min(self.backoff * 2 ** (tries - 1), MAX_BACKOFF_S)
        if deadline is None:
            return wait if tries <= self.retries else None
        left = deadline - time.monotonic()
        return min(wait, left) if left > 0 else None


def _job_name(job: dict[str, Any]) -> str:
    """What names the job a batch item registers: its id, or else its key (the server
    derives the id from the caller and the key)."""
    job_id = job.get("job_id")
    return job_id if isinstance(job_id, str) and job_id else f"\0{job['idempotency_key']}"


def _new_key() -> str:
    """A new idempotency key: 128 random bits as 32 hex digits, as a UUID's hex would be,
    at a quarter of the cost of making a UUID."""
    return secrets.token_hex(16)


def _batches(jobs: Iterable[dict[str, Any]], most: int) -> Iterator[list[dict[str, Any]]]:
    """`jobs`, each with an idempotency key, in batches of at most `most` jobs and about
    `BATCH_BYTES` of JSON (a single larger job goes alone)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for job in jobs:
        keyed = job if job.get("idempotency_key") else {**job, "idempotency_key": _new_key()}
        job_size = len(orjson.dumps(keyed)) + 1
        if batch and (len(batch) == most or size + job_size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(keyed)
        size += job_size
    if batch:
        yield batch


def problem_error(response: Answered) -> LedgerError:
    """The ledger error a problem+json answer stands for: the one whose class declares its
    kind (`ledger.errors`); any other 503 is `DatabaseUnavailable`, anything else a
    `ClientError`."""
    try:
        problem: dict[str, Any] = response.json()
    except ValueError:
        problem = {"detail": response.text}
    detail = str(problem.get("detail", ""))
    error_class = ERROR_OF_KIND.get(_kind(problem))
    if error_class is not None:
        return error_class.from_details(problem, detail)
    if response.status_code == 503:
        return DatabaseUnavailable(detail)
    return ClientError(response.status_code, problem)


def _kind(problem: dict[str, Any]) -> str:
    return str(problem.get("type", "")).rsplit("/", 1)[-1]


def _declaring_kinds(error_class: type[LedgerError]) -> Iterator[type[LedgerError]]:
    for subclass in error_class.__subclasses__():
        if "kind" in vars(subclass):
            yield subclass
        yield from _declaring_kinds(subclass)


ERROR_OF_KIND: dict[str, type[LedgerError]] = {
    error_class.kind: error_class for error_class in _declaring_kinds(LedgerError)
}
"""The errors a server answers with a kind of their own; the generic 500 ("ledger-error")
is a `ClientError`, as every failure of the server is."""


class JobRun:
    """A training run: claim (or start) a job, heartbeat while it runs, report how it ended.

        with JobRun(client, worker_id="trainer-1") as run:
            for step in range(steps):
                if run.should_stop:   # fenced: another run owns the job now
                    break
                ...
                run.checkpoint(path, step)

    Leaving the block normally reports `completed` (with `run.result`); an
    exception reports `failed` with the exception's summary, and propagates. Without a
    block, `begin()` and `end(error)` do the same. A run given a `claim` (one made
    elsewhere, as `work_off_queue` gets its next one) begins with it.

    The run heartbeats at a third of the server's lease, as the claim's answer and
    each heartbeat's say it (`lease_seconds` is only assumed until the server says),
    with every other run of the same client in one request (`RunHeartbeats`).
    The final report is tried, with one idempotency key, until the ledger acknowledges
    it or `report_within` seconds have passed (by default the server's lease: past it
    the ledger judges the run dead anyway); leaving the block waits for it, so a worker
    that loops over runs never claims its next job while its last one still shows
    running. When the time passes, leaving the block raises `ReportUndelivered`.
    """

    def __init__(
        self,
        client: LedgerClient,
        *,
        worker_id: str = "trainer",
        job_id: str | None = None,
        worker: WorkerIdentity | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        report_within: float | None = None,
        claim: Claim | None = None,
        claim_next: Callable[[], bool] | None = None,
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.worker = worker or current_process(worker_id)
        self.lease_seconds = lease_seconds
        self.report_within = report_within
        self.fenced = threading.Event()
        self.result: dict[str, Any] | None = None
        self.claim: Claim | None = claim
        """The attempt this run is; given, the run begins with it instead of claiming."""
        self.claim_next = claim_next
        """Asked as the run ends (without an exception, or with an `Exception`): true has
        the final report claim the next job for this worker in its request. Whoever sets it
        must run `next_claim`: the job is this worker's until its lease runs out."""
        self.next_claim: Claim | None = None
        """The job the final report claimed next; None when none was claimed (not asked,
        an empty queue, a retried report whose claimed run has ended, the run fenced, an
        interrupt, or the report undelivered)."""

    @property
    def should_stop(self) -> bool:
        return self.fenced.is_set()

    @property
    def heartbeat_every(self) -> float:
        """Seconds between heartbeats: a third of the lease, so two may be lost."""
        return self.lease_seconds / 3

    def __enter__(self) -> "JobRun":
        return self.begin()

    def begin(self) -> "JobRun":
        """Begin the run, as entering its block does: claim (or start) its job unless it
        was given one, and heartbeat it."""
        claim = self.claim or self._claim_or_start()
        self.claim = claim
        self.job_id = claim.job_id
        self._learn_lease(claim.lease_seconds)
        self.client.run_heartbeats.add(self)
        return self

    def _claim_or_start(self) -> Claim:
        if self.job_id is not None:
            return self.client.start(self.job_id, self.worker)
        claim = self.client.claim(self.worker)
        if claim is None:
            raise QueueEmpty()
        return claim

    def checkpoint(self, path: str, step: int | None = None) -> None:
        self._report("checkpoint", path=path, step=step)

    def pause(self) -> None:
        self._report("pause")

    def resume(self) -> None:
        self._report("resume")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.end(error)

    def end(self, error: BaseException | None = None) -> None:
        """Report how the run ended, as leaving its block does: completed without `error`,
        failed with its summary."""
        # A beat on its way is answered first: none reaches the ledger after the report.
        self.client.run_heartbeats.remove(self, wait_s=self.heartbeat_every + 5)
        if self.fenced.is_set():
            return  # the job is someone else's now: report nothing
        claim_next = (error is None or isinstance(error, Exception)) and (
            self.claim_next is not None and self.claim_next()
        )
        if error is None:
            unrecorded = self._complete(claim_next)
            if unrecorded is None:
                return
            reason = f"the run's result could not be recorded: {unrecorded}"
        else:
            summary = "".join(traceback.format_exception_only(error)).strip()
            reason = summary or type(error).__name__
        self._report_final("fail", claim_next, reason=storable_text(reason)[:MAX_REASON])

    def _complete(self, claim_next: bool) -> str | None:
        """Report the run completed with `result`; None once it is, else why the result
        could not be recorded (and nothing was)."""
        result = self.result
        if result is not None and not isinstance(result, dict):
            return f"a result is a JSON object, not {type(result).__name__}"
        try:
            self._report_final("complete", claim_next, result=result)
        except orjson.JSONEncodeError as unwritable:  # a set, an integer beyond 64 bits, ...
            return str(unwritable)
        except ClientError as refused:  # one the ledger cannot store (a NUL character, ...)
            if refused.kind != INVALID_REQUEST:
                raise
            fields = refused.problem.get("errors") or []
            return "; ".join(str(field.get("message")) for field in fields) or str(refused)
        return None

    def _report_final(self, action: str, claim_next: bool, **fields: Any) -> None:
        """Deliver how the run ended, trying until acknowledged or `report_within` passed."""
        assert self.claim is not None
        within = self.lease_seconds if self.report_within is None else self.report_within
        try:
            if claim_next:
                self.next_claim = self._report_and_claim(action, within=within, **fields)
            else:
                self._report(action, within=within, **fields)
        except StaleAttempt:
            self.fenced.set()
        except StorageError as exc:  # unreachable, or a 503 (away, busy) to the last try
            raise ReportUndelivered(self.claim.job_id, self.claim.attempt, action, within) from exc

    def _report(self, action: str, *, within: float | None = None, **fields: Any) -> None:
        assert self.claim is not None
        if self.fenced.is_set():
            raise RunFenced(self.claim.job_id, self.claim.attempt, -1, "this run was fenced")
        try:
            self.client.report(
                self.claim.job_id,
                action,
                self.claim.attempt,
                self.claim.run_token,
                within=within,
                **fields,
            )
        except StaleAttempt:
            self.fenced.set()
            raise

    def _report_and_claim(self, action: str, *, within: float, **fields: Any) -> Claim | None:
        assert self.claim is not None
        claim = self.claim
        _, following = self.client.report_and_claim(
            claim.job_id,
            action,
            claim.attempt,
            claim.run_token,
            self.worker,
            within=within,
            **fields,
        )
        return following

    def _learn_lease(self, lease_seconds: object) -> None:
        """Follow the lease an answer states: a number of seconds above zero (anything
        else, from a server that answered oddly, is ignored)."""
        if not isinstance(lease_seconds, int | float) or isinstance(lease_seconds, bool):
            return
        if 0 < lease_seconds < math.inf and lease_seconds != self.lease_seconds:
            log.info(
                "the ledger's lease is %g s: a heartbeat every %g s",
                lease_seconds,
                lease_seconds / 3,
            )
            self.lease_seconds = lease_seconds

    def beat(self) -> Beat:
        assert self.claim is not None
        return (self.claim.job_id, self.claim.attempt, self.claim.run_token)

    def beat_answered(self, outcome: dict[str, Any]) -> None:
        assert self.claim is not None
        if outcome.get("status") == 200:
            self._learn_lease(outcome.get("lease_seconds"))
        elif outcome.get("kind") == StaleAttempt.kind:
            log.warning("job %s: this run was fenced; stop", self.claim.job_id)
            self.fenced.set()
            self.client.run_heartbeats.remove(self)
        else:
            log.warning("heartbeat refused, trying again: %s", outcome.get("detail"))


MAX_REASON = 2000
"""The longest failure reason the ledger stores."""
INVALID_REQUEST = "invalid-request"
"""The kind of the ledger's answer to a body it cannot store."""


def storable_text(text: str) -> str:
    """`text` as the ledger can store it: a NUL character and a lone surrogate (from a
    file name that is not UTF-8, say) written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def work_off_queue(
    client: LedgerClient,
    work: Callable[[JobRun], dict[str, Any] | None],
    *,
    worker_id: str = "trainer",
    worker: WorkerIdentity | None = None,
    stop: threading.Event | None = None,
    report_within: float | None = None,
) -> int:
    """Run queued jobs one after another until a claim finds the queue empty or `stop` is
    set; answer how many ran. `work(run)` runs each (its answer is the run's result), with
    the run heartbeating as a `JobRun` does.

    Each final report claims the next job in its own request (`complete-and-claim`,
    `fail-and-claim`) unless `stop` is set by then: one round trip a job where a report
    and a claim take two, and the job claimed is run next, so none waits claimed and
    unrun. A run whose work raises an `Exception`, or answers a result the ledger cannot
    store, is reported failed and the loop goes on; any other exception (an interrupt) is
    reported failed, claims nothing and propagates; a report the ledger does not
    acknowledge raises `ReportUndelivered`. A fenced run reports nothing."""
    worker = worker or current_process(worker_id)

    def going_on() -> bool:
        return stop is None or not stop.is_set()

    ran = 0
    claim = client.claim(worker) if going_on() else None
    while claim is not None:
        run = JobRun(
            client, worker=worker, report_within=report_within, claim=claim, claim_next=going_on
        )
        try:
            run.begin()
            run.result = work(run)
        except Exception as failure:
            log.warning("job %s failed: %s", claim.job_id, failure)
            run.end(failure)
        except BaseException as interrupt:
            try:
                run.end(interrupt)
            except Exception:
                log.exception("job %s: the interrupted run's report failed", claim.job_id)
            raise
        else:
            run.end()
        ran += 1
        claim = run.next_claim
        if claim is None and going_on():
            claim = client.claim(worker)  # none came with the report: the queue may be empty
    return ran
