"""How far the current-status projection is behind the log: the events it has not applied.

The store applies every event to its job's row in the statement that appends it, so a
row lacks an event only when the log was written some other way (by a version of the code
without the inline projection, by hand, or restored without its projection); start-up's
catch-up and the monitor's `follow_log` apply what rows lack and move the checkpoint past
it. The lag is the events after the checkpoint whose job's row has not reached them: 0 on
a current projection, however long ago the checkpoint moved.
"""

from projections import current_status

LAG_SCAN = 1_000
"""The events after the checkpoint the lag looks at, oldest first. The monitor's leader
moves the checkpoint every poll, a page of this many events at a time, so an event it
cannot apply stops the checkpoint within this many events of it, and is counted."""

PROJECTION_LAG = f"""(SELECT count(*) FROM (
        SELECT e.job_id, e.seq FROM job_events e
        WHERE (e.tx_id, e.position) > (
            coalesce((SELECT c.tx_id FROM projection_checkpoints c
                      WHERE c.name = '{current_status.NAME}'), '0'::xid8),
            coalesce((SELECT c.position FROM projection_checkpoints c
                      WHERE c.name = '{current_status.NAME}'), 0))
        ORDER BY e.tx_id, e.position
        LIMIT {LAG_SCAN}
    ) after_checkpoint
    WHERE coalesce((SELECT s.version FROM job_status s
                    WHERE s.job_id = after_checkpoint.job_id), 0) < after_checkpoint.seq)"""
"""Events among the first `LAG_SCAN` after the checkpoint (all of them, without one) that
their job's row lacks: a bounded read of the log's feed index, and one look-up of the
projection's key per event read (never a scan of the projection, whatever the planner
guesses of the events' number)."""
