"""Several processes on one ledger: `jobledger serve --workers N`, and separate `serve`
replicas on one database. A command may reach any process; an event stream on any
process sees every event, in order, once; one process leads the health monitor, and
another takes over when it dies."""

import signal
import threading
from collections.abc import Iterator

import httpx
import psutil
import psycopg
import pytest

from ledger.commands import WorkerIdentity
from ledger.database import libpq_url
from projections.recovery.leader import RECONCILER_LOCK_KEY
from tests.e2e.conftest import Server
from tests.integration.recovery_helpers import poll

MONITOR_ENV = {"JOBLEDGER_LEASE_SECONDS": "1"}
"""A follower tries to take the lead once a lease period: here every second."""
AUDITOR = {"Authorization": "Bearer t-audrey-0123456789abcdef"}
TRAINER = {"Authorization": "Bearer t-trainer-0123456789abcdef"}
WORKER = WorkerIdentity(worker_id="w-1", host="gpu-1")


@pytest.fixture
def replicas(database_url: str) -> Iterator[tuple[Server, Server]]:
    first, second = Server(database_url, MONITOR_ENV), Server(database_url, MONITOR_ENV)
    first.start()
    second.start()
    yield first, second
    for served in (first, second):
        served.close_clients()
        if served.process is not None:
            served.kill(signal.SIGTERM)


@pytest.fixture
def workers(database_url: str) -> Iterator[Server]:
    served = Server(database_url, MONITOR_ENV, args=("--workers", "2"))
    served.start()
    yield served
    served.close_clients()
    if served.process is not None:
        served.kill(signal.SIGTERM)


def leader_pid(database_url: str) -> int | None:
    """The pid of the process holding the monitor's lock (it names itself in
    `application_name`), or None while nobody leads."""
    key = RECONCILER_LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        rows = conn.execute(
            """
            SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
            WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
              AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid
              AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """,
            (key >> 32, key & 0xFFFF_FFFF),
        ).fetchall()
    assert len(rows) <= 1
    return int(rows[0][0].rpartition("pid=")[2]) if rows else None


def both_workers(server: Server) -> set[int] | None:
    """The two worker pids, once two are running."""
    pids = worker_pids(server)
    return pids if len(pids) == 2 else None


def worker_pids(server: Server) -> set[int]:
    """The live worker processes of `server` (not the resource tracker spawn starts)."""
    assert server.process is not None
    pids = set()
    for child in psutil.Process(server.process.pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                pids.add(child.pid)
        except psutil.Error:  # exited (a zombie until its parent reaps it)
            pass
    return pids


def stream_ids(url: str, count: int, into: list[str], ready: threading.Event) -> None:
    """The ids of the first `count` events the stream at `url` sends, from the log's start."""
    with httpx.stream("GET", f"{url}/v1/events/stream", headers=AUDITOR, timeout=30) as answer:
        assert answer.status_code == 200
        ready.set()
        for line in answer.iter_lines():
            if line.startswith("id: "):
                into.append(line.removeprefix("id: "))
                if len(into) == count:
                    return


def assert_every_stream_sees_every_event_once_in_order(urls: list[str]) -> None:
    """Streams open on each url while registrations arrive at every url at once."""
    per_url = 10
    count = per_url * len(urls)
    seen: list[list[str]] = [[] for _ in urls]
    readies = [threading.Event() for _ in urls]
    readers = [
        threading.Thread(target=stream_ids, args=(url, count, into, ready))
        for url, into, ready in zip(urls, seen, readies, strict=True)
    ]
    for reader in readers:
        reader.start()
    for ready in readies:
        assert ready.wait(30)

    def register(url: str, index: int) -> None:
        with httpx.Client(base_url=url, headers=TRAINER) as client:
            for n in range(per_url):
                assert client.post("/v1/jobs", json={"job_id": f"j-{index}-{n}"}).is_success

    writers = [
        threading.Thread(target=register, args=(url, index)) for index, url in enumerate(urls)
    ]
    for writer in writers:
        writer.start()
    for thread in writers + readers:
        thread.join(timeout=60)
        assert not thread.is_alive()
    feed = httpx.get(f"{urls[0]}/v1/events", params={"limit": count + 1}, headers=AUDITOR)
    order = [event["cursor"] for event in feed.json()["events"]]
    assert len(order) == count
    for ids in seen:
        assert ids == order


def test_a_command_may_reach_either_replica(replicas: tuple[Server, Server]) -> None:
    first, second = replicas
    first.client("trainer").register("shared")
    claim = second.client("trainer").start("shared", WORKER)
    first.client("trainer").heartbeat("shared", claim.attempt, claim.run_token)
    second.client("trainer").report("shared", "complete", claim.attempt, claim.run_token)
    assert first.client("audrey").job("shared")["status"] == "completed"


def test_an_event_stream_on_each_replica_sees_every_event_in_order_once(
    replicas: tuple[Server, Server],
) -> None:
    assert_every_stream_sees_every_event_once_in_order([server.url for server in replicas])


def test_one_replica_leads_the_monitor_and_the_other_takes_over_when_it_dies(
    database_url: str, replicas: tuple[Server, Server]
) -> None:
    by_pid = {server.process.pid: server for server in replicas if server.process}
    leader = poll(lambda: leader_pid(database_url))
    assert leader in by_pid
    by_pid.pop(leader).kill(signal.SIGKILL)
    (survivor,) = by_pid
    poll(lambda: leader_pid(database_url) == survivor)


def test_workers_share_one_port_and_a_dead_worker_is_replaced(workers: Server) -> None:
    first = poll(lambda: both_workers(workers))
    for n in range(10):  # each on a connection of its own
        assert httpx.post(f"{workers.url}/v1/jobs", json={"job_id": f"w-{n}"}, headers=TRAINER)
    dead = min(first)
    psutil.Process(dead).kill()

    def replacement() -> set[int] | None:
        pids = both_workers(workers)
        return pids if pids and dead not in pids else None

    assert poll(replacement) - first
    assert len(workers.client("audrey").jobs()["jobs"]) == 10


def test_an_event_stream_on_every_worker_sees_every_event_in_order_once(
    workers: Server,
) -> None:
    assert_every_stream_sees_every_event_once_in_order([workers.url] * 4)


def test_the_serving_process_leads_the_monitor_and_its_workers_stop_when_it_dies(
    database_url: str, workers: Server
) -> None:
    assert workers.process is not None
    assert poll(lambda: leader_pid(database_url)) == workers.process.pid
    pids = worker_pids(workers)
    assert len(pids) == 2
    workers.kill(signal.SIGKILL)
    poll(lambda: not any(psutil.pid_exists(pid) for pid in pids), timeout=30)


def test_a_sigterm_stops_every_worker_cleanly(workers: Server) -> None:
    pids = poll(lambda: both_workers(workers))
    assert workers.kill(signal.SIGTERM) == 0
    assert not any(psutil.pid_exists(pid) for pid in pids)


def test_a_scrape_answered_by_a_worker_shows_the_ledger_has_a_monitor_leader(
    workers: Server,
) -> None:
    def scraped_with_a_leader() -> str | None:
        text = httpx.get(f"{workers.url}/metrics", headers=AUDITOR, timeout=10).text
        return text if "jobledger_monitor_leaders 1.0" in text else None

    scraped = poll(scraped_with_a_leader, timeout=30)
    assert "jobledger_monitor_leader 0.0" in scraped  # the worker answering does not lead
