"""The current-status projection (`job_status`): one row per job, its state after its last event.

The store writes it inline, in the same statement as every append. This
package holds what runs beside that: the catch-up at start-up, the rebuild
that folds the whole log inside PostgreSQL, the replay through `evolve` that
verify compares it with, and the bulk reads and writes they share.
"""

from typing import TypeGuard

from ledger.store import FeedCursor
from projections.checkpoints import ProjectionCheckpoint

NAME = "current_status"
VERSION = 2
"""Bump when `evolve` or the table changes meaning: start-up then rebuilds the projection."""


def built_by_this_code(
    checkpoint: ProjectionCheckpoint | None,
) -> TypeGuard[ProjectionCheckpoint]:
    """Whether the projection exists and was built by this version of the code."""
    return checkpoint is not None and checkpoint.version == VERSION


def checkpoint_at(cursor: FeedCursor) -> ProjectionCheckpoint:
    """This code's checkpoint of the projection, having read the log up to `cursor`."""
    return ProjectionCheckpoint(NAME, VERSION, cursor)
