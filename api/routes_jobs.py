"""Jobs, their history, and the operators' commands."""

import hashlib
import uuid
from typing import Annotated

from fastapi import Body, Query
from starlette.responses import Response

from api.auth import Caller, Operator, Reader, Registrar
from api.direct_handler import in_thread
from api.gathered_registrations import TheRegistrations
from api.models import (
    CancelBody,
    CreateJob,
    ForceStartBody,
    ForceStartView,
    Guarded,
    HistoryView,
    JobList,
    JobView,
    MarkFailedBody,
    PastJobList,
    PastJobView,
    RequeueBody,
)
from api.params import (
    RETURN_MINIMAL,
    BlankIsAbsent,
    CommandRequest,
    JobId,
    JobsCursorText,
    MomentText,
    StoredText,
    Stripped,
    TheCommandRequest,
    TheLedger,
    TheRegistration,
)
from api.presenters import (
    history_view,
    job_view,
    past_job_list,
    past_job_view,
    recorded_job_view,
)
from api.responses import json_response
from api.routing import api_router
from ledger.commands import CancelJob, JobCommand, MarkFailed, RequeueJob
from ledger.errors import JobNotFound
from ledger.job_listing import JobsCursor
from ledger.registrations import Registration
from ledger.statuses import JobStatus
from projections.current_status.as_of import parse_moment
from projections.history import transitions

router = api_router(401, 403, 404, 409, 422, 503)

AsOf = Annotated[
    MomentText | None,
    Query(
        description="show the past: as the events recorded at or before this moment left "
        "the ledger (read-only, without queue positions or health)"
    ),
    BlankIsAbsent,
]


@router.post(
    "/v1/jobs",
    summary="register a job",
    status_code=201,
    response_model=JobView,
    responses={
        200: {"model": JobView, "description": "registered before with this key"},
        201: {
            "description": "registered; with `Prefer: return=minimal`, the job as recorded "
            "(`JobFields`: no queue position or health, which take a read)"
        },
    },
)
async def create_job(
    caller: Registrar,
    body: Annotated[CreateJob, Body(default_factory=CreateJob)],
    registration: TheRegistration,
    registrations: TheRegistrations,
) -> Response:
    """Registrations that arrive together are recorded in one transaction
    (`api.gathered_registrations`), each answered, logged and counted as its own."""
    sent = registration.sent
    job_id = body.job_id or new_job_id(caller.name, sent.key)
    outcome = await registrations.register(
        Registration(
            job_id=job_id,
            command=body.command(),
            idempotency_key=sent.key,
            actor=caller.name,
            correlation_id=sent.correlation,
        )
    )
    code, location = 200 if outcome.replayed else 201, {"Location": f"/v1/jobs/{job_id}"}
    if registration.minimal:
        applied = {"Preference-Applied": RETURN_MINIMAL}
        return json_response(recorded_job_view(outcome.state), code, location | applied)
    reading = await in_thread(sent.ledger.reader.reading_of, {"state": outcome.state})
    return json_response(job_view(reading), code, location)


def new_job_id(caller: str, key: str | None) -> str:
    if key is None:
        return f"job-{uuid.uuid4().hex}"
    # A retried request with the same key names the same job.
    return "job-" + hashlib.sha256(f"{caller}\0{key}".encode()).hexdigest()[:32]


@router.get("/v1/jobs", summary="list jobs", response_model=JobList | PastJobList)
def list_jobs(
    *,
    caller: Reader,
    ledger: TheLedger,
    status: Annotated[
        JobStatus | None, Query(description="only jobs in this status"), BlankIsAbsent
    ] = None,
    q: Annotated[
        str,
        Query(
            max_length=200,
            description="part of the job's id: three characters or more match ids containing "
            "them; one or two, ids starting with them",
        ),
        Stripped,
        StoredText,
    ] = "",
    limit: Annotated[int, Query(ge=1, le=500), BlankIsAbsent] = 50,
    cursor: Annotated[
        JobsCursorText | None,
        Query(description="the next_cursor of the page before"),
        BlankIsAbsent,
    ] = None,
    as_of: AsOf = None,
) -> Response:
    after = JobsCursor.parse(cursor) if cursor else None
    if as_of:
        past = ledger.past.page(parse_moment(as_of), status, search=q, after=after, limit=limit)
        return json_response(past_job_list(past))
    page = ledger.listing.page(status, search=q, after=after, limit=limit)
    return json_response(
        JobList(
            jobs=[job_view(reading) for reading in ledger.reader.readings(page.jobs)],
            next_cursor=str(page.next_cursor) if page.next_cursor else None,
            counts=page.counts,
            estimated=sorted(page.estimated),
            total=sum(page.counts.values()),
            as_of=page.as_of.isoformat(),
        )
    )


@router.get("/v1/jobs/{job_id}", summary="get a job", response_model=JobView | PastJobView)
def get_job(job_id: JobId, caller: Reader, ledger: TheLedger, as_of: AsOf = None) -> Response:
    if as_of:
        moment = parse_moment(as_of)
        return json_response(past_job_view(ledger.past.job(job_id, moment), moment))
    return json_response(job_view(ledger.reader.read(job_id)))


@router.get("/v1/jobs/{job_id}/history", summary="a job's history", response_model=HistoryView)
def get_history(job_id: JobId, caller: Reader, ledger: TheLedger) -> Response:
    events = ledger.store.history(job_id)
    if not events:
        raise JobNotFound(job_id)
    return json_response(history_view(job_id, transitions(events)))


@router.post("/v1/jobs/{job_id}/force-start", summary="force start", response_model=ForceStartView)
def force_start(
    job_id: JobId,
    caller: Operator,
    body: Annotated[ForceStartBody, Body(default_factory=ForceStartBody)],
    sent: TheCommandRequest,
) -> Response:
    started = sent.ledger.force_starter.force_start(
        job_id,
        actor=caller.name,
        reason=body.reason,
        expected_version=body.expected_version,
        idempotency_key=sent.key,
        correlation_id=sent.correlation,
    )
    return json_response(
        ForceStartView(job=job_view(started), queue_position=started.queue_position)
    )


@router.post("/v1/jobs/{job_id}/mark-failed", summary="mark failed", response_model=JobView)
def mark_failed(
    job_id: JobId,
    caller: Operator,
    body: MarkFailedBody,
    sent: TheCommandRequest,
) -> Response:
    command = MarkFailed(reason=body.reason)
    return _operate(sent, caller, job_id, command, body=body)


@router.post("/v1/jobs/{job_id}/cancel", summary="cancel", response_model=JobView)
def cancel(
    job_id: JobId,
    caller: Operator,
    body: Annotated[CancelBody, Body(default_factory=CancelBody)],
    sent: TheCommandRequest,
) -> Response:
    command = CancelJob(reason=body.reason)
    return _operate(sent, caller, job_id, command, body=body)


@router.post("/v1/jobs/{job_id}/requeue", summary="requeue", response_model=JobView)
def requeue(
    job_id: JobId,
    caller: Operator,
    body: Annotated[RequeueBody, Body(default_factory=RequeueBody)],
    sent: TheCommandRequest,
) -> Response:
    command = RequeueJob(reason=body.reason, resume_from=body.resume_from)
    return _operate(sent, caller, job_id, command, body=body)


def _operate(
    sent: CommandRequest,
    caller: Caller,
    job_id: str,
    command: JobCommand,
    *,
    body: Guarded,
) -> Response:
    """An operator's command, guarded by the version the operator saw (`body`'s); answer
    with the job."""
    outcome = sent.execute(
        job_id, command, actor=caller.name, expected_version=body.expected_version
    )
    return json_response(job_view(sent.ledger.reader.reading_of(outcome.state)))
