"""Promotions: requests, append-only events, approvals, evaluations, signed decisions, policies,
scan verdicts.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stella.adapters.db.tables import JsonDocument, UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APPEND_ONLY = (
    "promotion_events",
    "approvals",
    "promotion_evaluations",
    "promotion_overrides",
    "decisions",
    "policies",
)


def upgrade() -> None:
    # ALTER TABLE is not routed through schema_translate_map: name the schema on PostgreSQL
    schema = "release" if op.get_bind().dialect.name == "postgresql" else None
    op.add_column(
        "environments",
        sa.Column("promotion_workflow", sa.String(128), nullable=True),
        schema=schema,
    )
    op.create_table(
        "promotions",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("release_id", sa.Uuid, sa.ForeignKey("releases.id"), nullable=False),
        sa.Column("release_name", sa.String(128), nullable=False),
        sa.Column("release_version", sa.String(128), nullable=False),
        sa.Column(
            "source_environment_id", sa.Uuid, sa.ForeignKey("environments.id"), nullable=True
        ),
        sa.Column("source_environment", sa.String(63), nullable=True),
        sa.Column(
            "target_environment_id", sa.Uuid, sa.ForeignKey("environments.id"), nullable=False
        ),
        sa.Column("target_environment", sa.String(63), nullable=False),
        sa.Column("requested_by", sa.Uuid, nullable=True),
        sa.Column("requested_by_name", sa.String(128), nullable=False),
        sa.Column("requested_at", UtcDateTime, nullable=False),
        sa.Column(
            "state", sa.String(24), nullable=False
        ),  # current state; history in promotion_events
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("run_id", sa.Uuid, nullable=True),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "tenant_id", "target_environment_id", "state", "id"),
        sa.Index(None, "tenant_id", "release_id", "target_environment_id"),
    )
    op.create_table(
        "promotion_events",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("promotion_id", sa.Uuid, sa.ForeignKey("promotions.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("from_state", sa.String(24), nullable=True),
        sa.Column("to_state", sa.String(24), nullable=False),
        sa.Column("actor_id", sa.Uuid, nullable=True),
        sa.Column("actor_name", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("promotion_id", "seq"),
    )
    op.create_table(
        "approvals",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("promotion_id", sa.Uuid, sa.ForeignKey("promotions.id"), nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=True),
        sa.Column("user_name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("promotion_id", "user_name"),
    )
    op.create_table(
        "promotion_evaluations",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("promotion_id", sa.Uuid, sa.ForeignKey("promotions.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("context", JsonDocument, nullable=False),
        sa.Column("results", JsonDocument, nullable=False),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evaluated_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("promotion_id", "seq"),
    )
    op.create_table(
        "promotion_overrides",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("promotion_id", sa.Uuid, sa.ForeignKey("promotions.id"), nullable=False),
        sa.Column("gate", sa.String(32), nullable=False),
        sa.Column("user_name", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "decisions",
        sa.Column("promotion_id", sa.Uuid, sa.ForeignKey("promotions.id"), primary_key=True),
        sa.Column(
            "evaluation_id", sa.Uuid, sa.ForeignKey("promotion_evaluations.id"), nullable=False
        ),
        sa.Column("outcome", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("envelope", JsonDocument, nullable=False),
        sa.Column("envelope_digest", sa.String(71), nullable=False),
        sa.Column("keyid", sa.String(80), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("rego", sa.Text, nullable=False),
        sa.Column("hash", sa.String(71), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("created_by_name", sa.String(128), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", "version"),
        sa.Index(None, "tenant_id", "id"),
    )
    op.create_table(
        "scan_verdicts",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("findings", JsonDocument, nullable=False),
        sa.Column(
            "blocking", JsonDocument, nullable=False
        ),  # ids of reachable critical/high findings
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("created_by_name", sa.String(128), nullable=False),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "tenant_id", "digest", "id"),
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
        "scan_verdicts",
        "policies",
        "decisions",
        "promotion_overrides",
        "promotion_evaluations",
        "approvals",
        "promotion_events",
        "promotions",
    ):
        op.drop_table(table)
