"""Read models derived from the job event log, and the machinery that rebuilds them.

Every projection here can be thrown away and rebuilt by replaying the log:
restart recovery is a replay, never a guess.
"""
