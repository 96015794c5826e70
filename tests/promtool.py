"""Prometheus' own `promtool` (Debian's `prometheus` package). Without it the tests that
run it are skipped, unless `JOBLEDGER_REQUIRE_PROMTOOL=1` (CI) makes that a failure."""

import os
import shutil
import subprocess
from pathlib import Path

from tests.missing_tools import missing_tool

PROMTOOL_TIMEOUT_S = 60


def promtool() -> str:
    found = os.environ.get("JOBLEDGER_PROMTOOL") or shutil.which("promtool")
    if found:
        return found
    missing_tool(
        "no promtool: install Debian's prometheus package (or set JOBLEDGER_PROMTOOL)",
        required_by="JOBLEDGER_REQUIRE_PROMTOOL",
    )


def run_promtool(
    *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`promtool args...`, its output captured."""
    return subprocess.run(
        [promtool(), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        check=False,
    )
