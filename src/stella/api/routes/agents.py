"""/api/v1/agents: join tokens, enrolment, listing and revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from stella.adapters.pki import CertificateRejected
from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.schemas import ListOf
from stella.domain.deployments import Agent
from stella.domain.errors import Unauthenticated, ValidationFailed
from stella.services import agents as svc
from stella.services.specs import Spec

router = APIRouter(prefix="/agents", tags=["agents"])


class JoinTokenSpec(Spec):
    environment: str = Field(min_length=1, description="environment id or slug")
    capabilities: list[str] = Field(default_factory=lambda: ["docker"], max_length=8)
    ttl: str = Field(default="1h", max_length=32, description="e.g. 15m, 1h, PT2H (≤ 7d)")


class JoinTokenOut(BaseModel):
    token: str
    id: str
    environment_id: str
    capabilities: list[str]
    expires_at: datetime


class EnrolSpec(Spec):
    join_token: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    csr: str = Field(min_length=1, max_length=20_000, description="PEM certificate request")
    version: str = Field(default="unknown", max_length=64)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)


class EnrolOut(BaseModel):
    agent_id: str
    name: str
    certificate: str
    ca_certificate: str
    agent_url: str
    heartbeat_seconds: float


class AgentOut(BaseModel):
    id: str
    name: str
    environment_id: str
    state: str
    version: str
    capabilities: list[str]
    labels: dict[str, str]
    last_heartbeat: datetime | None
    health: dict[str, Any]
    certificate_serial: str
    created_at: datetime

    @classmethod
    def of(cls, a: Agent) -> AgentOut:
        return cls(
            id=str(a.id),
            name=a.name,
            environment_id=str(a.environment_id),
            state=a.state,
            version=a.version,
            capabilities=a.capabilities,
            labels=a.labels,
            last_heartbeat=a.last_heartbeat,
            health=a.health,
            certificate_serial=a.cert_serial,
            created_at=a.created_at,
        )


@router.post("/join-tokens", status_code=201)
def create_join_token(container: ContainerDep, ctx: Ctx, spec: JoinTokenSpec) -> JoinTokenOut:
    """A one-time token for `stella agent run --join-token`; shown once, only its hash is kept."""
    token, join = svc.create_join_token(
        container.uow, ctx, spec.environment, spec.capabilities, spec.ttl
    )
    return JoinTokenOut(
        token=token,
        id=str(join.id),
        environment_id=str(join.environment_id),
        capabilities=join.capabilities,
        expires_at=join.expires_at,
    )


@router.post("/enroll", status_code=201)
def enroll(container: ContainerDep, request: Request, spec: EnrolSpec) -> EnrolOut:
    """Exchange a join token and a CSR for a certificate of the agent CA (no bearer token)."""
    limiter = request.app.state.auth_limiter
    client = request.client.host if request.client else "unknown"
    limiter.check(client)
    try:
        enrolment = svc.enroll(
            container.uow,
            container.agent_ca,
            container.agent_settings,
            container.clock,
            spec.join_token,
            spec.name,
            spec.csr,
            spec.version,
            spec.labels,
        )
    except Unauthenticated:
        limiter.failed(client)
        raise
    except CertificateRejected as exc:
        raise ValidationFailed.single("csr", str(exc)) from None
    return EnrolOut(
        agent_id=str(enrolment.agent.id),
        name=enrolment.agent.name,
        certificate=enrolment.certificate_pem,
        ca_certificate=enrolment.ca_certificate_pem,
        agent_url=enrolment.agent_url,
        heartbeat_seconds=enrolment.heartbeat_seconds,
    )


@router.get("")
def list_agents(container: ContainerDep, ctx: Ctx, page: Page) -> ListOf[AgentOut]:
    found = svc.list_agents(container.read_uow, ctx, page)
    return ListOf(items=[AgentOut.of(a) for a in found.items], next_cursor=found.next_cursor)


@router.get("/{ref}")
def get_agent(container: ContainerDep, ctx: Ctx, ref: str) -> AgentOut:
    return AgentOut.of(svc.get_agent(container.read_uow, ctx, ref))


@router.post("/{ref}/revoke")
def revoke_agent(container: ContainerDep, ctx: Ctx, ref: str) -> AgentOut:
    """The agent's certificate stops working at once; its running jobs go elsewhere or fail."""
    return AgentOut.of(svc.revoke(container.uow, ctx, ref))
