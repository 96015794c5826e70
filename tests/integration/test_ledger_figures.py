"""The figures a metrics scrape reads: the projection's lag means events it has not
applied, and every figure is a bounded read."""

import time

import psycopg
from sqlalchemy import Engine

from ledger.database import libpq_url
from ledger.statuses import JobStatus
from ledger.store import EventStore, feed_horizon
from projections import current_status
from projections.checkpoints import read_checkpoint
from projections.current_status.catchup import catch_up_current_status, follow_log
from projections.ledger_figures import LedgerFigures, read_ledger_figures
from tests.conftest import JobFactory

STALE_PENDING_S = 600.0
HORIZON_WAIT_S = 120.0


def wait_until_the_feed_shows_every_event(database_url: str) -> None:
    """Poll until every transaction older than the log's last event has ended: the feed
    (and so the catch-up) shows an event only then, and on a shared server another's
    long transaction can hold it back."""
    deadline = time.monotonic() + HORIZON_WAIT_S
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(tx_id)::text, '0') FROM job_events").fetchone()
        assert row is not None
        while feed_horizon(conn) <= int(row[0]):
            assert time.monotonic() < deadline, "the feed's horizon did not pass the log's end"
            time.sleep(0.1)


def figures(engine: Engine) -> LedgerFigures:
    return read_ledger_figures(engine, STALE_PENDING_S)


def events_after_checkpoint(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url)) as conn:
        checkpoint = read_checkpoint(conn, current_status.NAME)
        assert checkpoint is not None
        row = conn.execute(
            "SELECT count(*) FROM job_events WHERE (tx_id, position) > (%s::xid8, %s)",
            (str(checkpoint.cursor.tx_id), checkpoint.cursor.position),
        ).fetchone()
    assert row is not None
    return int(row[0])


def write_past_the_projection(database_url: str, job_id: str, seq: int, steps: int) -> None:
    """`steps` checkpoint events written straight into the log after `seq`, as an older
    writer without the inline projection might have: the job's row lacks them."""
    with psycopg.connect(libpq_url(database_url)) as conn:
        for step in range(1, steps + 1):
            conn.execute(
                "INSERT INTO job_events (job_id, seq, type, payload, actor, attempt) "
                "VALUES (%s, %s, 'checkpoint_saved', %s, 'w', 1)",
                (job_id, seq + step, f'{{"path": "/ck/{step}", "step": {step}}}'),
            )


def test_the_lag_is_zero_on_a_current_projection_however_far_its_checkpoint_is_behind(
    engine: Engine, database_url: str, job_factory: JobFactory
) -> None:
    catch_up_current_status(engine)
    for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED):
        job_factory(status)

    assert events_after_checkpoint(database_url) >= 6  # applied inline, past the checkpoint
    assert figures(engine).projection_lag == 0


def test_the_lag_counts_the_events_the_projection_lacks_until_catch_up_applies_them(
    engine: Engine, database_url: str, job_factory: JobFactory
) -> None:
    job = job_factory(JobStatus.RUNNING)
    catch_up_current_status(engine)
    write_past_the_projection(database_url, job.job_id, job.version, steps=3)

    assert figures(engine).projection_lag == 3

    wait_until_the_feed_shows_every_event(database_url)
    catch_up_current_status(engine)
    assert figures(engine).projection_lag == 0


def test_following_the_log_applies_what_rows_lack_and_moves_the_checkpoint_past_it(
    engine: Engine, database_url: str, store: EventStore, job_factory: JobFactory
) -> None:
    job = job_factory(JobStatus.RUNNING)
    wait_until_the_feed_shows_every_event(database_url)
    catch_up_current_status(engine)
    job_factory(JobStatus.QUEUED)
    write_past_the_projection(database_url, job.job_id, job.version, steps=2)
    wait_until_the_feed_shows_every_event(database_url)

    followed = follow_log(engine)

    assert not followed.rebuilt
    assert followed.events_read == 3 and followed.jobs_repaired == 1
    assert events_after_checkpoint(database_url) == 0
    assert figures(engine).projection_lag == 0
    loaded = store.load(job.job_id)
    assert loaded is not None and loaded.checkpoint_step == 2
    assert follow_log(engine).events_read == 0


def test_following_the_log_leaves_a_projection_of_another_version_to_its_code(
    engine: Engine, database_url: str, job_factory: JobFactory
) -> None:
    catch_up_current_status(engine)
    job_factory(JobStatus.QUEUED)
    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.execute("UPDATE projection_checkpoints SET version = version + 1")

    assert follow_log(engine).events_read == 0
    with psycopg.connect(libpq_url(database_url)) as conn:
        checkpoint = read_checkpoint(conn, current_status.NAME)
    assert checkpoint is not None and checkpoint.version == current_status.VERSION + 1


def test_a_run_whose_lease_lapsed_is_counted_orphaned_and_not_alive(
    engine: Engine, database_url: str, job_factory: JobFactory
) -> None:
    dead = job_factory(JobStatus.RUNNING)
    job_factory(JobStatus.RUNNING)
    job_factory(JobStatus.PAUSED)
    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.execute(
            "UPDATE job_leases SET expires_at = now() - interval '1 minute' WHERE job_id = %s",
            (dead.job_id,),
        )

    read = figures(engine)

    assert (read.running, read.running_alive, read.orphaned) == (2, 1, 1)


def test_the_queue_is_counted_with_the_age_of_its_oldest_job(
    engine: Engine, database_url: str, job_factory: JobFactory
) -> None:
    assert figures(engine).oldest_queued_age_s is None
    oldest = job_factory(JobStatus.QUEUED)
    job_factory(JobStatus.QUEUED)
    job_factory(JobStatus.PENDING)
    with psycopg.connect(libpq_url(database_url)) as conn:
        conn.execute(
            "UPDATE job_status SET status_changed_at = now() - interval '2 hours', "
            "queued_at = now() - interval '2 hours' WHERE job_id = %s",
            (oldest.job_id,),
        )

    read = figures(engine)

    assert read.queued == 2
    assert read.oldest_queued_age_s is not None and 7200 <= read.oldest_queued_age_s < 7300
    assert read.stale_pending == 0
    assert read_ledger_figures(engine, 0.0).stale_pending == 1
