"""The Starlette application: routes, problem+json errors, probes, the OpenAPI document."""

from importlib.metadata import version

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api import routes_jobs, routes_observe, routes_runs
from api.auth import TokenBook
from api.bootstrap import Ledger
from api.endpoints import Endpoint, json_response, starlette_route
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
from ledger.errors import LedgerError
from ledger.migrate import check_schema_current

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
        try:
            check_schema_current(ledger.engine)
            lag = ledger.store.read_feed(None, 1)  # the database answers
        except LedgerError as exc:
            return problem_response(503, "not-ready", str(exc))
        del lag
        return json_response({"status": "ready"})

    async def openapi(request: Request) -> Response:
        return json_response(document)

    routes = [starlette_route(endpoint, ledger, tokens) for endpoint in ENDPOINTS]
    routes += [
        Route("/livez", livez, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            LedgerError: handle_ledger_error,
            Problem: handle_problem,
            ValidationError: handle_validation,
            HTTPException: handle_http,
            Exception: handle_unexpected,
        },
    )
