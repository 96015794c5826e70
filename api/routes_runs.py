"""The training server's routes: claim or start a job, then heartbeat and report on the run."""

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from starlette.responses import Response

from api.auth import Caller, Emitter
from api.bootstrap import Ledger
from api.direct_handler import in_thread
from api.lease_renewals import TheRenewals
from api.models import (
    CheckpointBody,
    ClaimView,
    CompleteAndClaimBody,
    CompleteBody,
    FailAndClaimBody,
    FailBody,
    HeartbeatOutcome,
    HeartbeatsBody,
    HeartbeatsView,
    HeartbeatView,
    JobView,
    ReportAndClaimView,
    RunBody,
    WorkerBody,
)
from api.params import CommandRequest, JobId, TheCommandRequest, TheLedger
from api.presenters import claim_view, job_view
from api.problems import item_refusal
from api.responses import json_response
from api.routing import api_router
from ledger.commands import (
    CompleteJob,
    FailJob,
    JobCommand,
    PauseJob,
    ResumeJob,
    SaveCheckpoint,
    next_claim_key,
)
from ledger.errors import LedgerError, StaleAttempt
from ledger.leases import RunHeartbeat
from ledger.queue import Claim
from ledger.state import JobState
from projections.job_readings import JobReader

router = api_router(401, 403, 404, 409, 422, 503)


@router.post(
    "/v1/queue/claim",
    summary="claim the next job",
    response_model=ClaimView,
    responses={204: {"description": "the queue is empty"}},
)
async def claim_next(
    caller: Emitter,
    body: WorkerBody,
    sent: TheCommandRequest,
) -> Response:
    """Claimed on the event loop when it can be (`CommandRequest.claim_soon`); the answer
    to a retry of an earlier claim, which reads the job, on a thread."""
    claim = await sent.claim_soon(body.identity(), actor=caller.name)
    if claim is None:
        return Response(status_code=204)
    values = {"ledger": sent.ledger, "claim": claim}
    return await _answer(_claim_view, values, needs_read=claim.replayed)


@router.post("/v1/jobs/{job_id}/start", summary="start a queued job", response_model=ClaimView)
def start_job(
    job_id: JobId,
    caller: Emitter,
    body: WorkerBody,
    sent: TheCommandRequest,
) -> Response:
    claim = sent.ledger.queue.start(
        job_id,
        body.identity(),
        actor=caller.name,
        idempotency_key=sent.key,
        correlation_id=sent.correlation,
    )
    return json_response(_claim_view(sent.ledger, claim))


def _claim_view(ledger: Ledger, claim: Claim) -> ClaimView:
    reader = ledger.reader
    reading = reader.reading_of(claim.job) if claim.replayed else reader.just_started(claim.job)
    return claim_view(claim, reading, ledger.queue.lease_seconds)


@router.post("/v1/jobs/{job_id}/heartbeat", summary="heartbeat", response_model=HeartbeatView)
async def heartbeat(
    job_id: JobId, caller: Emitter, ledger: TheLedger, renewals: TheRenewals, body: RunBody
) -> Response:
    """Renew the run's lease. Heartbeats of many runs that arrive together are renewed in
    one statement (`api.lease_renewals`), each answered with its own expiry or refusal; a
    shared statement that fails is tried again for each heartbeat alone."""
    lease_seconds = ledger.settings.lease_seconds
    expires = await renewals.renew(RunHeartbeat(job_id, body.attempt, body.run_token))
    view = HeartbeatView(
        job_id=job_id,
        attempt=body.attempt,
        lease_expires_at=expires.isoformat(),
        lease_seconds=lease_seconds,
    )
    return json_response(view)


@router.post("/v1/heartbeats", summary="heartbeat many runs", response_model=HeartbeatsView)
async def heartbeats(
    caller: Emitter, ledger: TheLedger, renewals: TheRenewals, body: HeartbeatsBody
) -> Response:
    """Every run on a host (or all of a training server's) in one request and one
    statement: each renewed as its own heartbeat would be, or refused with the same
    problem, in `results` in the order sent. The answer is 200 even when some are refused.
    The statement goes from the event loop when it can (`LeaseRenewals.renew_each`)."""
    beats = [RunHeartbeat(run.job_id, run.attempt, run.run_token) for run in body.runs]
    lease_seconds = ledger.settings.lease_seconds
    outcomes = await renewals.renew_each(beats)
    results = [
        _beat_outcome(beat, outcome, lease_seconds)
        for beat, outcome in zip(beats, outcomes, strict=True)
    ]
    renewed = sum(1 for result in results if result.status == 200)
    view = HeartbeatsView(
        results=results,
        renewed=renewed,
        refused=len(results) - renewed,
        lease_seconds=lease_seconds,
    )
    return json_response(view)


def _beat_outcome(
    beat: RunHeartbeat, outcome: datetime | LedgerError, lease_seconds: float
) -> HeartbeatOutcome:
    if isinstance(outcome, LedgerError):
        current = outcome.details().get("current_attempt")
        return HeartbeatOutcome(
            job_id=beat.job_id,
            attempt=beat.attempt,
            current_attempt=current,
            **item_refusal(outcome),
        )
    return HeartbeatOutcome(
        job_id=beat.job_id,
        attempt=beat.attempt,
        status=200,
        lease_expires_at=outcome.isoformat(),
        lease_seconds=lease_seconds,
    )


@router.post("/v1/jobs/{job_id}/pause", summary="pause", response_model=JobView)
def pause(
    job_id: JobId,
    caller: Emitter,
    body: RunBody,
    sent: TheCommandRequest,
) -> Response:
    command = PauseJob(attempt=body.attempt, run_token=body.run_token)
    return _report(sent, caller, job_id, command)


@router.post("/v1/jobs/{job_id}/resume", summary="resume", response_model=JobView)
def resume(
    job_id: JobId,
    caller: Emitter,
    body: RunBody,
    sent: TheCommandRequest,
) -> Response:
    command = ResumeJob(attempt=body.attempt, run_token=body.run_token)
    return _report(sent, caller, job_id, command)


@router.post("/v1/jobs/{job_id}/checkpoint", summary="checkpoint", response_model=JobView)
def checkpoint(
    job_id: JobId,
    caller: Emitter,
    body: CheckpointBody,
    sent: TheCommandRequest,
) -> Response:
    command = SaveCheckpoint(
        attempt=body.attempt, run_token=body.run_token, path=body.path, step=body.step
    )
    return _report(sent, caller, job_id, command)


@router.post("/v1/jobs/{job_id}/complete", summary="complete", response_model=JobView)
async def complete(
    job_id: JobId,
    caller: Emitter,
    body: CompleteBody,
    sent: TheCommandRequest,
) -> Response:
    command = CompleteJob(attempt=body.attempt, run_token=body.run_token, result=body.result)
    return await _report_soon(sent, caller, job_id, command)


@router.post("/v1/jobs/{job_id}/fail", summary="fail", response_model=JobView)
async def fail(
    job_id: JobId,
    caller: Emitter,
    body: FailBody,
    sent: TheCommandRequest,
) -> Response:
    command = FailJob(attempt=body.attempt, run_token=body.run_token, reason=body.reason)
    return await _report_soon(sent, caller, job_id, command)


@router.post(
    "/v1/jobs/{job_id}/complete-and-claim",
    summary="complete, then claim the next job",
    response_model=ReportAndClaimView,
)
async def complete_and_claim(
    job_id: JobId,
    caller: Emitter,
    body: CompleteAndClaimBody,
    sent: TheCommandRequest,
) -> Response:
    """`complete`, then `POST /v1/queue/claim` for `worker`, in one request: a worker
    that loops over jobs reports one and takes the next in one round trip."""
    command = CompleteJob(attempt=body.attempt, run_token=body.run_token, result=body.result)
    return await _report_and_claim(sent, caller, job_id, command, body.worker)


@router.post(
    "/v1/jobs/{job_id}/fail-and-claim",
    summary="fail, then claim the next job",
    response_model=ReportAndClaimView,
)
async def fail_and_claim(
    job_id: JobId,
    caller: Emitter,
    body: FailAndClaimBody,
    sent: TheCommandRequest,
) -> Response:
    """`fail`, then `POST /v1/queue/claim` for `worker`, in one request."""
    command = FailJob(attempt=body.attempt, run_token=body.run_token, reason=body.reason)
    return await _report_and_claim(sent, caller, job_id, command, body.worker)


async def _report_and_claim(
    sent: CommandRequest, caller: Caller, job_id: str, command: JobCommand, worker: WorkerBody
) -> Response:
    """The report decided and recorded first, in its own transaction (a refused report
    claims nothing, and a report once recorded stays so whatever the claim meets); then
    the next job claimed for `worker`. A retry whose first try claimed a job whose run has
    ended since answers no next job, as an empty queue does (the caller claims anew).
    Each is made on the event loop when it can be (`execute_soon`, `claim_soon`); the
    answer is read on a thread only when it needs a read."""
    outcome = await sent.execute_soon(job_id, command, actor=caller.name)
    claiming = dataclasses.replace(
        sent, key=None if sent.key is None else next_claim_key(sent.key, job_id)
    )
    try:
        claim = await claiming.claim_soon(worker.identity(), actor=caller.name)
    except StaleAttempt:
        claim = None
    ledger = sent.ledger

    def report_and_claim_view() -> ReportAndClaimView:
        return ReportAndClaimView(
            job=job_view(ledger.reader.reading_of(outcome.state)),
            next=None if claim is None else _claim_view(ledger, claim),
        )

    replayed = claim is not None and claim.replayed
    needs_read = ledger.reader.needs_read(outcome.state) or replayed
    return await _answer(report_and_claim_view, {}, needs_read=needs_read)


async def _report_soon(
    sent: CommandRequest, caller: Caller, job_id: str, command: JobCommand
) -> Response:
    """`_report`, from the event loop: the report decided and recorded there when it can
    be (`CommandRequest.execute_soon`), and the job read on a thread only when its view
    needs a read (a failed run requeued for another attempt)."""
    outcome = await sent.execute_soon(job_id, command, actor=caller.name)
    reader = sent.ledger.reader
    values = {"reader": reader, "state": outcome.state}
    return await _answer(_job_view, values, needs_read=reader.needs_read(outcome.state))


async def _answer(
    view: Callable[..., BaseModel], values: dict[str, Any], *, needs_read: bool
) -> Response:
    """The answer `view` makes of `values`, on the event loop, or on a thread of the
    handlers' pool when it `needs_read` (the database's, which would hold up every other
    request on the loop)."""
    return json_response(await in_thread(view, values) if needs_read else view(**values))


def _job_view(reader: JobReader, state: JobState) -> JobView:
    return job_view(reader.reading_of(state))


def _report(sent: CommandRequest, caller: Caller, job_id: str, command: JobCommand) -> Response:
    """Decide a report on the run's attempt and token; answer with the job."""
    outcome = sent.execute(job_id, command, actor=caller.name)
    return json_response(job_view(sent.ledger.reader.reading_of(outcome.state)))
