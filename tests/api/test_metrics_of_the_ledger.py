"""`/metrics` shows the ledger's work (events, refusals, claims, heartbeats, reconciler
passes) and the gauges a scrape reads, with labels of a few known values only."""

import psycopg
from starlette.testclient import TestClient

from api.bootstrap import Ledger
from ledger.database import libpq_url
from ledger.migrate import head_revision
from tests.api.conftest import auth

WORKER = {"worker_id": "w-1", "host": "gpu-7", "pid": 4242}


def scrape(client: TestClient) -> dict[str, float]:
    """Every sample of a scrape, keyed by its name and labels as written."""
    scraped = client.get("/metrics", headers=auth("audrey"))
    assert scraped.status_code == 200
    samples = {}
    for line in scraped.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def register(client: TestClient, job_id: str, status: str = "queued") -> None:
    answer = client.post(
        "/v1/jobs", json={"job_id": job_id, "status": status}, headers=auth("trainer")
    )
    assert answer.status_code == 201, answer.text


def claim(client: TestClient) -> dict[str, object]:
    answer = client.post("/v1/queue/claim", json=WORKER, headers=auth("trainer"))
    assert answer.status_code == 200, answer.text
    claimed: dict[str, object] = answer.json()
    return claimed


def test_events_appended_are_counted_by_type(client: TestClient) -> None:
    before = scrape(client)
    register(client, "counted-1")
    register(client, "counted-2")
    claim(client)

    after = scrape(client)

    assert before['jobledger_events_appended_total{type="job_registered"}'] == 0
    assert after['jobledger_events_appended_total{type="job_registered"}'] == 2
    assert after['jobledger_events_appended_total{type="job_started"}'] == 1
    assert after['jobledger_events_appended_total{type="job_completed"}'] == 0


def test_a_batch_s_registrations_are_counted_as_appended_events(client: TestClient) -> None:
    jobs = [{"job_id": "sweep-1"}, {"job_id": "sweep-2"}, {"job_id": "sweep-1"}]
    answer = client.post("/v1/jobs/batch", json={"jobs": jobs}, headers=auth("trainer"))
    assert answer.status_code == 200, answer.text
    assert scrape(client)['jobledger_events_appended_total{type="job_registered"}'] == 2


def test_commands_refused_are_counted_by_kind(client: TestClient) -> None:
    register(client, "refused")
    started = claim(client)
    run = {"attempt": started["attempt"], "run_token": "not-the-token"}

    conflict = client.post(
        "/v1/jobs/refused/cancel", json={"expected_version": 9}, headers=auth("alice")
    )
    fenced = client.post("/v1/jobs/refused/complete", json=run, headers=auth("trainer"))
    client.post("/v1/jobs/refused/cancel", json={}, headers=auth("alice"))
    illegal = client.post("/v1/jobs/refused/cancel", json={}, headers=auth("alice"))

    assert [conflict.status_code, fenced.status_code, illegal.status_code] == [409, 409, 409]
    counted = scrape(client)
    assert counted['jobledger_commands_refused_total{kind="version-conflict"}'] == 1
    assert counted['jobledger_commands_refused_total{kind="stale-attempt"}'] == 1
    assert counted['jobledger_commands_refused_total{kind="illegal-transition"}'] == 1


def test_claims_are_counted_with_how_long_their_job_was_queued(
    client: TestClient, database_url: str
) -> None:
    empty = client.post("/v1/queue/claim", json=WORKER, headers=auth("trainer"))
    register(client, "waited")
    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.execute(
            "UPDATE job_status SET queued_at = now() - interval '90 seconds', "
            "status_changed_at = now() - interval '90 seconds' WHERE job_id = 'waited'"
        )
    claim(client)

    counted = scrape(client)

    assert empty.status_code == 204
    assert counted['jobledger_claims_total{outcome="empty"}'] == 1
    assert counted['jobledger_claims_total{outcome="claimed"}'] == 1
    assert counted["jobledger_claim_wait_seconds_count"] == 1
    assert counted['jobledger_claim_wait_seconds_bucket{le="60.0"}'] == 0
    assert counted['jobledger_claim_wait_seconds_bucket{le="300.0"}'] == 1
    assert 90 <= counted["jobledger_claim_wait_seconds_sum"] < 120


def test_heartbeats_are_counted_renewed_or_fenced(client: TestClient) -> None:
    register(client, "beating")
    started = claim(client)
    run = {"attempt": started["attempt"], "run_token": started["run_token"]}
    stale = {**run, "run_token": "a-token-of-nobody"}

    for body in (run, run, stale):
        client.post("/v1/jobs/beating/heartbeat", json=body, headers=auth("trainer"))

    counted = scrape(client)
    assert counted['jobledger_heartbeats_total{outcome="renewed"}'] == 2
    assert counted['jobledger_heartbeats_total{outcome="fenced"}'] == 1


def test_reconciler_passes_are_counted_with_their_actions_and_duration(
    client: TestClient, database_url: str
) -> None:
    register(client, "orphan")
    claim(client)
    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.execute("UPDATE job_leases SET expires_at = now() - interval '1 minute'")

    dry = client.post("/v1/admin/reconcile?dry_run=true", headers=auth("alice"))
    acted = client.post("/v1/admin/reconcile", headers=auth("alice"))

    assert dry.status_code == acted.status_code == 200
    counted = scrape(client)
    assert counted["jobledger_reconciler_passes_total"] == 1
    assert counted["jobledger_reconciler_pass_seconds_count"] == 1
    applied = 'action="mark_failed",finding="orphan",outcome="applied"'
    assert counted[f"jobledger_reconciler_actions_total{{{applied}}}"] == 1
    assert counted["jobledger_monitor_leader"] == 0  # no monitor runs in this process


def test_the_build_and_the_process_s_pool_and_streams_are_shown(
    client: TestClient, ledger: Ledger
) -> None:
    for n in range(5):
        register(client, f"lagless-{n}")  # applied as they are appended: no lag

    counted = scrape(client)

    build = f'jobledger_build_info{{schema_revision="{head_revision(ledger.url)}",version="0.1.0"}}'
    assert counted[build] == 1
    assert counted["jobledger_pool_connections_in_use"] == 0
    assert counted["jobledger_pool_waiting"] == 0
    assert counted["jobledger_event_streams_open"] == 0
    assert counted["jobledger_database_up"] == 1
    assert counted["jobledger_projection_lag_events"] == 0


def test_no_label_names_a_job_or_a_caller(client: TestClient) -> None:
    for n in range(20):
        register(client, f"labelled-job-{n}")
        client.post(f"/v1/jobs/labelled-job-{n}/cancel", json={}, headers=auth("alice"))
        client.post(f"/v1/jobs/labelled-job-{n}/cancel", json={}, headers=auth("alice"))

    scraped = client.get("/metrics", headers=auth("audrey")).text

    assert "labelled-job" not in scraped
    assert "trainer" not in scraped and "alice" not in scraped
