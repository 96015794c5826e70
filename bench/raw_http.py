"""Raw SQL behind the least HTTP service the ledger's own packages make: the floor of any
service over HTTP on this stack, which `bench.peers` measures beside JobLedger over HTTP.

`app_from_environment` serves raw SQL's three statements (`bench.peer_clients`' INSERT,
`SKIP LOCKED` claim and UPDATE), one route each, on FastAPI under uvicorn (httptools'
parser, uvloop's loop), as `jobledger serve` is served: each body parsed and validated by
a pydantic model, each answer a small JSON document, each statement prepared and sent
from the event loop on one of up to `CONNECTIONS` asyncio connections of psycopg (the
ledger's own default count of loop connections). Nothing else: no events, no projection,
no authentication, middleware, log line or metric. What a lifecycle costs over HTTP here
is what HTTP and the driver cost, before any work of the ledger's.

    POST /jobs {"job_id", "spec"} -> 201     POST /claim {"worker"} -> 200, 404 when empty
    POST /jobs/{job_id}/complete {"result"} -> 200, 409 unless running
    GET /jobs/{job_id} -> 200, 404           GET /readyz -> 200
"""

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from bench.http import HOST, READY_SECONDS, stop, tail, wait_ready
from bench.peer_clients import RAW_CLAIM, RAW_COMPLETE, RAW_ENQUEUE
from bench.threads import BenchError
from ledger.settings import Settings

URL_ENV = "BENCH_RAW_HTTP_DATABASE_URL"
CONNECTIONS = Settings().loop_connections
RAW_JOB = "SELECT status FROM raw_jobs WHERE id = %s"
PROJECT = Path(__file__).resolve().parents[1]
CLEAN_EXITS = (0, -signal.SIGTERM)
"""uvicorn stops gracefully on SIGTERM, then raises it again: the process ends by it."""


class Enqueue(BaseModel):
    job_id: str
    spec: dict[str, Any] = {}


class Claim(BaseModel):
    worker: str


class Complete(BaseModel):
    result: dict[str, Any] = {}


class Connections:
    """Up to `most` asyncio connections, each carrying one statement at a time; a
    statement that finds them all in use waits for one."""

    def __init__(self, url: str, most: int) -> None:
        self._url = url
        self._idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        self._opened = 0
        self._most = most

    async def execute(self, query: str, params: tuple[Any, ...]) -> psycopg.AsyncCursor[Any]:
        if self._idle.empty() and self._opened < self._most:
            self._opened += 1
            conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        else:
            conn = await self._idle.get()
        try:
            return await conn.execute(query, params, prepare=True)
        finally:
            if conn.closed:  # lost with its server: the next statement opens another
                self._opened -= 1
            else:
                self._idle.put_nowait(conn)

    async def close(self) -> None:
        while not self._idle.empty():
            await self._idle.get_nowait().close()


def create_app(url: str) -> FastAPI:
    connections = Connections(url, CONNECTIONS)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await connections.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/jobs", status_code=201)
    async def enqueue(body: Enqueue) -> dict[str, str]:
        await connections.execute(RAW_ENQUEUE, (body.job_id, Jsonb(body.spec)))
        return {"job_id": body.job_id, "status": "queued"}

    @app.post("/claim")
    async def claim(body: Claim) -> dict[str, str]:
        row = await (await connections.execute(RAW_CLAIM, (body.worker,))).fetchone()
        if row is None:
            raise HTTPException(404, "the queue is empty")
        return {"job_id": row[0], "status": "running"}

    @app.post("/jobs/{job_id}/complete")
    async def complete(job_id: str, body: Complete) -> dict[str, str]:
        done = await connections.execute(RAW_COMPLETE, (Jsonb(body.result), job_id))
        if done.rowcount != 1:
            raise HTTPException(409, f"{job_id} is not running")
        return {"job_id": job_id, "status": "succeeded"}

    @app.get("/jobs/{job_id}")
    async def job(job_id: str) -> dict[str, str]:
        row = await (await connections.execute(RAW_JOB, (job_id,))).fetchone()
        if row is None:
            raise HTTPException(404, f"no job {job_id}")
        return {"job_id": job_id, "status": row[0]}

    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def app_from_environment() -> FastAPI:
    """The app on the database `$BENCH_RAW_HTTP_DATABASE_URL` names (a libpq URL)."""
    return create_app(os.environ[URL_ENV])


@contextmanager
def running_raw_http(url: str, port: int) -> Iterator[tuple[str, int]]:
    """The app served by uvicorn in a process of its own on `url` (a libpq URL whose
    `raw_jobs` exist), ready: its base URL and process id; stopped on the way out."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "--app-dir",
        str(PROJECT),
        f"{__name__}:app_from_environment",
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            command,
            env=os.environ | {URL_ENV: url},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base_url = f"http://{HOST}:{port}"
        try:
            wait_ready(process, base_url, time.monotonic() + READY_SECONDS)
            yield base_url, process.pid
        except BaseException as exc:
            stop(process)
            exc.add_note(f"raw SQL over HTTP output:\n{tail(output)}")
            raise
        else:
            if stop(process) not in CLEAN_EXITS:
                raise BenchError(f"raw SQL over HTTP exited with an error:\n{tail(output)}")
