"""/api/v1/integrations"""

from __future__ import annotations

from fastapi import APIRouter

from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.schemas import IntegrationOut, ListOf
from stella.services import integrations as svc
from stella.services.specs import IntegrationPatch, IntegrationSpec

router = APIRouter(prefix="/integrations", tags=["integrations"])


@router.get("")
def list_integrations(container: ContainerDep, ctx: Ctx, page: Page) -> ListOf[IntegrationOut]:
    with container.read_uow() as uow:
        found = svc.list_integrations(uow, ctx.principal.tenant_id, page)
    return ListOf(items=[IntegrationOut.of(i) for i in found.items], next_cursor=found.next_cursor)


@router.post("", status_code=201)
def create_integration(container: ContainerDep, ctx: Ctx, spec: IntegrationSpec) -> IntegrationOut:
    """Without `webhook_secret_ref`, the response carries a generated `webhook_secret`, once."""
    created = svc.create_integration(container.uow, ctx, spec)
    return IntegrationOut.of(created.integration, created.webhook_secret)


@router.get("/{ref}")
def get_integration(container: ContainerDep, ctx: Ctx, ref: str) -> IntegrationOut:
    with container.read_uow() as uow:
        return IntegrationOut.of(svc.get_integration(uow, ctx.principal.tenant_id, ref))


@router.patch("/{ref}")
def update_integration(
    container: ContainerDep, ctx: Ctx, ref: str, patch: IntegrationPatch
) -> IntegrationOut:
    return IntegrationOut.of(svc.update_integration(container.uow, ctx, ref, patch))


@router.post("/{ref}/test")
def test_integration(container: ContainerDep, ctx: Ctx, ref: str) -> dict[str, str]:
    """Connects to the registry (`GET /v2/`); 502 naming the host when it cannot."""
    integration = svc.test_integration(container.read_uow, ctx, ref, container.connectors)
    return {"status": "ok", "host": integration.host}
