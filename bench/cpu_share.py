"""Where a measurement's CPU went: the calling process, a server's processes, PostgreSQL.

On a machine of a few cores a system's rate is bounded by the CPU one operation costs
in all of its parts together: a client, a server and the database share the cores.
`CpuMeter` reads, before and after a measurement, the CPU time (user + system) of

- this process (the clients' threads; for an in-process system, the whole ledger too);
- the server's processes, when there is one (its process and every child of it);
- the PostgreSQL server: its postmaster and every process it started, those that ended
  too (their time is added to the postmaster's children's on exit): the backends, the
  WAL writer, the checkpointer, autovacuum. The whole server, so anything else it serves
  meanwhile counts too: measure on a quiet server. Only a server on this machine whose
  `postmaster.pid` this process can read is measured; otherwise PostgreSQL is left out.

A backend whose client closed its connection as the measurement ended may be reaped
while the server is read: after the postmaster's own times (which then lack it) and
before its children are listed or read (which then lack it too). Its whole time would be
missed: all of it, for a client of one connection. So the server is read again until two
readings in a row find the same processes, every one of them readable.
"""

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psutil
import psycopg

CLIENT, SERVER, POSTGRES = "client", "server", "postgres"


@dataclass(frozen=True, slots=True)
class CpuSpent:
    """CPU seconds per part, over one measurement."""

    seconds: dict[str, float]

    def per_op_us(self, ops: int) -> dict[str, float]:
        return {part: 1e6 * spent / ops for part, spent in self.seconds.items()}


SETTLE_SECONDS = 2.0
"""How long the PostgreSQL server's reading waits for its ending processes to be reaped."""


def _cpu_seconds(processes: Iterable[psutil.Process]) -> dict[int, float]:
    spent = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue  # gone: its time went with it
        spent[process.pid] = times.user + times.system
    return spent


def _server_reading(postmaster: psutil.Process) -> dict[int, float] | None:
    """The PostgreSQL server's CPU seconds so far, by process, the postmaster's entry
    holding its own and its reaped children's; None when a child listed was gone when read."""
    try:
        own = postmaster.cpu_times()
        children = postmaster.children()
    except psutil.Error:
        return {}
    spent = _cpu_seconds(children)
    if len(spent) < len(children):
        return None
    spent[postmaster.pid] = own.user + own.system + own.children_user + own.children_system
    return spent


def _server_cpu_seconds(postmaster: psutil.Process) -> dict[int, float]:
    """The PostgreSQL server's CPU seconds so far, by process, once two readings in a row
    find the same processes (see the module), or the last reading after `SETTLE_SECONDS`."""
    deadline = time.monotonic() + SETTLE_SECONDS
    last = _server_reading(postmaster)
    while time.monotonic() < deadline:
        time.sleep(0.02)
        reading = _server_reading(postmaster)
        if reading is not None and last is not None and reading.keys() == last.keys():
            return reading
        last = reading
    return last or {}


def local_postmaster(admin_url: str) -> psutil.Process | None:
    """The postmaster of the server at `admin_url` when it runs on this machine and its
    `postmaster.pid` is readable here; None otherwise."""
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        assert row is not None
        with open(os.path.join(row[0], "postmaster.pid")) as pid_file:
            return psutil.Process(int(pid_file.readline()))
    except (OSError, ValueError, psycopg.Error, psutil.Error):
        return None


class CpuMeter:
    """CPU spent by the parts of one system (see the module); `server_pid` None for a
    system without a server process."""

    def __init__(self, postmaster: psutil.Process | None, server_pid: int | None = None) -> None:
        self.postmaster = postmaster
        self.server_pid = server_pid

    def _server(self) -> list[psutil.Process]:
        assert self.server_pid is not None
        server = psutil.Process(self.server_pid)
        return [server, *server.children(recursive=True)]

    def _reading(self) -> dict[str, dict[int, float]]:
        """CPU seconds so far by part and process; a part this meter cannot see is left out."""
        reading = {CLIENT: _cpu_seconds([psutil.Process(os.getpid())])}
        if self.server_pid is not None:
            reading[SERVER] = _cpu_seconds(self._server())
        if self.postmaster is not None:
            reading[POSTGRES] = _server_cpu_seconds(self.postmaster)
        return reading

    def start(self) -> dict[str, dict[int, float]]:
        return self._reading()

    def spent_since(self, before: dict[str, dict[int, float]]) -> CpuSpent:
        after = self._reading()
        return CpuSpent({part: _spent(before[part], after[part], part) for part in after})


def _spent(before: dict[int, float], after: dict[int, float], part: str) -> float:
    """CPU seconds between two readings of one part. A PostgreSQL process that ended
    meanwhile has its whole time in the postmaster's entry now, so what it had spent
    before is taken off; a process of another part that ended took its time with it."""
    if part == POSTGRES:
        return sum(after.values()) - sum(before.values())
    return sum(now - before.get(pid, 0.0) for pid, now in after.items())
