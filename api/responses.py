"""The API's answers: its views as JSON, encoded by orjson."""

from collections.abc import Mapping

import orjson
from pydantic import BaseModel
from starlette.responses import Response


def json_response(
    view: BaseModel, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """`view` as the JSON body of the answer.

    Handlers answer with a `Response`, so the framework neither validates nor
    re-encodes what the view already guarantees: the route's `response_model`
    only documents it."""
    content = orjson.dumps(view.model_dump(mode="json"))
    return Response(content, status_code, headers, media_type="application/json")
