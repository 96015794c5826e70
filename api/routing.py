"""How a module declares its routes: on a router of its own, with the problems they
answer with; the app serves the routes of every such router directly."""

from fastapi import APIRouter
from fastapi.routing import APIRoute

from api.problems import problem_responses


def api_router(*problem_statuses: int) -> APIRouter:
    """A router whose routes document these statuses' answers as problems."""
    return APIRouter(
        responses=problem_responses(*problem_statuses),
        generate_unique_id_function=operation_id,
        # A JSON body sent without a Content-Type is read as JSON, as it always was.
        strict_content_type=False,
    )


def operation_id(route: APIRoute) -> str:
    """`get_v1_jobs_job_id` for `GET /v1/jobs/{job_id}`."""
    words = " ".join([*sorted(route.methods or ()), route.path_format]).lower()
    return "_".join(word.strip("{}") for word in words.replace("/", " ").replace("-", " ").split())
