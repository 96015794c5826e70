"""Tests that need a program the machine may lack (Chromium, promtool)."""

import os
from typing import NoReturn

import pytest


def missing_tool(message: str, *, required_by: str) -> NoReturn:
    """Skip the test for want of a program, or fail it when the environment variable
    `required_by` is "1" (CI sets it: there the program must be installed)."""
    if os.environ.get(required_by) == "1":
        pytest.fail(message)
    pytest.skip(message)
