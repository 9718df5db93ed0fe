"""Drift: does each target still run what its last deployment put there?

The expected state is the last successful job's task (containers pinned by digest); the actual
state is the target's latest observation (an agent's inventory, or an SSH look taken here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stella.domain.deployments import DriftFinding, ObservedContainer, detect_drift
from stella.domain.targets import Target, TargetState
from stella.domain.tenancy import Permission
from stella.services.context import CallContext, require
from stella.services.deployment_ports import ExecutorFactory
from stella.services.deployments import load_task
from stella.services.environments import get_environment
from stella.services.ports import Clock, UnitOfWorkFactory
from stella.services.targets import environment_targets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TargetDrift:
    target: Target
    environment: str
    state: str  # in_sync | drifted | unknown | never_deployed
    reason: str
    release: str | None
    version: str | None
    deployment_id: str | None
    observed_at: datetime | None
    findings: list[DriftFinding]

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target.name,
            "target_id": str(self.target.id),
            "environment": self.environment,
            "state": self.state,
            "reason": self.reason,
            "release": self.release,
            "version": self.version,
            "deployment_id": self.deployment_id,
            "observed_at": self.observed_at.isoformat() if self.observed_at else None,
            "findings": [f.to_json() for f in self.findings],
        }


def observe_agentless(
    uow_factory: UnitOfWorkFactory, clock: Clock, factory: ExecutorFactory, target: Target
) -> None:
    """Look at an SSH target now and record what it runs and whether it answered (its health);
    failures are logged, not raised. Targets without a host are not configured yet: skipped."""
    if not target.connection.get("host"):
        return
    try:
        containers = factory(target.connection).inventory()
    except Exception as exc:  # noqa: BLE001 - an unreachable host leaves the old observation
        log.warning("could not inventory target %s: %s", target.name, type(exc).__name__)
        with uow_factory() as uow:
            uow.targets.set_health(target.id, "unhealthy", clock())
            uow.commit()
        return
    with uow_factory() as uow:
        uow.observations.record(target.tenant_id, target.id, "ssh", containers, clock())
        uow.targets.set_health(target.id, "healthy", clock())
        uow.commit()


def check_drift(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    environment: str | None,
    agentless: ExecutorFactory | None = None,
) -> list[TargetDrift]:
    """Drift of every target (of one environment); SSH targets are looked at live."""
    require(ctx, Permission.READ, uow_factory, "check drift")
    tenant = ctx.principal.tenant_id
    with uow_factory(read_only=True) as uow:
        env_id = get_environment(uow, tenant, environment).id if environment else None
        targets = [
            t for t in environment_targets(uow, tenant, env_id) if t.state is TargetState.ACTIVE
        ]
    if agentless is not None:
        for target in targets:
            if str(target.type) == "ssh_remote" and target.agent_id is None:
                observe_agentless(uow_factory, ctx.clock, agentless, target)
    return [drift_of(uow_factory, target) for target in targets]


def drift_of(uow_factory: UnitOfWorkFactory, target: Target) -> TargetDrift:
    with uow_factory(read_only=True) as uow:
        env = uow.environments.get_by_id(target.tenant_id, target.environment_id)
        slug = env.slug if env else "?"
        last = uow.jobs.last_succeeded(target.id)
        seen = uow.observations.get(target.id)
        task = load_task(uow, last) if last else None
    if last is None or task is None:
        return TargetDrift(
            target,
            slug,
            "never_deployed",
            "no successful deployment yet",
            None,
            None,
            None,
            seen[1] if seen else None,
            [],
        )
    if seen is None:
        return TargetDrift(
            target,
            slug,
            "unknown",
            "no inventory reported yet",
            task.release_name,
            task.release_version,
            str(last.id),
            None,
            [],
        )
    containers: list[ObservedContainer] = seen[0]
    findings = detect_drift(task.containers, containers, str(target.id))
    state = "drifted" if findings else "in_sync"
    reason = (
        "; ".join(f"{f.container}: {f.kind}" for f in findings)
        if findings
        else f"runs {task.release_name} {task.release_version} as deployed"
    )
    return TargetDrift(
        target,
        slug,
        state,
        reason,
        task.release_name,
        task.release_version,
        str(last.id),
        seen[1],
        findings,
    )
