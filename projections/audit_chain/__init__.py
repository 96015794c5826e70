"""The log's hash chain: tamper evidence that does not rest on the database's own guards.

Every event of the log is chained in feed order (the gap-free order of `/v1/events`):
each event's link is the SHA-256 of the previous link and the event's canonical line
(`encoding`). A projection that follows the feed keeps the links (`keeper`, table
`audit_chain`), so appending costs nothing more. A digest (`digest`) is the feed cursor,
the number of events and the chain's head at that cursor: kept outside the database, it
lets `verify` prove that nothing before that cursor was edited, removed, inserted or
reordered since, even by a superuser who disabled the log's triggers.
"""
