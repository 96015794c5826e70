"""The training server's routes: claim or start a job, then heartbeat and report on the run."""

from api.auth import EMIT
from api.endpoints import Answer, Call, Endpoint
from api.models import (
    CheckpointBody,
    ClaimView,
    CompleteBody,
    FailBody,
    HeartbeatView,
    JobView,
    RunBody,
    WorkerBody,
)
from api.presenters import job_view
from ledger.commands import (
    CompleteJob,
    FailJob,
    JobCommand,
    PauseJob,
    ResumeJob,
    SaveCheckpoint,
    WorkerIdentity,
)
from ledger.leases import renew_lease
from ledger.queue import Claim


def _worker(body: WorkerBody) -> WorkerIdentity:
    return WorkerIdentity(
        worker_id=body.worker_id,
        host=body.host,
        pid=body.pid,
        pid_started_at=body.pid_started_at,
        boot_id=body.boot_id,
    )


def _claim_view(call: Call, claim: Claim) -> ClaimView:
    return ClaimView(
        job=job_view(call.ledger.reader.reading_of(claim.job)),
        attempt=claim.attempt,
        run_token=claim.run_token,
        resume_from=claim.resume_from,
        lease_expires_at=claim.lease_expires_at.isoformat(),
    )


def claim_next(call: Call) -> ClaimView | Answer:
    claim = call.ledger.queue.claim(_worker(call.body), actor=call.caller.name)
    if claim is None:
        return Answer(None, 204)
    return _claim_view(call, claim)


def start_job(call: Call) -> ClaimView:
    claim = call.ledger.queue.start(call.path["job_id"], _worker(call.body), actor=call.caller.name)
    return _claim_view(call, claim)


def heartbeat(call: Call) -> HeartbeatView:
    body: RunBody = call.body
    job_id = call.path["job_id"]
    expires = renew_lease(
        call.ledger.store, job_id, body.attempt, body.run_token, call.ledger.settings.lease_seconds
    )
    return HeartbeatView(job_id=job_id, attempt=body.attempt, lease_expires_at=expires.isoformat())


def _report(call: Call, command: JobCommand) -> JobView:
    """Decide a report on the run's attempt and token; answer with the job."""
    outcome = call.ledger.service.execute(
        call.path["job_id"],
        command,
        actor=call.caller.name,
        idempotency_key=call.headers.get("idempotency-key"),
    )
    return job_view(call.ledger.reader.reading_of(outcome.state))


def pause(call: Call) -> JobView:
    body: RunBody = call.body
    return _report(call, PauseJob(attempt=body.attempt, run_token=body.run_token))


def resume(call: Call) -> JobView:
    body: RunBody = call.body
    return _report(call, ResumeJob(attempt=body.attempt, run_token=body.run_token))


def checkpoint(call: Call) -> JobView:
    body: CheckpointBody = call.body
    return _report(
        call,
        SaveCheckpoint(
            attempt=body.attempt, run_token=body.run_token, path=body.path, step=body.step
        ),
    )


def complete(call: Call) -> JobView:
    body: CompleteBody = call.body
    return _report(
        call, CompleteJob(attempt=body.attempt, run_token=body.run_token, result=body.result)
    )


def fail(call: Call) -> JobView:
    body: FailBody = call.body
    return _report(
        call, FailJob(attempt=body.attempt, run_token=body.run_token, reason=body.reason)
    )


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/queue/claim",
        EMIT,
        claim_next,
        "claim the next job",
        WorkerBody,
        ClaimView,
        200,
        (),
        (204,),
    ),
    Endpoint(
        "POST",
        "/v1/jobs/{job_id}/start",
        EMIT,
        start_job,
        "start a queued job",
        WorkerBody,
        ClaimView,
    ),
    Endpoint(
        "POST", "/v1/jobs/{job_id}/heartbeat", EMIT, heartbeat, "heartbeat", RunBody, HeartbeatView
    ),
    Endpoint("POST", "/v1/jobs/{job_id}/pause", EMIT, pause, "pause", RunBody, JobView),
    Endpoint("POST", "/v1/jobs/{job_id}/resume", EMIT, resume, "resume", RunBody, JobView),
    Endpoint(
        "POST",
        "/v1/jobs/{job_id}/checkpoint",
        EMIT,
        checkpoint,
        "checkpoint",
        CheckpointBody,
        JobView,
    ),
    Endpoint(
        "POST", "/v1/jobs/{job_id}/complete", EMIT, complete, "complete", CompleteBody, JobView
    ),
    Endpoint("POST", "/v1/jobs/{job_id}/fail", EMIT, fail, "fail", FailBody, JobView),
]
