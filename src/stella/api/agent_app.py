"""The agent listener: the only API agents talk to, served over mutual TLS (api/mtls.py).

The client certificate identifies the agent; every request re-reads the agent, so a revoked
agent is refused at once. Agents heartbeat, long-poll for tasks and report results; a result
is accepted only with the task's own credential, which ends with the task.
"""

from __future__ import annotations

import functools
import secrets
import threading
import time
import uuid
from typing import Annotated, Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

import stella
from stella.adapters.metrics import DEPLOYMENTS
from stella.adapters.pki import CA_CERT_FILE, CertificateRejected, ClientIdentity
from stella.api.mtls import mtls_server_config, peer_certificate
from stella.api.problems import install_problem_handlers
from stella.bootstrap import Container
from stella.domain.deployments import Agent, DeploymentOutcome, ObservedContainer
from stella.domain.errors import ConfigurationError, Unauthenticated, ValidationFailed
from stella.services import agents, deployments
from stella.services.specs import Spec

AGENT_PREFIX = "/agent/v1"
MAX_WAIT_SECONDS = 30.0
# A waiting long poll is woken when a job becomes pending in its environment (deployments.
# JOB_EVENTS: this process, and other processes through PostgreSQL NOTIFY); it still looks at
# the database this often in case a wake-up never comes (other processes on SQLite).
POLL_SECONDS = 1.0


class HeartbeatSpec(Spec):
    version: str = Field(default="unknown", max_length=64)
    health: dict[str, Any] = Field(default_factory=dict)
    inventory: list[dict[str, Any]] | None = Field(default=None, max_length=5000)


class HeartbeatOut(BaseModel):
    agent_id: str
    state: str
    heartbeat_seconds: float


class TaskOut(BaseModel):
    job_id: str
    attempt: int
    task_token: str
    task: dict[str, Any]
    correlation_id: str | None
    # W3C trace context (`traceparent`, `tracestate`) of the deployment that made the job: the
    # agent's `agent.task` span continues that trace
    trace_context: dict[str, str] | None = None


class RenewSpec(Spec):
    csr: str = Field(min_length=1, max_length=20_000, description="PEM request for a new key")


class CertificateOut(BaseModel):
    certificate: str
    serial: str


class ResultSpec(Spec):
    succeeded: bool
    error: str | None = Field(default=None, max_length=20_000)
    log: list[str] = Field(default_factory=list, max_length=20_000)
    deployed: dict[str, str] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)


IDENTITY_CACHE_SIZE = 20_000  # about one entry per connected agent, < 1 KiB each


def certificate_identity(request: Request) -> ClientIdentity:
    """Agent id and serial named by the connection's verified client certificate.

    What a certificate names never changes, so the parse and the signature check are cached
    by its DER bytes; whether that agent may still act is checked on every request."""
    der = peer_certificate(request)
    if der is None:
        msg = "a client certificate is required"
        raise Unauthenticated(msg)
    try:
        identity: ClientIdentity = request.app.state.identity(der)
    except CertificateRejected as exc:
        raise Unauthenticated(str(exc)) from None
    return identity


def current_agent(request: Request) -> Agent:
    """The agent behind the verified client certificate; revoked or replaced ones fail."""
    container: Container = request.app.state.container
    identity = certificate_identity(request)
    return agents.authenticate(container.read_uow, identity.agent_id, identity.serial)


AgentDep = Annotated[Agent, Depends(current_agent)]
IdentityDep = Annotated[ClientIdentity, Depends(certificate_identity)]


def create_agent_app(container: Container) -> FastAPI:
    app = FastAPI(
        title="Stella agent listener",
        version=stella.__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.container = container
    container.listen_for_job_events()  # long polls hear jobs other processes create
    # the certificate parse and signature check, by DER bytes (lru_cache keeps no exceptions:
    # a rejected certificate is checked again each time)
    app.state.identity = functools.lru_cache(maxsize=IDENTITY_CACHE_SIZE)(
        container.agent_ca.identity
    )
    install_problem_handlers(app)

    @app.post(f"{AGENT_PREFIX}/heartbeat")
    def heartbeat(identity: IdentityDep, spec: HeartbeatSpec) -> HeartbeatOut:
        """Authenticates in the transaction that records the heartbeat (see agents.heartbeat)."""
        inventory = (
            [ObservedContainer.from_json(c) for c in spec.inventory]
            if spec.inventory is not None
            else None
        )
        updated = agents.heartbeat(
            container.uow,
            container.clock,
            identity.agent_id,
            identity.serial,
            spec.version,
            spec.health,
            inventory,
        )
        return HeartbeatOut(
            agent_id=str(updated.id),
            state=updated.state,
            heartbeat_seconds=container.agent_settings.heartbeat_seconds,
        )

    @app.post(f"{AGENT_PREFIX}/certificate")
    def renew(agent: AgentDep, spec: RenewSpec) -> CertificateOut:
        """Before its certificate expires an agent trades a new key's CSR for a new one."""
        try:
            issued = agents.renew_certificate(
                container.uow,
                container.agent_ca,
                container.agent_settings,
                container.clock,
                agent,
                spec.csr,
            )
        except CertificateRejected as exc:
            raise ValidationFailed.single("csr", str(exc)) from None
        return CertificateOut(certificate=issued.cert_pem, serial=issued.serial)

    @app.post(f"{AGENT_PREFIX}/tasks/next", response_model=None)
    async def next_task(
        agent: AgentDep,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 20.0,
    ) -> TaskOut | Response:
        """Long poll: a task for this agent, or 204 after `wait` seconds without one."""
        deadline = time.monotonic() + wait
        key = deployments.environment_key(agent.environment_id)
        while True:
            seen = deployments.JOB_EVENTS.generation(key)  # before looking: no lost wake-up
            token = secrets.token_urlsafe(32)
            claimed = await run_in_threadpool(
                deployments.claim_for_agent,
                container.uow,
                container.clock,
                agent.tenant_id,
                agent.environment_id,
                agent.id,
                agent.capabilities,
                token,
            )
            if claimed is not None:
                job, task = claimed
                return TaskOut(
                    job_id=str(job.id),
                    attempt=job.attempt,
                    task_token=token,
                    task=deployments.task_to_json(task),
                    correlation_id=job.correlation_id,
                    trace_context=job.trace_context,
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Response(status_code=204)
            await deployments.JOB_EVENTS.wait_async(key, seen, min(POLL_SECONDS, remaining))

    @app.post(f"{AGENT_PREFIX}/tasks/{{job_id}}/result")
    def report(
        agent: AgentDep,
        job_id: uuid.UUID,
        spec: ResultSpec,
        x_stella_task_token: Annotated[str, Header(min_length=1, max_length=200)],
    ) -> dict[str, str]:
        outcome = DeploymentOutcome(
            spec.succeeded, spec.error, spec.log, spec.deployed, spec.timings
        )
        job = deployments.report_result(
            container.uow, container.clock, agent.id, job_id, x_stella_task_token, outcome
        )
        if "total" in spec.timings:
            DEPLOYMENTS.observe(spec.timings["total"])
        return {"job_id": str(job.id), "state": str(job.state)}

    return app


def start_agent_listener(container: Container) -> uvicorn.Server:
    """Serve the agent listener over mutual TLS in a background thread of this process."""
    settings = container.settings
    keys = settings.keys_dir
    advertised = urlsplit(settings.resolved_agent_url).hostname
    hosts = [
        h
        for h in (settings.agent_listen_host, advertised)
        if h and h not in {"0.0.0.0", "::"}  # noqa: S104 - excluded, not bound
    ]
    cert_file, key_file = container.agent_ca.server_certificate_files(keys, hosts)
    config = mtls_server_config(
        create_agent_app(container),
        settings.agent_listen_host,
        settings.agent_listen_port,
        keys / CA_CERT_FILE,
        cert_file,
        key_file,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="agent-listener", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        msg = f"the agent listener could not start on {settings.agent_listen}"
        raise ConfigurationError(msg)
    return server
