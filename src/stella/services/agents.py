"""Agents: enrolment with one-time join tokens, identity, heartbeats, liveness and revocation.

An agent is created by enrolling: it presents an unused, unexpired join token and a CSR, and
receives a certificate from the orchestrator's CA. From then on it is known only by that
certificate on the mTLS listener; every request re-reads the agent row, so revoking an agent
makes its certificate useless at once. An agent silent for three heartbeat intervals is marked
offline and its running jobs are handed to another agent or failed with the reason.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from stella.domain.deployments import (
    CAPABILITY_FOR_TARGET,
    KNOWN_CAPABILITIES,
    Agent,
    AgentState,
    DeploymentJob,
    JobState,
    JoinToken,
    ObservedContainer,
)
from stella.domain.durations import parse_duration
from stella.domain.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationFailed,
)
from stella.domain.ids import new_id
from stella.domain.pagination import Page, PageRequest
from stella.domain.tenancy import Permission
from stella.services import deployments
from stella.services.auth import hash_token
from stella.services.context import CallContext, record, require
from stella.services.environments import get_environment
from stella.services.ports import Clock, UnitOfWork, UnitOfWorkFactory

JOIN_TOKEN_PREFIX = "stj_"  # noqa: S105 - a recognisable prefix, not a secret
MAX_TOKEN_TTL = timedelta(days=7)
OFFLINE_AFTER_INTERVALS = 3
MAX_REASSIGNMENTS = 3
MAX_LOG_CHARS = 256_000


class IssuedCertificateLike(Protocol):
    @property
    def cert_pem(self) -> str: ...
    @property
    def serial(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...


class CertificateAuthority(Protocol):
    """The orchestrator's agent CA (adapters.pki.AgentCA)."""

    @property
    def ca_cert_pem(self) -> str: ...

    def issue_client_certificate(
        self, csr_pem: str, agent_id: uuid.UUID, validity: timedelta
    ) -> IssuedCertificateLike: ...


@dataclass(frozen=True)
class AgentSettings:
    heartbeat_seconds: float = 30.0
    certificate_validity: timedelta = timedelta(days=30)
    agent_url: str = "https://127.0.0.1:8443"

    @property
    def offline_after(self) -> timedelta:
        return timedelta(seconds=self.heartbeat_seconds * OFFLINE_AFTER_INTERVALS)


@dataclass(frozen=True)
class Enrolment:
    agent: Agent
    certificate_pem: str
    ca_certificate_pem: str
    agent_url: str
    heartbeat_seconds: float


def create_join_token(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    environment: str,
    capabilities: list[str],
    ttl: str,
) -> tuple[str, JoinToken]:
    """A one-time token an agent enrols with; only its hash is stored."""
    require(ctx, Permission.ADMINISTER, uow_factory, "create agent join tokens")
    errors = []
    unknown = sorted(set(capabilities) - KNOWN_CAPABILITIES)
    if not capabilities:
        errors.append(("capabilities", "name at least one of docker, compose, ssh"))
    elif unknown:
        errors.append(
            (
                "capabilities",
                f"unknown capability {unknown[0]!r}; known: "
                + ", ".join(sorted(KNOWN_CAPABILITIES)),
            )
        )
    try:
        lifetime = parse_duration(ttl)
    except ValueError as exc:
        errors.append(("ttl", str(exc)))
        lifetime = timedelta(0)
    if not errors and not timedelta(seconds=1) <= lifetime <= MAX_TOKEN_TTL:
        errors.append(("ttl", "must be between 1s and 7d"))
    if errors:
        raise ValidationFailed.single(*errors[0])
    token = JOIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = ctx.clock()
    with uow_factory() as uow:
        env = get_environment(uow, ctx.principal.tenant_id, environment)
        join = JoinToken(
            id=new_id(),
            tenant_id=ctx.principal.tenant_id,
            environment_id=env.id,
            capabilities=sorted(set(capabilities)),
            token_hash=hash_token(token),
            expires_at=now + lifetime,
            used_at=None,
            agent_id=None,
            created_by_name=ctx.principal.name,
            created_at=now,
        )
        uow.join_tokens.add(join)
        record(
            uow,
            ctx,
            "agent.join_token_created",
            "agent_join_token",
            join.id,
            {
                "environment": env.slug,
                "capabilities": join.capabilities,
                "expires_at": join.expires_at.isoformat(),
            },
        )
        uow.commit()
    return token, join


def enroll(
    uow_factory: UnitOfWorkFactory,
    ca: CertificateAuthority,
    settings: AgentSettings,
    clock: Clock,
    join_token: str,
    name: str,
    csr_pem: str,
    version: str,
    labels: dict[str, str],
) -> Enrolment:
    """Exchange a join token and a CSR for an agent identity and its certificate."""
    now = clock()
    agent_id = new_id()
    with uow_factory() as uow:
        join = uow.join_tokens.consume(hash_token(join_token), agent_id, now)
        if join is None:
            known = uow.join_tokens.find(hash_token(join_token))
            if known is None:
                reason = "join token is not valid"
            elif known.used_at is not None:
                reason = "join token was already used; create a new one"
            else:
                reason = "join token has expired; create a new one"
            raise Unauthenticated(reason)
        if uow.agents.get(join.tenant_id, name) is not None:
            msg = (
                f"an agent named '{name}' already exists (revoked agents keep their name for "
                "the record); pick another --name"
            )
            raise Conflict(msg)
        issued = ca.issue_client_certificate(csr_pem, agent_id, settings.certificate_validity)
        agent = Agent(
            id=agent_id,
            tenant_id=join.tenant_id,
            environment_id=join.environment_id,
            name=name,
            version=version,
            capabilities=join.capabilities,
            labels=labels,
            state=AgentState.ONLINE,
            last_heartbeat=now,
            cert_serial=issued.serial,
            cert_fingerprint=issued.fingerprint,
            health={},
            created_at=now,
            updated_at=now,
        )
        uow.agents.add(agent)
        _audit_system(uow, agent, "agent.enrolled", {"name": name, "serial": issued.serial}, now)
        uow.commit()
    return Enrolment(
        agent, issued.cert_pem, ca.ca_cert_pem, settings.agent_url, settings.heartbeat_seconds
    )


def _audit_system(
    uow: UnitOfWork, agent: Agent, action: str, details: dict[str, Any], now: datetime
) -> None:
    from stella.domain.tenancy import Principal, Role

    system = CallContext(
        Principal(None, agent.tenant_id, f"agent:{agent.name}", Role.ADMIN),
        None,
        lambda: now,
    )
    record(uow, system, action, "agent", agent.id, details)


def renew_certificate(
    uow_factory: UnitOfWorkFactory,
    ca: CertificateAuthority,
    settings: AgentSettings,
    clock: Clock,
    agent: Agent,
    csr_pem: str,
) -> IssuedCertificateLike:
    """A fresh certificate for a new key; the one it replaces stops working at once."""
    now = clock()
    issued = ca.issue_client_certificate(csr_pem, agent.id, settings.certificate_validity)
    with uow_factory() as uow:
        uow.agents.heartbeat(
            agent,
            {
                "cert_serial": issued.serial,
                "cert_fingerprint": issued.fingerprint,
                "updated_at": now,
            },
        )
        _audit_system(
            uow,
            agent,
            "agent.certificate_renewed",
            {"previous_serial": agent.cert_serial, "serial": issued.serial},
            now,
        )
        uow.commit()
    return issued


def authenticate(uow_factory: UnitOfWorkFactory, agent_id: uuid.UUID, serial: str) -> Agent:
    """The agent a verified client certificate belongs to; revoked or replaced ones fail."""
    with uow_factory(read_only=True) as uow:
        agent = uow.agents.by_id(agent_id)
    return _admitted(agent, serial)


def _admitted(agent: Agent | None, serial: str) -> Agent:
    if agent is None:
        msg = "this certificate belongs to no agent"
        raise Unauthenticated(msg)
    if agent.state is AgentState.REVOKED:
        msg = f"agent '{agent.name}' has been revoked; enrol again with a new join token"
        raise PermissionDenied(msg)
    if agent.cert_serial != serial:
        msg = "this certificate has been replaced by a newer one"
        raise Unauthenticated(msg)
    return agent


def heartbeat(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    agent_id: uuid.UUID,
    serial: str,
    version: str,
    health: dict[str, Any],
    inventory: list[ObservedContainer] | None,
) -> Agent:
    """Authenticate the certificate's agent and record its liveness, health and (when sent)
    the inventory of every target it serves, in one transaction.

    The agent row is read (PostgreSQL: locked) in the transaction that writes it, so the
    per-request check of `authenticate` holds at the moment of the write: a revocation
    committed a moment earlier is refused, never overwritten with `online`. Only the targets
    pinned to the agent or to none are read, target health is written only when it changes,
    and an unchanged inventory only moves `observed_at`.
    """
    now = clock()
    degraded = health.get("status") in {"degraded", "unhealthy"}
    state = AgentState.DEGRADED if degraded else AgentState.ONLINE
    target_health = "unhealthy" if degraded else "healthy"
    with uow_factory() as uow:
        agent = _admitted(uow.agents.by_id(agent_id, lock=True), serial)
        uow.agents.heartbeat(
            agent,
            {
                "last_heartbeat": now,
                "state": str(state),
                "version": version,
                "health": health,
                "updated_at": now,
            },
        )
        if agent.state is AgentState.OFFLINE:
            _audit_system(uow, agent, "agent.online", {"after": "offline"}, now)
        candidates = uow.agents.candidate_targets(agent)
        for target_id, _, _, current in _servable(candidates, agent):
            if current != target_health:
                uow.targets.set_health(target_id, target_health, now)
        if inventory is not None:
            uow.observations.report(
                agent.tenant_id, _served(uow, candidates, agent), f"agent:{agent.name}",
                inventory, now,
            )  # fmt: skip
        uow.commit()
    return replace(agent, state=state, last_heartbeat=now, version=version, health=health)


Candidate = tuple[uuid.UUID, str, uuid.UUID | None, str]  # id, type, pinned agent, health


def _servable(targets: list[Candidate], agent: Agent) -> list[Candidate]:
    """Targets this agent could deploy to: pinned to it, or unpinned with a capability it has.

    Their health follows the agent's: a target is as healthy as the engine the agent sees.
    """
    return [
        t
        for t in targets
        if t[2] == agent.id
        or (t[2] is None and CAPABILITY_FOR_TARGET.get(t[1]) in agent.capabilities)
    ]


def _served(uow: UnitOfWork, targets: list[Candidate], agent: Agent) -> list[uuid.UUID]:
    """Targets pinned to the agent, plus unpinned ones it deployed last (their inventory)."""
    served = [t[0] for t in targets if t[2] == agent.id]
    unpinned = [t[0] for t in targets if t[2] is None and t[1] in {"docker_host", "compose_host"}]
    last = uow.jobs.last_succeeded_agents(unpinned)
    served += [target_id for target_id in unpinned if last.get(target_id) == agent.id]
    return served


def list_agents(uow_factory: UnitOfWorkFactory, ctx: CallContext, page: PageRequest) -> Page[Agent]:
    require(ctx, Permission.READ, uow_factory, "list agents")
    with uow_factory(read_only=True) as uow:
        return uow.agents.page(ctx.principal.tenant_id, page)


def get_agent(uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str) -> Agent:
    require(ctx, Permission.READ, uow_factory, "read agents")
    with uow_factory(read_only=True) as uow:
        agent = uow.agents.get(ctx.principal.tenant_id, ref)
    if agent is None:
        msg = f"agent '{ref}' not found"
        raise NotFound(msg)
    return agent


def revoke(uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str) -> Agent:
    """Revoke an agent: its certificate stops working on the next request; its running jobs
    go to another agent or fail."""
    require(ctx, Permission.ADMINISTER, uow_factory, "revoke agents")
    now = ctx.clock()
    with uow_factory() as uow:
        agent = uow.agents.get(ctx.principal.tenant_id, ref)
        if agent is None:
            msg = f"agent '{ref}' not found"
            raise NotFound(msg)
        if agent.state is AgentState.REVOKED:
            return agent
        uow.agents.set_state(agent.id, AgentState.REVOKED, now)
        keys: set[str] = set()
        for job in uow.jobs.running_on(agent.id):
            keys.add(_release_job(uow, job, agent, "was revoked", now))
        record(uow, ctx, "agent.revoked", "agent", agent.id, {"name": agent.name})
        deployments.announce(uow, keys)
        uow.commit()
    deployments.JOB_EVENTS.notify(*keys)
    return replace(agent, state=AgentState.REVOKED)


def sweep(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    settings: AgentSettings,
    watching_since: datetime | None = None,
) -> int:
    """Mark silent agents offline and release their jobs; fail jobs nobody can take.

    Runs periodically in every worker; each change is a conditional update inside one
    transaction, so several workers sweeping at once do the work once. A process that has
    watched for less than the offline threshold (`watching_since`) judges nobody: after a
    control-plane restart the silence may have been its own.
    """
    now = clock()
    if watching_since is not None and now - watching_since < settings.offline_after:
        return 0
    changed = 0
    keys: set[str] = set()
    with uow_factory() as uow:
        for agent in uow.agents.silent_since(now - settings.offline_after):
            uow.agents.set_state(agent.id, AgentState.OFFLINE, now)
            _audit_system(
                uow,
                agent,
                "agent.offline",
                {
                    "last_heartbeat": agent.last_heartbeat.isoformat()
                    if agent.last_heartbeat
                    else None
                },
                now,
            )
            for job in uow.jobs.running_on(agent.id):
                keys.add(_release_job(uow, job, agent, "went offline", now))
            changed += 1
        changed += _fail_unservable(uow, now - settings.offline_after, now, keys)
        deployments.announce(uow, keys)
        uow.commit()
    deployments.JOB_EVENTS.notify(*keys)
    return changed


def _fail_unservable(uow: UnitOfWork, before: datetime, now: datetime, keys: set[str]) -> int:
    """Jobs waiting longer than the offline threshold with no agent able to take them fail,
    rather than sit until their step times out."""
    failed = 0
    for job in uow.jobs.waiting_for_agents(before):
        able = uow.agents.online_with(job.tenant_id, job.environment_id, job.capability)
        if job.pinned_agent_id is not None:
            able = [a for a in able if a.id == job.pinned_agent_id]
        if able:
            continue
        pinned = " (the target is pinned to one agent)" if job.pinned_agent_id else ""
        error = (
            f"no online agent in this environment has capability '{job.capability}'{pinned}; "
            "enrol one with `stella agent token create` and `stella agent run`"
        )
        uow.jobs.set(
            job.id,
            state=JobState.FAILED,
            error=error,
            finished_at=now,
            updated_at=now,
            log=_append(job.log, f"{now.isoformat()} {error}"),
        )
        keys.add(deployments.batch_key(job.batch))
        failed += 1
    return failed


def _release_job(
    uow: UnitOfWork, job: DeploymentJob, agent: Agent, what: str, now: datetime
) -> str:
    """Hand a running job of a lost agent to another agent, or fail it with the reason;
    returns whom to wake (agents of the environment, or the batch's deploy step)."""
    others = [
        a
        for a in uow.agents.online_with(job.tenant_id, job.environment_id, job.capability)
        if a.id != agent.id
    ]
    note = f"agent {agent.name} {what} during the deployment"
    if job.pinned_agent_id == agent.id:
        error = f"{note}; the target is pinned to that agent"
    elif job.attempt >= MAX_REASSIGNMENTS:
        error = f"{note}; the job was already reassigned {job.attempt - 1} time(s)"
    elif not others:
        error = (
            f"{note}; no other online agent in this environment has capability '{job.capability}'"
        )
    else:
        uow.jobs.set(
            job.id,
            state=JobState.PENDING,
            agent_id=None,
            task_token_hash=None,
            lease_expires_at=None,
            attempt=job.attempt + 1,
            updated_at=now,
            log=_append(job.log, f"{now.isoformat()} {note}; reassigning"),
        )
        return deployments.environment_key(job.environment_id)
    uow.jobs.set(
        job.id,
        state=JobState.FAILED,
        error=error,
        finished_at=now,
        task_token_hash=None,
        updated_at=now,
        log=_append(job.log, f"{now.isoformat()} {error}"),
    )
    return deployments.batch_key(job.batch)


def _append(log: str, line: str) -> str:
    text = f"{log}\n{line}" if log else line
    return text[-MAX_LOG_CHARS:]
