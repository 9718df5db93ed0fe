"""What every use case needs to know about the call: who, under which request, when."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stella.domain.audit import AuditEvent
from stella.domain.errors import PermissionDenied
from stella.domain.ids import new_id
from stella.domain.tenancy import Permission, Principal
from stella.services.ports import Clock, UnitOfWork, UnitOfWorkFactory

# what a retried request is answered with: the resource its first attempt made or changed
IDEMPOTENT_RESOURCES = frozenset(
    {
        "promotion",
        "release",
        "environment",
        "target",
        "component",
        "workflow_run",
    }
)


@dataclass(slots=True)
class IdempotencyKey:
    """The `Idempotency-Key` of a request, and whether the change it names is recorded yet."""

    key: str
    fingerprint: str
    recorded: bool = False


@dataclass(frozen=True, slots=True)
class CallContext:
    """The caller, the correlation id of the request and the clock to read time from."""

    principal: Principal
    correlation_id: str | None
    clock: Clock
    extra: dict[str, Any] = field(default_factory=dict)
    idempotency: IdempotencyKey | None = None


def record(
    uow: UnitOfWork,
    ctx: CallContext,
    action: str,
    resource_type: str,
    resource_id: object | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append an audit event inside the caller's unit of work (committed with the change).

    The first change of a request sent with an `Idempotency-Key` also records, in the same
    transaction, which resource the key made or changed: the change and the key are committed
    together or not at all, so a retry after a lost answer finds one or the other, never half."""
    key = ctx.idempotency
    if key is not None and not key.recorded and resource_type in IDEMPOTENT_RESOURCES:
        uow.idempotency.record(
            ctx.principal.tenant_id,
            str(ctx.principal.user_id),
            key.key,
            key.fingerprint,
            resource_type,
            str(resource_id),
            ctx.clock(),
        )
        key.recorded = True
    uow.audit.add(
        AuditEvent(
            id=new_id(),
            tenant_id=ctx.principal.tenant_id,
            actor_id=ctx.principal.user_id,
            actor_name=ctx.principal.name,
            action=action,
            resource_type=resource_type,
            resource_id=None if resource_id is None else str(resource_id),
            occurred_at=ctx.clock(),
            correlation_id=ctx.correlation_id,
            details=details or {},
        )
    )


def require(
    ctx: CallContext, permission: Permission, uow_factory: UnitOfWorkFactory, action: str
) -> None:
    """Raise PermissionDenied unless the caller may `permission`; the denial is audited."""
    if ctx.principal.can(permission):
        return
    with uow_factory() as uow:
        record(uow, ctx, "access.denied", "permission", permission, {"attempted": action})
        uow.commit()
    msg = f"role '{ctx.principal.role}' may not {action}; ask an admin for a role that may"
    raise PermissionDenied(msg)
