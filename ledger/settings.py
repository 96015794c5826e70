"""Settings, read once at an entry point and passed down."""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import platformdirs

from ledger.errors import InvalidSetting

ENV_PREFIX = "JOBLEDGER_"

DEFAULT_LEASE_SECONDS = 90.0
"""How long a run stays alive without a heartbeat; workers heartbeat at a third of it."""

DEFAULT_STALE_PENDING_MINUTES = 10.0
"""A job pending longer than this is stale."""

LogFormat = Literal["text", "json"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How to reach the database and how to behave on it.

    With no `database_url`, JobLedger runs an embedded PostgreSQL in `data_dir`.
    """

    database_url: str | None = None
    data_dir: Path = Path(platformdirs.user_data_dir("jobledger")) / "pgdata"
    pool_size: int = 10
    pool_timeout_s: float = 5.0
    loop_connections: int = 8
    """The connections a server's event loop sends registrations, claims, reports and
    heartbeats on at once, at most, opened as they are needed (`ledger.loop_appends`);
    while every one is in use, a command goes to a thread and the pool. 0: every command
    goes that way."""
    idle_in_transaction_timeout_ms: int = 30_000
    statement_timeout_ms: int = 10_000
    """`statement_timeout` of every session (0: none): a request never waits longer on a
    statement, it is a 503 `database-busy` instead."""
    lock_timeout_ms: int = 3_000
    """`lock_timeout` of every session (0: none): a request waits this long at most for a
    lock another session holds."""
    probe_timeout_s: float = 2.0
    """How long `/readyz` and the database's figures of `/metrics` wait for the database."""
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    stale_pending_minutes: float = DEFAULT_STALE_PENDING_MINUTES
    reconcile_interval_s: float = 300.0
    auto_start_pending: bool = False
    audit_digest_minutes: float = 60.0
    """How often the leading monitor writes a digest of the log's hash chain (0: never)."""
    audit_digest_file: Path | None = None
    """Where those digests go, one JSON line each; without a file, to standard output."""
    # Slow and many clients (api.connection_guard, api.stream):
    header_timeout_s: float = 10.0
    """A request's line and headers arrive whole within this of the connection opening
    or of the previous answer, or the connection is closed."""
    body_timeout_s: float = 10.0
    """A request's body awaited with no byte of it for this long closes the connection."""
    send_timeout_s: float = 30.0
    """An answer the client takes nothing of for this long (the server's send buffer full)
    closes the connection."""
    max_connections: int = 2_000
    """Open connections at most (lowered to fit the process's file limit)."""
    max_streams: int = 200
    """Open event streams at most, per process."""
    max_streams_per_caller: int = 10
    """Open event streams at most, per token."""
    log_format: LogFormat = "text"
    """How every log line is written: `text`, or `json`, one JSON object per line for log
    pipelines (`api.log_format`)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        defaults = cls()

        def read(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name)
            return value if value else None

        return cls(
            database_url=read("DATABASE_URL"),
            data_dir=Path(read("DATA_DIR") or defaults.data_dir).expanduser(),
            pool_size=int(read("POOL_SIZE") or defaults.pool_size),
            pool_timeout_s=float(read("POOL_TIMEOUT_S") or defaults.pool_timeout_s),
            loop_connections=_count("LOOP_CONNECTIONS", read, defaults.loop_connections),
            idle_in_transaction_timeout_ms=int(
                read("IDLE_IN_TRANSACTION_TIMEOUT_MS") or defaults.idle_in_transaction_timeout_ms
            ),
            statement_timeout_ms=int(read("STATEMENT_TIMEOUT_MS") or defaults.statement_timeout_ms),
            lock_timeout_ms=int(read("LOCK_TIMEOUT_MS") or defaults.lock_timeout_ms),
            probe_timeout_s=float(read("PROBE_TIMEOUT_S") or defaults.probe_timeout_s),
            lease_seconds=float(read("LEASE_SECONDS") or defaults.lease_seconds),
            stale_pending_minutes=float(
                read("STALE_PENDING_MINUTES") or defaults.stale_pending_minutes
            ),
            reconcile_interval_s=float(
                read("RECONCILE_INTERVAL_S") or defaults.reconcile_interval_s
            ),
            auto_start_pending=(read("AUTO_START_PENDING") or "false").lower()
            in ("1", "true", "yes", "on"),
            audit_digest_minutes=float(
                read("AUDIT_DIGEST_MINUTES") or defaults.audit_digest_minutes
            ),
            audit_digest_file=_path(read("AUDIT_DIGEST_FILE")),
            header_timeout_s=float(read("HEADER_TIMEOUT_S") or defaults.header_timeout_s),
            body_timeout_s=float(read("BODY_TIMEOUT_S") or defaults.body_timeout_s),
            send_timeout_s=float(read("SEND_TIMEOUT_S") or defaults.send_timeout_s),
            max_connections=int(read("MAX_CONNECTIONS") or defaults.max_connections),
            max_streams=int(read("MAX_STREAMS") or defaults.max_streams),
            max_streams_per_caller=int(
                read("MAX_STREAMS_PER_CALLER") or defaults.max_streams_per_caller
            ),
            log_format=_log_format(read("LOG_FORMAT") or defaults.log_format),
        )

    def unbounded(self) -> "Settings":
        """These settings without statement and lock timeouts: for work whose length grows
        with the log (a rebuild of the projection, a verify), not for requests."""
        return replace(self, statement_timeout_ms=0, lock_timeout_ms=0)


def _count(name: str, read: Callable[[str], str | None], default: int) -> int:
    """The count the variable `name` sets (0 is one), or `default` when it is unset."""
    value = read(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()):
        raise InvalidSetting(f"{ENV_PREFIX}{name} must be a count, 0 or more, not {value!r}")
    return int(value)


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value).expanduser()


def _log_format(value: str) -> LogFormat:
    match value.lower():
        case "text":
            return "text"
        case "json":
            return "json"
    raise InvalidSetting(f"{ENV_PREFIX}LOG_FORMAT must be text or json, not {value!r}")
