"""The operator console: a static page at `/` and its scripts under `/console/`.

The page holds no data: everything it shows it reads from the API with the
operator's token, so serving it needs no authentication.
"""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

CONSOLE_DIR = Path(__file__).parent / "console"

SECURITY_HEADERS = {
    # Only this server's own scripts, styles and API: no inline code, no framing.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def console_page(request: Request) -> Response:
    return FileResponse(CONSOLE_DIR / "index.html", headers=SECURITY_HEADERS)


def console_routes() -> list[BaseRoute]:
    return [
        Route("/", console_page, methods=["GET", "HEAD"]),
        Mount("/console", StaticFiles(directory=CONSOLE_DIR), name="console"),
    ]
