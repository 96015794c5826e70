"""The HTTP application: every route declared once, with its roles and typed parameters;
FastAPI serves them and derives the OpenAPI document (`/openapi.json`, `/docs`) from
the same declarations. When tokens are configured, the document and its page are for a
caller with a token of any role, as every route but the probes, the console page and
`/v1/me` is."""

import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.security import SecurityScopes
from fastapi.telemetry import TelemetryConfig
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Lifespan, Message, Receive, Scope, Send

from api import (
    console_page,
    metrics,
    routes_audit_chain,
    routes_audit_events,
    routes_batch,
    routes_jobs,
    routes_observe,
    routes_runs,
    stream,
)
from api.auth import READ, TokenBook, bearer, handle_invalid_request
from api.bootstrap import Ledger
from api.console_page import CONSOLE_DIR
from api.correlation import RequestCorrelation
from api.direct_handler import in_thread
from api.gathered_registrations import Registrations
from api.lease_renewals import LeaseRenewals
from api.limits import BodyLimit, max_body_bytes
from api.metrics import Metrics, RequestMetrics
from api.problems import EXCEPTION_HANDLERS, PROBLEM_SCHEMA
from api.readiness import Readiness
from api.responses import SecurityHeaders
from api.stream import FeedWatcher
from ledger.loop_appends import LoopAppends

ROUTERS = [
    routes_runs.router,  # first: the training servers' heartbeats and reports are most requests
    routes_batch.router,  # before /v1/jobs/{job_id}: its path is not a job's
    routes_jobs.router,
    routes_observe.router,
    routes_audit_events.router,
    routes_audit_chain.router,
    stream.router,
    metrics.router,
    routes_observe.probes,
    console_page.router,
]

NO_FRAMEWORK_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's native OpenTelemetry spans, metrics and logs, all off (see `declare_api`)."""


def create_app(ledger: Ledger, tokens: TokenBook) -> FastAPI:
    """The app `jobledger serve` runs: the API, with its ledger, tokens, metrics and stream,
    and the body limit the environment sets (`JOBLEDGER_MAX_BODY_BYTES`)."""
    watcher = FeedWatcher(ledger.url)
    request_metrics = Metrics(ledger)
    appends = LoopAppends(
        ledger.url,
        ledger.settings,
        ledger.store.observers,
        connections=ledger.settings.loop_connections,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        appends.open()
        try:
            yield
        finally:
            try:
                await appends.close()
            finally:
                watcher.close()

    app = declare_api(
        lifespan=lifespan,
        middleware=[
            Middleware(RequestCorrelation),
            Middleware(SecurityHeaders),
            Middleware(HeadAsGet),
            Middleware(RequestMetrics, metrics=request_metrics),
            Middleware(BodyLimit, max_bytes=max_body_bytes(os.environ)),
        ],
    )
    app.state.ledger = ledger
    app.state.tokens = tokens
    app.state.metrics = request_metrics
    app.state.watcher = watcher
    app.state.readiness = Readiness(ledger)
    app.state.renewals = LeaseRenewals(
        ledger.store, ledger.settings.lease_seconds, in_thread, appends
    )
    app.state.appends = appends
    """Where a command is first tried on the event loop while the server runs
    (`CommandRequest.execute_soon`, `Registrations`)."""
    app.state.registrations = Registrations(ledger.service, in_thread, appends)
    return app


def declare_api(
    lifespan: Lifespan[FastAPI] | None = None, middleware: Sequence[Middleware] = ()
) -> FastAPI:
    """Every route with its roles, parameters, answers and errors: what is served, and
    the OpenAPI document of it."""
    app = LedgerAPI(
        title="JobLedger",
        version=version("jobledger"),
        # The routes of every module's router, served as they are: an included router
        # would be matched through one more level on every request.
        routes=[route for router in ROUTERS for route in router.routes],
        # The document and its page are served below, for the callers the API admits.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        exception_handlers={**EXCEPTION_HANDLERS, RequestValidationError: handle_invalid_request},
        middleware=list(middleware),
        lifespan=lifespan,
        # The framework's own OpenTelemetry layer looks up the global providers on every
        # request; the service's telemetry is its own (`/metrics`, and the `traceparent`
        # of each request in its log lines), so that layer is left off.
        telemetry=NO_FRAMEWORK_TELEMETRY,
        # A path with a trailing slash is not found: the redirect to the path without it
        # would be built from the request's Host header, which the caller chooses.
        redirect_slashes=False,
    )
    # The console page's scripts and styles: static files, not operations of the API.
    app.mount("/console", StaticFiles(directory=CONSOLE_DIR), name="console")
    app.add_route(DOCUMENT_PATH, serve_document, include_in_schema=False)
    app.add_route("/docs", serve_document_page, include_in_schema=False)
    return app


DOCUMENT_PATH = "/openapi.json"


async def serve_document(request: Request) -> Response:
    """The OpenAPI document (a 401 problem without a token, when tokens are configured)."""
    await bearer(request, SecurityScopes(sorted(READ)))
    app: FastAPI = request.app
    return JSONResponse(app.openapi())


async def serve_document_page(request: Request) -> Response:
    """The document as a page (Swagger UI, loaded from a CDN): it fetches the document
    without a token, so it shows the document only where no token is needed."""
    await bearer(request, SecurityScopes(sorted(READ)))
    app: FastAPI = request.app
    return get_swagger_ui_html(openapi_url=DOCUMENT_PATH, title=f"{app.title} - Swagger UI")


class LedgerAPI(FastAPI):
    """FastAPI, with the problem schema that every error answer refers to."""

    def openapi(self) -> dict[str, Any]:
        first = self.openapi_schema is None
        document = super().openapi()
        if first:
            document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                PROBLEM_SCHEMA
            )
        return document


class HeadAsGet:
    """A HEAD request is answered as its GET would be, without the body (as Starlette's
    own routes do; FastAPI's answer HEAD with a 405)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        ended = False

        async def headers_only(message: Message) -> None:
            nonlocal ended
            if message["type"] != "http.response.body":
                await send(message)
            elif not ended:
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app({**scope, "method": "GET"}, receive, headers_only)
