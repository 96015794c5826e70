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
        job=job_view(call.ledger, claim.job),
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


def report(call: Call) -> JobView:
    """pause, resume, checkpoint, complete, fail: decided on the run's attempt and token."""
    body = call.body
    run = {"attempt": body.attempt, "run_token": body.run_token}
    command: JobCommand
    if isinstance(body, CheckpointBody):
        command = SaveCheckpoint(path=body.path, step=body.step, **run)
    elif isinstance(body, CompleteBody):
        command = CompleteJob(result=body.result, **run)
    elif isinstance(body, FailBody):
        command = FailJob(reason=body.reason, **run)
    elif call.path.get("action") == "pause":
        command = PauseJob(**run)
    else:
        command = ResumeJob(**run)
    outcome = call.ledger.service.execute(
        call.path["job_id"],
        command,
        actor=call.caller.name,
        idempotency_key=call.headers.get("idempotency-key"),
    )
    return job_view(call.ledger, outcome.state)


def _pause(call: Call) -> JobView:
    return report(
        Call(
            call.ledger,
            call.caller,
            call.body,
            {**call.path, "action": "pause"},
            call.query,
            call.headers,
        )
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
    Endpoint("POST", "/v1/jobs/{job_id}/pause", EMIT, _pause, "pause", RunBody, JobView),
    Endpoint("POST", "/v1/jobs/{job_id}/resume", EMIT, report, "resume", RunBody, JobView),
    Endpoint(
        "POST", "/v1/jobs/{job_id}/checkpoint", EMIT, report, "checkpoint", CheckpointBody, JobView
    ),
    Endpoint("POST", "/v1/jobs/{job_id}/complete", EMIT, report, "complete", CompleteBody, JobView),
    Endpoint("POST", "/v1/jobs/{job_id}/fail", EMIT, report, "fail", FailBody, JobView),
]
