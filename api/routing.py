"""How a module declares its routes: on a router of its own, with the problems they
answer with; the app serves the routes of every such router directly."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from api.auth import refusal_of_caller
from api.direct_handler import direct_handler
from api.media_types import is_json
from api.problems import Problem, problem_responses
from api.read_headers import header_parameters


def api_router(*problem_statuses: int) -> APIRouter:
    """A router whose routes document these statuses' answers as problems."""
    return APIRouter(
        responses=problem_responses(*problem_statuses),
        generate_unique_id_function=operation_id,
        # A JSON body sent without a Content-Type is read as JSON, as it always was.
        strict_content_type=False,
        route_class=JsonBodyRoute,
    )


def operation_id(route: APIRoute) -> str:
    """`get_v1_jobs_job_id` for `GET /v1/jobs/{job_id}`."""
    words = " ".join([*sorted(route.methods or ()), route.path_format]).lower()
    return "_".join(word.strip("{}") for word in words.replace("/", " ").replace("-", " ").split())


class JsonBodyRoute(APIRoute):
    """A route whose body is JSON: a body declared as anything else (a form, text) is a
    415, once the route admits the caller (as other input is). Its document declares the
    headers its dependencies read themselves (`api.read_headers`)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        if parameters := header_parameters(self.dependant):
            extra = self.openapi_extra or {}
            declared = [*extra.get("parameters", ()), *parameters]
            self.openapi_extra = {**extra, "parameters": declared}
        if self.body_field is not None:
            self.responses = {**self.responses, **problem_responses(415)}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = direct_handler(self, super().get_route_handler())
        if self.body_field is None:
            return handle

        async def handle_json(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            if content_type and not is_json(content_type) and await request.body():
                refused = await refusal_of_caller(request)
                raise refused or Problem(
                    415,
                    "unsupported-media-type",
                    f"the body must be JSON (application/json), not {content_type}",
                )
            return await handle(request)

        return handle_json
