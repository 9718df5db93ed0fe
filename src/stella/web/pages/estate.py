"""/targets and /agents: the estate (targets with health and drift, agents and revocation)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from stella.domain.deployments import CAPABILITY_FOR_TARGET, Agent, AgentState
from stella.domain.pagination import PageRequest
from stella.domain.targets import Target, TargetState
from stella.services import agents as agents_svc
from stella.services import drift
from stella.services import targets as targets_svc
from stella.web.core import Web, back, check_csrf, form

router = APIRouter()
PAGE_SIZE = 50
Cursor = Annotated[str | None, Query(max_length=200)]


def _agent_of(
    target: Target, agents: dict[uuid.UUID, Agent], last_agent: uuid.UUID | None
) -> dict[str, Any]:
    """Who deploys to the target: its pinned agent, the one that deployed it last, or the
    environment's agents that could (docker/compose hosts); SSH targets need none."""
    if target.agent_id is not None:
        pinned = agents.get(target.agent_id)
        return {"how": "pinned", "agents": [pinned] if pinned else [], "missing": pinned is None}
    capability = CAPABILITY_FOR_TARGET.get(str(target.type))
    if capability is None:
        return {"how": "agentless", "agents": [], "missing": False}
    if last_agent is not None and last_agent in agents:
        return {"how": "last deployed by", "agents": [agents[last_agent]], "missing": False}
    able = [
        a
        for a in agents.values()
        if a.environment_id == target.environment_id
        and capability in a.capabilities
        and a.state is not AgentState.REVOKED
    ]
    return {"how": "served by", "agents": able, "missing": not able, "capability": capability}


@router.get("/targets")
def targets_page(
    user: Web,
    environment: Annotated[str | None, Query(max_length=128)] = None,
    cursor: Cursor = None,
) -> Response:
    tenant = user.principal.tenant_id
    selected = environment or None
    with user.container.read_uow() as uow:
        environments = uow.environments.all(tenant)
        page = targets_svc.list_targets(
            uow, tenant, PageRequest.from_query(cursor, PAGE_SIZE), selected
        )
        agents: dict[uuid.UUID, Agent] = {}
        for env_id in {t.environment_id for t in page.items}:
            agents.update({a.id: a for a in uow.agents.in_environment(tenant, env_id)})
    # drift as of each target's latest observation (the API's /drift also looks at SSH hosts
    # live; a page view does not open SSH connections)
    drifts = {
        t.id: drift.drift_of(user.container.read_uow, t)
        for t in page.items
        if t.state is TargetState.ACTIVE
    }
    last_agents: dict[uuid.UUID, uuid.UUID | None] = {}
    with user.container.read_uow() as uow:
        for target_id, found in drifts.items():
            if found.deployment_id is not None:
                job = uow.jobs.by_id(uuid.UUID(found.deployment_id))
                last_agents[target_id] = job.agent_id if job else None
    by_id = {e.id: e for e in environments}
    rows = [
        {
            "target": t,
            "environment": by_id.get(t.environment_id),
            "agent": _agent_of(t, agents, last_agents.get(t.id)),
            "drift": drifts.get(t.id),
        }
        for t in page.items
    ]
    base = "/targets" + (f"?{urlencode({'environment': selected})}" if selected else "")
    return user.render(
        "targets.html",
        nav="targets",
        rows=rows,
        environments=environments,
        selected=selected,
        next_cursor=page.next_cursor,
        base=base,
        drifted=sum(1 for d in drifts.values() if d.state == "drifted"),
    )


@router.get("/agents")
def agents_page(request: Request, user: Web, cursor: Cursor = None) -> Response:
    page = agents_svc.list_agents(
        user.container.read_uow, user.ctx, PageRequest.from_query(cursor, PAGE_SIZE)
    )
    with user.container.read_uow() as uow:
        environments = uow.environments.all(user.principal.tenant_id)
    return user.render(
        "agents.html",
        nav="agents",
        agents=page.items,
        environments={e.id: e for e in environments},
        first_environment=environments[0].slug if environments else "dev",
        server=str(request.base_url).rstrip("/"),
        next_cursor=page.next_cursor,
        can_revoke=user.can("administer"),
    )


@router.post("/agents/{ref}/revoke")
async def revoke_agent(request: Request, user: Web, ref: str) -> Response:
    check_csrf(user, await form(request))
    agent = agents_svc.revoke(user.container.uow, user.ctx, ref)
    return back(
        request,
        "/agents",
        notice=f"Agent {agent.name} is revoked: its certificate no longer works, and its "
        "running jobs go to another agent or fail.",
    )
