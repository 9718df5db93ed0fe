"""Foundation: tenants, users, tokens, environments, targets, components, releases, audit.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from alembic import op

from stella.adapters.db.tables import JsonDocument, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column[uuid.UUID]:
    return sa.Column("id", sa.Uuid, primary_key=True)


def _tenant() -> sa.Column[uuid.UUID]:
    return sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False)


def _stamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "tenants",
        _id(),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "users",
        _id(),
        _tenant(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("tenant_id", "name"),
        sa.Index(None, "tenant_id", "id"),
    )
    op.create_table(
        "api_tokens",
        _id(),
        _tenant(),
        sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
        sa.Index(None, "tenant_id", "user_id"),
    )
    op.create_table(
        "environments",
        _id(),
        _tenant(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("slug", sa.String(63), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("promotion_order", sa.Integer, nullable=False),
        sa.Column("is_production", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("gates", JsonDocument, nullable=False),
        sa.Column("policies", JsonDocument, nullable=False),
        sa.Column("approval_policy", JsonDocument, nullable=False),
        sa.Column("freeze_windows", JsonDocument, nullable=False),
        *_stamps(),
        sa.UniqueConstraint("tenant_id", "slug"),
        sa.UniqueConstraint("tenant_id", "promotion_order"),
    )
    op.create_table(
        "targets",
        _id(),
        _tenant(),
        sa.Column("environment_id", sa.Uuid, sa.ForeignKey("environments.id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("labels", JsonDocument, nullable=False),
        sa.Column("connection", JsonDocument, nullable=False),
        sa.Column("agent_id", sa.Uuid, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("health", sa.String(16), nullable=False),
        *_stamps(),
        sa.UniqueConstraint("tenant_id", "name"),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "tenant_id", "environment_id", "id"),
    )
    op.create_table(
        "components",
        _id(),
        _tenant(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("runtime", JsonDocument, nullable=False),
        *_stamps(),
        sa.UniqueConstraint("tenant_id", "name"),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "tenant_id", "repository"),
    )
    op.create_table(
        "component_versions",
        _id(),
        _tenant(),
        sa.Column("component_id", sa.Uuid, sa.ForeignKey("components.id"), nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("tag", sa.String(128), nullable=False),
        sa.Column("media_type", sa.String(128), nullable=True),
        sa.Column("pushed_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("component_id", "digest", "tag"),
        sa.Index(None, "tenant_id", "component_id", "id"),
    )
    op.create_table(
        "integrations",
        _id(),
        _tenant(),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("url", sa.String(255), nullable=False),
        sa.Column("credentials_ref", sa.String(255), nullable=True),
        sa.Column("webhook_secret_ref", sa.String(255), nullable=True),
        sa.Column("webhook_secret_hash", sa.String(64), nullable=True),
        sa.Column("config", JsonDocument, nullable=False),
        *_stamps(),
        sa.UniqueConstraint("tenant_id", "name"),
        sa.Index(None, "tenant_id", "id"),
    )
    op.create_table(
        "releases",
        _id(),
        _tenant(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("source_ref", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("created_by", sa.Uuid, nullable=True),
        sa.Column("created_by_name", sa.String(128), nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("tenant_id", "name", "version"),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "tenant_id", "name", "id"),
        sa.Index(None, "tenant_id", "state", "id"),
    )
    op.create_table(
        "release_components",
        sa.Column("release_id", sa.Uuid, sa.ForeignKey("releases.id"), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("component_id", sa.Uuid, sa.ForeignKey("components.id"), nullable=False),
        sa.Column("repository", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("resolved_from_tag", sa.String(128), nullable=True),
        sa.Column("media_type", sa.String(128), nullable=True),
        sa.Index(None, "digest"),
    )
    op.create_table(
        "audit_events",
        _id(),
        _tenant(),
        sa.Column("actor_id", sa.Uuid, nullable=True),
        sa.Column("actor_name", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(128), nullable=True),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=True),
        sa.Column("details", JsonDocument, nullable=False),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "tenant_id", "resource_type", "id"),
        sa.Index(None, "tenant_id", "action", "id"),
    )
    _protect_history()


def _protect_history() -> None:
    """The database itself refuses to rewrite audit events and release contents."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION release.forbid_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in ("audit_events", "release_components"):
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON release.{table} "
                "FOR EACH ROW EXECUTE FUNCTION release.forbid_rewrite()"
            )
        op.execute(
            "CREATE TRIGGER releases_identity_immutable BEFORE DELETE OR UPDATE OF "
            "tenant_id, name, version, source_ref, created_at, created_by ON release.releases "
            "FOR EACH ROW EXECUTE FUNCTION release.forbid_rewrite()"
        )
        return
    for table in ("audit_events", "release_components"):
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    op.execute(
        "CREATE TRIGGER releases_identity_immutable BEFORE UPDATE OF "
        "tenant_id, name, version, source_ref, created_at, created_by ON releases "
        "BEGIN SELECT RAISE(ABORT, 'releases are immutable'); END"
    )
    op.execute(
        "CREATE TRIGGER releases_no_delete BEFORE DELETE ON releases "
        "BEGIN SELECT RAISE(ABORT, 'releases are immutable'); END"
    )


def downgrade() -> None:
    for table in (
        "audit_events",
        "release_components",
        "releases",
        "integrations",
        "component_versions",
        "components",
        "targets",
        "environments",
        "api_tokens",
        "users",
        "tenants",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS release.forbid_rewrite()")
