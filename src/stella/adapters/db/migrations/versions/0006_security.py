"""Security decisioning: normalised SBOM components, VEX statements, the offline advisory feed,
advisory matches per image digest, waivers, the append-only history of verdicts; environments
gain a security policy and scans remember the report they came from.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from stella.adapters.db.tables import JsonDocument, UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APPEND_ONLY = ("security_verdicts",)


def _tenant(primary_key: bool = False) -> sa.Column[Any]:
    return sa.Column(
        "tenant_id", sa.Uuid, sa.ForeignKey("tenants.id"), nullable=False, primary_key=primary_key
    )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    schema = "release" if postgres else None
    op.add_column(
        "environments", sa.Column("security_policy", JsonDocument, nullable=True), schema=schema
    )
    op.add_column(
        "scan_verdicts", sa.Column("report_digest", sa.String(71), nullable=True), schema=schema
    )
    op.create_table(
        "sbom_components",
        sa.Column("id", sa.Uuid, primary_key=True),
        _tenant(),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("attachment_digest", sa.String(71), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("version", sa.String(256), nullable=True),
        sa.Column("purl", sa.String(1024), nullable=True),
        sa.Column("ecosystem", sa.String(64), nullable=True),
        sa.Index(None, "tenant_id", "digest"),
        sa.Index(None, "tenant_id", "ecosystem", "name"),
    )
    op.create_table(
        "vex_statements",
        sa.Column("id", sa.Uuid, primary_key=True),
        _tenant(),
        sa.Column("attachment_digest", sa.String(71), nullable=False),
        sa.Column("vulnerability", sa.String(128), nullable=False),
        sa.Column("statement", JsonDocument, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Index(None, "tenant_id", "vulnerability"),
        sa.Index(None, "tenant_id", "id"),
    )
    op.create_table(
        "advisories",
        _tenant(primary_key=True),
        sa.Column("advisory_id", sa.String(128), primary_key=True),
        sa.Column("aliases", JsonDocument, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("cvss_score", sa.Float, nullable=True),
        sa.Column("cvss_vector", sa.String(255), nullable=True),
        sa.Column("modified", UtcDateTime, nullable=True),
        sa.Column("published", UtcDateTime, nullable=True),
        sa.Column("affected", JsonDocument, nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("imported_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "advisory_matches",
        _tenant(primary_key=True),
        sa.Column("digest", sa.String(140), primary_key=True),
        sa.Column("advisory_id", sa.String(128), primary_key=True),
        sa.Column("package", sa.String(512), primary_key=True),
        sa.Column("finding", JsonDocument, nullable=False),
        sa.Index(None, "tenant_id", "advisory_id"),
    )
    op.create_table(
        "waivers",
        sa.Column("id", sa.Uuid, primary_key=True),
        _tenant(),
        sa.Column("advisory_id", sa.String(128), nullable=False),
        sa.Column("package", sa.String(1024), nullable=False),
        sa.Column("environment", sa.String(63), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("created_by_name", sa.String(128), nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
        sa.Index(None, "tenant_id", "id"),
    )
    op.create_table(
        "security_verdicts",
        sa.Column("id", sa.Uuid, primary_key=True),
        _tenant(),
        sa.Column("digest", sa.String(140), nullable=False),
        sa.Column("environment_id", sa.Uuid, sa.ForeignKey("environments.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("blocking", JsonDocument, nullable=False),
        sa.Column("previous_state", sa.String(16), nullable=True),
        sa.Column("previous_blocking", JsonDocument, nullable=True),
        sa.Column("cause", sa.String(255), nullable=False),
        sa.Column("computed_at", UtcDateTime, nullable=False),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "tenant_id", "digest", "environment_id", "computed_at"),
    )
    if postgres:
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
    schema = "release" if op.get_bind().dialect.name == "postgresql" else None
    for table in (
        "security_verdicts",
        "waivers",
        "advisory_matches",
        "advisories",
        "vex_statements",
        "sbom_components",
    ):
        op.drop_table(table)
    op.drop_column("scan_verdicts", "report_digest", schema=schema)
    op.drop_column("environments", "security_policy", schema=schema)
