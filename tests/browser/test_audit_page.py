"""The console's Audit page in headless Chromium against a real `jobledger serve`: filters,
an export download, and the jobs it links to."""

import csv
import io
import json
import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import Console, OpenPage, save_screenshot

AUDITOR = "t-audrey-0123456789abcdef"


def audit_events(console: Console, **params: str) -> list[dict[str, Any]]:
    """The events the API gives for a filter, to compare the page with."""
    answer = httpx.get(
        f"{console.url}/v1/audit/events",
        params={"limit": "500", **params},
        headers={"Authorization": f"Bearer {AUDITOR}"},
        timeout=10,
    )
    answer.raise_for_status()
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


def events(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("table.audit tbody tr[data-position]")


def open_audit(open_page: OpenPage) -> Page:
    page = open_page(token=AUDITOR)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Audit").click()
    expect(page.get_by_role("heading", name="Audit", exact=True)).to_be_visible()
    return page


def test_an_auditor_filters_events_across_jobs_and_follows_one_to_its_job(
    console: Console, open_page: OpenPage
) -> None:
    page = open_audit(open_page)
    everything = audit_events(console)
    expect(events(page)).to_have_count(min(len(everything), 50))

    page.get_by_label("Actor").fill("alice")
    page.get_by_role("button", name="Apply filters").click()
    by_alice = [event for event in everything if event["actor"] == "alice"]
    assert by_alice, "the seeded ledger has an operator's cancel"
    expect(events(page)).to_have_count(len(by_alice))
    expect(events(page).first).to_contain_text("duplicate submission")
    assert "actor=alice" in page.url

    page.get_by_label("Actor").fill("")
    page.get_by_label("Status reached").select_option("failed")
    page.get_by_role("button", name="Apply filters").click()
    expect(events(page)).to_have_count(1)
    failed = events(page).first
    expect(failed).to_contain_text(console.jobs.failed)
    expect(failed).to_contain_text("CUDA OOM")
    save_screenshot(page, "audit-failed")

    failed.get_by_role("link", name=console.jobs.failed).click()
    expect(page.get_by_role("heading", name=console.jobs.failed)).to_be_visible()
    expect(page.locator(".timeline > li").first).to_contain_text("CUDA OOM")


def test_a_filter_kept_in_the_address_survives_a_reload_and_an_empty_answer_says_so(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page(token=AUDITOR)
    page.goto(f"{console.url}/#/audit?type=job_cancelled")
    page.reload()  # the token stays with the tab; the filter with the address
    expect(page.get_by_label("Event type")).to_have_value("job_cancelled")
    expect(events(page)).to_have_count(1)
    expect(events(page).first).to_contain_text(console.jobs.cancelled)

    page.get_by_label("Job id starts with").fill("no-such-job-")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("table.audit tbody")).to_contain_text("No events match.")


def test_an_export_downloads_every_event_the_filter_matches_as_csv_and_json_lines(
    console: Console, open_page: OpenPage
) -> None:
    page = open_audit(open_page)
    page.get_by_label("Job id starts with").fill("train-f")
    page.get_by_role("button", name="Apply filters").click()
    expected = audit_events(console, job_id_prefix="train-f")
    expect(events(page)).to_have_count(len(expected))

    with page.expect_download() as csv_download:
        page.get_by_role("button", name="Export CSV").click()
    assert csv_download.value.suggested_filename == "audit-events.csv"
    rows = list(csv.DictReader(io.StringIO(csv_download.value.path().read_text())))
    assert [(row["job_id"], row["type"]) for row in rows] == [
        (event["job_id"], event["type"]) for event in expected
    ]
    expect(page.get_by_role("status").filter(has_text="Exported")).to_contain_text(
        "audit-events.csv"
    )

    with page.expect_download() as lines_download:
        page.get_by_role("button", name="Export JSON Lines").click()
    exported = lines_download.value.path().read_text().splitlines()
    lines = [json.loads(line) for line in exported if line.strip()]
    assert [line["position"] for line in lines] == [event["position"] for event in expected]
    assert {line["job_id"] for line in lines} == {console.jobs.failed}
    assert re.search(r"\.jsonl$", lines_download.value.suggested_filename)
