"""Idempotency keys: a POST sent with `Idempotency-Key` records, in the transaction that makes
its change, which resource it made or changed, so a retry answers with that resource instead of
doing the change twice.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stella.adapters.db.tables import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("principal", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("tenant_id", "principal", "key"),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "created_at"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
