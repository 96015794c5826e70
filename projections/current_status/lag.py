"""How far the current-status projection is behind the log: the events it has not applied.

The store applies every event to its job's row in the statement that appends it, so a
row lacks an event only when the log was written some other way (by a version of the code
without the inline projection, by hand, or restored without its projection); start-up's
catch-up and the monitor's `follow_log` apply what rows lack and move the checkpoint past
it. The lag is the events after the checkpoint whose job's row has not reached them: 0 on
a current projection, however long ago the checkpoint moved.
"""

from projections import current_status

LAG_SCAN = 10_000
"""The events after the checkpoint the lag looks at, oldest first: the monitor's leader
moves the checkpoint every poll, so on a served ledger there are far fewer."""

PROJECTION_LAG = f"""(SELECT count(*) FROM (
        SELECT e.job_id, e.seq FROM job_events e
        WHERE (e.tx_id, e.position) > coalesce(
            (SELECT (c.tx_id, c.position) FROM projection_checkpoints c
             WHERE c.name = '{current_status.NAME}'),
            ('0'::xid8, 0))
        ORDER BY e.tx_id, e.position
        LIMIT {LAG_SCAN}
    ) after_checkpoint
    LEFT JOIN job_status s ON s.job_id = after_checkpoint.job_id
    WHERE s.version IS NULL OR s.version < after_checkpoint.seq)"""
"""Events among the first `LAG_SCAN` after the checkpoint (all of them, without one) that
their job's row lacks: a bounded read of the log's feed index and the projection's key."""
