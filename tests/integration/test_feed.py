"""The global feed never skips an event that commits late, and never repeats one."""

import psycopg

from ledger.commands import RegisterJob
from ledger.database import libpq_url
from ledger.service import JobService
from ledger.store import EventStore, FeedCursor


def read_all(store: EventStore, cursor: FeedCursor) -> tuple[list[str], FeedCursor]:
    seen: list[str] = []
    while True:
        page = store.read_feed(cursor, limit=2)
        if not page.events:
            return seen, cursor
        seen.extend(f"{e.job_id}:{e.seq}" for e in page.events)
        cursor = page.next_cursor


def test_an_event_committed_late_is_delivered_once_after_the_earlier_transaction_commits(
    service: JobService, store: EventStore, database_url: str
) -> None:
    service.execute("before", RegisterJob(), actor="a")
    seen, cursor = read_all(store, FeedCursor())
    assert seen == ["before:1"]

    with psycopg.connect(libpq_url(database_url)) as slow:
        # The slow writer takes its transaction id (and position) first...
        slow.execute(
            "INSERT INTO job_events (job_id, seq, type, payload, actor) "
            "VALUES ('slow', 1, 'job_registered', '{\"initial_status\": \"queued\"}', 'slow')"
        )
        # ...a fast writer commits after it, with a later position.
        service.execute("fast", RegisterJob(), actor="fast")

        held_back, cursor = read_all(store, cursor)
        assert held_back == [], "the fast event must wait for the slow transaction"
        slow.commit()

    delivered, cursor = read_all(store, cursor)
    assert delivered == ["slow:1", "fast:1"]
    again, _ = read_all(store, cursor)
    assert again == []


def test_the_feed_pages_through_every_event_in_order(
    service: JobService, store: EventStore
) -> None:
    for index in range(7):
        service.execute(f"job-{index}", RegisterJob(), actor="a")
    seen, cursor = read_all(store, FeedCursor())
    assert seen == [f"job-{index}:1" for index in range(7)]
    assert FeedCursor.parse(str(cursor)) == cursor


def test_an_aborted_transaction_leaves_nothing_in_the_feed(
    service: JobService, store: EventStore, database_url: str
) -> None:
    with psycopg.connect(libpq_url(database_url)) as aborted:
        aborted.execute(
            "INSERT INTO job_events (job_id, seq, type, payload, actor) "
            "VALUES ('gone', 1, 'job_registered', '{\"initial_status\": \"queued\"}', 'x')"
        )
        service.execute("kept", RegisterJob(), actor="a")
        aborted.rollback()
    seen, _ = read_all(store, FeedCursor())
    assert seen == ["kept:1"]
