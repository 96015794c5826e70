"""The operator console: a static page at `/` and its scripts under `/console/`.

The page holds no data: everything it shows it reads from the API with the
operator's token, so serving it needs no authentication.
"""

from pathlib import Path

from starlette.responses import FileResponse, HTMLResponse, Response

from api.routing import api_router

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

router = api_router()


@router.get("/", summary="the operator console", response_class=HTMLResponse)
async def console_page() -> Response:
    return FileResponse(CONSOLE_DIR / "index.html", headers=SECURITY_HEADERS)
