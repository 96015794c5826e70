"""A superuser disables the log's triggers and rewrites history: one payload edited, one
`recorded_at` moved, one event removed, one inserted, two swapped. Each time verify names
the place, a digest taken before the tampering catches it, and a digest of the clean
history before it still holds."""

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from sqlalchemy import Engine

from ledger.database import libpq_url
from ledger.statuses import JobStatus
from projections.audit_chain.digest import Digest, KeptDigest
from projections.audit_chain.verify import ChainReport, verify_chain
from tests.chain_helpers import digest_of_all, triggers_disabled
from tests.conftest import JobFactory

Connection = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class History:
    early: Digest
    """Taken after the first clean appends, before the events tampered with."""
    before: Digest
    """Taken after the events tampered with, before the tampering."""
    targets: list[tuple[int, str, int]]
    """(position, job_id, seq) of events appended between the two digests."""


@pytest.fixture
def superuser(database_url: str) -> Iterator[Connection]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        yield conn


@pytest.fixture
def history(engine: Engine, job_factory: JobFactory, superuser: Connection) -> History:
    for status in (JobStatus.COMPLETED, JobStatus.QUEUED, JobStatus.FAILED):
        job_factory(status)
    early = digest_of_all(engine)
    for status in (JobStatus.COMPLETED, JobStatus.PAUSED, JobStatus.CANCELLED):
        job_factory(status)
    before = digest_of_all(engine)
    job_factory(JobStatus.RUNNING)  # clean appends after the digest
    targets = superuser.execute(
        "SELECT position, job_id, seq FROM job_events WHERE position > %s AND position <= %s"
        " ORDER BY tx_id, position",
        (early.cursor.position, before.cursor.position),
    ).fetchall()
    return History(early, before, [(int(p), str(j), int(s)) for p, j, s in targets])  # type: ignore[call-overload]


def verify(engine: Engine, history: History) -> ChainReport:
    kept = [KeptDigest("early", history.early), KeptDigest("before", history.before)]
    return verify_chain(engine, kept)


def assert_caught(report: ChainReport, position: int, kind: str) -> None:
    assert not report.intact
    assert report.first_break is not None
    assert (report.first_break.position, report.first_break.kind) == (position, kind)
    holds = {check.kept.source: check.holds for check in report.digests}
    assert holds == {"early": True, "before": False}


def test_an_intact_history_verifies_against_both_digests(engine: Engine, history: History) -> None:
    report = verify(engine, history)
    assert report.intact, report
    assert report.first_break is None


def test_an_edited_payload_is_named_and_caught(
    engine: Engine, history: History, superuser: Connection
) -> None:
    position, job_id, seq = history.targets[1]
    with triggers_disabled(superuser):
        superuser.execute(
            "UPDATE job_events SET payload = payload || '{\"forged\": true}' WHERE position = %s",
            (position,),
        )
    report = verify(engine, history)
    assert_caught(report, position, "changed")
    assert report.first_break is not None
    assert (report.first_break.job_id, report.first_break.seq) == (job_id, seq)


def test_a_moved_recorded_at_is_named_and_caught(
    engine: Engine, history: History, superuser: Connection
) -> None:
    position, _, _ = history.targets[2]
    with triggers_disabled(superuser):
        superuser.execute(
            "UPDATE job_events SET recorded_at = recorded_at - interval '1 hour'"
            " WHERE position = %s",
            (position,),
        )
    assert_caught(verify(engine, history), position, "changed")


def test_a_removed_event_is_named_and_caught(
    engine: Engine, history: History, superuser: Connection
) -> None:
    position, _, _ = history.targets[-1]
    with triggers_disabled(superuser):
        superuser.execute("DELETE FROM job_events WHERE position = %s", (position,))
    assert_caught(verify(engine, history), position, "removed")


def test_an_inserted_event_is_named_and_caught(
    engine: Engine, history: History, superuser: Connection
) -> None:
    position, _, _ = history.targets[0]
    with triggers_disabled(superuser):
        # a forged event placed in the past: in the transaction of a chained event
        row = superuser.execute(
            """
            INSERT INTO job_events (job_id, seq, type, payload, actor, tx_id, recorded_at)
            SELECT e.job_id, 1000, 'job_marked_failed', '{}', 'intruder', e.tx_id, e.recorded_at
            FROM job_events e WHERE e.position = %s
            RETURNING position
            """,
            (position,),
        ).fetchone()
    assert row is not None
    assert_caught(verify(engine, history), int(row[0]), "inserted")  # type: ignore[call-overload]


def test_two_swapped_events_are_named_and_caught(
    engine: Engine, history: History, superuser: Connection
) -> None:
    (first, _, _), (second, _, _) = history.targets[1], history.targets[3]
    with triggers_disabled(superuser), superuser.transaction():
        # each event takes the other's place in the feed: its position and transaction
        superuser.execute(
            """
            CREATE TEMPORARY TABLE swapped ON COMMIT DROP AS
            SELECT e.*, o.position AS new_position, o.tx_id AS new_tx_id
            FROM job_events e JOIN job_events o
              ON (e.position, o.position) IN ((%(a)s, %(b)s), (%(b)s, %(a)s))
            """,
            {"a": first, "b": second},
        )
        superuser.execute("DELETE FROM job_events WHERE position IN (%s, %s)", (first, second))
        superuser.execute(
            """
            INSERT INTO job_events (
                position, job_id, seq, type, payload, actor, reason, attempt, idempotency_key,
                correlation_id, occurred_at, recorded_at, tx_id, command_sha256
            ) OVERRIDING SYSTEM VALUE
            SELECT new_position, job_id, seq, type, payload, actor, reason, attempt,
                   idempotency_key, correlation_id, occurred_at, recorded_at, new_tx_id,
                   command_sha256
            FROM swapped
            """
        )
    assert_caught(verify(engine, history), first, "changed")


def test_a_digest_taken_after_the_tampering_fails_too(
    engine: Engine, history: History, superuser: Connection, job_factory: JobFactory
) -> None:
    position, _, _ = history.targets[1]
    digest_of_all(engine)  # the chain is kept past the event before it is touched
    with triggers_disabled(superuser):
        superuser.execute(
            "UPDATE job_events SET actor = 'someone else' WHERE position = %s", (position,)
        )
    job_factory(JobStatus.QUEUED)
    after = digest_of_all(engine)
    report = verify_chain(engine, [KeptDigest("after", after)])
    assert report.first_break is not None and report.first_break.position == position
    assert [check.holds for check in report.digests] == [False]


def test_a_stored_chain_rewritten_with_the_log_is_caught_by_the_digest(
    engine: Engine, history: History, superuser: Connection
) -> None:
    position, _, _ = history.targets[1]
    with triggers_disabled(superuser):
        superuser.execute("UPDATE job_events SET payload = '{}' WHERE position = %s", (position,))
    superuser.execute("TRUNCATE audit_chain")
    digest_of_all(engine)  # the chain rebuilt from the rewritten log agrees with it
    report = verify(engine, history)
    assert report.first_break is None
    holds = {check.kept.source: check.holds for check in report.digests}
    assert holds == {"early": True, "before": False}
    assert not report.intact
