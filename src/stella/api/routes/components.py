"""/api/v1/components"""

from __future__ import annotations

from fastapi import APIRouter

from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.schemas import ComponentOut, ComponentVersionOut, ListOf
from stella.services import components as svc
from stella.services.specs import ComponentPatch, ComponentSpec

router = APIRouter(prefix="/components", tags=["components"])


@router.get("")
def list_components(container: ContainerDep, ctx: Ctx, page: Page) -> ListOf[ComponentOut]:
    with container.read_uow() as uow:
        found = svc.list_components(uow, ctx.principal.tenant_id, page)
    return ListOf(items=[ComponentOut.of(c) for c in found.items], next_cursor=found.next_cursor)


@router.post("", status_code=201)
def create_component(container: ContainerDep, ctx: Ctx, spec: ComponentSpec) -> ComponentOut:
    return ComponentOut.of(svc.create_component(container.uow, ctx, spec))


@router.get("/{ref}")
def get_component(container: ContainerDep, ctx: Ctx, ref: str) -> ComponentOut:
    with container.read_uow() as uow:
        return ComponentOut.of(svc.get_component(uow, ctx.principal.tenant_id, ref))


@router.patch("/{ref}")
def update_component(
    container: ContainerDep, ctx: Ctx, ref: str, patch: ComponentPatch
) -> ComponentOut:
    return ComponentOut.of(svc.update_component(container.uow, ctx, ref, patch))


@router.get("/{ref}/versions")
def list_component_versions(
    container: ContainerDep, ctx: Ctx, ref: str, page: Page
) -> ListOf[ComponentVersionOut]:
    with container.read_uow() as uow:
        found = svc.list_component_versions(uow, ctx.principal.tenant_id, ref, page)
    return ListOf(
        items=[ComponentVersionOut.of(v) for v in found.items], next_cursor=found.next_cursor
    )
