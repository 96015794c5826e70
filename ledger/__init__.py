"""JobLedger's core: the job state machine and the append-only event store.

The domain modules (`statuses`, `commands`, `events`, `state`, `decide`,
`evolve`, `errors`) are pure Python with no I/O. The store modules (`schema`,
`store`, `database`, `settings`, `service`) put the log in PostgreSQL.
"""
