"""Wires adapters into services: the one place that picks implementations."""

from __future__ import annotations

import os
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import Engine

from stella.adapters.db.deployment_repositories import start_listener
from stella.adapters.db.engine import make_engine
from stella.adapters.db.run_store import SqlRunStore
from stella.adapters.db.unit_of_work import SqlAlchemyUnitOfWork
from stella.adapters.executors import SshExecutor, render_compose_lockfile
from stella.adapters.metrics import AGENTS_ONLINE, TARGETS_DRIFTED, PrometheusMetrics
from stella.adapters.notify import WebhookNotifier
from stella.adapters.pki import AgentCA
from stella.adapters.policy.rego import RegoPolicyEvaluator
from stella.adapters.registry.connectors import connector_factory
from stella.adapters.secrets import resolve_secret, secret_dirs
from stella.adapters.signing.keyring import KeyRing
from stella.adapters.steps import builtin_registry
from stella.adapters.vulndb.parsers import VulnDbParsers, advisory_index
from stella.config import Settings
from stella.domain.tenancy import Principal, Role
from stella.domain.workflow_runs import WorkflowRun
from stella.services import agents, audit_chain, deployments, drift, evidence, workflows
from stella.services import promotions as promotions_svc
from stella.services.agents import AgentSettings
from stella.services.context import CallContext
from stella.services.deploy_step import DeployStep, RollbackDeployStep
from stella.services.deployment_ports import TaskExecutor
from stella.services.deployments import DeploymentServices
from stella.services.idempotency import purge_expired_keys
from stella.services.ports import (
    Clock,
    RegistryConnectorFactory,
    SecretResolver,
    UnitOfWork,
    UnitOfWorkFactory,
)
from stella.services.promotions import PromotionServices, settle_deployments
from stella.services.security import SecurityIngestHook, SecurityServices, expire_waivers
from stella.services.specs import RunSpec, WorkflowSpec
from stella.services.steps import StepRegistry
from stella.services.web_sessions import PURGE_INTERVAL_SECONDS, purge_expired_sessions
from stella.services.workflow_engine import RunAdvancer, TemplateCache, WorkflowEngine
from stella.services.workflow_ports import RunStore
from stella.worker.runner import Worker, WorkerSettings


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Container:
    """Everything an entry point needs to call services."""

    settings: Settings
    engine: Engine
    uow: UnitOfWorkFactory
    read_uow: UnitOfWorkFactory
    connectors: RegistryConnectorFactory
    clock: Clock
    resolve_secret: SecretResolver
    steps: StepRegistry
    run_store: RunStore
    templates: TemplateCache
    advancer: RunAdvancer
    promotions: PromotionServices
    signing_key: KeyRing
    agent_ca: AgentCA
    agent_settings: AgentSettings
    deployments: DeploymentServices
    security: SecurityServices
    security_hook: SecurityIngestHook

    def make_worker(self, name: str | None = None) -> Worker:
        """A worker on this container's database, named `host:pid:random` unless given."""
        worker_id = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        lease = timedelta(seconds=self.settings.worker_lease_seconds)
        engine = WorkflowEngine(
            self.run_store, self.templates, self.steps, self.clock, worker_id, lease
        )
        settings = WorkerSettings(
            concurrency=self.settings.worker_concurrency,
            poll_seconds=self.settings.worker_poll_seconds,
            recover_every_seconds=max(0.2, min(5.0, self.settings.worker_lease_seconds / 2)),
            grace_seconds=self.settings.worker_grace_seconds,
            workdir=self.settings.step_work_dir,
        )
        promotions = self.promotions
        clock = self.clock
        started = clock()
        self.listen_for_job_events()  # the deploy step waits for results other processes take
        unsealable: set[uuid.UUID] = set()  # jobs whose evidence this worker failed to seal
        return Worker(
            engine,
            settings,
            # packets first: a promotion is settled only after its deployments were sealed
            every_poll=[
                lambda: evidence.seal_finished_jobs(
                    self.uow, self.signing_key, clock, PrometheusMetrics(), unsealable=unsealable
                ),
                lambda: settle_deployments(promotions, clock),
            ],
            periodic=[
                Every(
                    self.settings.audit_checkpoint_seconds,
                    lambda: audit_chain.checkpoint_grown(self.uow, self.signing_key, clock),
                ),
                lambda: agents.sweep(self.uow, clock, self.agent_settings, started),
                self.record_agents,
                lambda: deployments.requeue_overdue_worker_jobs(self.uow, clock),
                lambda: expire_waivers(self.security),
                lambda: purge_expired_keys(self.uow, clock),
                Every(self.settings.drift_interval_seconds, self.record_drift),
                Every(PURGE_INTERVAL_SECONDS, partial(purge_expired_sessions, self.uow, clock)),
            ],
            metrics=PrometheusMetrics(),
        )

    def listen_for_job_events(self) -> None:
        """PostgreSQL: run this process's LISTEN thread, so waiting agents and deploy steps hear
        jobs created and finished by other processes (once, at start-up; SQLite: nothing, its
        waiters poll)."""
        if self.engine.dialect.name == "postgresql":
            start_listener(self.engine.url, deployments.JOB_EVENTS)

    def record_drift(self) -> None:
        """Look at every target and export how many drifted, per environment slug (summed
        over tenants: slugs are what dashboards group by)."""
        with self.read_uow() as uow:
            tenants = uow.tenants.ids()
        counts: dict[str, int] = {}
        for tenant_id in tenants:
            system = CallContext(Principal(None, tenant_id, "drift", Role.ADMIN), None, self.clock)
            for item in drift.check_drift(self.uow, system, None, self.deployments.agentless):
                counts[item.environment] = counts.get(item.environment, 0) + (
                    item.state == "drifted"
                )
        for environment, drifted in counts.items():
            TARGETS_DRIFTED.labels(environment).set(drifted)

    def record_agents(self) -> None:
        with self.read_uow() as uow:
            AGENTS_ONLINE.set(uow.agents.count_by_state().get("online", 0))


class Every:
    """A periodic job that runs its action at most once per interval (the worker calls its
    periodic jobs more often than that); returns the action's result, or None when not due."""

    def __init__(self, seconds: float, action: Callable[[], object]) -> None:
        self.seconds = seconds
        self.action = action
        # not 0.0: monotonic time counts from boot, and a host up for less than the interval
        # would otherwise wait for its uptime to reach it before the first call
        self.last = float("-inf")

    def __call__(self) -> object:
        now = time.monotonic()
        if now - self.last < self.seconds:
            return None
        self.last = now
        return self.action()


def build_container(settings: Settings, engine: Engine | None = None) -> Container:
    """Build the production wiring for `settings` (an engine may be shared, e.g. in tests)."""
    db = engine or make_engine(settings.resolved_database_url, settings.db_pool_size)

    def uow(read_only: bool = False) -> UnitOfWork:
        return SqlAlchemyUnitOfWork(db, read_only)

    def read_uow(read_only: bool = True) -> UnitOfWork:
        return SqlAlchemyUnitOfWork(db, read_only=True)

    templates = TemplateCache(read_uow)
    run_store = SqlRunStore(db)
    advancer = RunAdvancer(templates, utc_now)

    def start_run(ctx: CallContext, spec: RunSpec) -> WorkflowRun:
        return workflows.start_run(uow, ctx, spec, run_store, advancer)

    def cancel_run(ctx: CallContext, run_id: str) -> None:
        workflows.cancel_run(uow, ctx, run_id, run_store, advancer)

    signing_key = KeyRing(settings.resolved_signing_key_file)
    agent_settings = AgentSettings(
        heartbeat_seconds=settings.agent_heartbeat_seconds,
        certificate_validity=timedelta(days=settings.agent_cert_days),
        agent_url=settings.resolved_agent_url,
    )
    deployment_services = DeploymentServices(
        uow=uow,
        clock=utc_now,
        render_lockfile=render_compose_lockfile,
        agentless=ssh_executor,
        resolve_secret=resolve_secret,
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
    )
    steps = builtin_registry()
    steps.register("deploy", DeployStep(deployment_services))
    steps.register("rollback-deploy", RollbackDeployStep(deployment_services))

    def default_workflow(ctx: CallContext) -> str:
        spec = WorkflowSpec.model_validate(DEFAULT_DEPLOY_WORKFLOW)
        return workflows.save_template(uow, ctx, spec, steps).template.name

    promotion_services = PromotionServices(
        uow,
        RegoPolicyEvaluator(),
        signing_key,
        start_run,
        cancel_run,
        PrometheusMetrics(),
        default_workflow,
    )
    security_services = SecurityServices(
        uow=uow,
        clock=utc_now,
        parsers=VulnDbParsers(),
        matcher_factory=advisory_index,
        notify=WebhookNotifier(
            settings.security_webhook_url, settings.security_webhook_secret, resolve_secret
        )
        if settings.security_webhook_url
        else None,
        regate=lambda ctx, ref: promotions_svc.reevaluate(promotion_services, ctx, ref),
        metrics=PrometheusMetrics(),
    )
    return Container(
        settings=settings,
        engine=db,
        uow=uow,
        read_uow=read_uow,
        connectors=connector_factory(settings.registry_timeout_seconds),
        clock=utc_now,
        resolve_secret=resolve_secret,
        steps=steps,
        run_store=run_store,
        templates=templates,
        advancer=advancer,
        promotions=promotion_services,
        signing_key=signing_key,
        agent_ca=AgentCA.load_or_create(settings.keys_dir),
        agent_settings=agent_settings,
        deployments=deployment_services,
        security=security_services,
        security_hook=SecurityIngestHook(security_services),
    )


# The workflow an approved promotion runs when its environment names none of its own.
DEFAULT_DEPLOY_WORKFLOW: dict[str, object] = {
    "name": "stella-deploy",
    "description": "Built in: deploy the promoted release to every active target",
    "inputs": [
        {"name": "promotion_id", "type": "string", "required": True},
        {"name": "release_id", "type": "string", "required": True},
        {"name": "environment", "type": "string", "required": True},
        {"name": "kind", "type": "string", "default": "promotion"},
    ],
    "steps": [
        {
            "id": "deploy",
            "type": "deploy",
            "timeout": "2h",
            "retry": {"max_attempts": 1},
            "config": {
                "release": "${{ inputs.release_id }}",
                "environment": "${{ inputs.environment }}",
                "promotion": "${{ inputs.promotion_id }}",
                "kind": "${{ inputs.kind }}",
            },
        }
    ],
}


def ssh_executor(connection: dict[str, object]) -> TaskExecutor:
    """The agentless executor; the private key must lie in a secret folder like any secret."""
    identity = connection.get("identity_file")
    if identity is not None:
        path = Path(str(identity)).resolve()
        if not any(path.is_relative_to(folder) for folder in secret_dirs()):
            msg = f"identity_file {identity} is outside the secret folders (STELLA_SECRET_DIRS)"
            raise PermissionError(msg)
    return SshExecutor(dict(connection), resolve_secret)
