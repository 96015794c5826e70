import json
import logging
import os
import subprocess
import sys

import pytest

from api.cli import build_parser, log_level
from api.log_format import JsonLines, keep_command_lines, written_line
from ledger.command_log import LOGGER as COMMAND_LOG


def record(message: str, *args: object, **fields: object) -> logging.LogRecord:
    made = logging.LogRecord("jobledger.commands", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(fields)
    return made


def test_a_json_line_holds_the_message_and_every_field_the_record_was_given() -> None:
    line = JsonLines().format(
        record("cancel %r by %r", "job-1", "alice", job_id="job-1", correlation_id="c-1")
    )
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["level"] == "INFO" and parsed["logger"] == "jobledger.commands"
    assert parsed["message"] == "cancel 'job-1' by 'alice'"
    assert (parsed["job_id"], parsed["correlation_id"]) == ("job-1", "c-1")
    assert parsed["time"].endswith("+00:00")
    assert "args" not in parsed and "msg" not in parsed


def test_a_json_line_holds_the_traceback_and_values_json_cannot_as_text() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    failed.__dict__["odd"] = object()
    parsed = json.loads(JsonLines().format(failed))
    assert "ValueError: boom" in parsed["exception"]
    assert parsed["odd"].startswith("<object object")


def test_a_field_never_replaces_the_lines_own_keys() -> None:
    parsed = json.loads(JsonLines().format(record("hello", level="spoofed", logger="other")))
    assert (parsed["level"], parsed["logger"]) == ("INFO", "jobledger.commands")


def test_a_printed_summary_is_a_json_line_when_the_log_is() -> None:
    assert written_line("text", "jobledger.serve", "recovered: 0") == "recovered: 0"
    parsed = json.loads(written_line("json", "jobledger.serve", "recovered: 0"))
    assert (parsed["message"], parsed["logger"]) == ("recovered: 0", "jobledger.serve")


def test_an_unknown_log_format_stops_the_command_line_with_the_settings_name() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "migrate"],
        capture_output=True,
        text=True,
        env={**os.environ, "JOBLEDGER_LOG_FORMAT": "xml"},
        check=False,
    )
    assert result.returncode == 2
    assert "JOBLEDGER_LOG_FORMAT must be text or json, not 'xml'" in result.stderr


@pytest.mark.parametrize(
    ("flags", "root", "commands"),
    [
        ([], logging.WARNING, logging.INFO),
        (["-v"], logging.INFO, logging.INFO),
        (["-vv"], logging.DEBUG, logging.DEBUG),
        (["-vvv"], logging.DEBUG, logging.DEBUG),
    ],
)
def test_every_command_line_is_kept_and_each_job_of_a_batch_with_vv(
    flags: list[str], root: int, commands: int
) -> None:
    level = log_level(build_parser().parse_args([*flags, "jobs"]).verbose)
    assert level == root
    command_log = logging.getLogger(COMMAND_LOG)
    before = command_log.level
    try:
        keep_command_lines(level)
        assert command_log.getEffectiveLevel() == commands
    finally:
        command_log.setLevel(before)
