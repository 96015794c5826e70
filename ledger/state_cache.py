"""A process's recently written job states, so a command needs no read before its write.

A cached state is only ever a guess: every append still carries the version
it was decided on, and the log's unique `(job_id, seq)` refuses it when the
guess was stale. Refusals and no-op decisions are never trusted from the
cache; they are decided again on a fresh read.
"""

import threading
from collections import OrderedDict
from collections.abc import Iterable

from ledger.state import JobState

DEFAULT_SIZE = 10_000


class StateCache:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._states: OrderedDict[str, JobState] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str) -> JobState | None:
        with self._lock:
            state = self._states.get(job_id)
            if state is not None:
                self._states.move_to_end(job_id)
            return state

    def put(self, state: JobState) -> None:
        self.put_many((state,))

    def put_many(self, states: Iterable[JobState]) -> None:
        """Keep each of `states` (a batch's, under one hold of the lock)."""
        if self.size <= 0:
            return
        with self._lock:
            for state in states:
                current = self._states.get(state.job_id)
                if current is not None and current.version > state.version:
                    continue  # a newer state from another thread of this process
                self._states[state.job_id] = state
                self._states.move_to_end(state.job_id)
            while len(self._states) > self.size:
                self._states.popitem(last=False)

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._states.pop(job_id, None)
