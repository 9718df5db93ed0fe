"""Use cases. Each is a short function: open a unit of work, load, decide, record, commit."""
