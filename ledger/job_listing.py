"""Jobs as an operator browses them: newest first, filtered, counted, keyset-paged."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.queries import (
    EXACT_COUNT,
    EXACT_SEARCH_COUNT,
    STATUS_ESTIMATES,
    bounded_status_counts,
    jobs_newest_first,
    search_pattern,
)
from ledger.state import JobState
from ledger.statuses import JobStatus
from ledger.store import EventStore, state_from_row

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class JobsCursor:
    """Where a page of jobs ended: the (created_at, job_id) of its last, oldest job."""

    created_at: datetime
    job_id: str

    def __str__(self) -> str:
        # Microseconds since the epoch: exact, and safe in a URL as it is.
        return f"{(self.created_at - EPOCH) // MICROSECOND}~{self.job_id}"

    @classmethod
    def parse(cls, text: str) -> "JobsCursor":
        """Raises ValueError for text that no page ever returned."""
        micros, separator, job_id = text.partition("~")
        if not separator or not job_id or not micros.lstrip("-").isdigit():
            raise ValueError(f"not a jobs cursor: {text!r}")
        try:
            return cls(EPOCH + int(micros) * MICROSECOND, job_id)
        except OverflowError:
            raise ValueError(f"not a jobs cursor: {text!r}") from None


def page_params(search: str | None, after: JobsCursor | None, limit: int) -> dict[str, Any]:
    """The parameters of a page's query: the search's pattern, where the page before
    ended, and how many rows to read (a page and one more, to know whether one follows)."""
    return {
        "pattern": search_pattern(search) if search else None,
        "created_at": after.created_at if after else None,
        "job_id": after.job_id if after else None,
        "limit": limit + 1,
    }


def page_of(rows: Sequence[Sequence[Any]], limit: int) -> tuple[list[JobState], JobsCursor | None]:
    """The jobs of a page read by `page_params`' limit, and the cursor of the next page."""
    jobs = [state_from_row(row) for row in rows[:limit]]
    last = jobs[-1] if len(rows) > limit else None
    return jobs, JobsCursor(last.created_at, last.job_id) if last else None


@dataclass(frozen=True, slots=True)
class JobsPage:
    jobs: list[JobState]
    next_cursor: JobsCursor | None  # None on the last page
    counts: dict[JobStatus, int]  # every status, of the jobs the search matches
    as_of: datetime  # the database clock when the page was read
    estimated: frozenset[JobStatus] = frozenset()
    """Statuses whose count is not exact: past `EXACT_COUNT` jobs, the planner's estimate;
    with a search matching more than `EXACT_SEARCH_COUNT` jobs, the count among the first
    `EXACT_SEARCH_COUNT` + 1 matches ("at least")."""


class JobListing:
    """Reads pages of jobs from the current-status projection."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def page(
        self,
        status: JobStatus | None = None,
        *,
        search: str | None = None,
        after: JobsCursor | None = None,
        limit: int = 50,
    ) -> JobsPage:
        """One page and the counts beside it, read in one transaction so they agree."""
        params = {
            "status": status,
            "statuses": [str(each) for each in JobStatus],
            **page_params(search, after, limit),
        }
        # A search's best plan depends on its pattern (a few ids or every one): planned
        # afresh each time, never from a statement prepared for another pattern.
        prepare = False if search else None
        with self.store.transaction() as conn:
            counts_query = bounded_status_counts(search=search or None)
            counted = conn.execute(counts_query, params, prepare=prepare).fetchall()
            counts = dict.fromkeys(JobStatus, 0) | {JobStatus(s): int(n) for s, n in counted}
            many_matches = bool(search) and sum(counts.values()) > EXACT_SEARCH_COUNT
            query = jobs_newest_first(
                by_status=status is not None, after_cursor=after is not None, search=search or None
            )
            rows = conn.execute(query, params, prepare=prepare).fetchall()
            if many_matches:
                estimated = frozenset(JobStatus)  # counts of the first matches only
            else:
                estimated = frozenset(s for s, n in counts.items() if n > EXACT_COUNT)
            if estimated and not search:
                guesses = dict(conn.execute(STATUS_ESTIMATES).fetchall())
                for each in estimated:
                    counts[each] = max(int(guesses.get(str(each), 0)), EXACT_COUNT + 1)
            as_of_row = conn.execute("SELECT now()").fetchone()
        assert as_of_row is not None
        jobs, next_cursor = page_of(rows, limit)
        return JobsPage(
            jobs=jobs,
            next_cursor=next_cursor,
            counts=counts,
            as_of=as_of_row[0],
            estimated=estimated,
        )
