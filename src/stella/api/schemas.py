"""Response bodies. Field names follow the public contract (../shared/contract/api-v1.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from stella.domain.audit import AuditEvent
from stella.domain.components import Component, ComponentVersion
from stella.domain.environments import Environment
from stella.domain.integrations import Integration
from stella.domain.releases import Release
from stella.domain.targets import Target
from stella.domain.tenancy import ApiToken, User
from stella.services.apply import ApplyResult
from stella.services.specs import (
    ApprovalPolicySpec,
    DeploymentPolicySpec,
    FreezeWindowSpec,
    SecurityPolicySpec,
)

T = TypeVar("T")


class ListOf(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class EnvironmentOut(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    description: str
    promotion_order: int
    is_production: bool
    state: str
    gates: list[str]
    policies: list[str]
    approval_policy: ApprovalPolicySpec
    freeze_windows: list[FreezeWindowSpec]
    promotion_workflow: str | None
    deployment: DeploymentPolicySpec
    security: SecurityPolicySpec
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, e: Environment) -> EnvironmentOut:
        return cls(
            id=e.id,
            name=e.name,
            slug=e.slug,
            description=e.description,
            promotion_order=e.promotion_order,
            is_production=e.is_production,
            state=e.state,
            gates=list(e.gates),
            policies=list(e.policies),
            approval_policy=ApprovalPolicySpec(
                required_approvals=e.approval_policy.required_approvals,
                approver_roles=list(e.approval_policy.approver_roles),
                separation_of_duties=e.approval_policy.separation_of_duties,
            ),
            freeze_windows=[
                FreezeWindowSpec(
                    name=w.name,
                    start=w.start,
                    end=w.end,
                    rrule=w.rrule,
                    duration=w.duration,
                    timezone=w.timezone,
                )
                for w in e.freeze_windows
            ],
            promotion_workflow=e.promotion_workflow,
            deployment=DeploymentPolicySpec(**e.deployment.to_json()),
            security=SecurityPolicySpec(**e.security.to_json()),
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class TargetOut(BaseModel):
    id: uuid.UUID
    name: str
    environment_id: uuid.UUID
    type: str
    labels: dict[str, str]
    connection: dict[str, Any]
    agent_id: uuid.UUID | None
    state: str
    health: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, t: Target) -> TargetOut:
        return cls(
            id=t.id,
            name=t.name,
            environment_id=t.environment_id,
            type=t.type,
            labels=t.labels,
            connection=t.connection,
            agent_id=t.agent_id,
            state=t.state,
            health=t.health,
            created_at=t.created_at,
            updated_at=t.updated_at,
        )


class ComponentOut(BaseModel):
    id: uuid.UUID
    name: str
    repository: str
    runtime: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: Component) -> ComponentOut:
        return cls(
            id=c.id,
            name=c.name,
            repository=c.repository,
            runtime=c.runtime,
            created_at=c.created_at,
            updated_at=c.updated_at,
        )


class ComponentVersionOut(BaseModel):
    digest: str
    tag: str | None
    media_type: str | None
    pushed_at: datetime

    @classmethod
    def of(cls, v: ComponentVersion) -> ComponentVersionOut:
        return cls(digest=v.digest, tag=v.tag, media_type=v.media_type, pushed_at=v.pushed_at)


class IntegrationOut(BaseModel):
    id: uuid.UUID
    type: str
    name: str
    url: str
    credentials_ref: str | None
    webhook_secret_ref: str | None
    webhook_url: str
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    webhook_secret: str | None = None

    @classmethod
    def of(cls, i: Integration, webhook_secret: str | None = None) -> IntegrationOut:
        return cls(
            id=i.id,
            type=i.type,
            name=i.name,
            url=i.url,
            credentials_ref=i.credentials_ref,
            webhook_secret_ref=i.webhook_secret_ref,
            webhook_url=f"/api/v1/webhooks/registry/{i.id}",
            config=i.config,
            created_at=i.created_at,
            updated_at=i.updated_at,
            webhook_secret=webhook_secret,
        )


class ReleaseComponentOut(BaseModel):
    name: str
    repository: str
    digest: str
    resolved_from_tag: str | None
    media_type: str | None


class ReleaseOut(BaseModel):
    id: uuid.UUID
    name: str
    version: str
    state: str
    source_ref: str | None
    created_at: datetime
    created_by: uuid.UUID | None
    created_by_name: str
    components: list[ReleaseComponentOut]

    @classmethod
    def of(cls, r: Release) -> ReleaseOut:
        return cls(
            id=r.id,
            name=r.name,
            version=r.version,
            state=r.state,
            source_ref=r.source_ref,
            created_at=r.created_at,
            created_by=r.created_by,
            created_by_name=r.created_by_name,
            components=[
                ReleaseComponentOut(
                    name=c.name,
                    repository=c.repository,
                    digest=c.digest,
                    resolved_from_tag=c.resolved_from_tag,
                    media_type=c.media_type,
                )
                for c in r.components
            ],
        )


class UserOut(BaseModel):
    id: uuid.UUID
    name: str
    role: str
    created_at: datetime

    @classmethod
    def of(cls, u: User) -> UserOut:
        return cls(id=u.id, name=u.name, role=u.role, created_at=u.created_at)


class CreatedUserOut(UserOut):
    token: str


class TokenOut(BaseModel):
    id: uuid.UUID
    prefix: str = Field(description="the token's first characters, to recognise it")
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, token: ApiToken) -> TokenOut:
        return cls(
            id=token.id,
            prefix=token.prefix,
            created_at=token.created_at,
            revoked_at=token.revoked_at,
        )


class IssuedTokenOut(TokenOut):
    token: str = Field(description="shown in this response only, never again")


class AuditEventOut(BaseModel):
    id: uuid.UUID
    actor_id: uuid.UUID | None
    actor_name: str
    action: str
    resource_type: str
    resource_id: str | None
    occurred_at: datetime
    correlation_id: str | None
    details: dict[str, Any]

    @classmethod
    def of(cls, a: AuditEvent) -> AuditEventOut:
        return cls(
            id=a.id,
            actor_id=a.actor_id,
            actor_name=a.actor_name,
            action=a.action,
            resource_type=a.resource_type,
            resource_id=a.resource_id,
            occurred_at=a.occurred_at,
            correlation_id=a.correlation_id,
            details=a.details,
        )


class PlanEntryOut(BaseModel):
    kind: str
    name: str
    action: str
    changes: list[str]


class ApplyOut(BaseModel):
    dry_run: bool
    changed: bool
    entries: list[PlanEntryOut]
    generated_webhook_secrets: dict[str, str]

    @classmethod
    def of(cls, r: ApplyResult) -> ApplyOut:
        return cls(
            dry_run=r.dry_run,
            changed=r.changed,
            entries=[
                PlanEntryOut(kind=e.kind, name=e.name, action=e.action, changes=e.changes)
                for e in r.entries
            ],
            generated_webhook_secrets=r.generated_secrets,
        )


class WebhookOut(BaseModel):
    recorded: int
    duplicates: int
    ignored: int
