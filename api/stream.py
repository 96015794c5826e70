"""`GET /v1/events/stream`: Server-Sent Events of the ordered feed, woken by LISTEN/NOTIFY.

A NOTIFY only wakes the readers; what they send is always read from the
ordered feed after their cursor, so an event that commits late is sent late,
never skipped. Without a notification a reader still looks every few seconds.
"""

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

from api.auth import READ, TokenBook
from api.bootstrap import Ledger
from api.presenters import feed_event
from api.routes_observe import feed_cursor
from ledger.database import libpq_url
from ledger.store import FeedCursor

log = logging.getLogger(__name__)

CHANNEL = "jobledger_events"
IDLE_WAKE_S = 5.0
RECHECK_S = 0.2
RECHECKS = 10
"""After a wake, look again every RECHECK_S for a while: an event that committed is
held back from the feed while an older transaction still runs, and its own
notification has already been spent."""


class FeedWaker:
    """One LISTEN connection per process, waking every open stream on each notification."""

    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="feed-waker", daemon=True)
        self._started = False

    def subscribe(self) -> asyncio.Event:
        if not self._started:
            self._started = True
            self._thread.start()
        event = asyncio.Event()
        with self._lock:
            self._waiters.add((asyncio.get_running_loop(), event))
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters = {item for item in self._waiters if item[1] is not event}

    def close(self) -> None:
        self._stop.set()

    def _wake_all(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(event.set)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._wake_all()
            except psycopg.Error as exc:
                log.warning("event stream listener lost its connection: %s", exc)
                self._wake_all()
                self._stop.wait(1.0)


def stream_endpoint(
    ledger: Ledger, tokens: TokenBook, waker: FeedWaker
) -> Callable[[Request], Awaitable[StreamingResponse]]:
    async def stream(request: Request) -> StreamingResponse:
        tokens.caller(request, READ)
        raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0-0"
        cursor = await run_in_threadpool(feed_cursor, ledger, raw)

        return StreamingResponse(
            _events(request, ledger, waker, cursor), media_type="text/event-stream"
        )

    return stream


async def _events(
    request: Request, ledger: Ledger, waker: FeedWaker, cursor: FeedCursor
) -> AsyncIterator[bytes]:
    wake = waker.subscribe()
    rechecks = 0
    try:
        yield b": connected\n\n"
        while not await request.is_disconnected():
            wake.clear()
            page = await run_in_threadpool(ledger.store.read_feed, cursor, 500)
            for event in page.events:
                data = orjson.dumps(feed_event(event).model_dump(mode="json"))
                yield b"id: %s\nevent: %s\ndata: %s\n\n" % (
                    str(FeedCursor(event.tx_id or 0, event.position or 0)).encode(),
                    event.type.encode(),
                    data,
                )
            cursor = page.next_cursor
            if len(page.events) == 500:
                continue
            timeout = RECHECK_S if rechecks else IDLE_WAKE_S
            try:
                await asyncio.wait_for(wake.wait(), timeout)
                rechecks = RECHECKS
            except TimeoutError:
                rechecks = max(0, rechecks - 1)
                if not rechecks:
                    yield b": keep-alive\n\n"
    finally:
        waker.unsubscribe(wake)
