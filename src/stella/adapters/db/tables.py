"""Table definitions (SQLAlchemy Core). On PostgreSQL they live in the schema `release`.

Tables are declared without a schema; the engine maps `None` to `release` on PostgreSQL through
`schema_translate_map`, so one definition serves SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import text

POSTGRES_SCHEMA = "release"


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            msg = "naive datetime given to the database; use datetime.now(UTC)"
            raise ValueError(msg)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonDocument: Any = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _tenant_fk() -> Column[Any]:
    return Column("tenant_id", Uuid, ForeignKey("tenants.id"), nullable=False)


def _timestamps() -> list[Column[Any]]:
    return [
        Column("created_at", UtcDateTime, nullable=False),
        Column("updated_at", UtcDateTime, nullable=False),
    ]


tenants = Table(
    "tenants",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("created_at", UtcDateTime, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name"),
    Index(None, "tenant_id", "id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("user_id", Uuid, ForeignKey("users.id"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index(None, "tenant_id", "user_id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("principal", String(64), nullable=False),  # the user id the key belongs to
    Column("key", String(255), nullable=False),
    Column("fingerprint", String(64), nullable=False),  # sha256 of method, path and body
    Column("resource_type", String(32), nullable=False),
    Column("resource_id", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "principal", "key"),
    Index(None, "tenant_id", "id"),
    Index(None, "created_at"),  # expired keys are purged by the workers
)

environments = Table(
    "environments",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("name", String(128), nullable=False),
    Column("slug", String(63), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("promotion_order", Integer, nullable=False),
    Column("is_production", Boolean, nullable=False),
    Column("state", String(16), nullable=False),
    Column("gates", JsonDocument, nullable=False),
    Column("policies", JsonDocument, nullable=False),
    Column("approval_policy", JsonDocument, nullable=False),
    Column("freeze_windows", JsonDocument, nullable=False),
    *_timestamps(),
    Column("promotion_workflow", String(128), nullable=True),  # added in revision 0003
    Column("deployment_policy", JsonDocument, nullable=True),  # added in revision 0004
    UniqueConstraint("tenant_id", "slug"),
    UniqueConstraint("tenant_id", "promotion_order"),
    Column("security_policy", JsonDocument, nullable=True),
)

targets = Table(
    "targets",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("environment_id", Uuid, ForeignKey("environments.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("type", String(32), nullable=False),
    Column("labels", JsonDocument, nullable=False),
    Column("connection", JsonDocument, nullable=False),
    # agents arrive with the deployment issue; the foreign key is added with that table
    Column("agent_id", Uuid, nullable=True),
    Column("state", String(16), nullable=False),
    Column("health", String(16), nullable=False),
    *_timestamps(),
    UniqueConstraint("tenant_id", "name"),
    Index(None, "tenant_id", "id"),
    Index(None, "tenant_id", "environment_id", "id"),
)

components = Table(
    "components",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("name", String(128), nullable=False),
    Column("repository", String(255), nullable=False),
    Column("runtime", JsonDocument, nullable=False),
    *_timestamps(),
    UniqueConstraint("tenant_id", "name"),
    Index(None, "tenant_id", "id"),
    Index(None, "tenant_id", "repository"),
)

component_versions = Table(
    "component_versions",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("component_id", Uuid, ForeignKey("components.id"), nullable=False),
    Column("digest", String(140), nullable=False),
    # '' when the digest was pushed without a tag, so the unique key also covers that case
    Column("tag", String(128), nullable=False),
    Column("media_type", String(128), nullable=True),
    Column("pushed_at", UtcDateTime, nullable=False),
    UniqueConstraint("component_id", "digest", "tag"),
    Index(None, "tenant_id", "component_id", "id"),
)

integrations = Table(
    "integrations",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("type", String(32), nullable=False),
    Column("name", String(128), nullable=False),
    Column("url", String(255), nullable=False),
    Column("credentials_ref", String(255), nullable=True),
    Column("webhook_secret_ref", String(255), nullable=True),
    Column("webhook_secret_hash", String(64), nullable=True),
    Column("config", JsonDocument, nullable=False),
    *_timestamps(),
    UniqueConstraint("tenant_id", "name"),
    Index(None, "tenant_id", "id"),
)

releases = Table(
    "releases",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("name", String(128), nullable=False),
    Column("version", String(128), nullable=False),
    Column("source_ref", String(255), nullable=True),
    Column("state", String(16), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by", Uuid, nullable=True),
    Column("created_by_name", String(128), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "name", "version"),
    Index(None, "tenant_id", "id"),
    Index(None, "tenant_id", "name", "id"),
    Index(None, "tenant_id", "state", "id"),
)

release_components = Table(
    "release_components",
    metadata,
    Column("release_id", Uuid, ForeignKey("releases.id"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("component_id", Uuid, ForeignKey("components.id"), nullable=False),
    Column("repository", String(255), nullable=False),
    Column("digest", String(140), nullable=False),
    Column("resolved_from_tag", String(128), nullable=True),
    Column("media_type", String(128), nullable=True),
    Index(None, "digest"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("actor_id", Uuid, nullable=True),
    Column("actor_name", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_id", String(128), nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("correlation_id", String(128), nullable=True),
    Column("details", JsonDocument, nullable=False),
    Index(None, "tenant_id", "id"),
    Index(None, "tenant_id", "resource_type", "id"),
    Index(None, "tenant_id", "action", "id"),
)

workflows = Table(
    "workflows",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("description", Text, nullable=False),
    Column("inputs", JsonDocument, nullable=False),
    Column("steps", JsonDocument, nullable=False),
    Column("on_failure", String(16), nullable=False),
    Column("digest", String(71), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by_name", String(128), nullable=False),
    UniqueConstraint("tenant_id", "name", "version"),
    Index(None, "tenant_id", "id"),
)

workflow_runs = Table(
    "workflow_runs",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("workflow_id", Uuid, ForeignKey("workflows.id"), nullable=False),
    Column("workflow_name", String(128), nullable=False),
    Column("workflow_version", Integer, nullable=False),
    Column("inputs", JsonDocument, nullable=False),
    Column("state", String(16), nullable=False),
    Column("cancel_requested", Boolean, nullable=False),
    Column("last_seq", Integer, nullable=False),  # sequence number of the newest event
    Column("steps_total", Integer, nullable=False),
    Column("steps_done", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by_name", String(128), nullable=False),
    Column("correlation_id", String(128), nullable=True),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    # the rollback of a failed run is one job, leased like a step
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", UtcDateTime, nullable=True),
    Index(None, "tenant_id", "id"),
    Index(None, "tenant_id", "workflow_name", "id"),
    Index(None, "state", "id"),
)

workflow_run_steps = Table(
    "workflow_run_steps",
    metadata,
    Column("run_id", Uuid, ForeignKey("workflow_runs.id"), primary_key=True),
    Column("step_id", String(63), primary_key=True),
    Column("position", Integer, nullable=False),  # index in (level, id) order
    Column("type", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),  # executions started
    Column("failures", Integer, nullable=False),  # executions that failed (drive retries)
    Column("pending_deps", Integer, nullable=False),  # dependencies not yet done
    Column("next_attempt_at", UtcDateTime, nullable=True),  # ready: when; waiting: deadline
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", UtcDateTime, nullable=True),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("completed_seq", Integer, nullable=True),  # completion order, for rollback
    Column("outputs", JsonDocument, nullable=False),
    Column("error", Text, nullable=True),
    Column("log", Text, nullable=False),
    Index(None, "state", "next_attempt_at"),
)

workflow_run_events = Table(
    "workflow_run_events",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("run_id", Uuid, ForeignKey("workflow_runs.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", String(32), nullable=False),
    Column("step_id", String(63), nullable=True),
    Column("attempt", Integer, nullable=True),
    Column("message", Text, nullable=False),
    Column("data", JsonDocument, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("run_id", "seq"),
)

promotions = Table(
    "promotions",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("release_id", Uuid, ForeignKey("releases.id"), nullable=False),
    Column("release_name", String(128), nullable=False),
    Column("release_version", String(128), nullable=False),
    Column("source_environment_id", Uuid, ForeignKey("environments.id"), nullable=True),
    Column("source_environment", String(63), nullable=True),
    Column("target_environment_id", Uuid, ForeignKey("environments.id"), nullable=False),
    Column("target_environment", String(63), nullable=False),
    Column("requested_by", Uuid, nullable=True),
    Column("requested_by_name", String(128), nullable=False),
    Column("requested_at", UtcDateTime, nullable=False),
    Column("state", String(24), nullable=False),  # current state; history in promotion_events
    Column("updated_at", UtcDateTime, nullable=False),
    Column("run_id", Uuid, nullable=True),  # the promotion workflow's run, once approved
    Column("kind", String(16), nullable=False, server_default="promotion"),  # or rollback
    Column("rollback_of", Uuid, nullable=True),  # the promotion a rollback undoes
    Index(None, "tenant_id", "id"),
    Index(None, "tenant_id", "target_environment_id", "state", "id"),
    Index(None, "tenant_id", "release_id", "target_environment_id"),
    Index(None, "state"),  # workers look for `deploying` promotions on every poll
)

promotion_events = Table(
    "promotion_events",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("promotion_id", Uuid, ForeignKey("promotions.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("from_state", String(24), nullable=True),
    Column("to_state", String(24), nullable=False),
    Column("actor_id", Uuid, nullable=True),
    Column("actor_name", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("promotion_id", "seq"),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("promotion_id", Uuid, ForeignKey("promotions.id"), nullable=False),
    Column("user_id", Uuid, nullable=True),
    Column("user_name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("decision", String(8), nullable=False),
    Column("comment", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    UniqueConstraint("promotion_id", "user_name"),
)

promotion_evaluations = Table(
    "promotion_evaluations",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("promotion_id", Uuid, ForeignKey("promotions.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("context", JsonDocument, nullable=False),
    Column("results", JsonDocument, nullable=False),
    Column("outcome", String(24), nullable=False),
    Column("reason", Text, nullable=False),
    Column("evaluated_at", UtcDateTime, nullable=False),
    UniqueConstraint("promotion_id", "seq"),
)

promotion_overrides = Table(
    "promotion_overrides",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("promotion_id", Uuid, ForeignKey("promotions.id"), nullable=False),
    Column("gate", String(32), nullable=False),
    Column("user_name", String(128), nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

decisions = Table(
    "decisions",
    metadata,
    Column("promotion_id", Uuid, ForeignKey("promotions.id"), primary_key=True),
    Column("evaluation_id", Uuid, ForeignKey("promotion_evaluations.id"), nullable=False),
    Column("outcome", String(24), nullable=False),
    Column("reason", Text, nullable=False),
    Column("envelope", JsonDocument, nullable=False),
    Column("envelope_digest", String(71), nullable=False),
    Column("keyid", String(80), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

policies = Table(
    "policies",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("rego", Text, nullable=False),
    Column("hash", String(71), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by_name", String(128), nullable=False),
    UniqueConstraint("tenant_id", "name", "version"),
    Index(None, "tenant_id", "id"),
)

scan_verdicts = Table(
    "scan_verdicts",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("digest", String(140), nullable=False),
    Column("format", String(16), nullable=False),
    Column("findings", JsonDocument, nullable=False),
    Column("blocking", JsonDocument, nullable=False),  # ids of reachable critical/high findings
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by_name", String(128), nullable=False),
    Index(None, "tenant_id", "id"),
    Index(None, "tenant_id", "digest", "id"),
    Column("report_digest", String(71), nullable=True),
)

agents = Table(
    "agents",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("environment_id", Uuid, ForeignKey("environments.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("capabilities", JsonDocument, nullable=False),
    Column("labels", JsonDocument, nullable=False),
    Column("state", String(16), nullable=False),
    Column("last_heartbeat", UtcDateTime, nullable=True),
    Column("cert_serial", String(64), nullable=False),
    Column("cert_fingerprint", String(64), nullable=False),
    Column("health", JsonDocument, nullable=False),
    *_timestamps(),
    UniqueConstraint("tenant_id", "name"),
    Index(None, "tenant_id", "id"),
    Index(None, "state", "last_heartbeat"),
)

agent_join_tokens = Table(
    "agent_join_tokens",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("environment_id", Uuid, ForeignKey("environments.id"), nullable=False),
    Column("capabilities", JsonDocument, nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Column("agent_id", Uuid, nullable=True),
    Column("created_by_name", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "id"),
)

deployment_jobs = Table(
    "deployment_jobs",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("environment_id", Uuid, ForeignKey("environments.id"), nullable=False),
    Column("target_id", Uuid, ForeignKey("targets.id"), nullable=False),
    Column("target_name", String(128), nullable=False),
    Column("release_id", Uuid, ForeignKey("releases.id"), nullable=False),
    Column("release_version", String(128), nullable=False),
    Column("promotion_id", Uuid, nullable=True),
    Column("run_id", Uuid, nullable=True),
    Column("batch", String(200), nullable=False),  # the step attempt that made it
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("executor", String(16), nullable=False),  # agent | worker
    Column("capability", String(32), nullable=False),
    Column("pinned_agent_id", Uuid, nullable=True),
    Column("agent_id", Uuid, nullable=True),
    Column("attempt", Integer, nullable=False),
    Column("task_digest", String(71), nullable=False),
    Column("artifacts", JsonDocument, nullable=False),
    Column("task_token_hash", String(64), nullable=True),
    Column("lease_expires_at", UtcDateTime, nullable=True),
    Column("timeout_seconds", Float, nullable=False),
    Column("error", Text, nullable=True),
    Column("log", Text, nullable=False),
    Column("result", JsonDocument, nullable=True),
    Column("correlation_id", String(128), nullable=True),
    *_timestamps(),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Index(None, "tenant_id", "id"),
    Index(None, "tenant_id", "target_id", "id"),
    Index(None, "batch"),
    Index(None, "state", "environment_id", "capability"),
    Index(None, "target_id", "state", "id"),  # the last successful job of a target
    Column("evidence_packet_id", Uuid, nullable=True),
    # the evidence sealer looks only at finished jobs that have no packet yet
    Index(
        "ix_deployment_jobs_unsealed",
        "state",
        postgresql_where=text("evidence_packet_id IS NULL"),
        sqlite_where=text("evidence_packet_id IS NULL"),
    ),
    Column("trace_context", JsonDocument, nullable=True),  # W3C traceparent/tracestate
)

deployment_artifacts = Table(
    "deployment_artifacts",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenants.id"), primary_key=True),
    Column("digest", String(71), primary_key=True),
    Column("media_type", String(128), nullable=False),
    Column("content", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

target_observations = Table(
    "target_observations",
    metadata,
    Column("target_id", Uuid, ForeignKey("targets.id"), primary_key=True),
    _tenant_fk(),
    Column("observed_by", String(160), nullable=False),
    Column("containers", JsonDocument, nullable=False),
    Column("observed_at", UtcDateTime, nullable=False),
)

evidence_packets = Table(
    "evidence_packets",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("kind", String(32), nullable=False),  # promotion_decision | deployment
    Column("subject_id", Uuid, nullable=False),  # the promotion or the deployment job
    Column("revision", Integer, nullable=False),
    Column("supersedes", Uuid, nullable=True),
    Column("release_id", Uuid, nullable=True),
    Column("environment_id", Uuid, nullable=True),
    Column("promotion_id", Uuid, nullable=True),
    Column("digest", String(71), nullable=False),  # sha256 of the signed statement
    Column("keyid", String(80), nullable=False),
    Column("envelope", JsonDocument, nullable=False),
    Column("sealed_at", UtcDateTime, nullable=False),
    UniqueConstraint("tenant_id", "kind", "subject_id", "revision"),
    Index(None, "tenant_id", "id"),
    Index(None, "tenant_id", "sealed_at"),
    Index(None, "tenant_id", "release_id"),
    Index(None, "digest"),
)

evidence_attachments = Table(
    "evidence_attachments",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("subject_digest", String(140), nullable=False),  # the component's image digest
    Column("kind", String(16), nullable=False),  # sbom | vex | scan | attestation
    Column("format", String(32), nullable=False),
    Column("media_type", String(128), nullable=False),
    Column("digest", String(71), nullable=False),  # sha256 of the content
    Column("size", Integer, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("source", String(16), nullable=False),  # upload | referrers
    Column("source_ref", String(255), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by_name", String(128), nullable=False),
    UniqueConstraint("tenant_id", "subject_digest", "digest"),
    Index(None, "tenant_id", "id"),
)

audit_chain = Table(
    "audit_chain",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenants.id"), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("entry_type", String(16), nullable=False),  # audit_event | evidence_packet
    Column("entry_id", Uuid, nullable=False),
    Column("content_digest", String(71), nullable=False),
    Column("prev_hash", String(71), nullable=False),
    Column("entry_hash", String(71), nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "entry_type", "entry_id"),
)

audit_chain_heads = Table(
    "audit_chain_heads",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenants.id"), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("head_hash", String(71), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("size", BigInteger, nullable=False),
    Column("root_hash", String(71), nullable=False),
    Column("keyid", String(80), nullable=False),
    Column("envelope", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "size"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("keyid", String(80), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("public_key_pem", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
)

sbom_components = Table(
    "sbom_components",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("digest", String(140), nullable=False),  # the image the SBOM describes
    Column("attachment_digest", String(71), nullable=False),
    Column("name", String(512), nullable=False),
    Column("version", String(256), nullable=True),
    Column("purl", String(1024), nullable=True),
    Column("ecosystem", String(64), nullable=True),
    Index(None, "tenant_id", "digest"),
    Index(None, "tenant_id", "ecosystem", "name"),
)

vex_statements = Table(
    "vex_statements",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("attachment_digest", String(71), nullable=False),
    Column("vulnerability", String(128), nullable=False),
    Column("statement", JsonDocument, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "vulnerability"),
    Index(None, "tenant_id", "id"),
)

advisories = Table(
    "advisories",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenants.id"), primary_key=True),
    Column("advisory_id", String(128), primary_key=True),
    Column("aliases", JsonDocument, nullable=False),
    Column("summary", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("cvss_score", Float, nullable=True),
    Column("cvss_vector", String(255), nullable=True),
    Column("modified", UtcDateTime, nullable=True),
    Column("published", UtcDateTime, nullable=True),
    Column("affected", JsonDocument, nullable=False),
    Column("digest", String(71), nullable=False),  # of the advisory as imported
    Column("imported_at", UtcDateTime, nullable=False),
    # `aliases @> '["CVE-…"]'` (ids_for); PostgreSQL only: SQLite cannot index JSON members
    Index(
        None, "aliases", postgresql_using="gin", postgresql_ops={"aliases": "jsonb_path_ops"}
    ).ddl_if(dialect="postgresql"),
)

advisory_matches = Table(
    "advisory_matches",
    metadata,
    Column("tenant_id", Uuid, ForeignKey("tenants.id"), primary_key=True),
    Column("digest", String(140), primary_key=True),
    Column("advisory_id", String(128), primary_key=True),
    Column("package", String(512), primary_key=True),
    Column("finding", JsonDocument, nullable=False),
    Index(None, "tenant_id", "advisory_id"),
)

waivers = Table(
    "waivers",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("advisory_id", String(128), nullable=False),
    Column("package", String(1024), nullable=False),
    Column("environment", String(63), nullable=True),
    Column("reason", Text, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("created_by_name", String(128), nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("expiry_handled_at", UtcDateTime, nullable=True),  # verdicts re-evaluated at expiry
    Index(None, "tenant_id", "id"),
    Index("ix_waivers_expiry", "expiry_handled_at", "expires_at"),
)

security_verdicts = Table(
    "security_verdicts",
    metadata,
    Column("id", Uuid, primary_key=True),
    _tenant_fk(),
    Column("digest", String(140), nullable=False),
    Column("environment_id", Uuid, ForeignKey("environments.id"), nullable=False),
    Column("state", String(16), nullable=False),  # pass | fail | unknown
    Column("reason", Text, nullable=False),
    Column("blocking", JsonDocument, nullable=False),
    Column("previous_state", String(16), nullable=True),
    Column("previous_blocking", JsonDocument, nullable=True),
    Column("cause", String(255), nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
    Index(None, "tenant_id", "id"),
    Index(None, "tenant_id", "digest", "environment_id", "computed_at"),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # sha256 of the cookie value
    _tenant_fk(),
    Column("token_hash", String(64), nullable=False),  # the API token it signed in with
    Column("csrf", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index(None, "expires_at"),
)
