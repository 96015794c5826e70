"""The console checked by axe-core (pinned in package.json, installed by `npm ci`)."""

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Console, OpenPage

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"


def violations(page: Page) -> list[dict[str, Any]]:
    if not AXE.exists():
        pytest.skip(f"no axe-core at {AXE}: run `npm ci`")
    page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {
            runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
        })).violations.map((v) => ({ id: v.id, impact: v.impact,
                                      nodes: v.nodes.map((n) => n.target.join(" ")) }))"""
    )
    return found


# axe's script is injected inline, which the console's own policy forbids.
@pytest.mark.parametrize("width", [1280, 390])
def test_the_list_and_a_job_page_have_no_accessibility_violations(
    console: Console, open_page: OpenPage, width: int
) -> None:
    page = open_page(width=width, bypass_csp=True)
    expect(page.locator("tbody tr").first).to_be_visible()
    assert violations(page) == []

    page.goto(f"{console.url}/#/jobs/{console.jobs.orphaned}")
    expect(page.get_by_test_id("recovery-card")).to_be_visible()
    expect(page.locator(".timeline > li").first).to_be_visible()
    assert violations(page) == []

    page.get_by_test_id("recovery-card").get_by_role("button", name="Mark failed").click()
    expect(page.get_by_role("dialog")).to_be_visible()
    assert violations(page) == []


@pytest.mark.parametrize("width", [1280, 390])
def test_the_audit_page_has_no_accessibility_violations(
    console: Console, open_page: OpenPage, width: int
) -> None:
    page = open_page(width=width, bypass_csp=True)
    page.goto(f"{console.url}/#/audit")
    expect(page.locator("table.audit tbody tr[data-position]").first).to_be_visible()
    expect(page.get_by_role("heading", name="Latest digest")).to_be_visible()
    assert violations(page) == []
