"""A waiver that runs out is noticed: `expiry_handled_at` records that a worker re-evaluated
the verdicts it covered when it expired (claimed by one worker with a conditional update).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stella.adapters.db.tables import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = "release" if op.get_bind().dialect.name == "postgresql" else None
    op.add_column(
        "waivers", sa.Column("expiry_handled_at", UtcDateTime, nullable=True), schema=schema
    )
    # workers look for expired, unhandled waivers on every periodic pass
    op.create_index(
        "ix_waivers_expiry", "waivers", ["expiry_handled_at", "expires_at"], schema=schema
    )


def downgrade() -> None:
    schema = "release" if op.get_bind().dialect.name == "postgresql" else None
    op.drop_index("ix_waivers_expiry", "waivers", schema=schema)
    op.drop_column("waivers", "expiry_handled_at", schema=schema)
