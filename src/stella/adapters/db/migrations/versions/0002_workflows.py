"""Workflow engine: templates, runs, per-step state and the append-only run event log.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stella.adapters.db.tables import JsonDocument, UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tenant = sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False)
    op.create_table(
        "workflows",
        sa.Column("id", sa.Uuid, primary_key=True),
        tenant,
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("inputs", JsonDocument, nullable=False),
        sa.Column("steps", JsonDocument, nullable=False),
        sa.Column("on_failure", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("created_by_name", sa.String(128), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", "version"),
        sa.Index(None, "tenant_id", "id"),
    )
    op.create_table(
        "workflow_runs",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("workflow_id", sa.Uuid, sa.ForeignKey("workflows.id"), nullable=False),
        sa.Column("workflow_name", sa.String(128), nullable=False),
        sa.Column("workflow_version", sa.Integer, nullable=False),
        sa.Column("inputs", JsonDocument, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("last_seq", sa.Integer, nullable=False),
        sa.Column("steps_total", sa.Integer, nullable=False),
        sa.Column("steps_done", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("created_by_name", sa.String(128), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=True),
        sa.Column("started_at", UtcDateTime, nullable=True),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime, nullable=True),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "tenant_id", "workflow_name", "id"),
        sa.Index(None, "state", "id"),
    )
    op.create_table(
        "workflow_run_steps",
        sa.Column("run_id", sa.Uuid, sa.ForeignKey("workflow_runs.id"), primary_key=True),
        sa.Column("step_id", sa.String(63), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("pending_deps", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", UtcDateTime, nullable=True),
        sa.Column("started_at", UtcDateTime, nullable=True),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.Column("completed_seq", sa.Integer, nullable=True),
        sa.Column("outputs", JsonDocument, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("log", sa.Text, nullable=False),
        sa.Index(None, "state", "next_attempt_at"),
    )
    op.create_table(
        "workflow_run_events",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("run_id", sa.Uuid, sa.ForeignKey("workflow_runs.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("step_id", sa.String(63), nullable=True),
        sa.Column("attempt", sa.Integer, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data", JsonDocument, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("run_id", "seq"),
    )
    _protect_events()


def _protect_events() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER workflow_run_events_append_only BEFORE UPDATE OR DELETE ON "
            "release.workflow_run_events FOR EACH ROW EXECUTE FUNCTION release.forbid_rewrite()"
        )
        op.execute(
            "CREATE TRIGGER workflows_immutable BEFORE UPDATE OR DELETE ON release.workflows "
            "FOR EACH ROW EXECUTE FUNCTION release.forbid_rewrite()"
        )
        return
    for table in ("workflow_run_events", "workflows"):
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def downgrade() -> None:
    for table in ("workflow_run_events", "workflow_run_steps", "workflow_runs", "workflows"):
        op.drop_table(table)
