"""The Starlette application: routes, problem+json errors, probes, the OpenAPI document."""

import contextlib
from collections.abc import AsyncIterator
from importlib.metadata import version

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from api import routes_jobs, routes_observe, routes_runs
from api.auth import TokenBook
from api.bootstrap import Ledger
from api.console import console_routes
from api.endpoints import Endpoint, json_response, starlette_route
from api.metrics import Metrics, metrics_endpoint
from api.openapi import openapi_document
from api.problems import (
    Problem,
    handle_http,
    handle_ledger_error,
    handle_problem,
    handle_unexpected,
    handle_validation,
    problem_response,
)
from api.stream import FeedWatcher, stream_endpoint
from ledger.database import driver_connection
from ledger.errors import LedgerError
from ledger.migrate import check_schema_current
from projections import current_status
from projections.checkpoints import read_checkpoint

ENDPOINTS: list[Endpoint] = [
    *routes_jobs.ENDPOINTS,
    *routes_runs.ENDPOINTS,
    *routes_observe.ENDPOINTS,
]


def create_app(ledger: Ledger, tokens: TokenBook) -> Starlette:
    document = openapi_document(ENDPOINTS, version("jobledger"))

    async def livez(request: Request) -> Response:
        return json_response({"status": "alive"})

    def readyz(request: Request) -> Response:
        """Database reachable, schema current, projections built by this code's version."""
        try:
            check_schema_current(ledger.engine)
            with driver_connection(ledger.engine) as conn:
                checkpoint = read_checkpoint(conn, current_status.NAME)
        except LedgerError as exc:
            return problem_response(503, "not-ready", str(exc))
        if not current_status.built_by_this_code(checkpoint):
            return problem_response(503, "not-ready", "the projections are not built yet")
        return json_response({"status": "ready"})

    async def openapi(request: Request) -> Response:
        return json_response(document)

    metrics = Metrics(ledger)
    watcher = FeedWatcher(ledger.url)
    routes: list[BaseRoute] = [
        starlette_route(endpoint, ledger, tokens, metrics) for endpoint in ENDPOINTS
    ]
    routes += [
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", metrics_endpoint(metrics, tokens), methods=["GET"]),
        Route("/v1/events/stream", stream_endpoint(ledger, tokens, watcher), methods=["GET"]),
        *console_routes(),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        watcher.close()

    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            LedgerError: handle_ledger_error,
            Problem: handle_problem,
            ValidationError: handle_validation,
            HTTPException: handle_http,
            Exception: handle_unexpected,
        },
    )
