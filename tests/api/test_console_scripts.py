"""The console's scripts: type-checked by the pinned TypeScript compiler, and speaking
the same vocabulary as the ledger."""

import json
import shutil
import subprocess
from typing import Any

import pytest

from api.console_page import CONSOLE_DIR
from ledger.events import EVENT_CLASSES
from ledger.statuses import JobStatus
from projections.recovery.health import OrphanReason
from tests.api.test_statuses_export import compile_typescript


def test_the_console_scripts_type_check() -> None:
    compile_typescript("-p", str(CONSOLE_DIR / "tsconfig.json"))


def from_dom_module(expression: str, module: str = "dom") -> Any:
    """What a JavaScript expression over one of the console's modules (`dom.js` by
    default, named after the module) gives."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("no Node.js to load the console's modules")
    script = (
        f"const {module} = await import({json.dumps((CONSOLE_DIR / f'{module}.js').as_uri())});"
        f"console.log(JSON.stringify({expression}));"
    )
    result = subprocess.run(
        [node, "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_the_console_knows_every_status_and_every_reason_a_run_is_orphaned() -> None:
    statuses, reasons = from_dom_module("[dom.STATUSES, Object.keys(dom.ORPHAN_WORDS)]")
    assert statuses == [status.value for status in JobStatus]
    assert sorted(reasons) == sorted(reason.value for reason in OrphanReason)


def test_a_worker_is_written_the_same_way_everywhere_with_what_is_known_of_it() -> None:
    assert from_dom_module(
        "[dom.workerText({worker_id: 'w1', host: 'gpu-7', pid: 42}),"
        " dom.workerText({worker_id: 'w1', host: 'gpu-7', pid: null}),"
        " dom.workerText({worker_id: 'w1', host: null, pid: null})]"
    ) == ["w1 on gpu-7 (pid 42)", "w1 on gpu-7", "w1"]
    for script in ("job.js", "list.js", "recovery.js"):
        source = (CONSOLE_DIR / script).read_text()
        assert "workerText(job.worker)" in source, script
        assert "worker.host" not in source, f"{script} writes the worker itself"


def test_the_audit_page_offers_every_event_type_and_no_other() -> None:
    assert from_dom_module("audit.EVENT_TYPES", module="audit") == list(EVENT_CLASSES)


def test_the_time_pickers_send_moments_in_utc_and_show_them_in_local_time() -> None:
    moment = "2026-11-01T09:30:15.000Z"
    assert from_dom_module(
        f"[dom.utcMoment(dom.localInput({json.dumps(moment)})), dom.utcMoment(''),"
        " dom.localInput('not a time')]"
    ) == [moment, "", ""]
