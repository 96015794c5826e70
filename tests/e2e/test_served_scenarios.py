"""The plan's scenarios through a real server, its client and real processes."""

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ledger.client import JobRun, work_off_queue
from ledger.commands import WorkerIdentity
from ledger.errors import StaleAttempt
from ledger.host import process_identity
from tests.e2e.conftest import Server
from tests.integration.recovery_helpers import poll, training_process

REMOTE = WorkerIdentity(worker_id="w", host="gpu-node-9", pid=7)


def assert_projections_verify_clean(server: Server) -> None:
    verify = subprocess.run(
        [sys.executable, "-m", "api.cli", "projections", "verify"],
        env=server.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_stuck_pending_job_is_reported_force_started_and_claimed(server: Server) -> None:
    trainer, alice = server.client("trainer"), server.client("alice")
    trainer.register("ahead")
    trainer.register("stuck", status="pending")
    stale = poll(lambda: alice.health()["stale_pending_jobs"])
    assert [item["job_id"] for item in stale] == ["stuck"]
    assert alice.force_start("stuck", reason="user asked")["queue_position"] == 2
    trainer.claim(REMOTE)
    claimed = trainer.claim(REMOTE)
    assert claimed is not None and claimed.job_id == "stuck"
    assert alice.job("stuck")["status"] == "running"


def test_a_sigkilled_training_process_is_found_failed_and_fenced(server: Server) -> None:
    trainer, alice = server.client("trainer"), server.client("alice")
    trainer.register("victim")
    with training_process() as child:
        claim = trainer.claim(process_identity("trainer", child.pid))
        assert claim is not None
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    [orphan] = alice.health()["orphaned_jobs"]
    assert (orphan["job_id"], orphan["reason"]) == ("victim", "process_gone")
    actions = alice.reconcile()["actions"]
    assert [(a["job_id"], a["action"]) for a in actions] == [("victim", "mark_failed")]
    with pytest.raises(StaleAttempt):
        trainer.report("victim", "complete", claim.attempt, claim.run_token)
    assert alice.job("victim")["failure_reason"].startswith("process terminated unexpectedly")


def test_queued_jobs_survive_a_sigkilled_server_in_order(server: Server) -> None:
    trainer = server.client("trainer")
    for name in ("r-a", "r-b", "r-c"):
        trainer.register(name)
    assert server.kill(signal.SIGKILL) == -signal.SIGKILL
    server.start()
    assert "3 queued jobs intact" in server.recovery_line
    trainer = server.client("trainer")
    queued = trainer.jobs(status="queued")["jobs"]
    assert {j["job_id"]: j["queue_position"] for j in queued} == {"r-a": 1, "r-b": 2, "r-c": 3}
    order = [trainer.claim(REMOTE) for _ in range(3)]
    assert [c.job_id for c in order if c] == ["r-a", "r-b", "r-c"]
    assert_projections_verify_clean(server)


def test_sixteen_concurrent_force_starts_over_http_queue_the_job_once(server: Server) -> None:
    server.client("trainer").register("once", status="pending")
    barrier = threading.Barrier(16)

    def force(_: int) -> int:
        client = server.client("alice")
        barrier.wait()
        return int(client.force_start("once")["queue_position"])

    with ThreadPoolExecutor(16) as pool:
        positions = list(pool.map(force, range(16)))
    types = [e["type"] for e in server.client("audrey").history("once")["events"]]
    assert types == ["job_registered", "job_force_started"]
    assert positions == [1] * 16


def test_a_job_run_heartbeats_checkpoints_and_completes(server: Server) -> None:
    trainer = server.client("trainer")
    trainer.register("trained")
    with JobRun(trainer, worker_id="trainer-1", lease_seconds=1.5) as run:
        run.checkpoint("/ck/1", step=1)
        poll(lambda: trainer.job("trained")["last_heartbeat_at"])
        run.result = {"loss": 0.01}
    job = trainer.job("trained")
    assert (job["status"], job["checkpoint"]["path"]) == ("completed", "/ck/1")


def test_a_worker_loop_runs_every_queued_job_through_a_real_server(server: Server) -> None:
    trainer = server.client("trainer")
    for n in range(3):
        trainer.register(f"looped-{n}")
    ran: list[str] = []

    def work(run: JobRun) -> dict[str, int]:
        assert run.job_id is not None
        ran.append(run.job_id)
        return {"step": len(ran)}

    assert work_off_queue(trainer, work, worker=REMOTE) == 3
    assert ran == ["looped-0", "looped-1", "looped-2"]
    assert [trainer.job(job_id)["status"] for job_id in ran] == ["completed"] * 3
    history = trainer.history("looped-1")["events"]
    assert [event["to_status"] for event in history] == ["queued", "running", "completed"]


def test_a_failing_run_reports_the_exception(server: Server) -> None:
    trainer = server.client("trainer")
    trainer.register("doomed")
    with pytest.raises(RuntimeError), JobRun(trainer, lease_seconds=1.5):
        raise RuntimeError("CUDA out of memory")
    job = trainer.job("doomed")
    assert job["status"] == "failed"
    assert job["failure_reason"] == "RuntimeError: CUDA out of memory"


def test_a_fenced_run_is_told_to_stop(server: Server) -> None:
    trainer, alice = server.client("trainer"), server.client("alice")
    trainer.register("fenced")
    with JobRun(trainer, lease_seconds=1.5) as run:
        alice.mark_failed("fenced", "operator took it back")
        poll(lambda: run.should_stop)
    assert alice.job("fenced")["status"] == "failed"


def read_stream(server: Server, count: int, after: str | None = None) -> list[str]:
    """The data lines of the first `count` events the stream sends."""
    headers = {"Authorization": "Bearer t-audrey-0123456789abcdef"}
    if after:
        headers["Last-Event-ID"] = after
    data: list[str] = []
    url = f"{server.url}/v1/events/stream"
    with httpx.stream("GET", url, headers=headers, timeout=15) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                data.append(line)
                if len(data) == count:
                    break
    return data


def test_the_event_stream_sends_new_events_as_they_commit(server: Server) -> None:
    trainer = server.client("trainer")
    trainer.register("s-1")
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.extend(read_stream(server, 2)))
    reader.start()
    trainer.register("s-2")
    reader.join(timeout=20)
    assert not reader.is_alive()
    assert '"s-1"' in received[0] and '"s-2"' in received[1]


def test_the_event_stream_resumes_after_its_last_event_id(server: Server) -> None:
    trainer = server.client("trainer")
    for name in ("s-1", "s-2", "s-3"):
        trainer.register(name)
    first = server.client("audrey").events(limit=1)["events"][0]["cursor"]
    resumed = read_stream(server, 2, after=str(first))
    assert '"s-2"' in resumed[0] and '"s-3"' in resumed[1]


def test_metrics_count_commands_and_report_the_queue(server: Server) -> None:
    server.client("trainer").register("m-1")
    text = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": "Bearer t-audrey-0123456789abcdef"}
    ).text
    assert 'jobledger_requests_total{outcome="ok",route="POST /v1/jobs"} 1.0' in text
    assert "jobledger_queued_jobs 1.0" in text
    assert "jobledger_request_seconds_bucket" in text


def test_a_server_killed_under_load_keeps_every_acknowledged_command_and_invents_none(
    server: Server,
) -> None:
    acknowledged: list[str] = []
    sent: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(client_index: int) -> None:
        client = server.client("trainer")
        client.retries = 0  # a lost answer must stay lost, not be retried into the restart
        for n in range(10_000):
            if stop.is_set():
                return
            job_id = f"load-{client_index}-{n}"
            with lock:
                sent.append(job_id)
            try:
                client.register(job_id)
            except Exception:
                return  # the server is gone
            with lock:
                acknowledged.append(job_id)

    workers = [threading.Thread(target=load, args=(index,)) for index in range(16)]
    for worker in workers:
        worker.start()
    poll(lambda: len(acknowledged) >= 100, timeout=60)
    server.kill(signal.SIGKILL)
    stop.set()
    for worker in workers:
        worker.join(timeout=30)

    server.start()
    audrey = server.client("audrey")
    stored: set[str] = set()
    cursor = None
    while True:
        page = audrey.jobs(limit=500, cursor=cursor)
        stored.update(job["job_id"] for job in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert set(acknowledged) <= stored, "an acknowledged registration was lost"
    assert stored <= set(sent), "the log holds a job nobody sent"
    assert_projections_verify_clean(server)
