"""A request body holding what PostgreSQL's text and JSON cannot store is refused, naming
the field and why; everything else passes, a JSON `null` or a `null`-like text included."""

import math
from typing import Any

import pytest
from pydantic import ValidationError

from api.models import CreateJob, MarkFailedBody, _plainly_storable


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"note": "a\x00b"}, "spec: must not contain a NUL character"),
        ({"a\x00b": 1}, "spec: must not contain a NUL character"),
        ({"deep": [{"deeper": ["ok", "x\x00"]}]}, "spec: must not contain a NUL character"),
        ({"lr": math.nan}, "spec: numbers must be finite"),
        ({"lr": [1.0, math.inf]}, "spec: numbers must be finite"),
        ({"steps": 2**64}, "spec: integers must fit in 64 bits"),
        ({"steps": -(2**63) - 1}, "spec: integers must fit in 64 bits"),
        ({"lr": math.nan, "note": None}, "spec: numbers must be finite"),
    ],
)
def test_a_spec_postgresql_cannot_store_is_refused_naming_why(
    spec: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        CreateJob.model_validate({"job_id": "j-1", "spec": spec})


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"note": None, "text": "null", "escaped": "\\u0000", "nested": [None, {"n": None}]},
        {"steps": 2**64 - 1, "floor": -(2**63), "lr": 1e-300, "flag": True},
    ],
)
def test_a_storable_spec_passes_as_given(spec: dict[str, Any]) -> None:
    assert CreateJob.model_validate({"job_id": "j-1", "spec": spec}).spec == spec


def test_a_text_field_with_a_nul_is_refused_by_its_name() -> None:
    with pytest.raises(ValidationError, match="reason: must not contain a NUL character"):
        MarkFailedBody.model_validate({"reason": "oom\x00"})


def test_a_plain_body_is_told_storable_by_one_write_and_a_doubtful_one_is_not() -> None:
    assert _plainly_storable({"job_id": "j-1", "spec": {"lr": 0.1, "steps": 2**63}, "note": None})
    for doubtful in (
        {"spec": {"note": "a\x00"}},
        {"spec": {"lr": math.nan}},
        {"spec": {"resume": None}},  # a null of its own: looked at value by value
        {"spec": {"steps": 2**64}},
    ):
        assert not _plainly_storable(doubtful)
