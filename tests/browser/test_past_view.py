"""The console's view of the past: the jobs list and a job's page as the ledger was at a
moment, read-only, under a banner that says so."""

from urllib.parse import quote

from playwright.sync_api import Page, expect

from tests.browser.conftest import Console, OpenPage, save_screenshot


def row(page: Page, job_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-job-id="{job_id}"]')


def test_the_list_and_a_job_page_show_a_job_as_it_was_before_it_was_cancelled(
    console: Console, open_page: OpenPage
) -> None:
    queued = console.jobs.queued
    before = console.alice.history(queued)["events"][-1]["recorded_at"]
    console.alice.cancel(queued, reason="superseded")

    page = open_page()
    expect(row(page, queued)).to_contain_text("Cancelled")
    page.goto(f"{console.url}/#/?as_of={quote(before)}")
    banner = page.get_by_test_id("past-banner")
    expect(banner).to_contain_text("Viewing the past")
    expect(banner).to_contain_text("Read-only")
    expect(row(page, queued)).to_contain_text("Queued")
    expect(row(page, console.jobs.completed)).to_contain_text("Completed")
    save_screenshot(page, "jobs-list-past")

    row(page, queued).get_by_role("link", name=queued).click()
    expect(page.get_by_role("heading", name="State then")).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("Queued")
    expect(page.locator(".timeline > li")).to_have_count(1)
    expect(page.get_by_test_id("recovery-card")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    save_screenshot(page, "job-past")

    page.get_by_test_id("past-banner").get_by_role("link", name="Back to now").click()
    expect(page.get_by_role("heading", name="Current state")).to_be_visible()
    expect(page.locator(".facts")).to_contain_text("Cancelled")
    expect(page.locator(".timeline > li")).to_have_count(2)
    expect(page.get_by_test_id("past-banner")).to_have_count(0)


def test_the_time_picker_travels_to_a_moment_before_any_job_and_back(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page()
    expect(row(page, console.jobs.running)).to_be_visible()
    page.get_by_label("Show as of (your time)").fill("2020-01-01T00:00:00")
    page.get_by_role("button", name="Show the past").click()
    expect(page.get_by_test_id("past-banner")).to_be_visible()
    expect(page.locator("table.jobs tbody")).to_contain_text("No jobs match.")
    assert "as_of=2020-01-01T" in page.url or "as_of=2019-12-31T" in page.url  # the local zone

    page.get_by_test_id("past-banner").get_by_role("link", name="Back to now").click()
    expect(page.get_by_test_id("past-banner")).to_have_count(0)
    expect(row(page, console.jobs.running)).to_contain_text("Running")
