"""Deployment jobs made the way the deploy step makes them, for tests where no worker runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from stella.adapters.executors import render_compose_lockfile
from stella.bootstrap import Container
from stella.domain.deployments import DeploymentJob, JobKind
from stella.services.deployments import create_batch


def create_jobs(container: Container, target_ref: str, release_id: str) -> list[DeploymentJob]:
    """One batch of deploy jobs for the environment of `target_ref` (a target's id or name)
    and the release `release_id`, in the tenant that owns the target; returns them as stored."""
    with container.read_uow() as uow:
        tenant_id = next(t for t in uow.tenants.ids() if uow.targets.get(t, target_ref))
        target = uow.targets.get(tenant_id, target_ref)
        release = uow.releases.get(tenant_id, release_id)
        environment = uow.environments.get_by_id(tenant_id, target.environment_id)
    with container.uow() as uow:
        jobs = create_batch(
            uow,
            render_compose_lockfile,
            f"test-{uuid.uuid4()}",
            release,
            environment,
            JobKind.DEPLOY,
            None,
            None,
            None,
            datetime.now(UTC),
        )
        uow.commit()
    with container.read_uow() as uow:
        return [uow.jobs.by_id(j.id) for j in jobs]
