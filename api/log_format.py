"""Log lines as text or, with `JOBLEDGER_LOG_FORMAT=json`, as one JSON object each.

The standard library's logging with a formatter of its own (a few lines, on orjson, which
the API uses already; no logging library is needed for it). A JSON line holds `time`
(UTC, ISO 8601), `level`, `logger` and `message`, then every field the record was given
(`extra=`: a command's `command`, `job_id`, `actor`, `outcome`, `kind`, `correlation_id`),
then `exception` with its traceback when there is one. `jobledger serve` leaves uvicorn's
loggers to propagate here, so its lines are written the same way.
"""

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from ledger.command_log import LOGGER as COMMAND_LOG
from ledger.settings import LogFormat

TEXT_FORMAT = "%(levelname)s:%(name)s:%(message)s"
"""The standard library's own default."""

_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
"""What every record holds; anything else a record holds was given as a field of its own."""


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES:
                line.setdefault(name, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def formatter_of(log_format: LogFormat) -> logging.Formatter:
    return JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: LogFormat, level: int) -> None:
    """Every log line of the process to stderr, written in `log_format`, from `level` up
    (unless logging was configured already, as a test runner does)."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter_of(log_format))
    logging.basicConfig(level=level, handlers=[handler])
    if handler in logging.getLogger().handlers:
        # Neither format writes where a line was logged from, nor its thread or process:
        # a record need not look them up (the Logging HOWTO's "Optimization"): a
        # command's line costs 5.1 us so, 7.0 us with them.
        logging._srcfile = None
        logging.logThreads = False
        logging.logProcesses = False
        logging.logMultiprocessing = False


def keep_command_lines(root_level: int) -> None:
    """Log every command's line (`ledger.command_log`) whatever else the log leaves out: at
    INFO, or from DEBUG (each job of a batch, a claim of an empty queue) when the rest of
    the log is at DEBUG."""
    logging.getLogger(COMMAND_LOG).setLevel(min(logging.INFO, root_level))


def written_line(log_format: LogFormat, logger: str, message: str) -> str:
    """`message` as a line of `logger` at INFO would be written in `log_format`: for
    what a command prints where its log is not (the serve's recovery summary, on stdout)."""
    if log_format == "text":
        return message
    record = logging.LogRecord(logger, logging.INFO, "", 0, message, None, None)
    return formatter_of(log_format).format(record)
