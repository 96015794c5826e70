"""`BoundedRead`: a blocking read that callers wait for a bounded time, sharing it."""

import asyncio
import threading

import pytest

from api.bounded_read import BoundedRead


def test_callers_that_ask_together_share_one_read_and_stop_waiting_at_the_timeout() -> None:
    calls = 0
    release = threading.Event()

    def hanging_read() -> str:
        nonlocal calls
        calls += 1
        release.wait(10)
        return "read"

    read = BoundedRead(hanging_read, timeout_s=0.2)

    async def ask_three_times() -> list[BaseException | str]:
        return list(await asyncio.gather(read(), read(), read(), return_exceptions=True))

    try:
        answers = asyncio.run(ask_three_times())
    finally:
        release.set()
    assert [type(answer) for answer in answers] == [TimeoutError] * 3
    assert calls == 1, "one thread held by a hanging database, not one per caller"


def test_a_read_that_answers_in_time_is_its_answer_and_its_error_is_raised() -> None:
    assert asyncio.run(BoundedRead(lambda: 42, timeout_s=5)()) == 42

    def failing_read() -> int:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        asyncio.run(BoundedRead(failing_read, timeout_s=5)())
