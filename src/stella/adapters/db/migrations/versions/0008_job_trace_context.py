"""Deployment jobs remember the W3C trace context they were created in, so the agent's
`agent.task` span continues the control plane's trace.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stella.adapters.db.tables import JsonDocument

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = "release" if op.get_bind().dialect.name == "postgresql" else None
    op.add_column(
        "deployment_jobs", sa.Column("trace_context", JsonDocument, nullable=True), schema=schema
    )


def downgrade() -> None:
    schema = "release" if op.get_bind().dialect.name == "postgresql" else None
    op.drop_column("deployment_jobs", "trace_context", schema=schema)
