"""Use cases for components and the versions pushed for them."""

from __future__ import annotations

import uuid
from datetime import datetime

from stella.domain.components import Component, ComponentVersion, validate_runtime
from stella.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from stella.domain.ids import new_id
from stella.domain.pagination import Page, PageRequest
from stella.domain.references import InvalidReference, parse_repository
from stella.domain.tenancy import Permission
from stella.services.changes import changed_fields
from stella.services.context import CallContext, record, require
from stella.services.ports import UnitOfWork, UnitOfWorkFactory
from stella.services.specs import ComponentPatch, ComponentSpec, patched


def build_component(
    spec: ComponentSpec, tenant_id: uuid.UUID, now: datetime, current: Component | None = None
) -> Component:
    """Validate a spec (fully qualified repository, known runtime keys) and build the component."""
    errors = validate_runtime(spec.runtime)
    try:
        parse_repository(spec.repository)
    except InvalidReference as exc:
        errors.insert(0, FieldError("repository", str(exc)))
    if errors:
        raise ValidationFailed.of(errors)
    return Component(
        id=current.id if current else new_id(),
        tenant_id=tenant_id,
        name=spec.name,
        repository=spec.repository,
        runtime=dict(spec.runtime),
        created_at=current.created_at if current else now,
        updated_at=now,
    )


def spec_of(component: Component) -> ComponentSpec:
    return ComponentSpec(
        name=component.name, repository=component.repository, runtime=component.runtime
    )


def get_component(uow: UnitOfWork, tenant_id: uuid.UUID, ref: str) -> Component:
    component = uow.components.get(tenant_id, ref)
    if component is None:
        msg = f"component '{ref}' not found"
        raise NotFound(msg)
    return component


def create_component(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, spec: ComponentSpec
) -> Component:
    require(ctx, Permission.MANAGE_RELEASES, uow_factory, "create components")
    component = build_component(spec, ctx.principal.tenant_id, ctx.clock())
    with uow_factory() as uow:
        if uow.components.get(ctx.principal.tenant_id, spec.name) is not None:
            msg = f"a component named '{spec.name}' already exists"
            raise Conflict(msg)
        uow.components.add(component)
        record(uow, ctx, "component.created", "component", component.id, {"name": spec.name})
        uow.commit()
    return component


def update_component(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str, patch: ComponentPatch
) -> Component:
    require(ctx, Permission.MANAGE_RELEASES, uow_factory, "change components")
    with uow_factory() as uow:
        current = get_component(uow, ctx.principal.tenant_id, ref)
        data = spec_of(current).model_dump() | patch.model_dump(exclude_unset=True)
        updated = build_component(
            patched(ComponentSpec, data), current.tenant_id, ctx.clock(), current
        )
        changes = changed_fields(current, updated)
        if not changes:
            return current
        uow.components.update(updated)
        record(uow, ctx, "component.updated", "component", current.id, {"changed": changes})
        uow.commit()
    return updated


def list_components(uow: UnitOfWork, tenant_id: uuid.UUID, page: PageRequest) -> Page[Component]:
    return uow.components.page(tenant_id, page)


def list_component_versions(
    uow: UnitOfWork, tenant_id: uuid.UUID, ref: str, page: PageRequest
) -> Page[ComponentVersion]:
    component = get_component(uow, tenant_id, ref)
    return uow.components.list_versions(tenant_id, component.id, page)
