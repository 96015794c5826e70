"""The event stream's watcher: it wakes the open streams when the log moves."""

import asyncio

from api.stream import IDLE_WAKE_S, FeedWatcher
from ledger.commands import RegisterJob
from ledger.service import JobService


def test_an_append_wakes_every_subscribed_stream_well_before_their_idle_look(
    database_url: str, service: JobService
) -> None:
    watcher = FeedWatcher(database_url)

    async def scenario() -> None:
        first, second = watcher.subscribe(), watcher.subscribe()
        await asyncio.wait_for(first.wait(), IDLE_WAKE_S)  # its first look at the head
        first.clear()
        second.clear()
        await asyncio.to_thread(service.execute, "watched", RegisterJob(), actor="t")
        await asyncio.wait_for(asyncio.gather(first.wait(), second.wait()), timeout=IDLE_WAKE_S / 2)
        watcher.unsubscribe(second)
        second.clear()
        await asyncio.to_thread(service.execute, "watched-2", RegisterJob(), actor="t")
        await asyncio.wait_for(first.wait(), timeout=IDLE_WAKE_S / 2)
        assert not second.is_set()

    try:
        asyncio.run(scenario())
    finally:
        watcher.close()
