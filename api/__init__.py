"""The ways into JobLedger: the command line and (later) HTTP."""
