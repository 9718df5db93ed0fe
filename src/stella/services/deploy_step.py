"""The `deploy` and `rollback-deploy` workflow step types.

`deploy` fans a release out over every active target of an environment as deployment jobs,
waits for them (agents run docker/compose jobs, this worker runs SSH jobs itself) and fails when
more than `max_failures` targets failed. With `auto_rollback` it then redeploys, to every target
it touched, the release that target ran before. `rollback-deploy` redeploys the previous release
explicitly. Re-executing a step attempt (a worker died) finds its jobs by the attempt's
idempotency key and keeps waiting for them instead of deploying twice.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any, Literal

from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field

from stella.domain.deployments import DeploymentJob, JobKind, JobState
from stella.domain.environments import Environment
from stella.domain.errors import NotFound
from stella.domain.releases import Release
from stella.domain.targets import Target
from stella.services.deployments import (
    JOB_EVENTS,
    BatchStatus,
    DeploymentServices,
    advance_batch,
    batch_key,
    cancel_batch,
    create_batch,
    environment_key,
    run_agentless,
)
from stella.services.steps import StepCharacteristics, StepContext, StepResult
from stella.services.targets import environment_targets

# The step is woken when a job of its batch ends (deployments.JOB_EVENTS: this process, and
# other processes through PostgreSQL NOTIFY); it still looks this often in case a wake-up never
# comes (agents reporting to another process on SQLite).
POLL_SECONDS = 1.0


class DeployConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release: str = Field(min_length=1, description="release id")
    environment: str = Field(min_length=1, description="environment id or slug")
    promotion: str | None = Field(default=None, description="promotion id, for the record")
    parallelism: int | None = Field(default=None, ge=1, le=100)
    max_failures: int | None = Field(default=None, ge=0, le=10_000)
    auto_rollback: bool | None = None
    kind: Literal["promotion", "rollback"] = Field(
        default="promotion", description="rollback: the promotion redeploys an earlier release"
    )


class DeployStep:
    """Deploys a release to every active target of an environment."""

    # deployments wait for pulls and health checks on every target: give them an hour
    characteristics = StepCharacteristics(
        idempotent=True, supports_rollback=True, default_timeout=timedelta(hours=1)
    )
    config_model = DeployConfig
    kind = JobKind.DEPLOY

    def __init__(self, services: DeploymentServices) -> None:
        self.services = services

    def can_roll_back(self, config: Mapping[str, Any]) -> bool:
        return True

    def execute(self, context: StepContext) -> StepResult:
        tracer = trace.get_tracer("stella.deployments")
        with tracer.start_as_current_span("deployment.execute") as span:
            span.set_attribute("deployment.kind", str(self.kind))
            span.set_attribute("workflow.run_id", str(context.run_id))
            result = self._execute(context)
            span.set_attribute("deployment.outcome", result.status)
            return result

    def _execute(self, context: StepContext) -> StepResult:
        config = DeployConfig.model_validate(context.config)
        try:
            release, environment = self._load(context, config)
        except LookupError as exc:
            return StepResult("failed", error=str(exc), retryable=False)
        batch = f"{context.idempotency_key}:{self.kind}"
        promotion_id = _uuid(config.promotion)
        kind = JobKind.ROLLBACK if config.kind == "rollback" else self.kind
        with self.services.uow() as uow:
            jobs = uow.jobs.batch(batch)
            if not jobs:
                jobs = self._create(
                    uow, batch, release, environment, promotion_id, context, kind=kind
                )
                uow.commit()
                JOB_EVENTS.notify(environment_key(environment.id))  # waiting agents
        if not jobs:
            return StepResult(
                "succeeded",
                outputs={"targets": 0, "deployed": []},
                log=f"environment {environment.slug} has no active targets; nothing to deploy",
            )
        status = self._wait(batch, environment, context)
        if status is None:
            return StepResult("failed", error="cancelled", retryable=False)
        log = "\n".join(_job_line(j) for j in status.jobs)
        if len(status.failed) <= environment.deployment.max_failures:
            return StepResult(
                "succeeded",
                outputs={
                    "targets": len(status.jobs),
                    "deployed": [j.target_name for j in status.succeeded],
                    "jobs": [str(j.id) for j in status.jobs],
                },
                log=log,
            )
        error = f"deployment failed: {status.summary}"
        if (
            config.auto_rollback
            if config.auto_rollback is not None
            else environment.deployment.auto_rollback
        ):
            _, rolled = self._roll_back(
                status.jobs, release, environment, promotion_id, context, f"{batch}:auto-rollback"
            )
            error = f"{error}; {rolled}"
        return StepResult("failed", error=error, log=log, retryable=False)

    def rollback(self, context: StepContext) -> StepResult:
        """Undo a completed deploy step (a later step failed): redeploy the previous release."""
        config = DeployConfig.model_validate(context.config)
        try:
            release, environment = self._load(context, config)
        except LookupError as exc:
            return StepResult("failed", error=str(exc))
        batch = f"{context.idempotency_key.removesuffix(':rollback')}:{self.kind}"
        with self.services.uow(read_only=True) as uow:
            jobs = uow.jobs.batch(batch)
        ok, summary = self._roll_back(
            jobs,
            release,
            environment,
            _uuid(config.promotion),
            context,
            f"{context.idempotency_key}:rollback-deploy",
        )
        return StepResult(
            "succeeded" if ok else "failed", error=None if ok else summary, log=summary
        )

    # --- helpers -----------------------------------------------------------------------------

    def _load(self, context: StepContext, config: DeployConfig) -> tuple[Release, Environment]:
        from stella.services.environments import get_environment

        tenant_id = _tenant_of_run(self.services, context.run_id)
        with self.services.uow(read_only=True) as uow:
            release = uow.releases.get(tenant_id, config.release)
            if release is None:
                msg = f"release {config.release} not found"
                raise LookupError(msg)
            try:
                environment = get_environment(uow, tenant_id, config.environment)
            except NotFound as exc:
                raise LookupError(exc.detail) from exc
        policy = environment.deployment
        policy = replace(
            policy,
            parallelism=config.parallelism or policy.parallelism,
            max_failures=(
                policy.max_failures if config.max_failures is None else config.max_failures
            ),
        )
        environment = replace(environment, deployment=policy)
        return release, environment

    def _create(
        self,
        uow: Any,
        batch: str,
        release: Release,
        environment: Environment,
        promotion_id: uuid.UUID | None,
        context: StepContext,
        targets: list[Target] | None = None,
        releases_by_target: dict[uuid.UUID, Release] | None = None,
        kind: JobKind | None = None,
    ) -> list[DeploymentJob]:
        return create_batch(
            uow,
            self.services.render_lockfile,
            batch,
            release,
            environment,
            kind or self.kind,
            promotion_id,
            context.run_id,
            str(context.inputs.get("correlation_id") or context.run_id),
            self.services.clock(),
            targets,
            releases_by_target,
        )

    def _wait(
        self, batch: str, environment: Environment, context: StepContext
    ) -> BatchStatus | None:
        key = batch_key(batch)
        while True:
            seen = JOB_EVENTS.generation(key)  # before looking: a result after it wakes us
            with self.services.uow() as uow:
                status = advance_batch(uow, batch, environment.deployment, self.services.clock())
                uow.commit()
            if status.released:
                JOB_EVENTS.notify(environment_key(environment.id))
            if status.done:
                return status
            if context.cancelled.is_set() and not self._run_cancelled(context):
                # the worker lost its lease (it stalled): another worker re-executes this
                # attempt and picks the batch up where it is; cancelling it would fail that
                return None
            if context.cancelled.is_set() or time.monotonic() > context.deadline:
                with self.services.uow() as uow:
                    reason = "cancelled" if context.cancelled.is_set() else "step timed out"
                    cancel_batch(uow, batch, reason, self.services.clock())
                    uow.commit()
                if context.cancelled.is_set():
                    return None
                # jobs still running are not waited for any longer: they count as failed
                jobs = advance_batch_final(self.services, batch, environment).jobs
                ok = [j for j in jobs if j.state is JobState.SUCCEEDED]
                late = [j for j in jobs if j.state is not JobState.SUCCEEDED]
                return BatchStatus(jobs, True, late, ok)
            if any(j.executor == "worker" and j.state is JobState.PENDING for j in status.jobs):
                run_agentless(self.services, batch, context.cancelled)
                continue
            JOB_EVENTS.wait(key, seen, POLL_SECONDS, also=context.cancelled)

    def _run_cancelled(self, context: StepContext) -> bool:
        """Whether someone cancelled the run (rather than this worker losing its lease)."""
        tenant = _tenant_of_run(self.services, context.run_id)
        with self.services.uow(read_only=True) as uow:
            run = uow.runs.get_with_steps(tenant, context.run_id)
        return run is None or run.cancel_requested

    def _roll_back(
        self,
        jobs: list[DeploymentJob],
        release: Release,
        environment: Environment,
        promotion_id: uuid.UUID | None,
        context: StepContext,
        batch: str,
    ) -> tuple[bool, str]:
        """Redeploy, to each target touched by `jobs`, the release it ran before its job."""
        touched = [j for j in jobs if j.state in {JobState.SUCCEEDED, JobState.FAILED}]
        previous: dict[uuid.UUID, Release] = {}
        targets: list[Target] = []
        with self.services.uow() as uow:
            existing = uow.jobs.batch(batch)
            for job in touched:
                before = uow.jobs.last_succeeded(job.target_id, before=job.id)
                target = uow.targets.get(job.tenant_id, str(job.target_id))
                earlier = (
                    uow.releases.get(job.tenant_id, str(before.release_id)) if before else None
                )
                if target is not None and earlier is not None:
                    previous[target.id] = earlier
                    targets.append(target)
            if not targets:
                return False, "no earlier release to roll back to"
            if not existing:
                self._create(
                    uow,
                    batch,
                    release,
                    environment,
                    promotion_id,
                    context,
                    targets,
                    previous,
                    JobKind.ROLLBACK,
                )
            uow.commit()
        JOB_EVENTS.notify(environment_key(environment.id))
        status = self._wait(
            batch,
            replace(
                environment, deployment=replace(environment.deployment, max_failures=len(targets))
            ),
            context,
        )
        if status is None:
            return False, "rollback cancelled"
        versions = sorted({r.version for r in previous.values()})
        if status.failed:
            return False, f"rollback failed on {len(status.failed)} target(s): {status.summary}"
        return True, f"rolled back {len(status.succeeded)} target(s) to {', '.join(versions)}"


class RollbackDeployStep(DeployStep):
    """Redeploys the release each target ran before the current one."""

    kind = JobKind.ROLLBACK

    def can_roll_back(self, config: Mapping[str, Any]) -> bool:
        return False

    def _execute(self, context: StepContext) -> StepResult:
        config = DeployConfig.model_validate(context.config)
        try:
            release, environment = self._load(context, config)
        except LookupError as exc:
            return StepResult("failed", error=str(exc), retryable=False)
        with self.services.uow(read_only=True) as uow:
            current = [
                j
                for j in (uow.jobs.last_succeeded(t.id) for t in _targets(uow, environment))
                if j is not None
            ]
        ok, summary = self._roll_back(
            current,
            release,
            environment,
            _uuid(config.promotion),
            context,
            f"{context.idempotency_key}:rollback",
        )
        return StepResult(
            "succeeded" if ok else "failed",
            error=None if ok else summary,
            log=summary,
            retryable=False,
        )

    def rollback(self, context: StepContext) -> StepResult:
        return StepResult("succeeded")


def advance_batch_final(
    services: DeploymentServices, batch: str, environment: Environment
) -> BatchStatus:
    with services.uow() as uow:
        status = advance_batch(uow, batch, environment.deployment, services.clock())
        uow.commit()
    return status


def _targets(uow: Any, environment: Environment) -> list[Target]:

    return environment_targets(uow, environment.tenant_id, environment.id)


def _tenant_of_run(services: DeploymentServices, run_id: uuid.UUID) -> uuid.UUID:
    with services.uow(read_only=True) as uow:
        tenant = uow.runs.tenant_of(run_id)
    if tenant is None:
        msg = f"workflow run {run_id} not found"
        raise LookupError(msg)
    return tenant


def _uuid(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _job_line(job: DeploymentJob) -> str:
    suffix = f": {job.error}" if job.error else ""
    return f"{job.target_name}: {job.kind} {job.release_version} {job.state}{suffix}"
