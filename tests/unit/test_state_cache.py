"""A process's cache of recently written job states."""

from datetime import UTC, datetime

from ledger.state import JobState
from ledger.state_cache import StateCache
from ledger.statuses import JobStatus

AT = datetime(2026, 1, 1, tzinfo=UTC)


def state(job_id: str, version: int = 1) -> JobState:
    return JobState(job_id, JobStatus.QUEUED, version, AT, AT, AT)


def test_a_state_put_is_got_back() -> None:
    cache = StateCache(2)
    cache.put(state("a"))
    assert cache.get("a") == state("a")
    assert cache.get("b") is None


def test_the_least_recently_used_state_is_evicted_first() -> None:
    cache = StateCache(2)
    cache.put(state("a"))
    cache.put(state("b"))
    cache.get("a")  # now "b" is the least recently used
    cache.put(state("c"))
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (state("a"), None, state("c"))


def test_a_newer_state_is_never_replaced_by_an_older_one() -> None:
    cache = StateCache(2)
    cache.put(state("a", version=3))
    cache.put(state("a", version=2))
    assert cache.get("a") == state("a", version=3)
    cache.put(state("a", version=4))
    assert cache.get("a") == state("a", version=4)


def test_a_cache_of_size_zero_keeps_nothing() -> None:
    cache = StateCache(0)
    cache.put(state("a"))
    assert cache.get("a") is None


def test_a_dropped_state_is_gone_and_an_older_one_may_follow() -> None:
    cache = StateCache(2)
    cache.put(state("a", version=3))
    cache.drop("a")
    assert cache.get("a") is None
    cache.put(state("a", version=2))
    assert cache.get("a") == state("a", version=2)
    cache.drop("never-cached")


def test_a_batch_of_states_is_kept_as_each_would_be_put() -> None:
    cache = StateCache(3)
    cache.put(state("a", version=5))
    cache.put_many([state("a", version=2), state("b"), state("c"), state("d")])
    # "a" kept its newer version, then was the least recently used of four: evicted.
    assert [cache.get(job_id) for job_id in "abcd"] == [None, state("b"), state("c"), state("d")]
    cache.put_many([state("b", version=2), state("e")])
    assert (cache.get("b"), cache.get("c"), cache.get("e")) == (
        state("b", version=2),
        None,
        state("e"),
    )
