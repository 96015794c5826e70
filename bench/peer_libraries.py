"""procrastinate and pgqueuer, the PostgreSQL queue libraries `bench.peers` compares with.

Both are asynchronous. Each client is still one thread, as every other system's is,
with an event loop and a connection of its own: an operation is one `await` of the
library's own calls, run to completion on that loop. Installed with the `bench` extra.

- procrastinate: the job manager (`defer_job_async`, `fetch_job`, `finish_job`), the
  calls its worker makes, on a `PsycopgConnector` of one connection.
- pgqueuer: the `Queries` API (`enqueue`, `dequeue`, `log_jobs`), as its queue
  manager calls it, on a `PsycopgDriver` over one autocommit connection.
"""

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import orjson
import psycopg

from bench.peer_clients import CLAIM_TRIES, job_spec
from bench.threads import BenchError

T = TypeVar("T")
QUEUE = "bench"
HEARTBEAT_TIMEOUT = timedelta(seconds=30)


class _LoopClient:
    """A thread's own event loop: `run` awaits one coroutine on it."""

    def __init__(self, prefix: str, lifecycle: bool) -> None:
        self.loop = asyncio.new_event_loop()
        self.prefix = prefix
        self.lifecycle = lifecycle

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def close_loop(self) -> None:
        self.loop.close()


async def first_found(claim: Callable[[], Awaitable[T | None]]) -> T:
    """The first claim that finds a job (see `bench.peer_clients.CLAIM_TRIES`)."""
    for _ in range(CLAIM_TRIES):
        found = await claim()
        if found:
            return found
    raise BenchError(f"no queued job after {CLAIM_TRIES} claims")


# -- procrastinate -------------------------------------------------------------------


def install_procrastinate(url: str) -> None:
    from procrastinate import App, PsycopgConnector

    async def apply() -> None:
        app = App(connector=PsycopgConnector(conninfo=url, min_size=1, max_size=1))
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    asyncio.run(apply())


class ProcrastinateClient(_LoopClient):
    def __init__(self, url: str, prefix: str, *, lifecycle: bool) -> None:
        from procrastinate import PsycopgConnector
        from procrastinate.manager import JobManager

        super().__init__(prefix, lifecycle)
        self.connector = PsycopgConnector(conninfo=url, min_size=1, max_size=1)
        self.run(self.connector.open_async())
        self.manager = JobManager(self.connector)
        self.worker_id = self.run(self.manager.register_worker()) if lifecycle else 0

    def op(self, n: int) -> None:
        self.run(self._op(n))

    async def _op(self, n: int) -> None:
        from procrastinate.jobs import Job, Status

        job_id = f"{self.prefix}-{n}"
        job = Job(
            id=None,
            queue=QUEUE,
            lock=None,
            queueing_lock=None,
            task_name="bench",
            task_kwargs=job_spec(job_id),
        )
        await self.manager.defer_job_async(job)
        if not self.lifecycle:
            return
        claimed = await first_found(lambda: self.manager.fetch_job([QUEUE], self.worker_id))
        await self.manager.finish_job(claimed, Status.SUCCEEDED, delete_job=False)

    def check(self, ops: int) -> None:
        pass  # the library's calls raise when they fail

    def close(self) -> None:
        if self.lifecycle:
            self.run(self.manager.unregister_worker(self.worker_id))
        self.run(self.connector.close_async())
        self.close_loop()


# -- pgqueuer ----------------------------------------------------------------------


def install_pgqueuer(url: str) -> None:
    from pgqueuer.adapters.drivers.psycopg import PsycopgDriver
    from pgqueuer.queries import Queries

    async def apply() -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await Queries(PsycopgDriver(conn)).install()

    asyncio.run(apply())


class PgQueuerClient(_LoopClient):
    def __init__(self, url: str, prefix: str, *, lifecycle: bool) -> None:
        from pgqueuer.adapters.drivers.psycopg import PsycopgDriver
        from pgqueuer.queries import EntrypointExecutionParameter, Queries
        from pgqueuer.types import QueueEntrypoint, QueueManagerId

        super().__init__(prefix, lifecycle)
        self.conn = self.run(psycopg.AsyncConnection.connect(url, autocommit=True))
        self.queries = Queries(PsycopgDriver(self.conn))
        self.entrypoints = {
            QueueEntrypoint(QUEUE): EntrypointExecutionParameter(concurrency_limit=0)
        }
        self.manager_id = QueueManagerId(uuid.uuid4())

    def op(self, n: int) -> None:
        self.run(self._op(n))

    async def _op(self, n: int) -> None:
        job_id = f"{self.prefix}-{n}"
        await self.queries.enqueue(QUEUE, orjson.dumps(job_spec(job_id)), 0)
        if not self.lifecycle:
            return
        jobs = await first_found(
            lambda: self.queries.dequeue(
                batch_size=1,
                entrypoints=self.entrypoints,
                queue_manager_id=self.manager_id,
                global_concurrency_limit=None,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
            )
        )
        await self.queries.log_jobs([(jobs[0], "successful", None)])

    def check(self, ops: int) -> None:
        pass

    def close(self) -> None:
        self.run(self.conn.close())
        self.close_loop()
