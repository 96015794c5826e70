"""The ways into JobLedger: the command line, and HTTP with its operator console."""
