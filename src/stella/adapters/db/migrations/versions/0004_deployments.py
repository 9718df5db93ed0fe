"""Deployments: agents and their join tokens, deployment jobs, content-addressed artifacts,
target observations (inventory for drift); environments gain a deployment policy and promotions
a kind (promotion or rollback).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from stella.adapters.db.tables import JsonDocument, UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

APPEND_ONLY = ("deployment_artifacts",)


def _tenant() -> sa.Column[Any]:
    return sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False)


def upgrade() -> None:
    # ALTER TABLE is not routed through schema_translate_map: name the schema on PostgreSQL
    schema = "release" if op.get_bind().dialect.name == "postgresql" else None
    op.add_column(
        "environments", sa.Column("deployment_policy", JsonDocument, nullable=True), schema=schema
    )
    op.add_column(
        "promotions",
        sa.Column("kind", sa.String(16), nullable=False, server_default="promotion"),
        schema=schema,
    )
    op.add_column("promotions", sa.Column("rollback_of", sa.Uuid, nullable=True), schema=schema)
    # workers look for `deploying` promotions on every poll
    op.create_index("ix_promotions_state", "promotions", ["state"], schema=schema)
    op.create_table(
        "agents",
        sa.Column("id", sa.Uuid, primary_key=True),
        _tenant(),
        sa.Column("environment_id", sa.Uuid, sa.ForeignKey("environments.id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("capabilities", JsonDocument, nullable=False),
        sa.Column("labels", JsonDocument, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_heartbeat", UtcDateTime, nullable=True),
        sa.Column("cert_serial", sa.String(64), nullable=False),
        sa.Column("cert_fingerprint", sa.String(64), nullable=False),
        sa.Column("health", JsonDocument, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("tenant_id", "name"),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "state", "last_heartbeat"),
    )
    op.create_table(
        "agent_join_tokens",
        sa.Column("id", sa.Uuid, primary_key=True),
        _tenant(),
        sa.Column("environment_id", sa.Uuid, sa.ForeignKey("environments.id"), nullable=False),
        sa.Column("capabilities", JsonDocument, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("used_at", UtcDateTime, nullable=True),
        sa.Column("agent_id", sa.Uuid, nullable=True),
        sa.Column("created_by_name", sa.String(128), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Index(None, "tenant_id", "id"),
    )
    op.create_table(
        "deployment_jobs",
        sa.Column("id", sa.Uuid, primary_key=True),
        _tenant(),
        sa.Column("environment_id", sa.Uuid, sa.ForeignKey("environments.id"), nullable=False),
        sa.Column("target_id", sa.Uuid, sa.ForeignKey("targets.id"), nullable=False),
        sa.Column("target_name", sa.String(128), nullable=False),
        sa.Column("release_id", sa.Uuid, sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("release_version", sa.String(128), nullable=False),
        sa.Column("promotion_id", sa.Uuid, nullable=True),
        sa.Column("run_id", sa.Uuid, nullable=True),
        sa.Column("batch", sa.String(200), nullable=False),  # the step attempt that made it
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("executor", sa.String(16), nullable=False),  # agent | worker
        sa.Column("capability", sa.String(32), nullable=False),
        sa.Column("pinned_agent_id", sa.Uuid, nullable=True),
        sa.Column("agent_id", sa.Uuid, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("task_digest", sa.String(71), nullable=False),
        sa.Column("artifacts", JsonDocument, nullable=False),
        sa.Column("task_token_hash", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime, nullable=True),
        sa.Column("timeout_seconds", sa.Float, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("log", sa.Text, nullable=False),
        sa.Column("result", JsonDocument, nullable=True),
        sa.Column("correlation_id", sa.String(128), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=True),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "tenant_id", "target_id", "id"),
        sa.Index(None, "batch"),
        sa.Index(None, "state", "environment_id", "capability"),
        sa.Index(None, "target_id", "state", "id"),  # the last successful job of a target
    )
    op.create_table(
        "deployment_artifacts",
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("digest", sa.String(71), primary_key=True),
        sa.Column("media_type", sa.String(128), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "target_observations",
        sa.Column("target_id", sa.Uuid, sa.ForeignKey("targets.id"), primary_key=True),
        _tenant(),
        sa.Column("observed_by", sa.String(160), nullable=False),
        sa.Column("containers", JsonDocument, nullable=False),
        sa.Column("observed_at", UtcDateTime, nullable=False),
    )
    _protect()


def _protect() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON release.{table} "
                "FOR EACH ROW EXECUTE FUNCTION release.forbid_rewrite()"
            )
        return
    for table in APPEND_ONLY:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def downgrade() -> None:
    for table in (
        "target_observations",
        "deployment_artifacts",
        "deployment_jobs",
        "agent_join_tokens",
        "agents",
    ):
        op.drop_table(table)
    schema = "release" if op.get_bind().dialect.name == "postgresql" else None
    op.drop_column("promotions", "rollback_of", schema=schema)
    op.drop_column("promotions", "kind", schema=schema)
    op.drop_column("environments", "deployment_policy", schema=schema)
