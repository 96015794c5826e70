"""Registering many jobs in one request: a sweep's hundreds of jobs, one transaction.

Each item is a registration as `POST /v1/jobs` takes it, with an `idempotency_key` of
its own, and gets an outcome of its own: 201 registered, 200 registered before with
this key (nothing appended), 409 (the job exists; the key was used otherwise is 422,
as for one job) or 422 (the item is invalid), each with the job's id. One invalid item
refuses only itself; the rest are registered.
"""

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Body as BodyParam
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.responses import Response

from api.auth import Registrar
from api.correlation import CorrelationId
from api.models import STORABLE_CHECKED, CreateJob, plainly_storable
from api.params import TheLedger
from api.problems import item_refusal
from api.responses import json_response
from api.routes_jobs import new_job_id
from api.routing import api_router
from ledger.errors import LedgerError
from ledger.registrations import MAX_REGISTRATIONS, Registered, Registration
from ledger.service import JobService
from ledger.statuses import JobStatus

router = api_router(401, 403, 422, 503)


class BatchItem(CreateJob):
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="a retry of the item with the same key is answered 200 and appends nothing;"
        " without a job_id, the key names the job",
    )


class CreateJobs(BaseModel):
    """The list of registrations. Each is checked (as a `Body`) on its own."""

    model_config = ConfigDict(extra="forbid", strict=True)

    jobs: list[dict[str, Any]] = Field(
        max_length=MAX_REGISTRATIONS,
        description=f"up to {MAX_REGISTRATIONS} registrations, each as POST /v1/jobs takes it "
        "plus its own idempotency_key; each is validated on its own",
        json_schema_extra={"items": BatchItem.model_json_schema()},
    )


class ItemOutcome(BaseModel):
    job_id: str | None = Field(description="the job's id (None only for an item without one)")
    status: int = Field(description="201, 200 (a replay), 409 or 422")
    job_status: JobStatus | None = None
    version: int | None = None
    kind: str | None = Field(default=None, description="why it was refused (a problem kind)")
    detail: str | None = None


class BatchView(BaseModel):
    results: list[ItemOutcome]
    created: int
    replayed: int
    refused: int


@router.post("/v1/jobs/batch", summary="register many jobs", response_model=BatchView)
def create_jobs(
    caller: Registrar,
    ledger: TheLedger,
    body: Annotated[CreateJobs, BodyParam()],
    correlation: CorrelationId,
) -> Response:
    results = register_items(
        ledger.service, body.jobs, actor=caller.name, correlation_id=correlation
    )
    counts = {code: sum(1 for result in results if result.status == code) for code in (200, 201)}
    view = BatchView(
        results=results,
        created=counts[201],
        replayed=counts[200],
        refused=len(results) - counts[200] - counts[201],
    )
    return json_response(view)


def register_items(
    service: JobService,
    items: Sequence[dict[str, Any]],
    *,
    actor: str,
    correlation_id: str | None = None,
) -> list[ItemOutcome]:
    """Validate each item on its own and register the valid ones in one transaction (at
    most `MAX_REGISTRATIONS`); each item's outcome, in order."""
    outcomes: list[ItemOutcome | None] = []
    registrations: list[Registration] = []
    for job in _validated(items):
        if isinstance(job, ItemOutcome):
            outcomes.append(job)
            continue
        outcomes.append(None)
        registrations.append(_registration(job, actor))
    refused_before = len(outcomes) - len(registrations)
    registered = iter(
        service.register_many(
            registrations, actor=actor, correlation_id=correlation_id, refused_before=refused_before
        )
    )
    pending = iter(registrations)
    return [outcome or _outcome(next(pending), next(registered)) for outcome in outcomes]


_ITEMS = TypeAdapter(list[BatchItem])


def _validated(items: Sequence[dict[str, Any]]) -> Sequence[BatchItem | ItemOutcome]:
    """Each item as a `BatchItem`, or its 422 outcome. The items are validated as one list,
    their storability told by one write of them all; when one item is invalid, the list's
    validation gives none of the others, so each is validated on its own."""
    context = STORABLE_CHECKED if plainly_storable(items) else None
    try:
        return _ITEMS.validate_python(items, context=context)
    except ValidationError:
        pass
    validated: list[BatchItem | ItemOutcome] = []
    for item in items:
        try:
            validated.append(BatchItem.model_validate(item))
        except ValidationError as invalid:
            validated.append(_invalid(item, invalid))
    return validated


def _registration(job: BatchItem, caller: str) -> Registration:
    job_id = job.job_id or new_job_id(caller, job.idempotency_key)
    return Registration(job_id=job_id, command=job.command(), idempotency_key=job.idempotency_key)


def _outcome(registration: Registration, outcome: Registered | LedgerError) -> ItemOutcome:
    if isinstance(outcome, LedgerError):
        return ItemOutcome(job_id=registration.job_id, **item_refusal(outcome))
    state = outcome.state
    return ItemOutcome(
        job_id=state.job_id,
        status=200 if outcome.replayed else 201,
        job_status=state.status,
        version=state.version,
    )


def _invalid(item: dict[str, Any], invalid: ValidationError) -> ItemOutcome:
    job_id = item.get("job_id") if isinstance(item, dict) else None
    problems = "; ".join(
        f"{'.'.join(map(str, error['loc'])) or 'item'}: {error['msg']}"
        for error in invalid.errors(include_url=False)
    )
    return ItemOutcome(
        job_id=job_id if isinstance(job_id, str) else None,
        status=422,
        kind="invalid-request",
        detail=problems,
    )
