"""This host and its processes, as liveness checks identify them.

A pid alone is never an identity: pids are reused. A process is the triple
(host boot id, pid, process start time).
"""

import os
import socket
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

import psutil

from ledger.commands import WorkerIdentity

START_TIME_TOLERANCE_S = 0.05
"""psutil derives start times from clock ticks; the same process reads the same within this."""


@cache
def boot_id() -> str:
    """This boot of this host: the kernel's boot id, else the boot time."""
    path = Path("/proc/sys/kernel/random/boot_id")
    try:
        return path.read_text().strip()
    except OSError:
        return f"boot-{psutil.boot_time():.0f}"


def hostname() -> str:
    return socket.gethostname()


def current_process(worker_id: str) -> WorkerIdentity:
    """The identity of the calling process, for starting a run in it."""
    return process_identity(worker_id, os.getpid())


def process_identity(worker_id: str, pid: int) -> WorkerIdentity:
    """The identity of process `pid` on this host."""
    return WorkerIdentity(
        worker_id=worker_id,
        host=hostname(),
        pid=pid,
        pid_started_at=psutil.Process(pid).create_time(),
        boot_id=boot_id(),
    )


class ProcessFate(StrEnum):
    ALIVE = "alive"
    GONE = "process_gone"  # no process with that pid
    REUSED = "pid_reused"  # a different process has that pid now
    HOST_REBOOTED = "host_rebooted"  # the host restarted since the run began


@dataclass(frozen=True, slots=True)
class LocalHost:
    """Answers whether a run's process, if it runs here, is still the same process."""

    name: str
    boot: str

    @classmethod
    def detect(cls) -> "LocalHost":
        return cls(hostname(), boot_id())

    def runs_here(self, host: str | None) -> bool:
        return host == self.name

    def fate(self, pid: int | None, started_at: float | None, run_boot: str | None) -> ProcessFate:
        """What became of the process (call only for runs on this host)."""
        if run_boot is not None and run_boot != self.boot:
            return ProcessFate.HOST_REBOOTED
        if pid is None:
            return ProcessFate.GONE
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return ProcessFate.GONE
            created = process.create_time()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return ProcessFate.GONE
        except psutil.AccessDenied:
            return ProcessFate.ALIVE  # it exists; we may not look closer
        if started_at is not None and abs(created - started_at) > START_TIME_TOLERANCE_S:
            return ProcessFate.REUSED
        return ProcessFate.ALIVE
