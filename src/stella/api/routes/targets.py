"""/api/v1/targets"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.schemas import ListOf, TargetOut
from stella.services import targets as svc
from stella.services.specs import TargetPatch, TargetSpec

router = APIRouter(prefix="/targets", tags=["targets"])


@router.get("")
def list_targets(
    container: ContainerDep,
    ctx: Ctx,
    page: Page,
    environment: Annotated[str | None, Query(description="environment id or slug")] = None,
) -> ListOf[TargetOut]:
    with container.read_uow() as uow:
        found = svc.list_targets(uow, ctx.principal.tenant_id, page, environment)
    return ListOf(items=[TargetOut.of(t) for t in found.items], next_cursor=found.next_cursor)


@router.post("", status_code=201)
def create_target(container: ContainerDep, ctx: Ctx, spec: TargetSpec) -> TargetOut:
    return TargetOut.of(svc.create_target(container.uow, ctx, spec))


@router.get("/{ref}")
def get_target(container: ContainerDep, ctx: Ctx, ref: str) -> TargetOut:
    with container.read_uow() as uow:
        return TargetOut.of(svc.get_target(uow, ctx.principal.tenant_id, ref))


@router.patch("/{ref}")
def update_target(container: ContainerDep, ctx: Ctx, ref: str, patch: TargetPatch) -> TargetOut:
    return TargetOut.of(svc.update_target(container.uow, ctx, ref, patch))


@router.delete("/{ref}", status_code=204)
def delete_target(container: ContainerDep, ctx: Ctx, ref: str) -> Response:
    svc.delete_target(container.uow, ctx, ref)
    return Response(status_code=204)
