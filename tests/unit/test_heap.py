import subprocess
import sys
from pathlib import Path

from api.heap import YOUNG_THRESHOLD

PROJECT = Path(__file__).resolve().parents[2]

SETTLED = """
import gc
from api.heap import settle_heap

built = [{"built": "before"}]
gc.set_threshold(700, 10, 10)
settle_heap()
made = [{"made": "after"}]
print(gc.get_threshold())
print(any(o is built for o in gc.get_objects()), any(o is made for o in gc.get_objects()))
"""


def test_a_settled_heap_is_frozen_and_collected_less_often() -> None:
    # In a process of its own: the collector's settings are the whole process's.
    ran = subprocess.run(
        [sys.executable, "-c", SETTLED], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    threshold, seen = ran.stdout.splitlines()
    assert threshold == str((YOUNG_THRESHOLD, 10, 10))  # the older generations as they were
    assert seen == "False True"  # what was built before is never looked at again
