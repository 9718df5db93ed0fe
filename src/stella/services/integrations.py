"""Use cases for integrations (registries first): create, update, test the connection."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from stella.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from stella.domain.ids import new_id
from stella.domain.integrations import Integration, validate_url
from stella.domain.pagination import Page, PageRequest
from stella.domain.secrets import parse_secret_ref
from stella.domain.tenancy import Permission
from stella.services.changes import changed_fields
from stella.services.context import CallContext, record, require
from stella.services.ports import RegistryConnectorFactory, UnitOfWork, UnitOfWorkFactory
from stella.services.specs import IntegrationPatch, IntegrationSpec, patched


@dataclass(frozen=True, slots=True)
class CreatedIntegration:
    """A new integration; `webhook_secret` is set (and shown once) when Stella generated it."""

    integration: Integration
    webhook_secret: str | None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def build_integration(
    spec: IntegrationSpec,
    tenant_id: uuid.UUID,
    now: datetime,
    current: Integration | None = None,
    secret_hash: str | None = None,
) -> Integration:
    """Validate a spec (URL shape, references only) and build the integration."""
    errors = validate_url(spec.url)
    for field in ("credentials_ref", "webhook_secret_ref"):
        value = getattr(spec, field)
        if value is not None:
            try:
                parse_secret_ref(value)
            except ValueError as exc:
                errors.append(FieldError(field, f"secret values are never stored; {exc}"))
    if errors:
        raise ValidationFailed.of(errors)
    return Integration(
        id=current.id if current else new_id(),
        tenant_id=tenant_id,
        type=spec.type,
        name=spec.name,
        url=spec.url.rstrip("/"),
        credentials_ref=spec.credentials_ref,
        webhook_secret_ref=spec.webhook_secret_ref,
        webhook_secret_hash=None if spec.webhook_secret_ref else secret_hash,
        config=dict(spec.config),
        created_at=current.created_at if current else now,
        updated_at=now,
    )


def spec_of(integration: Integration) -> IntegrationSpec:
    return IntegrationSpec(
        type=integration.type,
        name=integration.name,
        url=integration.url,
        credentials_ref=integration.credentials_ref,
        webhook_secret_ref=integration.webhook_secret_ref,
        config=integration.config,
    )


def get_integration(uow: UnitOfWork, tenant_id: uuid.UUID, ref: str) -> Integration:
    integration = uow.integrations.get(tenant_id, ref)
    if integration is None:
        msg = f"integration '{ref}' not found"
        raise NotFound(msg)
    return integration


def new_webhook_secret() -> tuple[str, str]:
    """A generated webhook secret and the hash Stella keeps of it."""
    secret = secrets.token_urlsafe(32)
    return secret, hash_secret(secret)


def create_integration(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, spec: IntegrationSpec
) -> CreatedIntegration:
    """Create an integration. Without `webhook_secret_ref`, Stella generates a webhook secret."""
    require(ctx, Permission.ADMINISTER, uow_factory, "create integrations")
    secret, secret_hash = (None, None) if spec.webhook_secret_ref else new_webhook_secret()
    integration = build_integration(spec, ctx.principal.tenant_id, ctx.clock(), None, secret_hash)
    with uow_factory() as uow:
        if uow.integrations.get(ctx.principal.tenant_id, spec.name) is not None:
            msg = f"an integration named '{spec.name}' already exists"
            raise Conflict(msg)
        uow.integrations.add(integration)
        record(uow, ctx, "integration.created", "integration", integration.id, {"name": spec.name})
        uow.commit()
    return CreatedIntegration(integration, secret)


def update_integration(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str, patch: IntegrationPatch
) -> Integration:
    require(ctx, Permission.ADMINISTER, uow_factory, "change integrations")
    with uow_factory() as uow:
        current = get_integration(uow, ctx.principal.tenant_id, ref)
        data = spec_of(current).model_dump() | patch.model_dump(exclude_unset=True)
        updated = build_integration(
            patched(IntegrationSpec, data),
            current.tenant_id,
            ctx.clock(),
            current,
            current.webhook_secret_hash,
        )
        changes = changed_fields(current, updated)
        if not changes:
            return current
        uow.integrations.update(updated)
        record(uow, ctx, "integration.updated", "integration", current.id, {"changed": changes})
        uow.commit()
    return updated


def test_integration(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str, connectors: RegistryConnectorFactory
) -> Integration:
    """IIntegrationConnector.TestConnection: raise UpstreamUnavailable if it cannot connect."""
    with uow_factory(read_only=True) as uow:
        integration = get_integration(uow, ctx.principal.tenant_id, ref)
    connectors(integration.host, integration).test_connection()
    return integration


def list_integrations(
    uow: UnitOfWork, tenant_id: uuid.UUID, page: PageRequest
) -> Page[Integration]:
    return uow.integrations.page(tenant_id, page)
