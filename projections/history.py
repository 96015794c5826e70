"""A job's history as auditors read it: each event with the status it moved the job from and to."""

from collections.abc import Iterable
from dataclasses import dataclass

from ledger.events import RecordedEvent
from ledger.evolve import UnreadableRegistration, evolve
from ledger.state import JobState
from ledger.statuses import JobStatus


@dataclass(frozen=True, slots=True)
class Transition:
    event: RecordedEvent
    from_status: JobStatus | None
    to_status: JobStatus


def transitions(events: Iterable[RecordedEvent]) -> list[Transition]:
    """Replay the job's events, noting the status before and after each."""
    state: JobState | None = None
    result = []
    for event in events:
        before = state.status if state else None
        try:
            state = evolve(state, event)
        except UnreadableRegistration:
            return []  # no job to tell the history of
        result.append(Transition(event, before, state.status))
    return result
