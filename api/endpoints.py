"""How an HTTP route is declared: path, roles, body and response models, and a plain handler.

The wrapper authenticates, parses the JSON body with its pydantic model, runs
the (blocking) handler in the thread pool and serializes its answer. The same
declarations generate the OpenAPI document.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import Caller, Role, TokenBook
from api.bootstrap import Ledger
from api.models import Body
from api.problems import Problem, ledger_error_response, validation_response
from ledger.errors import LedgerError

if TYPE_CHECKING:
    from api.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the caller, its parsed body, the path and query parameters."""

    ledger: Ledger
    caller: Caller
    body: Any
    path: dict[str, str]
    query: dict[str, str]
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Answer:
    """A handler's answer when it is not a plain 200 with the response model."""

    model: BaseModel | None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Call], BaseModel | Answer]


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    roles: frozenset[Role]
    handler: Handler
    summary: str
    body: type[Body] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    query: tuple[str, ...] = ()
    extra_statuses: tuple[int, ...] = ()
    public: bool = False  # answers without a token too (`roles` then says nothing)


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(content), status, headers, media_type="application/json")


def starlette_route(
    endpoint: Endpoint, ledger: Ledger, tokens: TokenBook, metrics: "Metrics | None" = None
) -> Route:
    async def serve(request: Request) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await answer(request)
            status = response.status_code
            return response
        except Problem as problem:
            status = problem.status
            raise
        except LedgerError as error:
            status = ledger_error_response(error).status_code
            raise
        finally:
            if metrics is not None:
                metrics.observe(f"{endpoint.method} {endpoint.path}", status, started)

    async def answer(request: Request) -> Response:
        if endpoint.public:
            caller = tokens.visitor(request)
        else:
            caller = tokens.caller(request, endpoint.roles)

        for name, value in [*request.path_params.items(), *request.query_params.items()]:
            if "\x00" in name or "\x00" in str(value):
                raise Problem(422, "invalid-request", f"{name} must not contain a NUL character")
        body = None
        if endpoint.body is not None:
            raw = await request.body()
            try:
                body = endpoint.body.model_validate_json(raw or b"{}")
            except ValidationError as invalid:
                return validation_response(invalid)
        call = Call(
            ledger,
            caller,
            body,
            dict(request.path_params),
            dict(request.query_params),
            {key.lower(): value for key, value in request.headers.items()},
        )
        result = await run_in_threadpool(endpoint.handler, call)
        answer = result if isinstance(result, Answer) else Answer(result, endpoint.status)
        if answer.model is None:
            return Response(status_code=answer.status, headers=answer.headers)
        return json_response(answer.model.model_dump(mode="json"), answer.status, answer.headers)

    return Route(endpoint.path, serve, methods=[endpoint.method], name=endpoint.summary)


def int_query(call: Call, name: str, default: int, low: int, high: int) -> int:
    raw = call.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(422, "invalid-request", f"{name} must be an integer") from None
    if not low <= value <= high:
        raise Problem(422, "invalid-request", f"{name} must be between {low} and {high}")
    return value
