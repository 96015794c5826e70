"""`projections verify`: replay the log in memory and compare it with the stored projection."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from ledger.database import driver_connection
from ledger.state import JobState
from ledger.unreadable import Unreadable, note_unreadable
from projections.current_status import bulk
from projections.current_status.fold_in_database import SEQUENTIAL_PASS
from projections.current_status.replay import fold_states, stream_event_rows


@dataclass(frozen=True, slots=True)
class Drift:
    """One job on which the stored projection and the replay disagree."""

    job_id: str
    kind: str  # "missing" (no row), "unexpected" (a row without events) or "differs"
    fields: dict[str, tuple[Any, Any]]
    """For "differs": field name -> (stored, replayed)."""

    def describe(self) -> str:
        if self.kind != "differs":
            return f"{self.job_id}: {self.kind}"
        parts = [f"{name} stored={a!r} replayed={b!r}" for name, (a, b) in self.fields.items()]
        return f"{self.job_id}: " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    jobs: int
    drifts: list[Drift]
    unreadable: list[Unreadable]
    """Events of the log this code cannot read (each moved its job's version only)."""

    @property
    def clean(self) -> bool:
        return not self.drifts and not self.unreadable


def verify_current_status(engine: Engine) -> VerifyReport:
    """Compare every stored row with the replayed state, both read in one snapshot."""
    unreadable: list[Unreadable] = []
    with driver_connection(engine) as conn:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            for setting in SEQUENTIAL_PASS:
                conn.execute(setting)
            replayed = fold_states(stream_event_rows(conn), unreadable)
            stored = bulk.stream_stored_states(conn)
            jobs, drifts = _compare(stored, replayed)
        if unreadable:
            note_unreadable(conn, unreadable)
    return VerifyReport(jobs, drifts, unreadable)


def _compare(stored: Iterator[JobState], replayed: Iterator[JobState]) -> tuple[int, list[Drift]]:
    """Merge two streams sorted by job_id (bytewise: the column's collation is "C")."""
    drifts: list[Drift] = []
    jobs = 0
    a = next(stored, None)
    b = next(replayed, None)
    while a is not None or b is not None:
        jobs += 1
        if a is not None and b is not None and a.job_id == b.job_id:
            if a != b:
                drifts.append(Drift(a.job_id, "differs", _differences(a, b)))
            a, b = next(stored, None), next(replayed, None)
        elif b is None or (a is not None and a.job_id < b.job_id):
            assert a is not None
            drifts.append(Drift(a.job_id, "unexpected", {}))
            a = next(stored, None)
        else:
            drifts.append(Drift(b.job_id, "missing", {}))
            b = next(replayed, None)
    return jobs, drifts


def _differences(stored: JobState, replayed: JobState) -> dict[str, tuple[Any, Any]]:
    return {
        name: (x, y)
        for name, x, y in zip(JobState._fields, stored, replayed, strict=True)
        if x != y
    }
