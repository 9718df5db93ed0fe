"""Use cases for targets: the hosts and services of an environment."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime

from stella.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from stella.domain.ids import new_id
from stella.domain.pagination import Page, PageRequest
from stella.domain.targets import HealthStatus, Target, validate_connection, validate_labels
from stella.domain.tenancy import Permission
from stella.services.changes import changed_fields
from stella.services.context import CallContext, record, require
from stella.services.environments import get_environment
from stella.services.ports import UnitOfWork, UnitOfWorkFactory
from stella.services.specs import TargetPatch, TargetSpec, patched


def build_target(
    uow: UnitOfWork,
    spec: TargetSpec,
    tenant_id: uuid.UUID,
    now: datetime,
    current: Target | None = None,
) -> Target:
    """Validate a spec (environment must exist, no secret values) and build the target."""
    errors = validate_connection(spec.connection) + validate_labels(spec.labels)
    agent = uow.agents.get(tenant_id, spec.agent_id) if spec.agent_id is not None else None
    if spec.agent_id is not None and agent is None:
        errors.append(FieldError("agent_id", f"agent '{spec.agent_id}' not found"))
    environment = uow.environments.get(tenant_id, spec.environment)
    if environment is None:
        errors.append(FieldError("environment", f"environment '{spec.environment}' not found"))
    elif agent is not None and agent.environment_id != environment.id:
        errors.append(FieldError("agent_id", f"agent '{agent.name}' serves another environment"))
    agent_id = agent.id if agent else None
    if errors or environment is None:
        raise ValidationFailed.of(errors)
    return Target(
        id=current.id if current else new_id(),
        tenant_id=tenant_id,
        environment_id=environment.id,
        name=spec.name,
        type=spec.type,
        labels=dict(spec.labels),
        connection=dict(spec.connection),
        agent_id=agent_id,
        state=spec.state,
        health=current.health if current else HealthStatus.UNKNOWN,
        created_at=current.created_at if current else now,
        updated_at=now,
    )


def spec_of(uow: UnitOfWork, target: Target) -> TargetSpec:
    environment = uow.environments.get_by_id(target.tenant_id, target.environment_id)
    return TargetSpec(
        name=target.name,
        environment=environment.slug if environment else str(target.environment_id),
        type=target.type,
        labels=target.labels,
        connection=target.connection,
        agent_id=str(target.agent_id) if target.agent_id else None,
        state=target.state,
    )


def get_target(uow: UnitOfWork, tenant_id: uuid.UUID, ref: str) -> Target:
    target = uow.targets.get(tenant_id, ref)
    if target is None:
        msg = f"target '{ref}' not found"
        raise NotFound(msg)
    return target


def create_target(uow_factory: UnitOfWorkFactory, ctx: CallContext, spec: TargetSpec) -> Target:
    require(ctx, Permission.ADMINISTER, uow_factory, "create targets")
    with uow_factory() as uow:
        target = build_target(uow, spec, ctx.principal.tenant_id, ctx.clock())
        if uow.targets.get(ctx.principal.tenant_id, spec.name) is not None:
            msg = f"a target named '{spec.name}' already exists"
            raise Conflict(msg)
        uow.targets.add(target)
        record(uow, ctx, "target.created", "target", target.id, {"name": target.name})
        uow.commit()
    return target


def update_target(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str, patch: TargetPatch
) -> Target:
    require(ctx, Permission.ADMINISTER, uow_factory, "change targets")
    with uow_factory() as uow:
        current = get_target(uow, ctx.principal.tenant_id, ref)
        fields = patch.model_dump(exclude_unset=True)
        health = fields.pop("health", None)
        spec = patched(TargetSpec, spec_of(uow, current).model_dump() | fields)
        updated = build_target(uow, spec, current.tenant_id, ctx.clock(), current)
        if health is not None:
            updated = replace(updated, health=HealthStatus(health))
        changes = changed_fields(current, updated)
        if not changes:
            return current
        uow.targets.update(updated)
        record(uow, ctx, "target.updated", "target", current.id, {"changed": changes})
        uow.commit()
    return updated


def delete_target(uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str) -> None:
    require(ctx, Permission.ADMINISTER, uow_factory, "delete targets")
    with uow_factory() as uow:
        target = get_target(uow, ctx.principal.tenant_id, ref)
        if uow.jobs.page(target.tenant_id, PageRequest(limit=1), target_id=target.id).items:
            msg = (
                f"target '{target.name}' has deployment history, which is kept; "
                "disable it instead (PATCH state: disabled)"
            )
            raise Conflict(msg)
        uow.targets.delete(target)
        record(uow, ctx, "target.deleted", "target", target.id, {"name": target.name})
        uow.commit()


def list_targets(
    uow: UnitOfWork, tenant_id: uuid.UUID, page: PageRequest, environment: str | None
) -> Page[Target]:
    environment_id = get_environment(uow, tenant_id, environment).id if environment else None
    return uow.targets.page(tenant_id, page, environment_id)


MAX_TARGET_PAGES = 200  # 100,000 targets per environment: a bound, not a limit anyone meets


def environment_targets(
    uow: UnitOfWork, tenant_id: uuid.UUID, environment_id: uuid.UUID | None
) -> list[Target]:
    """Every target (of one environment), following the pages: nothing is silently cut off."""
    found: list[Target] = []
    page = PageRequest(limit=500)
    for _ in range(MAX_TARGET_PAGES):
        batch = uow.targets.page(tenant_id, page, environment_id)
        found.extend(batch.items)
        if batch.next_cursor is None:
            break
        page = PageRequest.from_query(batch.next_cursor, 500)
    return found
