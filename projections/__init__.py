"""Read models derived from the job event log, and the recovery built on them.

- `current_status/`: the one-row-per-job projection, its catch-up, rebuild and verify.
- `job_readings.py`: one read of what a job's view shows (state, queue position, health).
- `history.py`: a job's transitions as auditors read them.
- `checkpoints.py`: how far each projection has read the log.
- `recovery/`: the health view, the reconciler, its monitor and leader lock, force start.
- `audit_chain/`: the log's hash chain, its digests and their verification.

Every projection here can be thrown away and rebuilt by replaying the log:
restart recovery is a replay, never a guess. The hash chain alone is evidence, not
only a view: rebuilt, it would chain the log as it is now, so it is only ever added to.
"""
