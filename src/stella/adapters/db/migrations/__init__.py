"""Alembic migrations, run by `stella db upgrade` and on `stella server` start."""
