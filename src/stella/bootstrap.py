"""Wires adapters into services: the one place that picks implementations."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from stella.adapters.db.engine import make_engine
from stella.adapters.db.run_store import SqlRunStore
from stella.adapters.db.unit_of_work import SqlAlchemyUnitOfWork
from stella.adapters.metrics import PrometheusMetrics
from stella.adapters.policy.rego import RegoPolicyEvaluator
from stella.adapters.registry.connectors import connector_factory
from stella.adapters.secrets import resolve_secret
from stella.adapters.signing.dsse import SigningKey
from stella.adapters.steps import builtin_registry
from stella.config import Settings
from stella.domain.workflow_runs import WorkflowRun
from stella.services import workflows
from stella.services.context import CallContext
from stella.services.ports import (
    Clock,
    RegistryConnectorFactory,
    SecretResolver,
    UnitOfWork,
    UnitOfWorkFactory,
)
from stella.services.promotions import PromotionServices, settle_deployments
from stella.services.specs import RunSpec
from stella.services.steps import StepRegistry
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
    signing_key: SigningKey

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
        return Worker(
            engine,
            settings,
            periodic=[lambda: settle_deployments(promotions, clock)],
            metrics=PrometheusMetrics(),
        )


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

    signing_key = SigningKey.load_or_create(settings.keys_dir)
    return Container(
        settings=settings,
        engine=db,
        uow=uow,
        read_uow=read_uow,
        connectors=connector_factory(settings.registry_timeout_seconds),
        clock=utc_now,
        resolve_secret=resolve_secret,
        steps=builtin_registry(),
        run_store=run_store,
        templates=templates,
        advancer=advancer,
        promotions=PromotionServices(
            uow, RegoPolicyEvaluator(), signing_key, start_run, cancel_run, PrometheusMetrics()
        ),
        signing_key=signing_key,
    )
