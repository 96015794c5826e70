"""The ledger as it was at a moment: a job, or a page of jobs, from the events recorded by then.

A job as of T is the fold of its events recorded at or before T: one job by `evolve`,
a page of jobs by the rebuild's fold inside PostgreSQL (`fold_in_database`) restricted
to those events. Each append is a transaction of its own and stamps its events with
its clock, so a job's events recorded by T are the first ones of its history.

A page folds the events of its own jobs only. The jobs that existed at T are those
registered by then (their `created_at`), and the projection's `(created_at, job_id)`
index lists them newest first without reading anyone's events. A status filter asks
which jobs were in that status at T. For a job whose status has not changed since T
(`status_changed_at <= T`) the projection answers: its status then is its status now.
For a job whose status changed after T, its status then is the one its last event
setting a status recorded by T reached (`SETS_STATUS`, `status_reached_sql`: the fold's
own rule), one short read of its events.

So a page with a status filter first reads the newest jobs (`NEWEST_READ` of them) one
by one, newest first, and stops when it has a page: a status common at T costs about a
page, however many jobs changed since. Only when they hold less than a page does it look
further back: the unchanged jobs in that status by the projection's index, and the jobs
that changed since T (found by the index of their unchanged spans; those newer than the
oldest unchanged one when these fill the page), newest first, each one's status then
read until the page is full. A status rare at T among very many jobs that changed since
(after a change of every job at once) reads the status then of every one of them.
"""

from dataclasses import dataclass
from datetime import datetime

from ledger.errors import JobNotFound
from ledger.events import RecordedEvent
from ledger.evolve import UnreadableRegistration, evolve
from ledger.job_listing import JobsCursor, page_of, page_params
from ledger.queries import LISTED_STATUS_SELECT, matching_ids
from ledger.schema import UNCHANGED_SPAN
from ledger.state import JobState
from ledger.statuses import JobStatus
from ledger.store import EventStore
from projections.current_status.fold_in_database import (
    SETS_STATUS,
    fold_events_sql,
    status_reached_sql,
)


def parse_moment(text: str) -> datetime:
    """A moment written in ISO 8601 with its time zone (`2026-11-30T14:00:00Z`); raises
    ValueError for anything else, a moment without a time zone too: it would be read in
    whichever zone the server runs in."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"no time zone in {text!r}")
    return moment


def state_at(events: list[RecordedEvent]) -> JobState | None:
    """The job as its first `events` (in seq order) leave it; None without a job to fold:
    no event, or a registration this code cannot read."""
    state: JobState | None = None
    for event in events:
        if event.seq != (state.version if state else 0) + 1:
            break  # recorded out of order with its job's clock: the history ends before
        try:
            state = evolve(state, event)
        except UnreadableRegistration:
            return None
    return state


@dataclass(frozen=True, slots=True)
class PastJobsPage:
    jobs: list[JobState]
    """Newest first, as they were at `as_of`, without their specs and results."""
    next_cursor: JobsCursor | None  # None on the last page
    as_of: datetime


_REGISTERED_BY = "s.created_at <= %(as_of)s"
CHANGED_SINCE = f"{UNCHANGED_SPAN} @> %(as_of)s::timestamptz"
"""Job `s` was registered by the moment and its status changed after it: the moment falls
in the span its status has not changed since registering (an index of the spans finds
them, however many jobs were registered before the moment or changed after it)."""
_AFTER_CURSOR = "(s.created_at, s.job_id) < (%(created_at)s, %(job_id)s)"
_NEWEST_FIRST = "ORDER BY created_at DESC, job_id DESC LIMIT %(limit)s"
_WITHIN_A_FULL_PAGE = (
    "NOT EXISTS (SELECT 1 FROM full_page_ends e "
    "WHERE (s.created_at, s.job_id) < (e.created_at, e.job_id))"
)
"""When the jobs whose status has not changed fill a page, a job older than all of them
cannot be on it: only the newer ones of those that changed are read."""

NEWEST_READ = 1_000
"""The newest jobs (registered by the moment, beyond the cursor, matching the search) whose
status then is read one by one, newest first, until a page is found among them: enough
for a status one job in twenty had, few enough that reading them all costs little."""
_BEYOND_THE_NEWEST = (
    "EXISTS (SELECT 1 FROM beyond) AND (s.created_at, s.job_id) < "
    "((SELECT created_at FROM beyond), (SELECT job_id FROM beyond))"
)
"""Job `s` is older than the newest read, which found less than a page (and nothing at
all when they found a page: the statement reads no further)."""

_STATUS_THEN = f"""
    SELECT {status_reached_sql("e").format(e="e")} FROM job_events e
    WHERE e.job_id = c.job_id AND e.recorded_at <= %(as_of)s AND e.{SETS_STATUS}
    ORDER BY e.seq DESC LIMIT 1
"""
"""The status job `c` had at the moment: the one its last event setting a status recorded
by then reached, as the fold has it; one short read of the job's events, newest first."""


def _registered_jobs(*conditions: str, limit: str = "%(limit)s") -> str:
    """Jobs registered by the moment, beyond the cursor, matching the search and
    `conditions`: (job_id, created_at, status, status_changed_at), newest first, `limit`
    of them (a page and one more)."""
    return f"""
        SELECT s.job_id, s.created_at, s.status, s.status_changed_at FROM job_status s
        WHERE {" AND ".join(conditions)}
        ORDER BY created_at DESC, job_id DESC LIMIT {limit}
    """


def _newest_in_status(chosen: list[str]) -> str:
    """The newest `%(newest_read)s` jobs chosen, in `%(status)s` at the moment, newest first, up
    to a page: the status of one whose status has not changed since is its status now, any
    other's is read from its events, and reading ends with the page."""
    status_then = f"""CASE WHEN c.status_changed_at <= %(as_of)s THEN c.status
                      ELSE ({_STATUS_THEN}) END"""
    return f"""
        SELECT c.job_id, c.created_at FROM ({_registered_jobs(*chosen, limit="%(newest_read)s")}) c
        WHERE {status_then} = %(status)s
        {_NEWEST_FIRST}
    """


def _statuses_changed_since(chosen: str) -> str:
    """Jobs registered by the moment whose status changed after it, beyond the cursor and
    matching the search, whose status at the moment was `%(status)s`, newest first: each
    one's status then read from its events."""
    return f"""
        SELECT c.job_id, c.created_at FROM (
            SELECT s.job_id, s.created_at FROM job_status s
            WHERE {CHANGED_SINCE} AND {chosen}
            ORDER BY s.created_at DESC, s.job_id DESC
        ) c
        WHERE ({_STATUS_THEN}) = %(status)s
        {_NEWEST_FIRST}
    """


def _in_status_sql(chosen: list[str]) -> str:
    """The page's jobs with a status filter: those of the newest jobs found in that status
    then; if they are less than a page, the older jobs in it too: those whose status has
    not changed since (by the projection's index of statuses), and of those that changed
    (by the index of spans), each one's status then read from its events."""
    older = [*chosen, _BEYOND_THE_NEWEST]
    unchanged = ["s.status = %(status)s", "s.status_changed_at <= %(as_of)s"]
    return f"""
        WITH newest AS MATERIALIZED ({_newest_in_status(chosen)}),
        beyond AS (
            SELECT created_at, job_id FROM job_status s
            WHERE (SELECT count(*) FROM newest) < %(limit)s AND {" AND ".join(chosen)}
            ORDER BY created_at DESC, job_id DESC OFFSET %(newest_read)s - 1 LIMIT 1
        ),
        unchanged AS MATERIALIZED ({_registered_jobs(*older, *unchanged)}),
        full_page_ends AS (
            SELECT created_at, job_id FROM unchanged
            WHERE (SELECT count(*) FROM unchanged) = %(limit)s
            ORDER BY created_at, job_id LIMIT 1
        )
        SELECT job_id, created_at FROM (
            SELECT * FROM newest
            UNION ALL
            SELECT job_id, created_at FROM unchanged
            UNION ALL
            ({_statuses_changed_since(" AND ".join([*older, _WITHIN_A_FULL_PAGE]))})
        ) either
        {_NEWEST_FIRST}
    """


SHORT_READS = ("SET LOCAL jit = off", "SET LOCAL max_parallel_workers_per_gather = 0")
"""A page reads a page, but its plan is costed as if it read every branch that its first
branch makes needless: compiling it took longer (about 100 ms) than running it, and
parallel workers, each started in some 10 ms, walked the newest jobs past the page."""


def past_page_sql(*, by_status: bool, after_cursor: bool, search: str | None) -> str:
    """One statement: the page's jobs chosen as the module says, then their events up to
    the moment folded into rows, newest first (a page and one more)."""
    chosen = [_REGISTERED_BY]
    if after_cursor:
        chosen.append(_AFTER_CURSOR)
    if search:
        chosen.append(matching_ids(search))
    page = _in_status_sql(chosen) if by_status else _registered_jobs(*chosen)
    fold = fold_events_sql("recorded_at <= %(as_of)s AND job_id IN (SELECT job_id FROM page)")
    return f"""
        WITH page AS MATERIALIZED ({page})
        SELECT {LISTED_STATUS_SELECT} FROM ({fold}) s
        ORDER BY s.created_at DESC, s.job_id DESC
    """


class PastLedger:
    """Reads the ledger as it was at a moment, from the log alone (and, to choose the jobs
    of a page, the current projection's index of them)."""

    def __init__(self, store: EventStore, *, newest_read: int = NEWEST_READ) -> None:
        self.store = store
        self.newest_read = newest_read

    def job(self, job_id: str, at: datetime) -> JobState:
        """The job as it was at `at`; `JobNotFound` when it was not registered by then."""
        state = state_at(self.store.history(job_id, until=at))
        if state is None:
            raise JobNotFound(job_id)
        return state

    def page(
        self,
        at: datetime,
        status: JobStatus | None = None,
        *,
        search: str | None = None,
        after: JobsCursor | None = None,
        limit: int = 50,
    ) -> PastJobsPage:
        """A page of the jobs registered by `at`, newest first, as they were then; with
        `status`, of those in that status then."""
        query = past_page_sql(
            by_status=status is not None, after_cursor=after is not None, search=search or None
        )
        params = {
            "as_of": at,
            "status": status,
            "newest_read": self.newest_read,
            **page_params(search, after, limit),
        }
        with self.store.transaction() as conn:
            for setting in SHORT_READS:
                conn.execute(setting)
            rows = conn.execute(query, params).fetchall()
        jobs, next_cursor = page_of(rows, limit)
        return PastJobsPage(jobs=jobs, next_cursor=next_cursor, as_of=at)
