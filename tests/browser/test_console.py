"""The operator console in headless Chromium against a real `jobledger serve`."""

import re
import time

from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Console, OpenPage, save_screenshot

DASH = "\N{EN DASH}"


def card(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("recovery-card")


def row(page: Page, job_id: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-job-id="{job_id}"]')


def job_link(page: Page, job_id: str):  # type: ignore[no-untyped-def]
    return page.locator("#main").get_by_role("link", name=job_id, exact=True)


def test_the_banner_names_the_orphan_and_the_list_marks_it(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page()
    banner = page.get_by_role("status", name="Ledger health")
    expect(banner).to_contain_text("Needs attention: 1 orphaned run")
    expect(banner.get_by_role("link", name=console.jobs.orphaned)).to_be_visible()
    expect(row(page, console.jobs.orphaned)).to_contain_text("Running")
    expect(row(page, console.jobs.orphaned)).to_contain_text("Orphaned")
    expect(row(page, console.jobs.pending)).to_contain_text("Stale pending")
    expect(row(page, console.jobs.running)).to_contain_text("OK")
    expect(page.get_by_role("link", name=re.compile(r"^Failed 1$"))).to_be_visible()
    save_screenshot(page, "jobs-list")


def test_the_recovery_card_shows_for_stuck_and_broken_jobs_and_not_for_healthy_ones(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page()
    expected = {
        console.jobs.pending: ("Stuck in pending", ["Force start", "Cancel job"]),
        console.jobs.queued: ("Queued at position 1", ["Force start", "Cancel job"]),
        console.jobs.orphaned: ("Orphaned run", ["Mark failed", "Force start (re-queue)"]),
        console.jobs.failed: ("Failed", ["Re-queue"]),
        console.jobs.cancelled: ("Cancelled", ["Re-queue"]),
    }
    for job_id, (title, buttons) in expected.items():
        page.goto(f"{console.url}/#/jobs/{job_id}")
        expect(card(page).get_by_role("heading")).to_have_text(title)
        expect(card(page).get_by_role("button")).to_have_text(buttons)
    page.goto(f"{console.url}/#/jobs/{console.jobs.orphaned}")
    expect(card(page)).to_contain_text("its process is gone")
    page.goto(f"{console.url}/#/jobs/{console.jobs.failed}")
    expect(card(page)).to_contain_text("resumes from checkpoint s3://ckpt/e3 (step 3000)")
    save_screenshot(page, "job-failed")
    for job_id in (console.jobs.running, console.jobs.completed):
        page.goto(f"{console.url}/#/jobs/{job_id}")
        expect(page.get_by_role("heading", name="Current state")).to_be_visible()
        expect(page.locator(".facts")).to_contain_text("Version")
        expect(card(page)).to_have_count(0)


def test_force_start_queues_a_pending_job_in_the_list_and_the_timeline_without_a_reload(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page()
    page.evaluate("window.notReloaded = true")
    job_link(page, console.jobs.pending).click()
    timeline = page.locator(".timeline > li")
    expect(timeline).to_have_count(1)

    card(page).get_by_role("button", name="Force start").click()
    dialog = page.get_by_role("dialog", name=f"Force start: {console.jobs.pending}")
    dialog.get_by_label("Reason").fill("data is ready")
    dialog.get_by_role("button", name="Force start").click()

    expect(card(page)).to_contain_text("Queued at position")
    expect(timeline).to_have_count(2)
    expect(timeline.first).to_contain_text("data is ready")
    expect(timeline.first).to_contain_text("alice")
    page.get_by_role("link", name="All jobs").click()
    expect(row(page, console.jobs.pending)).to_contain_text("Queued")
    assert page.evaluate("window.notReloaded") is True
    history = console.alice.history(console.jobs.pending)["events"]
    assert (history[-1]["actor"], history[-1]["reason"]) == ("alice", "data is ready")


def test_the_list_and_a_job_page_follow_events_from_elsewhere(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page()
    page.evaluate("window.notReloaded = true")
    expect(row(page, console.jobs.queued)).to_contain_text("Queued")
    console.alice.cancel(console.jobs.queued, reason="superseded")
    expect(row(page, console.jobs.queued)).to_contain_text("Cancelled")
    expect(page.get_by_role("link", name=re.compile(r"^Cancelled 2$"))).to_be_visible()

    job_link(page, console.jobs.queued).click()
    expect(page.locator(".timeline > li")).to_have_count(2)
    console.alice.requeue(console.jobs.queued, reason="needed after all")
    expect(page.locator(".timeline > li").first).to_contain_text("needed after all")
    expect(card(page).get_by_role("heading")).to_have_text(re.compile("Queued at position"))
    assert page.evaluate("window.notReloaded") is True


def test_mark_failed_needs_a_reason_and_the_reason_lands_in_the_history(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page()
    page.goto(f"{console.url}/#/jobs/{console.jobs.orphaned}")
    expect(page.locator(".timeline > li")).to_have_count(2)
    save_screenshot(page, "job-orphaned")
    card(page).get_by_role("button", name="Mark failed").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Reason")).to_have_attribute("required", "")
    dialog.get_by_role("button", name="Mark failed").click()
    expect(dialog).to_be_visible()  # refused without a reason
    dialog.get_by_label("Reason").fill("node lost power")
    dialog.get_by_role("button", name="Mark failed").click()

    expect(card(page).get_by_role("heading")).to_have_text("Failed")
    expect(card(page).get_by_role("status")).to_contain_text("Mark failed: done")
    entry = page.locator(".timeline > li").first
    expect(entry).to_contain_text("node lost power")
    expect(entry).to_contain_text("Running")
    expect(entry).to_contain_text("Failed")
    save_screenshot(page, "job-marked-failed")
    last = console.alice.history(console.jobs.orphaned)["events"][-1]
    assert (last["type"], last["actor"], last["reason"]) == (
        "job_marked_failed",
        "alice",
        "node lost power",
    )


def test_backing_out_of_a_confirmation_changes_nothing(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page()
    page.goto(f"{console.url}/#/jobs/{console.jobs.queued}")
    card(page).get_by_role("button", name="Cancel job").click()
    page.get_by_role("dialog").get_by_role("button", name="Back").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    card(page).get_by_role("button", name="Cancel job").click()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    assert console.alice.job(console.jobs.queued)["status"] == "queued"


def test_a_refused_action_is_explained_with_the_jobs_current_status(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page(expected_statuses=(409,))
    page.goto(f"{console.url}/#/jobs/{console.jobs.failed}")
    card(page).get_by_role("button", name="Re-queue").click()
    console.alice.requeue(console.jobs.failed, reason="someone was quicker")
    # The page follows the event behind the open dialog, then the click is refused.
    expect(page.locator(".facts .pill").first).to_have_text("Queued")
    page.get_by_role("dialog").get_by_role("button", name="Re-queue").click()
    alert = card(page).get_by_role("alert")
    expect(alert).to_contain_text("Refused: the job is now queued.")


def test_errors_are_put_in_words(console: Console, open_page: OpenPage) -> None:
    page = open_page()
    words = page.evaluate(
        """async () => {
            const { explain } = await import("/console/recovery.js");
            return [
                explain({ status: 403,
                          problem: { role: "auditor", required_roles: ["operator"] } }),
                explain({ status: 409, problem: { current_status: "completed",
                                                   allowed_commands: [] } }),
                explain({ status: 409, problem: { expected_version: 3 } }),
                explain({ status: 503, problem: {} }),
            ];
        }"""
    )
    assert words == [
        "Not allowed: your token's role is auditor; this needs operator.",
        "Refused: the job is now completed.",
        "The job changed since this page showed it. "
        "The page is up to date now: check it and try again.",
        "The ledger's database is unavailable; nothing was changed. Try again shortly.",
    ]


def test_an_auditor_sees_everything_but_no_action_buttons(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page("t-audrey-0123456789abcdef")
    expect(page.locator("#who")).to_have_text("Signed in as audrey (auditor)")
    for job_id in (console.jobs.pending, console.jobs.orphaned, console.jobs.failed):
        page.goto(f"{console.url}/#/jobs/{job_id}")
        expect(card(page)).to_contain_text("read-only")
        expect(card(page).get_by_role("button")).to_have_count(0)
    save_screenshot(page, "job-as-auditor")


def test_the_token_is_asked_for_checked_and_kept_for_the_tab_only(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page(token=None, expected_statuses=(401,))
    dialog = page.get_by_role("dialog", name="Sign in")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Token").fill("wrong")
    dialog.get_by_role("button", name="Sign in").click()
    expect(dialog.get_by_role("alert")).to_have_text("That token was not accepted.")
    dialog.get_by_label("Token").fill("t-alice-0123456789abcdef")
    dialog.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_have_text("Signed in as alice (operator)")

    page.reload()
    expect(page.locator("#who")).to_have_text("Signed in as alice (operator)")
    other_tab = open_page(token=None)
    expect(other_tab.get_by_role("dialog", name="Sign in")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("dialog", name="Sign in")).to_be_visible()


def test_at_390_px_wide_nothing_scrolls_sideways_and_every_action_is_reachable(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page(width=390, height=844)
    expect(row(page, console.jobs.orphaned)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    save_screenshot(page, "jobs-list-390px")
    page.goto(f"{console.url}/#/jobs/{console.jobs.orphaned}")
    for name in ("Mark failed", "Force start (re-queue)"):
        button = card(page).get_by_role("button", name=name)
        expect(button).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_search_filter_paging_and_an_action_work_from_the_keyboard_alone(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()

    page.get_by_label("Search job id").focus()
    page.keyboard.type("train-")
    page.keyboard.press("Enter")
    expect(page.locator("#jobs-summary")).to_have_text(f"Showing 1{DASH}7 of 7, newest first")
    page.get_by_role("link", name=re.compile(r"^Pending \d+$")).focus()
    page.keyboard.press("Enter")
    expect(page.locator("tbody tr")).to_have_count(1)
    link = job_link(page, console.jobs.pending)
    link.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=console.jobs.pending)).to_be_focused()

    card(page).get_by_role("button", name="Force start").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Reason")).to_be_focused()
    page.keyboard.type("keyboard only")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("dialog").get_by_role("button", name="Force start")).to_be_focused()
    page.keyboard.press("Enter")
    expect(card(page)).to_contain_text("Queued at position")
    assert console.alice.job(console.jobs.pending)["status"] == "queued"


def test_the_list_pages_through_its_jobs(console: Console, open_page: OpenPage) -> None:
    for n in range(55):
        console.trainer.register(f"bulk-{n:03d}")
    page = open_page()
    expect(page.locator("#jobs-summary")).to_have_text(f"Showing 1{DASH}50 of 62, newest first")
    expect(page.locator("tbody tr").first).to_have_attribute("data-job-id", "bulk-054")
    page.get_by_role("button", name="Older").click()
    expect(page.locator("#jobs-summary")).to_have_text(f"Showing 51{DASH}62 of 62, newest first")
    expect(page.get_by_role("button", name="Older")).to_be_disabled()
    page.get_by_role("button", name="Newer").click()
    expect(page.locator("tbody tr").first).to_have_attribute("data-job-id", "bulk-054")


def test_the_first_answer_is_drawn_though_a_refresh_asked_again_meanwhile(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page()
    page.goto("about:blank")  # the tab keeps its token; the console's reads have stopped
    held: list[Route] = []
    # Playwright calls a handler with its own arguments: a bound builtin will not do.
    page.route(lambda url: "/v1/jobs?" in url, lambda route: held.append(route))  # noqa: PLW0108
    page.goto(console.url + "/")
    deadline = time.monotonic() + 10
    while len(held) < 2:  # the first read, and the refresh the feed asks for once connected
        assert time.monotonic() < deadline, f"{len(held)} read(s) of the list in 10 s"
        page.wait_for_timeout(50)
    held[0].continue_()
    expect(row(page, console.jobs.queued)).to_contain_text("Queued")  # the refresh still held
    held[1].continue_()
    page.unroute_all(behavior="ignoreErrors")  # any later read is let through


def test_an_action_shows_its_progress_and_a_403_in_words(
    console: Console, open_page: OpenPage
) -> None:
    page = open_page(expected_statuses=(403,))
    held: list[Route] = []
    # Playwright calls a handler with its own arguments: a bound builtin will not do.
    page.route("**/v1/jobs/*/force-start", lambda route: held.append(route))  # noqa: PLW0108
    page.goto(f"{console.url}/#/jobs/{console.jobs.pending}")
    card(page).get_by_role("button", name="Force start").click()
    page.get_by_role("dialog").get_by_role("button", name="Force start").click()

    busy = card(page).get_by_role("button", name="Force starting…")
    expect(busy).to_be_disabled()
    expect(busy).to_have_attribute("aria-busy", "true")
    expect(card(page).get_by_role("button", name="Cancel job")).to_be_disabled()
    assert len(held) == 1
    held[0].fulfill(
        status=403,
        content_type="application/problem+json",
        json={
            "type": "https://jobledger.dev/problems/forbidden",
            "title": "Forbidden",
            "status": 403,
            "detail": "role auditor may not do this; it needs operator",
            "role": "auditor",
            "required_roles": ["operator"],
        },
    )
    expect(card(page).get_by_role("alert")).to_have_text(
        "Not allowed: your token's role is auditor; this needs operator."
    )
    expect(card(page).get_by_role("button", name="Force start")).to_be_enabled()
    assert console.alice.job(console.jobs.pending)["status"] == "pending"


FIRST_LIST_READ = """
window.listDrawnAtFirstRead = null;
(() => {
  const sent = window.fetch;
  window.fetch = function (resource, init) {
    if (window.listDrawnAtFirstRead === null && String(resource).startsWith("/v1/jobs?")) {
      window.listDrawnAtFirstRead = document.querySelector("table.jobs") !== null;
    }
    return sent.call(this, resource, init);
  };
})();
"""


def test_the_lists_first_page_is_asked_for_before_the_list_is_drawn(
    console: Console, open_page: OpenPage
) -> None:
    """The first paint waits for the first page's read: drawing the list's filters, search
    and table while that read is on its way takes it off the path to the first paint."""
    page = open_page()
    page.add_init_script(FIRST_LIST_READ)
    page.reload()  # the tab keeps its token: straight to the list
    expect(row(page, console.jobs.running)).to_contain_text("OK")
    assert page.evaluate("window.listDrawnAtFirstRead") is False
