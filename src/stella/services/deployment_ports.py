"""Ports the deployment use cases need: repositories and the executor seam."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any, Protocol

from stella.domain.deployments import (
    Agent,
    AgentState,
    DeploymentJob,
    DeploymentOutcome,
    DeploymentTask,
    JoinToken,
    ObservedContainer,
)
from stella.domain.pagination import Page, PageRequest


class AgentRepository(Protocol):
    def add(self, entity: Agent) -> None: ...
    def get(self, tenant_id: uuid.UUID, ref: str) -> Agent | None: ...
    def by_id(self, agent_id: uuid.UUID, lock: bool = False) -> Agent | None: ...
    def candidate_targets(
        self, agent: Agent
    ) -> list[tuple[uuid.UUID, str, uuid.UUID | None, str]]: ...
    def page(self, tenant_id: uuid.UUID, page: PageRequest) -> Page[Agent]: ...
    def heartbeat(self, agent: Agent, values: dict[str, Any]) -> None: ...
    def set_state(self, agent_id: uuid.UUID, state: AgentState, now: datetime) -> None: ...
    def silent_since(self, before: datetime) -> list[Agent]: ...
    def online_with(
        self, tenant_id: uuid.UUID, environment_id: uuid.UUID, capability: str
    ) -> list[Agent]: ...
    def in_environment(self, tenant_id: uuid.UUID, environment_id: uuid.UUID) -> list[Agent]: ...
    def count_by_state(self) -> dict[str, int]: ...


class JoinTokenRepository(Protocol):
    def add(self, token: JoinToken) -> None: ...
    def consume(self, token_hash: str, agent_id: uuid.UUID, now: datetime) -> JoinToken | None: ...
    def find(self, token_hash: str) -> JoinToken | None: ...


class DeploymentJobRepository(Protocol):
    def add(self, entity: DeploymentJob) -> None: ...
    def get(self, tenant_id: uuid.UUID, ref: str) -> DeploymentJob | None: ...
    def by_id(self, job_id: uuid.UUID, lock: bool = False) -> DeploymentJob | None: ...
    def set(self, job_id: uuid.UUID, **values: Any) -> None: ...
    def batch(self, batch: str) -> list[DeploymentJob]: ...
    def page(
        self,
        tenant_id: uuid.UUID,
        page: PageRequest,
        environment_id: uuid.UUID | None = None,
        target_id: uuid.UUID | None = None,
        promotion_id: uuid.UUID | None = None,
    ) -> Page[DeploymentJob]: ...
    def claim_next(
        self,
        tenant_id: uuid.UUID,
        environment_id: uuid.UUID | None,
        capabilities: list[str],
        executor: str,
        agent_id: uuid.UUID | None,
    ) -> DeploymentJob | None: ...
    def announce(self, keys: list[str]) -> None: ...
    def running_on(self, agent_id: uuid.UUID) -> list[DeploymentJob]: ...
    def last_succeeded_agents(
        self, target_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, uuid.UUID | None]: ...
    def overdue_worker_jobs(self, now: datetime) -> list[DeploymentJob]: ...
    def waiting_for_agents(self, before: datetime) -> list[DeploymentJob]: ...
    def last_succeeded(
        self, target_id: uuid.UUID, before: uuid.UUID | None = None
    ) -> DeploymentJob | None: ...
    def for_promotion(self, promotion_id: uuid.UUID) -> list[DeploymentJob]: ...
    def unsealed(self, limit: int, skip: Collection[uuid.UUID] = ()) -> list[DeploymentJob]: ...


class ArtifactStore(Protocol):
    def put(
        self, tenant_id: uuid.UUID, digest: str, media_type: str, content: str, now: datetime
    ) -> None: ...
    def get(self, tenant_id: uuid.UUID, digest: str) -> tuple[str, str] | None: ...


class ObservationRepository(Protocol):
    def record(
        self,
        tenant_id: uuid.UUID,
        target_id: uuid.UUID,
        observed_by: str,
        containers: list[ObservedContainer],
        now: datetime,
    ) -> None: ...
    def report(
        self,
        tenant_id: uuid.UUID,
        target_ids: list[uuid.UUID],
        observed_by: str,
        containers: list[ObservedContainer],
        now: datetime,
    ) -> int: ...
    def get(self, target_id: uuid.UUID) -> tuple[list[ObservedContainer], datetime, str] | None: ...


class TaskExecutor(Protocol):
    """Runs one deployment task somewhere (Docker, Compose, SSH) and reports the outcome."""

    def deploy(
        self,
        task: DeploymentTask,
        log: Callable[[str], None],
        cancelled: threading.Event,
        resolve_secret: Callable[[str], str],
    ) -> DeploymentOutcome: ...

    def inventory(self) -> list[ObservedContainer]: ...


class ExecutorFactory(Protocol):
    """The executor for an agentless target (the worker runs these itself)."""

    def __call__(self, connection: dict[str, Any]) -> TaskExecutor: ...
