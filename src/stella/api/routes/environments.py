"""/api/v1/environments"""

from __future__ import annotations

from fastapi import APIRouter, Response

from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.schemas import EnvironmentOut, ListOf
from stella.services import environments as svc
from stella.services.specs import EnvironmentPatch, EnvironmentSpec

router = APIRouter(prefix="/environments", tags=["environments"])


@router.get("")
def list_environments(container: ContainerDep, ctx: Ctx, page: Page) -> ListOf[EnvironmentOut]:
    with container.read_uow() as uow:
        found = svc.list_environments(uow, ctx.principal.tenant_id, page)
    return ListOf(items=[EnvironmentOut.of(e) for e in found.items], next_cursor=found.next_cursor)


@router.post("", status_code=201)
def create_environment(container: ContainerDep, ctx: Ctx, spec: EnvironmentSpec) -> EnvironmentOut:
    return EnvironmentOut.of(svc.create_environment(container.uow, ctx, spec))


@router.get("/{ref}")
def get_environment(container: ContainerDep, ctx: Ctx, ref: str) -> EnvironmentOut:
    with container.read_uow() as uow:
        return EnvironmentOut.of(svc.get_environment(uow, ctx.principal.tenant_id, ref))


@router.patch("/{ref}")
def update_environment(
    container: ContainerDep, ctx: Ctx, ref: str, patch: EnvironmentPatch
) -> EnvironmentOut:
    return EnvironmentOut.of(svc.update_environment(container.uow, ctx, ref, patch))


@router.delete("/{ref}", status_code=204)
def delete_environment(container: ContainerDep, ctx: Ctx, ref: str) -> Response:
    svc.delete_environment(container.uow, ctx, ref)
    return Response(status_code=204)
