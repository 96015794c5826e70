"""The benchmarks' clients are timed on a settled heap, as the server serves on one: a
full collection of the harness's own heap would stop every client thread at once and
land in the measured latencies."""

import subprocess
import sys
from pathlib import Path

from api.heap import YOUNG_THRESHOLD

PROJECT = Path(__file__).resolve().parents[2]

TIMED = """
import gc
from bench.threads import measure

built = [{"built": "before"}]
gc.set_threshold(700, 10, 10)
seen = set()


class Client:
    def op(self, n):
        seen.add((gc.get_threshold()[0], any(o is built for o in gc.get_objects())))

    def check(self, ops):
        pass

    def close(self):
        pass


measure(lambda index: Client(), 2, ops_per_client=3)
print(sorted(seen))
print(gc.get_threshold(), any(o is built for o in gc.get_objects()))
"""


def test_clients_are_timed_on_a_settled_heap_and_the_collector_is_restored_after() -> None:
    # In a process of its own: the collector's settings are the whole process's.
    ran = subprocess.run(
        [sys.executable, "-c", TIMED], cwd=PROJECT, capture_output=True, text=True, check=True
    )
    during, after = ran.stdout.splitlines()
    assert during == str([(YOUNG_THRESHOLD, False)])  # what was built before: frozen
    assert after == "(700, 10, 10) True"
