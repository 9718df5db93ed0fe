"""The `stella` command line: an API client plus operator commands (server, db, admin)."""
