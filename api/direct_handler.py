"""A leaner handler for the routes whose inputs are all of the simple kinds the busiest
routes have: path parameters, one JSON body, and dependencies that read only the request
(the caller's token, the ledger, a command's headers). It does what the framework's
handler does for such a route, in the same order and with the same errors, without its
general dependency solver: a heartbeat costs the server 1.34 million instructions handled
so, 1.59 million by the framework (callgrind, 400 requests from 4 connections).

The route is still declared with the framework, which documents it and checks its
parameters with the framework's own functions; only the walk through its dependencies is
planned once, when the route is made. A route with any other kind of input, or an app
whose dependencies are overridden, is handled by the framework as usual.
"""

import asyncio
import contextvars
import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, params
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import SecurityScopes
from starlette.responses import Response

from api.media_types import is_json

try:  # the framework's own steps, so that values and errors are the ones it makes
    from fastapi._compat import ModelField, Undefined
    from fastapi.dependencies.models import (
        _get_oauth_scopes,
        _is_async_gen_callable,
        _is_coroutine_callable,
        _is_gen_callable,
    )
    from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
except ImportError:  # pragma: no cover - another release: the framework handles every route
    AVAILABLE = False
else:
    AVAILABLE = True

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Resolve = Callable[[Request], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a request to the route needs, found once."""

    endpoint: Callable[..., Any]
    endpoint_is_coroutine: bool
    dependencies: tuple[tuple[str | None, Resolve], ...]
    path_params: list["ModelField"]
    body_params: list["ModelField"]
    embed_body_fields: bool


def direct_handler(route: APIRoute, framework: Handler) -> Handler:
    """The route's handler: the direct one when the route's inputs allow it, else
    `framework` (the framework's own handler)."""
    plan = plan_of(route) if AVAILABLE else None
    if plan is None:
        return framework
    overrides = route.dependency_overrides_provider

    async def handle(request: Request) -> Response:
        if overrides is not None and getattr(overrides, "dependency_overrides", None):
            return await framework(request)
        return await _handle(plan, request)

    return handle


def plan_of(route: APIRoute) -> Plan | None:
    """The route's plan, or None when any of its inputs is of a kind the framework's
    handler must resolve (query, header or cookie parameters, a form, a dependency with
    inputs of its own or that yields, an endpoint that answers with anything but a
    `Response`)."""
    dependant = route.dependant
    endpoint = dependant.call
    if endpoint is None or not _answers_with_response(endpoint):
        return None
    if _other_inputs(dependant) or dependant.request_param_name or _yields(endpoint):
        return None
    if dependant.security_scopes_param_name:
        return None
    if route.body_field is not None and isinstance(route.body_field.field_info, params.Form):
        return None
    dependencies = []
    calls = set()
    for sub in dependant.dependencies:
        resolve = _resolver(sub)
        if resolve is None or sub.call in calls:  # a repeated one is cached: leave it
            return None
        calls.add(sub.call)
        dependencies.append((sub.name, resolve))
    return Plan(
        endpoint,
        _is_coroutine_callable(endpoint),
        tuple(dependencies),
        dependant.path_params,
        dependant.body_params,
        route._embed_body_fields,
    )


def _answers_with_response(endpoint: Callable[..., Any]) -> bool:
    answer = inspect.signature(endpoint).return_annotation
    return inspect.isclass(answer) and issubclass(answer, Response)


def _other_inputs(dependant: Dependant) -> bool:
    """Inputs of a kind no plan resolves: query, header or cookie parameters, the
    connection, the response or background tasks."""
    return bool(
        dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.http_connection_param_name
        or dependant.websocket_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
    )


def _yields(call: Callable[..., Any]) -> bool:
    return bool(_is_gen_callable(call) or _is_async_gen_callable(call))


def _resolver(sub: Dependant) -> Resolve | None:
    """How to resolve a dependency that is a coroutine reading only the request (and,
    for a security scheme, its scopes); None for any other."""
    call = sub.call
    if call is None or sub.dependencies or sub.path_params or sub.body_params:
        return None
    if _other_inputs(sub) or _yields(call) or not _is_coroutine_callable(call):
        return None
    request_name = sub.request_param_name
    scopes_name = sub.security_scopes_param_name
    scopes = SecurityScopes(scopes=_get_oauth_scopes(dependant=sub))

    async def resolve(request: Request) -> Any:
        values: dict[str, Any] = {}
        if request_name is not None:
            values[request_name] = request
        if scopes_name is not None:
            values[scopes_name] = scopes
        return await call(**values)

    return resolve


async def _handle(plan: Plan, request: Request) -> Response:
    body = await _json_body(request) if plan.body_params else Undefined
    values: dict[str, Any] = {}
    for name, resolve in plan.dependencies:
        solved = await resolve(request)
        if name is not None:
            values[name] = solved
    path_values, errors = request_params_to_args(plan.path_params, request.path_params)
    values.update(path_values)
    if plan.body_params:
        body_values, body_errors = await request_body_to_args(
            body_fields=plan.body_params,
            received_body=body,
            embed_body_fields=plan.embed_body_fields,
        )
        values.update(body_values)
        errors.extend(body_errors)
    if errors:
        raise RequestValidationError(errors, body=body)
    if plan.endpoint_is_coroutine:
        answer = await plan.endpoint(**values)
    else:
        answer = await in_thread(plan.endpoint, values)
    if not isinstance(answer, Response):
        raise TypeError(f"{plan.endpoint.__qualname__} answered with {type(answer).__name__}")
    return answer


HANDLER_THREADS = 40
"""Threads that run the routes' blocking endpoints at once (anyio's default for
`to_thread`); a request beyond them waits for one to come free."""

_threads = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="jobledger-handler")


async def in_thread(endpoint: Callable[..., Any], values: dict[str, Any]) -> Any:
    """`endpoint(**values)` on a thread of the handlers' pool, in a copy of this task's
    context, as the framework's `run_in_threadpool` runs it: the event loop's executor
    hands the call over without anyio's capacity limiter and cancel scope (a blocking call
    goes on to its end either way). A `SELECT 1` run so from 4 connections cost 58-90 us
    of CPU, 91-120 us through anyio; a heartbeat 1.37 million instructions, 1.46 million."""
    call = functools.partial(contextvars.copy_context().run, endpoint, **values)
    return await asyncio.get_running_loop().run_in_executor(_threads, call)


async def _json_body(request: Request) -> Any:
    """The body as the framework reads it for a JSON body: parsed when it is JSON (or has
    no type: `strict_content_type` is off), else its bytes; Undefined when empty."""
    try:
        body_bytes = await request.body()
        if not body_bytes:
            return Undefined
        content_type = request.headers.get("content-type")
        if content_type and not is_json(content_type):
            return body_bytes
        return await request.json()
    except json.JSONDecodeError as e:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", e.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": e.msg},
                }
            ],
            body=e.doc,
        ) from e
    except HTTPException:
        raise
    except Exception as e:
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from e
