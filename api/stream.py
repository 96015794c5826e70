"""`GET /v1/events/stream`: Server-Sent Events of the ordered feed.

One watcher per process looks at the head of the log a few times a second and
wakes every open stream when it moved; what a stream sends is always read from
the ordered feed after its cursor, so an event that commits late is sent late,
never skipped. (LISTEN/NOTIFY would wake streams sooner, but every notifying
commit takes one global lock: it cost appends a third of their rate at 16
writers.)

Every open stream holds a connection and wakes with the others: a process serves
`JOBLEDGER_MAX_STREAMS` at most (past it a 503 problem, retry shortly), a token
`JOBLEDGER_MAX_STREAMS_PER_CALLER` (past it a 429 problem). A stream's slot is given
back when it ends, however it ends; a client that reconnects with `Last-Event-ID`
resumes after the last event it saw.
"""

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
import psycopg
from fastapi import Depends, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from api.auth import Caller, Reader
from api.bootstrap import Ledger
from api.params import BlankIsAbsent, FeedAfter, TheLedger
from api.presenters import feed_event
from api.problems import RETRY_AFTER_S
from api.routes_observe import feed_cursor
from api.routing import api_router
from ledger.database import libpq_url
from ledger.errors import StorageError, TooManyStreams, TooManyStreamsOfCaller
from ledger.queries import SNAPSHOT_XMIN
from ledger.store import FeedCursor, FeedPage

log = logging.getLogger(__name__)

WATCH_EVERY_S = 0.25
IDLE_WAKE_S = 5.0
"""A stream with nothing to send says so this often (an SSE comment), so proxies keep it."""

RETRY_AFTER_MS = RETRY_AFTER_S * 1000
"""A stream that ended because the database is away asks the client to reconnect after this."""

router = api_router(401, 403, 422, 429, 503)

LOG_HEAD = f"SELECT (SELECT max(position) FROM job_events), {SNAPSHOT_XMIN}::text"
"""Where the log ends, and below which transaction the feed may read: when either
moves, a stream may have something new to send (an event held back by an older
transaction becomes readable when that transaction ends and the horizon moves)."""


class FeedWatcher:
    """One watching connection per process, waking every open stream when the log moves."""

    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="feed-watcher", daemon=True)
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

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Stops watching and wakes every open stream, which then ends: a server that
        stops calls this first, since a stream never ends on its own."""
        self._stop.set()
        self._wake_all()

    def _wake_all(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(self._wake, loop, event)

    def _wake(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        """On the stream's own loop: a stream that unsubscribed since is not woken."""
        with self._lock:
            subscribed = (loop, event) in self._waiters
        if subscribed:
            event.set()

    def _watch(self) -> None:
        seen: tuple[object, ...] | None = None
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    while not self._stop.is_set():
                        head = conn.execute(LOG_HEAD).fetchone()
                        if head != seen:
                            seen = head
                            self._wake_all()
                        self._stop.wait(WATCH_EVERY_S)
            except psycopg.Error as exc:
                log.warning("event stream watcher lost its connection: %s", exc)
                self._wake_all()
                self._stop.wait(1.0)


class StreamSlots:
    """The event streams a process has open, in all and by caller. Taken and given back
    on the event loop's thread only: no lock."""

    def __init__(self, most: int, most_per_caller: int) -> None:
        self.most = most
        self.most_per_caller = most_per_caller
        self.by_caller: Counter[str] = Counter()

    @property
    def open(self) -> int:
        return self.by_caller.total()

    def take(self, caller: Caller) -> None:
        """One more stream for `caller`, or the refusal that says whose limit it is.
        Without tokens every caller is the same anonymous one: only the process's limit
        holds."""
        if self.open >= self.most:
            raise TooManyStreams(self.most)
        if caller.role is not None and self.by_caller[caller.name] >= self.most_per_caller:
            raise TooManyStreamsOfCaller(caller.name, self.most_per_caller)
        self.by_caller[caller.name] += 1

    def give_back(self, caller: Caller) -> None:
        self.by_caller[caller.name] -= 1
        if self.by_caller[caller.name] <= 0:
            del self.by_caller[caller.name]


def stream_slots_of(request: Request, ledger: TheLedger) -> StreamSlots:
    """The app's stream slots, made from its ledger's settings at the first stream."""
    slots: StreamSlots | None = getattr(request.app.state, "stream_slots", None)
    if slots is None:
        settings = ledger.settings
        slots = StreamSlots(settings.max_streams, settings.max_streams_per_caller)
        request.app.state.stream_slots = slots
    return slots


def streams_open(request: Request) -> int:
    """How many event streams the app serves now."""
    slots: StreamSlots | None = getattr(request.app.state, "stream_slots", None)
    return 0 if slots is None else slots.open


async def stream_slot(
    caller: Reader, slots: Annotated[StreamSlots, Depends(stream_slots_of)]
) -> AsyncIterator[None]:
    """A slot held while the stream is open: taken before it starts (so a refusal is a
    problem, not a broken stream), given back when it ends, however it ends."""
    slots.take(caller)
    try:
        yield
    finally:
        slots.give_back(caller)


def stream_cursor(
    ledger: TheLedger,
    after: Annotated[FeedAfter, Query(description="a cursor, or now"), BlankIsAbsent] = "0-0",
    last_event_id: Annotated[
        FeedAfter | None, Header(alias="Last-Event-ID", description="resume after this event")
    ] = None,
) -> FeedCursor:
    """Where the stream starts: after the last event a reconnecting client saw, else `after`.
    Read before the stream opens, so a bad cursor or an unreachable database is a problem
    (the database is asked even when the client names the cursor)."""
    cursor = feed_cursor(ledger, last_event_id or after)
    ledger.store.feed_head()
    return cursor


@router.get(
    "/v1/events/stream",
    summary="the global event feed as Server-Sent Events",
    response_class=EventSourceResponse,
)
async def stream(
    caller: Reader,
    request: Request,
    ledger: TheLedger,
    cursor: Annotated[FeedCursor, Depends(stream_cursor)],
    _slot: Annotated[None, Depends(stream_slot)],
) -> AsyncIterator[ServerSentEvent]:
    """Each event of the feed as it commits: its cursor is the SSE id, its type the SSE
    event, its feed entry (JSON) the data."""
    watcher = watcher_of(request)
    wake = watcher.subscribe()
    try:
        yield ServerSentEvent(comment="connected")
        while True:
            wake.clear()
            if watcher.closed:  # the server stops: the client reconnects to the next one
                yield ServerSentEvent(comment="server stopping", retry=RETRY_AFTER_MS)
                return
            try:
                page = await run_in_threadpool(read_feed_without_specs, ledger, cursor)
            except StorageError as exc:
                # The stream ends cleanly: the client reconnects with Last-Event-ID.
                log.info("event stream ended: %s", exc)
                yield ServerSentEvent(comment="database unavailable", retry=RETRY_AFTER_MS)
                return
            for event in page.events:
                entry = feed_event(event, page.spec_bytes.get(event[:2]))
                yield ServerSentEvent(
                    id=entry.cursor,
                    event=entry.type,
                    raw_data=orjson.dumps(entry.model_dump(mode="json")).decode(),
                )
            cursor = page.next_cursor
            if len(page.events) == 500:
                continue
            try:
                await asyncio.wait_for(wake.wait(), IDLE_WAKE_S)
            except TimeoutError:
                yield ServerSentEvent(comment="keep-alive")
    finally:
        watcher.unsubscribe(wake)


def read_feed_without_specs(ledger: Ledger, cursor: FeedCursor) -> FeedPage:
    return ledger.store.read_feed(cursor, 500, specs=False)


def watcher_of(request: Request) -> FeedWatcher:
    watcher: FeedWatcher = request.app.state.watcher
    return watcher
