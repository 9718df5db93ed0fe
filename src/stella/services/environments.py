"""Use cases for environments: create, update, delete, and building one from its spec."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime

from dateutil.rrule import rrulestr

from stella.domain.deployments import DeploymentPolicy
from stella.domain.environments import (
    ApprovalPolicy,
    Environment,
    FreezeWindow,
    validate_environment_fields,
    validate_freeze_window,
)
from stella.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from stella.domain.ids import new_id
from stella.domain.pagination import Page, PageRequest
from stella.domain.security import SecurityPolicy
from stella.domain.tenancy import Permission
from stella.services.changes import changed_fields
from stella.services.context import CallContext, record, require
from stella.services.ports import UnitOfWork, UnitOfWorkFactory
from stella.services.specs import EnvironmentPatch, EnvironmentSpec, patched


def build_environment(
    spec: EnvironmentSpec, tenant_id: uuid.UUID, now: datetime, current: Environment | None = None
) -> Environment:
    """Validate a spec and turn it into an environment (keeping id and created_at of `current`)."""
    policy = ApprovalPolicy(
        required_approvals=spec.approval_policy.required_approvals,
        approver_roles=tuple(spec.approval_policy.approver_roles),
        separation_of_duties=spec.approval_policy.separation_of_duties,
    )
    windows = tuple(FreezeWindow(**w.model_dump()) for w in spec.freeze_windows)
    errors = validate_environment_fields(spec.slug, spec.promotion_order, policy)
    for index, window in enumerate(windows):
        found = validate_freeze_window(window, f"freeze_windows.{index}")
        errors.extend(found or _check_rule(window, f"freeze_windows.{index}"))
    if errors:
        raise ValidationFailed.of(errors)
    return Environment(
        id=current.id if current else new_id(),
        tenant_id=tenant_id,
        name=spec.name,
        slug=spec.slug,
        description=spec.description,
        promotion_order=spec.promotion_order,
        is_production=spec.is_production,
        state=spec.state,
        gates=tuple(dict.fromkeys(spec.gates)),
        policies=tuple(spec.policies),
        approval_policy=policy,
        freeze_windows=windows,
        created_at=current.created_at if current else now,
        updated_at=now,
        promotion_workflow=spec.promotion_workflow,
        deployment=DeploymentPolicy(**spec.deployment.model_dump()),
        security=SecurityPolicy.from_json(spec.security.model_dump()),
    )


def _check_rule(window: FreezeWindow, path: str) -> list[FieldError]:
    """The recurrence must be one the evaluator can expand (RFC 5545 RRULE)."""
    if window.rrule is None:
        return []
    try:
        rrulestr(window.rrule, dtstart=datetime.fromisoformat(window.start).replace(tzinfo=None))
    except (ValueError, TypeError) as exc:
        return [FieldError(f"{path}.rrule", f"not a valid RRULE: {exc}")]
    return []


def spec_of(environment: Environment) -> EnvironmentSpec:
    """The spec that would build `environment` (the starting point of a PATCH)."""
    data = asdict(environment)
    for key in ("id", "tenant_id", "created_at", "updated_at"):
        data.pop(key)
    data["freeze_windows"] = [
        {k: v for k, v in w.items() if v is not None} for w in data["freeze_windows"]
    ]
    return EnvironmentSpec.model_validate(data)


def check_order_free(uow: UnitOfWork, environment: Environment) -> None:
    """Promotion orders are unique per tenant; say which environment holds the order."""
    for other in uow.environments.all(environment.tenant_id):
        if other.id != environment.id and other.promotion_order == environment.promotion_order:
            msg = (
                f"promotion_order {environment.promotion_order} is already used by "
                f"environment '{other.slug}'"
            )
            raise Conflict(msg)
        if other.id != environment.id and other.slug == environment.slug:
            msg = f"an environment with slug '{environment.slug}' already exists"
            raise Conflict(msg)


def create_environment(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, spec: EnvironmentSpec
) -> Environment:
    require(ctx, Permission.ADMINISTER, uow_factory, "create environments")
    environment = build_environment(spec, ctx.principal.tenant_id, ctx.clock())
    with uow_factory() as uow:
        check_order_free(uow, environment)
        uow.environments.add(environment)
        record(uow, ctx, "environment.created", "environment", environment.id, {"slug": spec.slug})
        uow.commit()
    return environment


def get_environment(uow: UnitOfWork, tenant_id: uuid.UUID, ref: str) -> Environment:
    environment = uow.environments.get(tenant_id, ref)
    if environment is None:
        msg = f"environment '{ref}' not found"
        raise NotFound(msg)
    return environment


def update_environment(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str, patch: EnvironmentPatch
) -> Environment:
    require(ctx, Permission.ADMINISTER, uow_factory, "change environments")
    with uow_factory() as uow:
        current = get_environment(uow, ctx.principal.tenant_id, ref)
        base = spec_of(current).model_dump()
        changes_in = patch.model_dump(exclude_unset=True)
        if patch.deployment is not None:  # a partial `deployment` changes only what it names
            changes_in["deployment"] = base["deployment"] | patch.deployment.model_dump(
                exclude_unset=True
            )
        if patch.security is not None:  # likewise for `security`
            changes_in["security"] = base["security"] | patch.security.model_dump(
                exclude_unset=True
            )
        data = base | changes_in
        spec = patched(EnvironmentSpec, data)
        updated = build_environment(spec, current.tenant_id, ctx.clock(), current)
        changes = changed_fields(current, updated)
        if not changes:
            return current
        check_order_free(uow, updated)
        uow.environments.update(updated)
        record(uow, ctx, "environment.updated", "environment", current.id, {"changed": changes})
        uow.commit()
    return updated


def delete_environment(uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str) -> None:
    require(ctx, Permission.ADMINISTER, uow_factory, "delete environments")
    with uow_factory() as uow:
        environment = get_environment(uow, ctx.principal.tenant_id, ref)
        if uow.environments.has_targets(environment):
            msg = (
                f"environment '{environment.slug}' still has targets; move or delete them, "
                "or set its state to retired"
            )
            raise Conflict(msg)
        history = uow.environments.history_of(environment)
        if history:
            msg = (
                f"environment '{environment.slug}' has recorded history "
                f"({', '.join(sorted(history))}) that must stay; set its state to retired instead"
            )
            raise Conflict(msg)
        uow.environments.delete(environment)
        record(uow, ctx, "environment.deleted", "environment", environment.id)
        uow.commit()


def list_environments(
    uow: UnitOfWork, tenant_id: uuid.UUID, page: PageRequest
) -> Page[Environment]:
    return uow.environments.page(tenant_id, page)
