"""Jobs, their history, and the operators' commands."""

import hashlib
import uuid

from api.auth import OPERATE, READ, REGISTER
from api.endpoints import Answer, Call, Endpoint, int_query
from api.models import (
    CancelBody,
    CreateJob,
    ForceStartBody,
    ForceStartView,
    HistoryView,
    JobList,
    JobView,
    MarkFailedBody,
    RequeueBody,
)
from api.presenters import history_view, job_view
from api.problems import Problem
from ledger.commands import CancelJob, JobCommand, MarkFailed, RegisterJob, RequeueJob
from ledger.errors import JobNotFound
from ledger.job_listing import JobsCursor
from ledger.statuses import JobStatus
from projections.history import transitions


def create_job(call: Call) -> Answer:
    body: CreateJob = call.body
    key = call.headers.get("idempotency-key")
    job_id = body.job_id or _new_job_id(call.caller.name, key)
    command = RegisterJob(
        initial_status=JobStatus(body.status),
        spec=body.spec,
        priority=body.priority,
        max_attempts=body.max_attempts,
        auto_retry=body.auto_retry,
    )
    outcome = call.ledger.service.execute(
        job_id, command, actor=call.caller.name, idempotency_key=key
    )
    status = 200 if outcome.replayed else 201
    return Answer(
        job_view(call.ledger.reader.reading_of(outcome.state)),
        status,
        {"Location": f"/v1/jobs/{job_id}"},
    )


def _new_job_id(caller: str, key: str | None) -> str:
    if key is None:
        return f"job-{uuid.uuid4().hex}"
    # A retried request with the same key names the same job.
    return "job-" + hashlib.sha256(f"{caller}\0{key}".encode()).hexdigest()[:32]


def list_jobs(call: Call) -> JobList:
    raw_status = call.query.get("status")
    try:
        status = JobStatus(raw_status) if raw_status else None
    except ValueError:
        allowed = ", ".join(s.value for s in JobStatus)
        raise Problem(422, "invalid-request", f"status must be one of: {allowed}") from None
    limit = int_query(call, "limit", 50, 1, 500)
    search = call.query.get("q", "").strip()
    if len(search) > 200:
        raise Problem(422, "invalid-request", "q must be at most 200 characters")
    raw_cursor = call.query.get("cursor")
    try:
        after = JobsCursor.parse(raw_cursor) if raw_cursor else None
    except ValueError:
        raise Problem(422, "invalid-request", "cursor must be a next_cursor of this list") from None
    page = call.ledger.listing.page(status, search=search, after=after, limit=limit)
    return JobList(
        jobs=[job_view(reading) for reading in call.ledger.reader.readings(page.jobs)],
        next_cursor=str(page.next_cursor) if page.next_cursor else None,
        counts=page.counts,
        total=sum(page.counts.values()),
        as_of=page.as_of.isoformat(),
    )


def get_job(call: Call) -> JobView:
    return job_view(call.ledger.reader.read(call.path["job_id"]))


def get_history(call: Call) -> HistoryView:
    job_id = call.path["job_id"]
    events = call.ledger.store.history(job_id)
    if not events:
        raise JobNotFound(job_id)
    return history_view(job_id, transitions(events))


def force_start(call: Call) -> ForceStartView:
    body: ForceStartBody = call.body
    started = call.ledger.force_starter.force_start(
        call.path["job_id"],
        actor=call.caller.name,
        reason=body.reason,
        expected_version=body.expected_version,
        idempotency_key=call.headers.get("idempotency-key"),
    )
    return ForceStartView(job=job_view(started), queue_position=started.queue_position)


def operator_command(call: Call) -> JobView:
    body = call.body
    command: JobCommand
    if isinstance(body, MarkFailedBody):
        command = MarkFailed(reason=body.reason)
    elif isinstance(body, CancelBody):
        command = CancelJob(reason=body.reason)
    else:
        assert isinstance(body, RequeueBody)
        command = RequeueJob(reason=body.reason, resume_from=body.resume_from)
    outcome = call.ledger.service.execute(
        call.path["job_id"],
        command,
        actor=call.caller.name,
        expected_version=body.expected_version,
        idempotency_key=call.headers.get("idempotency-key"),
    )
    return job_view(call.ledger.reader.reading_of(outcome.state))


ENDPOINTS = [
    Endpoint("POST", "/v1/jobs", REGISTER, create_job, "register a job", CreateJob, JobView, 201),
    Endpoint(
        "GET",
        "/v1/jobs",
        READ,
        list_jobs,
        "list jobs",
        None,
        JobList,
        200,
        ("status", "q", "limit", "cursor"),
    ),
    Endpoint("GET", "/v1/jobs/{job_id}", READ, get_job, "get a job", None, JobView),
    Endpoint(
        "GET", "/v1/jobs/{job_id}/history", READ, get_history, "a job's history", None, HistoryView
    ),
    Endpoint(
        "POST",
        "/v1/jobs/{job_id}/force-start",
        OPERATE,
        force_start,
        "force start",
        ForceStartBody,
        ForceStartView,
    ),
    Endpoint(
        "POST",
        "/v1/jobs/{job_id}/mark-failed",
        OPERATE,
        operator_command,
        "mark failed",
        MarkFailedBody,
        JobView,
    ),
    Endpoint(
        "POST", "/v1/jobs/{job_id}/cancel", OPERATE, operator_command, "cancel", CancelBody, JobView
    ),
    Endpoint(
        "POST",
        "/v1/jobs/{job_id}/requeue",
        OPERATE,
        operator_command,
        "requeue",
        RequeueBody,
        JobView,
    ),
]
