"""Jobs in every state, made through a real server's API, for the console's tests."""

import os
import signal
import socket
from dataclasses import dataclass

import psutil

from ledger.client import LedgerClient
from ledger.commands import WorkerIdentity
from tests.integration.recovery_helpers import poll, training_process


def identity(worker_id: str, pid: int) -> WorkerIdentity:
    """A worker on this host, named by pid and the process's start time."""
    return WorkerIdentity(
        worker_id=worker_id,
        host=socket.gethostname(),
        pid=pid,
        pid_started_at=psutil.Process(pid).create_time(),
    )


@dataclass(frozen=True, slots=True)
class Seeded:
    pending: str
    queued: str
    running: str  # healthy: its process (this test's own) is alive
    orphaned: str  # its process was SIGKILLed
    failed: str  # with a checkpoint to resume from
    cancelled: str
    completed: str


def seed_every_state(trainer: LedgerClient, operator: LedgerClient) -> Seeded:
    trainer.register("train-pending", status="pending", spec={"model": "resnet50"})
    for job_id in ("train-running", "train-orphaned", "train-failed", "train-completed"):
        trainer.register(job_id, spec={"model": "bert"})

    running = trainer.start("train-running", identity("gpu-worker-1", os.getpid()))
    assert running.attempt == 1

    with training_process() as child:
        trainer.start("train-orphaned", identity("gpu-worker-2", child.pid))
        child.send_signal(signal.SIGKILL)
        child.wait()
    poll(lambda: trainer.job("train-orphaned")["health"] == "orphaned")

    failed = trainer.start("train-failed", identity("gpu-worker-3", os.getpid()))
    run = (failed.attempt, failed.run_token)
    trainer.report("train-failed", "checkpoint", *run, path="s3://ckpt/e3", step=3000)
    trainer.report("train-failed", "fail", *run, reason="CUDA OOM")

    done = trainer.start("train-completed", identity("gpu-worker-4", os.getpid()))
    trainer.report("train-completed", "complete", done.attempt, done.run_token)

    trainer.register("train-cancelled")
    operator.cancel("train-cancelled", reason="duplicate submission")
    trainer.register("train-queued", priority=5, spec={"model": "vit"})
    return Seeded(
        pending="train-pending",
        queued="train-queued",
        running="train-running",
        orphaned="train-orphaned",
        failed="train-failed",
        cancelled="train-cancelled",
        completed="train-completed",
    )
