"""The log's hash chain: kept from the feed after the fact, by one writer at a time, to
the rules its documentation states."""

import hashlib
import threading
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine

from api.bootstrap import wire_ledger
from ledger.database import libpq_url
from ledger.errors import InvalidDigest
from ledger.settings import Settings
from ledger.statuses import JobStatus
from projections.audit_chain import keeper
from projections.audit_chain.digest import Digest, append_digest, read_digests
from projections.audit_chain.keeper import advance_chain
from projections.audit_chain.keeping import ChainKeeping
from projections.audit_chain.verify import verify_chain
from projections.recovery.leader import LeaderLock
from projections.recovery.monitor import HealthMonitor, MonitorTiming
from tests.chain_helpers import digest_of_all, events_in_log, feed_shows_all
from tests.conftest import JobFactory

DOCUMENTED_LINES = """
    COPY (
        SELECT position, tx_id, job_id, seq, type, payload, actor, reason, attempt,
               idempotency_key, correlation_id,
               (extract(epoch FROM occurred_at) * 1000000)::bigint,
               (extract(epoch FROM recorded_at) * 1000000)::bigint, command_sha256
        FROM job_events ORDER BY tx_id, position
    ) TO STDOUT (FORMAT text, ENCODING 'UTF8')
"""
"""The rules of `projections.audit_chain.encoding`, written out again as an auditor would."""


def documented_head(database_url: str) -> tuple[int, bytes]:
    link, events = bytes(32), 0
    with (
        psycopg.connect(libpq_url(database_url)) as conn,
        conn.cursor() as cursor,
        cursor.copy(DOCUMENTED_LINES) as copy,
    ):
        for line in copy:
            link = hashlib.sha256(link + bytes(line)).digest()
            events += 1
    return events, link


def chain_blocks(database_url: str) -> list[tuple[str, int, str, int, int]]:
    with psycopg.connect(libpq_url(database_url)) as conn:
        rows = conn.execute(
            "SELECT after_tx_id::text, after_position, tx_id::text, position, events"
            " FROM audit_chain c ORDER BY c.tx_id, c.position"
        ).fetchall()
    return rows


def test_a_digest_chains_every_event_by_the_documented_rules(
    engine: Engine, database_url: str, job_factory: JobFactory
) -> None:
    for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.RUNNING, JobStatus.PENDING):
        job_factory(status)
    digest = digest_of_all(engine)
    events, head = documented_head(database_url)
    assert (digest.events, digest.head) == (events, head)
    assert events == events_in_log(engine)


def test_appending_leaves_the_chain_alone_until_it_is_kept(
    engine: Engine, database_url: str, job_factory: JobFactory
) -> None:
    job_factory(JobStatus.COMPLETED)
    assert chain_blocks(database_url) == []
    assert digest_of_all(engine).events == events_in_log(engine)
    assert chain_blocks(database_url) != []


def test_writers_at_once_never_fork_the_chain(
    engine: Engine, database_url: str, job_factory: JobFactory
) -> None:
    for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
        job_factory(status)
    feed_shows_all(engine)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def keep() -> None:
        try:
            start.wait()
            advance_chain(engine)
        except BaseException as exc:  # reported below
            errors.append(exc)

    writers = [threading.Thread(target=keep) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert errors == []
    blocks = chain_blocks(database_url)
    continued = [("0", 0)] + [(tx_id, position) for _, _, tx_id, position, _ in blocks[:-1]]
    assert [(after_tx, after) for after_tx, after, _, _, _ in blocks] == continued
    assert blocks[-1][4] == events_in_log(engine)
    assert verify_chain(engine).intact


class RecordedStop(threading.Event):
    """A stop that records every rest taken on it and rests no time at all."""

    def __init__(self) -> None:
        super().__init__()
        self.rests: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.rests.append(0.0 if timeout is None else timeout)
        return self.is_set()


def test_a_poll_chains_a_bounded_number_of_blocks_resting_between_them(
    engine: Engine,
    database_url: str,
    job_factory: JobFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keeper, "PAGE_EVENTS", 2)
    for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED) * 2:
        job_factory(status)
    feed_shows_all(engine)
    total = events_in_log(engine)
    assert total > 14
    path = tmp_path / "digests.jsonl"
    keeping = ChainKeeping(
        engine, 3600, lambda digest: append_digest(path, digest), blocks_per_poll=3
    )
    stop = RecordedStop()
    keeping.tick(0.0, stop)  # a digest is due at the first poll: of the three blocks it chained
    assert [kept.digest.events for kept in read_digests(path)] == [6]
    assert len(chain_blocks(database_url)) == 3
    assert len(stop.rests) == 2  # after the first block and the second, not after the last
    keeping.tick(1.0, stop)  # no digest due: three more blocks
    assert [block[4] for block in chain_blocks(database_url)] == [2, 4, 6, 8, 10, 12]
    assert len(stop.rests) == 4
    stop.set()
    keeping.tick(2.0, stop)  # the monitor is stopping: the poll ends after its first block
    assert [block[4] for block in chain_blocks(database_url)][-1] == 14
    report = verify_chain(engine, read_digests(path))
    assert report.intact and report.digests[0].holds


def test_chaining_at_most_no_block_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        advance_chain(engine, most_blocks=0)


def test_the_table_refuses_a_second_block_continuing_the_same_place(
    engine: Engine, database_url: str, job_factory: JobFactory
) -> None:
    job_factory(JobStatus.QUEUED)
    digest_of_all(engine)
    with (
        psycopg.connect(libpq_url(database_url), autocommit=True) as conn,
        pytest.raises(psycopg.errors.UniqueViolation),
    ):
        conn.execute(
            "INSERT INTO audit_chain (after_tx_id, after_position, tx_id, position, events,"
            " positions, links) VALUES ('0', 0, '1', 1, 1, '{1}', %s)",
            (bytes(32),),
        )


def test_digests_taken_between_appends_all_verify(
    engine: Engine, job_factory: JobFactory, tmp_path: Path
) -> None:
    path = tmp_path / "digests.jsonl"
    append_digest(path, digest_of_all(engine))  # the empty log
    for status in (JobStatus.COMPLETED, JobStatus.CANCELLED, JobStatus.PAUSED):
        job_factory(status)
        append_digest(path, digest_of_all(engine))
    job_factory(JobStatus.QUEUED)  # not chained yet: verify recomputes it all the same
    kept = read_digests(path)
    report = verify_chain(engine, kept)
    assert [check.holds for check in report.digests] == [True] * 4
    assert report.intact
    assert report.events >= kept[-1].digest.events


@pytest.mark.parametrize(
    "text",
    [
        "not json\nat all",
        '{"chain": "md5-v0", "cursor": "1-1", "events": 1, "head": "00", "taken_at": "x"}',
        '{"chain": "sha256-copy-v1", "cursor": "1-1", "events": -1, "head": "", "taken_at": ""}',
        "",
    ],
)
def test_a_digest_that_cannot_be_read_is_refused_with_its_place(tmp_path: Path, text: str) -> None:
    path = tmp_path / "digest.json"
    path.write_text(text)
    with pytest.raises(InvalidDigest, match=str(path)):
        read_digests(path)


def test_the_leading_monitor_keeps_the_chain_and_writes_digests(
    engine: Engine, database_url: str, job_factory: JobFactory, tmp_path: Path
) -> None:
    job_factory(JobStatus.COMPLETED)
    feed_shows_all(engine)
    path = tmp_path / "digests.jsonl"
    written = threading.Event()

    def keep(digest: Digest) -> None:
        append_digest(path, digest)
        if len(path.read_text().splitlines()) >= 2:
            written.set()

    monitor = HealthMonitor(
        wire_ledger(database_url, engine, Settings()).reconciler,
        LeaderLock(database_url),
        MonitorTiming(interval_s=3600, poll_s=0.05),
        chain=ChainKeeping(engine, digest_every_s=0.1, on_digest=keep),
    )
    thread = threading.Thread(target=monitor.run)
    thread.start()
    try:
        assert written.wait(timeout=30)
    finally:
        monitor.stop.set()
        thread.join()
    kept = read_digests(path)
    assert kept[0].digest.events == events_in_log(engine)
    assert verify_chain(engine, kept).intact
