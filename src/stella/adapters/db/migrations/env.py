"""Alembic environment: runs revisions on the connection that `migrate.upgrade` hands over."""

from __future__ import annotations

from alembic import context

from stella.adapters.db.tables import POSTGRES_SCHEMA, metadata

connection = context.config.attributes["connection"]
is_postgres = connection.dialect.name == "postgresql"
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table_schema=POSTGRES_SCHEMA if is_postgres else None,
    render_as_batch=not is_postgres,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
