"""A live `jobledger serve`'s /metrics, as Prometheus scrapes it: valid for promtool, with
the monitor's leadership held by the one process serving."""

import time

import httpx

from tests.e2e.conftest import Server
from tests.promtool import run_promtool

AUDITOR = {"Authorization": "Bearer t-audrey-0123456789abcdef"}
LEADER_WAIT_S = 30.0


def scrape(server: Server) -> str:
    answer = httpx.get(f"{server.url}/metrics", headers=AUDITOR, timeout=10)
    assert answer.status_code == 200
    return answer.text


def test_a_live_scrape_passes_promtool_check_metrics(server: Server) -> None:
    trainer = server.client("trainer")
    trainer.register("scraped-1")
    trainer.register("scraped-2", status="pending")

    scraped = scrape(server)
    checked = run_promtool("check", "metrics", stdin=scraped)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # no lint finding either
    assert "jobledger_queued_jobs 1.0" in scraped
    assert 'jobledger_events_appended_total{type="job_registered"} 2.0' in scraped


def test_the_serving_process_reports_that_it_leads_the_monitor(server: Server) -> None:
    deadline = time.monotonic() + LEADER_WAIT_S
    while "jobledger_monitor_leader 1.0" not in scrape(server):
        assert time.monotonic() < deadline, "the monitor's leadership was never reported"
        time.sleep(0.2)


def test_the_ledger_has_one_monitor_leader_and_none_once_its_process_stops(
    server: Server,
) -> None:
    deadline = time.monotonic() + LEADER_WAIT_S
    while "jobledger_monitor_leaders 1.0" not in scrape(server):
        assert time.monotonic() < deadline, "the ledger's monitor leader was never seen"
        time.sleep(0.2)
