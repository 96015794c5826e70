"""The API's answers: its views as JSON, encoded by orjson; and the headers every
answer carries."""

from collections.abc import Mapping

import orjson
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.answer_headers import RawHeaders, add_missing, encoded, with_headers
from api.console_page import SECURITY_HEADERS


def json_response(
    view: BaseModel, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """`view` as the JSON body of the answer.

    Handlers answer with a `Response`, so the framework neither validates nor
    re-encodes what the view already guarantees: the route's `response_model`
    only documents it."""
    content = orjson.dumps(view.model_dump(mode="json"))
    return Response(content, status_code, headers, media_type="application/json")


EVERY_ANSWER = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
API_ANSWER = {**EVERY_ANSWER, "Cache-Control": "no-store"}
"""An answer of the API may hold a job's data: no cache keeps it."""


class SecurityHeaders:
    """Every answer says not to sniff its type nor send a referrer; the console's page and
    files carry its Content-Security-Policy (no framing); the API's answers are not
    stored. A header the answer sets itself is kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        wanted = _PAGE if path == "/" or path.startswith("/console/") else _API

        def add(headers: RawHeaders) -> None:
            add_missing(headers, wanted)

        await self.app(scope, receive, with_headers(send, add))


_PAGE = encoded(SECURITY_HEADERS)
_API = encoded(API_ANSWER)
