"""`jobledger statuses`: the TypeScript module and JSON Schema agree with the Python enum."""

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

import api.cli
from api.cli import main
from api.statuses_export import json_schema, typescript_module
from ledger.statuses import (
    INCOMPLETE_STATUSES,
    RECOVERABLE_STATUSES,
    TERMINAL_STATUSES,
    JobStatus,
)
from tests.api.operations import DOCUMENT

REPO_ROOT = Path(__file__).resolve().parents[2]
TSC = REPO_ROOT / "node_modules" / ".bin" / "tsc"

CATEGORIES = {
    "INCOMPLETE_STATUSES": ("IncompleteStatus", INCOMPLETE_STATUSES),
    "RECOVERABLE_STATUSES": ("RecoverableStatus", RECOVERABLE_STATUSES),
    "TERMINAL_STATUSES": ("TerminalStatus", TERMINAL_STATUSES),
}
ENUM_VALUES = [status.value for status in JobStatus]


def _usage_file() -> str:
    """TypeScript that only compiles when the module's types are as narrow as promised."""
    names = ", ".join(sorted(CATEGORIES))
    lines = [f'import {{ JOB_STATUS, type JobStatus, {names} }} from "./statuses";', ""]
    for status in JobStatus:
        key = status.name.upper()
        lines += [
            f"const literal_{key}: JobStatus = {json.dumps(status.value)};",
            f"const member_{key}: {json.dumps(status.value)} = JOB_STATUS.{key};",
        ]
    lines += [
        "const categories: ReadonlyArray<readonly JobStatus[]> = [",
        *(f"  {name}," for name in sorted(CATEGORIES)),
        "];",
        "const fromCategory: JobStatus = TERMINAL_STATUSES[0];",
        "// @ts-expect-error a string outside the vocabulary is not a JobStatus",
        'const unknown: JobStatus = "unknown";',
        "// @ts-expect-error the categories are read-only",
        "TERMINAL_STATUSES.push(JOB_STATUS.PENDING);",
        "// @ts-expect-error JOB_STATUS is read-only",
        'JOB_STATUS.PENDING = "queued";',
        "",
    ]
    return "\n".join(lines)


def _category_in_typescript(source: str, constant: str) -> list[str]:
    match = re.search(
        rf"^export const {constant}: readonly JobStatus\[\] = \[\n(.*?)^\];$",
        source,
        re.MULTILINE | re.DOTALL,
    )
    assert match, f"{constant} is not declared as readonly JobStatus[]"
    return re.findall(r"^  JOB_STATUS\.([A-Z_]+),$", match.group(1), re.MULTILINE)


def _schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json_schema())
    return document


def compile_typescript(*args: str, cwd: Path | None = None) -> None:
    """Run the pinned TypeScript compiler (skip without `npm ci`); fail on any error it reports."""
    if not TSC.exists():
        pytest.skip(f"no TypeScript compiler at {TSC}: run `npm ci` in {REPO_ROOT}")
    result = subprocess.run(
        [str(TSC), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_typescript_module_compiles_under_strict_and_types_its_usage(tmp_path: Path) -> None:
    (tmp_path / "statuses.ts").write_text(typescript_module())
    (tmp_path / "usage.ts").write_text(_usage_file())
    compile_typescript(
        "--ignoreConfig", "--strict", "--noEmit", "usage.ts", "statuses.ts", cwd=tmp_path
    )


def test_the_typescript_module_says_it_is_generated_and_not_to_be_edited() -> None:
    header = typescript_module().splitlines()[:2]
    assert "jobledger statuses --format ts" in header[0]
    assert "not edit by hand" in header[1]


def test_the_typescript_module_has_every_status_in_enum_order() -> None:
    source = typescript_module()
    match = re.search(r"^export const JOB_STATUS = \{\n(.*?)^\} as const;$", source, re.M | re.S)
    assert match, "JOB_STATUS is not an object literal `as const`"
    pairs = re.findall(r'^  ([A-Z_]+): "([^"]*)",$', match.group(1), re.MULTILINE)
    assert pairs == [(status.name, status.value) for status in JobStatus]
    assert "export type JobStatus = typeof JOB_STATUS[keyof typeof JOB_STATUS];" in source


@pytest.mark.parametrize("constant", sorted(CATEGORIES))
def test_each_typescript_category_lists_the_python_frozenset_in_enum_order(constant: str) -> None:
    names = _category_in_typescript(typescript_module(), constant)
    members = CATEGORIES[constant][1]
    assert names == [status.name for status in JobStatus if status in members]
    assert {JobStatus[name] for name in names} == members


def test_the_json_schema_is_draft_2020_12_and_validates_one_status() -> None:
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$ref"] == "#/$defs/JobStatus"
    assert schema["$defs"]["JobStatus"]["type"] == "string"


def test_the_json_schema_enum_is_the_python_enum_and_the_openapi_enum() -> None:
    enum = _schema()["$defs"]["JobStatus"]["enum"]
    assert enum == ENUM_VALUES
    assert enum == DOCUMENT["components"]["schemas"]["JobStatus"]["enum"]


@pytest.mark.parametrize("constant", sorted(CATEGORIES))
def test_each_json_schema_category_is_a_subschema_listing_the_python_frozenset(
    constant: str,
) -> None:
    name, members = CATEGORIES[constant]
    category = _schema()["$defs"][name]
    assert category["$ref"] == "#/$defs/JobStatus"
    assert category["enum"] == [status.value for status in JobStatus if status in members]


def test_the_statuses_command_prints_the_json_schema_and_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["statuses", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == _schema()


def test_the_statuses_command_prints_typescript_by_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["statuses"]) == 0
    assert capsys.readouterr().out == typescript_module()


def test_the_statuses_command_opens_no_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_database(*args: object, **kwargs: object) -> None:
        raise AssertionError("`jobledger statuses` touched the database")

    monkeypatch.setattr(api.cli, "open_ledger", no_database)
    monkeypatch.setattr(api.cli, "database_url", no_database)
    assert main(["statuses", "--format", "ts"]) == 0
    assert capsys.readouterr().out
