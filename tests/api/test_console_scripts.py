"""The console's scripts: type-checked by the pinned TypeScript compiler, and speaking
the same vocabulary as the ledger."""

import json
import shutil
import subprocess

import pytest

from api.console import CONSOLE_DIR
from ledger.statuses import JobStatus
from projections.recovery.health import OrphanReason
from tests.api.test_statuses_export import compile_typescript


def test_the_console_scripts_type_check() -> None:
    compile_typescript("-p", str(CONSOLE_DIR / "tsconfig.json"))


def test_the_console_knows_every_status_and_every_reason_a_run_is_orphaned() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js to load the console's modules")
    script = (
        f"const dom = await import({json.dumps((CONSOLE_DIR / 'dom.js').as_uri())});"
        "console.log(JSON.stringify([dom.STATUSES, Object.keys(dom.ORPHAN_WORDS)]));"
    )
    result = subprocess.run(
        [node, "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    statuses, reasons = json.loads(result.stdout)
    assert statuses == [status.value for status in JobStatus]
    assert sorted(reasons) == sorted(reason.value for reason in OrphanReason)
