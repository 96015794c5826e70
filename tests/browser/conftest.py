"""A real `jobledger serve` with jobs in every state, and headless Chromium driven by Playwright.

Chromium is Debian's (`/usr/bin/chromium`, or `JOBLEDGER_CHROMIUM`); Playwright
never downloads a browser. Without one these tests are skipped, unless
`JOBLEDGER_REQUIRE_BROWSER=1` (CI) makes that a failure.
"""

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from bench.chromium import CHROMIUM_FLAGS, find_chromium
from tests.browser.seeding import Seeded, seed_every_state
from tests.e2e.conftest import Server
from tests.missing_tools import missing_tool

ARTIFACTS = Path(os.environ.get("JOBLEDGER_ARTIFACTS_DIR", "test-artifacts")) / "console"


def chromium_path() -> str:
    found = find_chromium()
    if found:
        return found
    missing_tool(
        "no Chromium: install Debian's chromium package (or set JOBLEDGER_CHROMIUM)",
        required_by="JOBLEDGER_REQUIRE_BROWSER",
    )


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
    yield launched
    launched.close()


class Console:
    """The served ledger, its seeded jobs, and API clients beside the browser."""

    def __init__(self, server: Server, seeded: Seeded) -> None:
        self.server = server
        self.url = server.url
        self.jobs = seeded
        self.trainer = server.client("trainer")
        self.alice = server.client("alice")


@pytest.fixture
def console(database_url: str) -> Iterator[Console]:
    server = Server(database_url, {"JOBLEDGER_STALE_PENDING_MINUTES": "0.005"})
    server.start()
    try:
        yield Console(server, seed_every_state(server.client("trainer"), server.client("alice")))
    finally:
        server.close_clients()
        if server.process is not None:
            server.kill(signal.SIGTERM)


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser, console: Console) -> Iterator[OpenPage]:
    """A fresh browser tab (its own session storage); any console error fails the test."""
    errors: list[str] = []
    contexts = []

    def open_(
        token: str | None = "t-alice-0123456789abcdef",
        width: int = 1280,
        height: int = 900,
        expected_statuses: tuple[int, ...] = (),
        bypass_csp: bool = False,
    ) -> Page:
        """`expected_statuses`: API answers the test provokes, which Chromium logs as errors."""
        context = browser.new_context(
            viewport={"width": width, "height": height}, bypass_csp=bypass_csp
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on("console", lambda message: _keep_errors(message, errors, expected_statuses))
        page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
        page.goto(console.url + "/")
        if token is not None:
            sign_in(page, token)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert errors == [], errors


def _keep_errors(message: ConsoleMessage, errors: list[str], expected: tuple[int, ...]) -> None:
    if message.type not in ("error", "warning"):
        return
    if any(f"responded with a status of {status} " in message.text for status in expected):
        return
    errors.append(f"{message.type}: {message.text}")


def sign_in(page: Page, token: str) -> None:
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#who").filter(has_text="Signed in as").wait_for()


def save_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
