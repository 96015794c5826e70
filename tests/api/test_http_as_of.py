"""The ledger as of a moment over HTTP: `?as_of=` on a job and on the list of jobs."""

from datetime import datetime, timedelta
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from tests.api.conftest import auth

WORKER = {"worker_id": "w1", "host": "gpu-node-7", "pid": 4242}


def moments_of(client: TestClient, job_id: str) -> list[str]:
    """When each of the job's events was recorded, in order."""
    history = client.get(f"/v1/jobs/{job_id}/history", headers=auth("audrey")).json()
    return [event["recorded_at"] for event in history["events"]]


def as_of(moment: str, shift: timedelta = timedelta()) -> str:
    """`moment` (+ `shift`) as a query value: its offset's + written %2B."""
    return quote((datetime.fromisoformat(moment) + shift).isoformat())


def a_job_run_to_completion(client: TestClient) -> list[str]:
    client.post("/v1/jobs", json={"job_id": "train-1"}, headers=auth("trainer"))
    claim = client.post("/v1/queue/claim", json=WORKER, headers=auth("trainer")).json()
    run = {"attempt": claim["attempt"], "run_token": claim["run_token"]}
    client.post("/v1/jobs/train-1/complete", json=run, headers=auth("trainer"))
    return moments_of(client, "train-1")


def test_a_job_as_of_a_moment_is_the_job_as_it_was_then_marked_as_the_past(
    client: TestClient,
) -> None:
    started = a_job_run_to_completion(client)[1]
    then = client.get(f"/v1/jobs/train-1?as_of={as_of(started)}", headers=auth("audrey"))
    assert then.status_code == 200, then.text
    job = then.json()
    assert (job["status"], job["version"], job["attempt"]) == ("running", 2, 1)
    assert datetime.fromisoformat(job["as_of"]) == datetime.fromisoformat(started)
    assert "health" not in job and "queue_position" not in job
    now = client.get("/v1/jobs/train-1", headers=auth("audrey")).json()
    assert (now["status"], "as_of" in now) == ("completed", False)


def test_a_job_as_of_a_moment_before_its_registration_is_404(client: TestClient) -> None:
    registered = a_job_run_to_completion(client)[0]
    before = as_of(registered, -timedelta(microseconds=1))
    answer = client.get(f"/v1/jobs/train-1?as_of={before}", headers=auth("audrey"))
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


def test_the_list_as_of_a_moment_has_the_jobs_in_the_status_they_had_then(
    client: TestClient,
) -> None:
    _, started, completed = a_job_run_to_completion(client)
    client.post("/v1/jobs", json={"job_id": "train-2"}, headers=auth("trainer"))
    running = client.get(
        f"/v1/jobs?as_of={as_of(started)}&status=running", headers=auth("audrey")
    ).json()
    assert [job["job_id"] for job in running["jobs"]] == ["train-1"]
    assert running["jobs"][0]["as_of"] == running["as_of"]
    assert "counts" not in running
    everything = client.get(f"/v1/jobs?as_of={as_of(started)}", headers=auth("audrey")).json()
    assert [job["job_id"] for job in everything["jobs"]] == ["train-1"]  # train-2 came later
    page = client.get(f"/v1/jobs?as_of={as_of(completed)}&limit=1", headers=auth("audrey"))
    assert page.json()["next_cursor"] is None
    assert page.json()["jobs"][0]["status"] == "completed"


@pytest.mark.parametrize(
    "moment",
    [
        "yesterday",
        "2026-11-30T14:00:00",  # no time zone
        "2026-11-30T14:00:00+01:00",  # the + unescaped: a space once decoded
        "2026-13-01T00:00:00Z",
        "1" * 300,
    ],
)
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/train-1"])
def test_a_moment_that_is_not_one_is_a_422_problem_naming_the_parameter(
    client: TestClient, path: str, moment: str
) -> None:
    answer = client.get(path, params={"as_of": moment.replace("+", " ")}, headers=auth("audrey"))
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    [error] = answer.json()["errors"]
    assert error["field"] == "as_of" and "time zone" in error["message"]
