"""`/metrics`: every request counted once, by its route's template and the class of its
status, and timed."""

import logging

import pytest
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from tests.api.conftest import auth


def requests_counted(client: TestClient) -> dict[tuple[str, str], float]:
    """`jobledger_requests_total` by (route, outcome), as scraped now."""
    scraped = client.get("/metrics", headers=auth("audrey"))
    assert scraped.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    counted = {}
    for line in scraped.text.splitlines():
        if line.startswith("jobledger_requests_total{"):
            labels, value = line.removeprefix("jobledger_requests_total{").split("} ")
            fields = dict(item.split("=", 1) for item in labels.split('",'))
            counted[(fields["route"].strip('"'), fields["outcome"].strip('"'))] = float(value)
    return counted


def test_requests_are_counted_by_route_template_and_status_class(client: TestClient) -> None:
    client.post("/v1/jobs", json={"job_id": "counted"}, headers=auth("trainer"))
    client.get("/v1/jobs/counted", headers=auth("audrey"))
    client.get("/v1/jobs/no-such-job", headers=auth("audrey"))
    client.get("/v1/jobs/another-missing-job", headers=auth("audrey"))
    client.get("/v1/nothing/here", headers=auth("audrey"))
    client.get("/livez")

    counted = requests_counted(client)
    assert counted[("POST /v1/jobs", "ok")] == 1
    assert counted[("GET /v1/jobs/{job_id}", "ok")] == 1
    assert counted[("GET /v1/jobs/{job_id}", "client_error")] == 2
    assert counted[("unrouted", "client_error")] == 1
    assert counted[("GET /livez", "ok")] == 1
    assert not [route for route, _ in counted if "no-such-job" in route or "nothing" in route]


def test_the_latency_of_each_route_is_observed(client: TestClient) -> None:
    client.get("/v1/health", headers=auth("audrey"))
    scraped = client.get("/metrics", headers=auth("audrey")).text
    assert 'jobledger_request_seconds_count{route="GET /v1/health"} 1.0' in scraped


def test_a_ledger_failure_is_one_500_logged_once_and_counted_once(
    client: TestClient, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with engine.begin() as conn:  # every append now fails inside PostgreSQL
        conn.execute(
            text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'appends are refused'; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON job_events "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        )

    with caplog.at_level(logging.ERROR):
        failed = client.post("/v1/jobs", json={"job_id": "refused"}, headers=auth("trainer"))

    assert failed.status_code == 500
    assert failed.json()["type"].endswith("/ledger-error")
    assert "appends are refused" not in failed.text  # the database's words stay in the log
    logged = [record for record in caplog.records if "appends are refused" in record.getMessage()]
    assert len(logged) == 1
    assert requests_counted(client)[("POST /v1/jobs", "server_error")] == 1
