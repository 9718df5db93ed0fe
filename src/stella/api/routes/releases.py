"""/api/v1/releases: create, read and change state. Releases are otherwise immutable."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.schemas import ListOf, ReleaseOut
from stella.domain.releases import ReleaseState
from stella.services import releases as svc
from stella.services.specs import ReleaseSpec

router = APIRouter(prefix="/releases", tags=["releases"])


@router.get("")
def list_releases(
    container: ContainerDep,
    ctx: Ctx,
    page: Page,
    name: Annotated[str | None, Query(max_length=128)] = None,
    state: ReleaseState | None = None,
    q: Annotated[
        str | None,
        Query(max_length=260, description="substring of name or version, or name@version"),
    ] = None,
) -> ListOf[ReleaseOut]:
    with container.read_uow() as uow:
        found = svc.list_releases(uow, ctx.principal.tenant_id, page, name, state, q)
    return ListOf(items=[ReleaseOut.of(r) for r in found.items], next_cursor=found.next_cursor)


@router.post("", status_code=201)
def create_release(container: ContainerDep, ctx: Ctx, spec: ReleaseSpec) -> ReleaseOut:
    """Resolves every tag to its digest in the registry; 422 unknown tag, 502 registry down."""
    return ReleaseOut.of(svc.create_release(container.uow, ctx, spec, container.connectors))


@router.get("/{ref}")
def get_release(container: ContainerDep, ctx: Ctx, ref: str) -> ReleaseOut:
    """`ref` is the id or `name@version`."""
    with container.read_uow() as uow:
        return ReleaseOut.of(svc.get_release(uow, ctx.principal.tenant_id, ref))


@router.post("/{ref}/deprecate")
def deprecate_release(container: ContainerDep, ctx: Ctx, ref: str) -> ReleaseOut:
    return ReleaseOut.of(svc.change_release_state(container.uow, ctx, ref, ReleaseState.DEPRECATED))


@router.post("/{ref}/activate")
def activate_release(container: ContainerDep, ctx: Ctx, ref: str) -> ReleaseOut:
    return ReleaseOut.of(svc.change_release_state(container.uow, ctx, ref, ReleaseState.ACTIVE))


def modify_release(container: ContainerDep, ctx: Ctx, ref: str) -> None:
    """Always 405: releases are immutable; create a new release."""
    svc.refuse_modification(container.uow, ctx, ref)


for _method in ("PUT", "PATCH", "DELETE"):
    router.add_api_route(
        "/{ref}",
        modify_release,
        methods=[_method],
        status_code=405,
        operation_id=f"{_method.lower()}_release_refused",
        summary=f"{_method} is refused: releases are immutable",
    )
