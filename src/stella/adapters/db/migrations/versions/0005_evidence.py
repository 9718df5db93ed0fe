"""Evidence: sealed evidence packets, attachments (SBOM, VEX, scans, attestations), the
per-tenant audit hash chain with its heads and signed checkpoints, and the registry of signing
keys; deployment jobs remember their packet. Audit events recorded before this revision are
linked into the chain in the order they happened.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from stella.adapters.db.tables import JsonDocument, UtcDateTime
from stella.domain.audit import AuditEvent
from stella.domain.evidence import GENESIS_HASH, audit_event_digest, link_hash

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

APPEND_ONLY = ("evidence_packets", "evidence_attachments", "audit_chain", "audit_checkpoints")


def _tenant(primary_key: bool = False) -> sa.Column[Any]:
    return sa.Column(
        "tenant_id",
        sa.Uuid,
        sa.ForeignKey("tenants.id"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    schema = "release" if postgres else None
    op.add_column(
        "deployment_jobs", sa.Column("evidence_packet_id", sa.Uuid, nullable=True), schema=schema
    )
    op.create_index(
        "ix_deployment_jobs_unsealed",
        "deployment_jobs",
        ["state"],
        schema=schema,
        postgresql_where=sa.text("evidence_packet_id IS NULL"),
        sqlite_where=sa.text("evidence_packet_id IS NULL"),
    )
    op.create_table(
        "evidence_packets",
        sa.Column("id", sa.Uuid, primary_key=True),
        _tenant(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject_id", sa.Uuid, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("supersedes", sa.Uuid, nullable=True),
        sa.Column("release_id", sa.Uuid, nullable=True),
        sa.Column("environment_id", sa.Uuid, nullable=True),
        sa.Column("promotion_id", sa.Uuid, nullable=True),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("keyid", sa.String(80), nullable=False),
        sa.Column("envelope", JsonDocument, nullable=False),
        sa.Column("sealed_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("tenant_id", "kind", "subject_id", "revision"),
        sa.Index(None, "tenant_id", "id"),
        sa.Index(None, "tenant_id", "sealed_at"),
        sa.Index(None, "tenant_id", "release_id"),
        sa.Index(None, "digest"),
    )
    op.create_table(
        "evidence_attachments",
        sa.Column("id", sa.Uuid, primary_key=True),
        _tenant(),
        sa.Column("subject_digest", sa.String(140), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("media_type", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("source_ref", sa.String(255), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("created_by_name", sa.String(128), nullable=False),
        sa.UniqueConstraint("tenant_id", "subject_digest", "digest"),
        sa.Index(None, "tenant_id", "id"),
    )
    op.create_table(
        "audit_chain",
        _tenant(primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("entry_type", sa.String(16), nullable=False),
        sa.Column("entry_id", sa.Uuid, nullable=False),
        sa.Column("content_digest", sa.String(71), nullable=False),
        sa.Column("prev_hash", sa.String(71), nullable=False),
        sa.Column("entry_hash", sa.String(71), nullable=False),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
        sa.Index(None, "tenant_id", "entry_type", "entry_id"),
    )
    op.create_table(
        "audit_chain_heads",
        _tenant(primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("head_hash", sa.String(71), nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Uuid, primary_key=True),
        _tenant(),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.String(71), nullable=False),
        sa.Column("keyid", sa.String(80), nullable=False),
        sa.Column("envelope", JsonDocument, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Index(None, "tenant_id", "size"),
    )
    op.create_table(
        "signing_keys",
        sa.Column("keyid", sa.String(80), primary_key=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("public_key_pem", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("retired_at", UtcDateTime, nullable=True),
    )
    _protect(postgres)
    _chain_existing_events()


def _protect(postgres: bool) -> None:
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


def _chain_existing_events() -> None:
    """Link the audit history recorded so far, per tenant, oldest first."""
    conn = op.get_bind()
    schema = "release" if conn.dialect.name == "postgresql" else None
    events = sa.table(
        "audit_events",
        sa.column("id", sa.Uuid),
        sa.column("tenant_id", sa.Uuid),
        sa.column("actor_id", sa.Uuid),
        sa.column("actor_name", sa.String),
        sa.column("action", sa.String),
        sa.column("resource_type", sa.String),
        sa.column("resource_id", sa.String),
        sa.column("occurred_at", UtcDateTime),
        sa.column("correlation_id", sa.String),
        sa.column("details", JsonDocument),
        schema=schema,
    )
    chain = sa.table(
        "audit_chain",
        sa.column("tenant_id", sa.Uuid),
        sa.column("seq", sa.BigInteger),
        sa.column("entry_type", sa.String),
        sa.column("entry_id", sa.Uuid),
        sa.column("content_digest", sa.String),
        sa.column("prev_hash", sa.String),
        sa.column("entry_hash", sa.String),
        sa.column("recorded_at", UtcDateTime),
        schema=schema,
    )
    heads = sa.table(
        "audit_chain_heads",
        sa.column("tenant_id", sa.Uuid),
        sa.column("size", sa.BigInteger),
        sa.column("head_hash", sa.String),
        sa.column("updated_at", UtcDateTime),
        schema=schema,
    )
    now = datetime.now(UTC)
    state: dict[Any, tuple[int, str]] = {}
    rows = conn.execute(sa.select(events).order_by(events.c.occurred_at, events.c.id))
    batch: list[dict[str, Any]] = []
    for row in rows:
        event = AuditEvent(**row._mapping)
        size, prev = state.get(event.tenant_id, (0, GENESIS_HASH))
        size += 1
        content = audit_event_digest(event)
        entry_hash = link_hash(size, prev, "audit_event", str(event.id), content)
        batch.append(
            {
                "tenant_id": event.tenant_id,
                "seq": size,
                "entry_type": "audit_event",
                "entry_id": event.id,
                "content_digest": content,
                "prev_hash": prev,
                "entry_hash": entry_hash,
                "recorded_at": now,
            }
        )
        state[event.tenant_id] = (size, entry_hash)
    for start in range(0, len(batch), 1000):
        conn.execute(sa.insert(chain), batch[start : start + 1000])
    for tenant_id, (size, head) in state.items():
        conn.execute(
            sa.insert(heads).values(tenant_id=tenant_id, size=size, head_hash=head, updated_at=now)
        )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    schema = "release" if postgres else None
    for table in (
        "signing_keys",
        "audit_checkpoints",
        "audit_chain_heads",
        "audit_chain",
        "evidence_attachments",
        "evidence_packets",
    ):
        op.drop_table(table)
    op.drop_index("ix_deployment_jobs_unsealed", "deployment_jobs", schema=schema)
    op.drop_column("deployment_jobs", "evidence_packet_id", schema=schema)
