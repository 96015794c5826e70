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
Only a job whose status changed after T needs the fold to say what it was, so a page
with a status filter also folds, up to T, the jobs registered by T whose status has
changed since (all of them, or when the unchanged ones fill the page, those newer than
its oldest): the jobs in flight at T and any touched since, few when those have long
finished, all of them after a change of every job at once.
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
from projections.current_status.fold_in_database import fold_events_sql


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
cannot be on it: only the newer ones of those that changed are folded."""


def _registered_jobs(*conditions: str) -> str:
    """Jobs registered by the moment, beyond the cursor, matching the search and
    `conditions`: (job_id, created_at), newest first, a page and one more."""
    return f"""
        SELECT s.job_id, s.created_at FROM job_status s
        WHERE {" AND ".join(conditions)}
        {_NEWEST_FIRST}
    """


def _statuses_changed_since(chosen: str) -> str:
    """Jobs registered by the moment whose status changed after it, beyond the cursor and
    matching the search, whose status at the moment (by the fold) is `%(status)s`."""
    changed = f"SELECT s.job_id FROM job_status s WHERE {CHANGED_SINCE} AND {chosen}"
    fold = fold_events_sql(f"recorded_at <= %(as_of)s AND job_id IN ({changed})")
    return f"""
        SELECT f.job_id, f.created_at FROM ({fold}) f
        WHERE f.status = %(status)s
        {_NEWEST_FIRST}
    """


def past_page_sql(*, by_status: bool, after_cursor: bool, search: str | None) -> str:
    """One statement: the page's jobs chosen as the module says, then their events up to
    the moment folded into rows, newest first (a page and one more)."""
    chosen = [_REGISTERED_BY]
    if after_cursor:
        chosen.append(_AFTER_CURSOR)
    if search:
        chosen.append(matching_ids(search))
    if by_status:
        unchanged = ["s.status = %(status)s", "s.status_changed_at <= %(as_of)s"]
        page = f"""
            WITH unchanged AS MATERIALIZED ({_registered_jobs(*chosen, *unchanged)}),
            full_page_ends AS (
                SELECT created_at, job_id FROM unchanged
                WHERE (SELECT count(*) FROM unchanged) = %(limit)s
                ORDER BY created_at, job_id LIMIT 1
            )
            SELECT job_id, created_at FROM (
                SELECT * FROM unchanged
                UNION ALL
                ({_statuses_changed_since(" AND ".join([*chosen, _WITHIN_A_FULL_PAGE]))})
            ) either
            {_NEWEST_FIRST}
        """
    else:
        page = _registered_jobs(*chosen)
    fold = fold_events_sql("recorded_at <= %(as_of)s AND job_id IN (SELECT job_id FROM page)")
    return f"""
        WITH page AS MATERIALIZED ({page})
        SELECT {LISTED_STATUS_SELECT} FROM ({fold}) s
        ORDER BY s.created_at DESC, s.job_id DESC
    """


class PastLedger:
    """Reads the ledger as it was at a moment, from the log alone (and, to choose the jobs
    of a page, the current projection's index of them)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

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
            **page_params(search, after, limit),
        }
        with self.store.transaction() as conn:
            rows = conn.execute(query, params).fetchall()
        jobs, next_cursor = page_of(rows, limit)
        return PastJobsPage(jobs=jobs, next_cursor=next_cursor, as_of=at)
