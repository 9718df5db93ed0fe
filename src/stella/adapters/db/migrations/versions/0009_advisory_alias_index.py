"""Advisories are found by alias (`CVE-…` for a `GHSA-…` record) through an index: a GIN index
on `aliases` serves `aliases @> '["<id>"]'` on PostgreSQL. SQLite cannot index the members of
a JSON array, so there the revision changes nothing.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

INDEX = "ix_advisories_aliases"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index(
        INDEX,
        "advisories",
        ["aliases"],
        schema="release",
        postgresql_using="gin",
        postgresql_ops={"aliases": "jsonb_path_ops"},
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index(INDEX, table_name="advisories", schema="release")
