"""Registry push notifications (Docker distribution envelope) become component versions."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stella.domain.components import ComponentVersion
from stella.domain.errors import FieldError, MalformedRequest, NotFound, Unauthenticated
from stella.domain.ids import new_id
from stella.domain.integrations import Integration
from stella.domain.references import is_valid_digest
from stella.domain.tenancy import Principal, Role
from stella.services.context import CallContext, record
from stella.services.integrations import hash_secret
from stella.services.ports import Clock, SecretResolver, UnitOfWorkFactory

# Pushed layers and configs are blobs; only manifests name an image version.
_MANIFEST_TYPES = frozenset(
    {
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    }
)


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """How many events became new component versions, were already known, or were ignored."""

    recorded: int
    duplicates: int
    ignored: int


@dataclass(frozen=True, slots=True)
class _Push:
    repository: str
    digest: str
    tag: str | None
    media_type: str
    pushed_at: datetime | None


def _malformed(field: str, message: str) -> MalformedRequest:
    return MalformedRequest(f"{field}: {message}", [FieldError(field, message)])


def _parse_envelope(body: Any) -> tuple[list[_Push], int]:
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise _malformed("events", 'expected a registry notification envelope: {"events": [...]}')
    pushes: list[_Push] = []
    ignored = 0
    for index, event in enumerate(body["events"]):
        if not isinstance(event, dict) or not isinstance(event.get("action"), str):
            field = f"events.{index}.action"
            raise _malformed(field, "is missing")
        target = event.get("target")
        if event["action"] != "push":
            ignored += 1
            continue
        if not isinstance(target, dict) or not isinstance(target.get("repository"), str):
            field = f"events.{index}.target.repository"
            raise _malformed(field, "is missing")
        digest = target.get("digest")
        if not isinstance(digest, str) or not is_valid_digest(digest):
            field = f"events.{index}.target.digest"
            raise _malformed(field, "is not a digest")
        media_type = str(target.get("mediaType", ""))
        if media_type not in _MANIFEST_TYPES:
            ignored += 1
            continue
        tag = target.get("tag")
        pushes.append(
            _Push(
                target["repository"],
                digest,
                tag if isinstance(tag, str) and tag else None,
                media_type,
                _parse_time(event.get("timestamp")),
            )
        )
    return pushes, ignored


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _check_secret(
    integration: Integration, authorization: str | None, resolve_secret: SecretResolver
) -> None:
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        msg = "webhook needs Authorization: Bearer <webhook secret>"
        raise Unauthenticated(msg)
    if integration.webhook_secret_ref:
        expected = hash_secret(resolve_secret(integration.webhook_secret_ref))
    else:
        expected = integration.webhook_secret_hash or ""
    if not hmac.compare_digest(hash_secret(presented.strip()), expected):
        msg = "webhook secret does not match"
        raise Unauthenticated(msg)


def receive_registry_push(
    uow_factory: UnitOfWorkFactory,
    integration_id: str,
    authorization: str | None,
    body: Any,
    clock: Clock,
    correlation_id: str | None,
    resolve_secret: SecretResolver,
) -> WebhookOutcome:
    """Authenticate the registry, then record each pushed manifest digest (idempotently)."""
    try:
        key = uuid.UUID(integration_id)
    except ValueError:
        key = None
    with uow_factory(read_only=True) as uow:
        integration = uow.integrations.get_any_tenant(key) if key else None
    if integration is None:
        msg = f"integration '{integration_id}' not found"
        raise NotFound(msg)
    actor = Principal(None, integration.tenant_id, f"webhook:{integration.name}", Role.RELEASER)
    ctx = CallContext(actor, correlation_id, clock)
    try:
        _check_secret(integration, authorization, resolve_secret)
    except Unauthenticated:
        with uow_factory() as uow:
            record(uow, ctx, "webhook.denied", "integration", integration.id)
            uow.commit()
        raise
    pushes, ignored = _parse_envelope(body)
    recorded = duplicates = 0
    with uow_factory() as uow:
        for push in pushes:
            repository = f"{integration.host}/{push.repository}"
            components = uow.components.by_repository(integration.tenant_id, repository)
            if not components:
                ignored += 1
            for component in components:
                version = ComponentVersion(
                    new_id(),
                    integration.tenant_id,
                    component.id,
                    push.digest,
                    push.tag,
                    push.media_type,
                    push.pushed_at or clock(),
                )
                if uow.components.add_version(version):
                    recorded += 1
                    record(
                        uow,
                        ctx,
                        "component_version.recorded",
                        "component",
                        component.id,
                        {"digest": push.digest, "tag": push.tag},
                    )
                else:
                    duplicates += 1
        uow.commit()
    return WebhookOutcome(recorded, duplicates, ignored)
