"""/api/v1/deployments (jobs and their artifacts), /api/v1/drift, /api/v1/rollbacks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.routes.promotions import PromotionOut
from stella.api.schemas import ListOf
from stella.domain.deployments import DeploymentJob
from stella.domain.errors import NotFound
from stella.domain.tenancy import Permission
from stella.services import deployments as svc
from stella.services import drift, rollbacks
from stella.services.context import require
from stella.services.environments import get_environment
from stella.services.specs import Spec

router = APIRouter()


class DeploymentOut(BaseModel):
    id: str
    kind: str
    state: str
    environment_id: str
    target: str
    target_id: str
    release_id: str
    release_version: str
    promotion_id: str | None
    run_id: str | None
    agent_id: str | None
    executor: str
    attempt: int
    artifacts: dict[str, str]
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    log: str | None = None

    @classmethod
    def of(cls, j: DeploymentJob, with_log: bool = False) -> DeploymentOut:
        return cls(
            id=str(j.id),
            kind=j.kind,
            state=j.state,
            environment_id=str(j.environment_id),
            target=j.target_name,
            target_id=str(j.target_id),
            release_id=str(j.release_id),
            release_version=j.release_version,
            promotion_id=str(j.promotion_id) if j.promotion_id else None,
            run_id=str(j.run_id) if j.run_id else None,
            agent_id=str(j.agent_id) if j.agent_id else None,
            executor=j.executor,
            attempt=j.attempt,
            artifacts=j.artifacts,
            error=j.error,
            result=j.result,
            created_at=j.created_at,
            started_at=j.started_at,
            finished_at=j.finished_at,
            log=j.log if with_log else None,
        )


def _uuid(value: str | None, field: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        msg = f"{field} '{value}' not found"
        raise NotFound(msg) from None


@router.get("/deployments", tags=["deployments"])
def list_deployments(
    container: ContainerDep,
    ctx: Ctx,
    page: Page,
    environment: Annotated[str | None, Query(description="environment id or slug")] = None,
    target: Annotated[str | None, Query(description="target id or name")] = None,
    promotion: Annotated[str | None, Query(description="promotion id")] = None,
) -> ListOf[DeploymentOut]:
    require(ctx, Permission.READ, container.uow, "list deployments")
    tenant = ctx.principal.tenant_id
    with container.read_uow() as uow:
        env_id = get_environment(uow, tenant, environment).id if environment else None
        target_id = None
        if target is not None:
            found_target = uow.targets.get(tenant, target)
            if found_target is None:
                msg = f"target '{target}' not found"
                raise NotFound(msg)
            target_id = found_target.id
        found = uow.jobs.page(tenant, page, env_id, target_id, _uuid(promotion, "promotion"))
    return ListOf(items=[DeploymentOut.of(j) for j in found.items], next_cursor=found.next_cursor)


@router.get("/deployments/{ref}", tags=["deployments"])
def get_deployment(container: ContainerDep, ctx: Ctx, ref: str) -> DeploymentOut:
    require(ctx, Permission.READ, container.uow, "read deployments")
    return DeploymentOut.of(svc.get_job(container.read_uow, ctx.principal.tenant_id, ref), True)


@router.get("/deployments/{ref}/artifacts/{name}", tags=["deployments"], response_class=Response)
def get_artifact(container: ContainerDep, ctx: Ctx, ref: str, name: str) -> Response:
    """An immutable artifact of the job (`task.json`, `docker-compose.lock.yml`) by name."""
    require(ctx, Permission.READ, container.uow, "read deployment artifacts")
    digest, media_type, content = svc.get_artifact(
        container.read_uow, ctx.principal.tenant_id, ref, name
    )
    return Response(content, media_type=media_type, headers={"Digest": digest, "ETag": digest})


class DriftOut(BaseModel):
    items: list[dict[str, Any]]
    drifted: int


@router.get("/drift", tags=["deployments"])
def get_drift(
    container: ContainerDep,
    ctx: Ctx,
    environment: Annotated[str | None, Query(description="environment id or slug")] = None,
) -> DriftOut:
    """Per target: does it run what its last deployment put there? SSH targets are looked at
    now; agent targets as of their agent's last inventory."""
    items = drift.check_drift(container.uow, ctx, environment, container.deployments.agentless)
    return DriftOut(
        items=[i.to_json() for i in items], drifted=sum(i.state == "drifted" for i in items)
    )


class RollbackSpec(Spec):
    environment: str = Field(min_length=1, description="environment id or slug")
    to: str | None = Field(
        default=None, description="release id or name@version (default: the previous one)"
    )


@router.post("/rollbacks", status_code=201, tags=["promotions"])
def request_rollback(container: ContainerDep, ctx: Ctx, spec: RollbackSpec) -> PromotionOut:
    """A gated promotion of kind `rollback` back to an earlier release of the environment."""
    return PromotionOut.of(
        rollbacks.request_rollback(container.promotions, ctx, spec.environment, spec.to)
    )
