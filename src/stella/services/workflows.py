"""Use cases for workflow templates and runs: save, start, read, cancel, approve, reject."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

from stella.domain.durations import parse_duration
from stella.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from stella.domain.ids import new_id
from stella.domain.pagination import Page, PageRequest
from stella.domain.tenancy import Permission
from stella.domain.workflow import (
    InputSpec,
    OnFailure,
    RetryPolicy,
    RunState,
    StepSpec,
    StepState,
    WorkflowTemplate,
    coerce_inputs,
    execution_order,
    validate_template,
)
from stella.domain.workflow_runs import RunEvent, RunStep, WorkflowRun
from stella.services.context import CallContext, record, require
from stella.services.ports import UnitOfWork, UnitOfWorkFactory
from stella.services.specs import RunSpec, WorkflowSpec, WorkflowStepSpec
from stella.services.steps import StepRegistry, StepResult
from stella.services.workflow_engine import RunAdvancer
from stella.services.workflow_ports import RunStore, RunTransaction


@dataclass(frozen=True, slots=True)
class SavedTemplate:
    template: WorkflowTemplate
    created: bool  # False when the same content was already the latest version


def _duration(text: str, path: str, errors: list[FieldError]) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        errors.append(FieldError(path, str(exc)))
        return timedelta(0)


def _step(index: int, spec: WorkflowStepSpec, errors: list[FieldError]) -> StepSpec:
    path = f"steps.{index}"
    timeout = None if spec.timeout is None else _duration(spec.timeout, f"{path}.timeout", errors)
    retry = RetryPolicy(
        spec.retry.max_attempts,
        _duration(spec.retry.backoff, f"{path}.retry.backoff", errors),
        _duration(spec.retry.max_backoff, f"{path}.retry.max_backoff", errors),
    )
    return StepSpec(
        id=spec.id,
        name=spec.name,
        type=spec.type,
        config=dict(spec.config),
        depends_on=tuple(spec.depends_on),
        timeout=timeout,
        retry=retry,
        rollback=spec.rollback,
        when=spec.when,
    )


def build_template(
    spec: WorkflowSpec, registry: StepRegistry, ctx: CallContext, version: int
) -> WorkflowTemplate:
    """Validate a spec completely (every problem at once) and build version `version`."""
    errors: list[FieldError] = []
    steps = [_step(i, s, errors) for i, s in enumerate(spec.steps)]
    inputs = [InputSpec(**i.model_dump()) for i in spec.inputs]
    errors.extend(validate_template(steps, inputs, registry.type_infos()))
    if errors:
        raise ValidationFailed.of(errors)
    return WorkflowTemplate(
        id=new_id(),
        tenant_id=ctx.principal.tenant_id,
        name=spec.name,
        version=version,
        description=spec.description,
        inputs=tuple(inputs),
        steps=tuple(steps),
        on_failure=OnFailure(spec.on_failure),
        created_at=ctx.clock(),
        created_by_name=ctx.principal.name,
        digest=_digest(spec),
    )


def _digest(spec: WorkflowSpec) -> str:
    canonical = json.dumps(spec.model_dump(mode="json", exclude={"name"}), sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def save_template(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, spec: WorkflowSpec, registry: StepRegistry
) -> SavedTemplate:
    """Store a new version, unless the latest version has exactly this content."""
    require(ctx, Permission.ADMINISTER, uow_factory, "save workflow templates")
    with uow_factory() as uow:
        latest = uow.workflows.latest(ctx.principal.tenant_id, spec.name)
        if latest is not None and latest.digest == _digest(spec):
            return SavedTemplate(latest, created=False)
        template = build_template(spec, registry, ctx, (latest.version + 1) if latest else 1)
        uow.workflows.add(template)
        record(
            uow,
            ctx,
            "workflow.created",
            "workflow",
            template.id,
            {"name": template.name, "version": template.version},
        )
        uow.commit()
    return SavedTemplate(template, created=True)


def get_template(
    uow: UnitOfWork, tenant_id: uuid.UUID, name: str, version: int | None = None
) -> WorkflowTemplate:
    template = (
        uow.workflows.latest(tenant_id, name)
        if version is None
        else uow.workflows.version(tenant_id, name, version)
    )
    if template is None:
        suffix = "" if version is None else f" version {version}"
        msg = f"workflow '{name}'{suffix} not found"
        raise NotFound(msg)
    return template


def list_templates(
    uow: UnitOfWork, tenant_id: uuid.UUID, page: PageRequest, name: str | None
) -> Page[WorkflowTemplate]:
    return uow.workflows.page(tenant_id, page, name)


def _new_run(
    template: WorkflowTemplate, ctx: CallContext, inputs: dict[str, object]
) -> WorkflowRun:
    now = ctx.clock()
    run_id = new_id()
    order = execution_order(template)
    steps = tuple(
        RunStep(
            run_id=run_id,
            step_id=step_id,
            position=position,
            type=template.step(step_id).type,
            state=StepState.PENDING,
            attempts=0,
            failures=0,
            pending_deps=len(set(template.step(step_id).depends_on)),
            next_attempt_at=None,
            lease_owner=None,
            lease_expires_at=None,
            started_at=None,
            finished_at=None,
            completed_seq=None,
            outputs={},
            error=None,
            log="",
        )
        for position, step_id in enumerate(order)
    )
    return WorkflowRun(
        id=run_id,
        tenant_id=template.tenant_id,
        workflow_id=template.id,
        workflow_name=template.name,
        workflow_version=template.version,
        inputs=dict(inputs),
        state=RunState.RUNNING,
        cancel_requested=False,
        error=None,
        created_at=now,
        created_by_name=ctx.principal.name,
        correlation_id=ctx.correlation_id,
        started_at=now,
        finished_at=None,
        last_seq=0,
        steps_total=len(steps),
        steps_done=0,
        steps=steps,
    )


def start_run(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    spec: RunSpec,
    store: RunStore,
    advancer: RunAdvancer,
) -> WorkflowRun:
    """Create a run of a template version with checked inputs; its first steps become ready."""
    require(ctx, Permission.MANAGE_RELEASES, uow_factory, "start workflow runs")
    with uow_factory(read_only=True) as uow:
        template = get_template(uow, ctx.principal.tenant_id, spec.workflow, spec.version)
    inputs, errors = coerce_inputs(template.inputs, spec.inputs)
    if errors:
        raise ValidationFailed.of(errors)
    run = _new_run(template, ctx, inputs)
    with store.create(run) as tx:
        assert tx is not None  # noqa: S101 - create always yields the new run
        tx.event(
            "run.created",
            f"run of {template.name} v{template.version} created by {ctx.principal.name}",
            ctx.clock(),
            data={"inputs": inputs},
        )
        advancer.start_roots(tx)
    with uow_factory() as uow:
        record(
            uow,
            ctx,
            "workflow_run.created",
            "workflow_run",
            run.id,
            {"workflow": template.name, "version": template.version},
        )
        uow.commit()
    return run


def get_run(uow: UnitOfWork, tenant_id: uuid.UUID, ref: str) -> WorkflowRun:
    run = uow.runs.get_with_steps(tenant_id, _run_id(ref))
    if run is None:
        msg = f"workflow run '{ref}' not found"
        raise NotFound(msg)
    return run


def list_runs(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    page: PageRequest,
    workflow: str | None,
    state: RunState | None,
) -> Page[WorkflowRun]:
    return uow.runs.page(tenant_id, page, workflow, state)


def run_events(
    uow: UnitOfWork, tenant_id: uuid.UUID, ref: str, after: int, limit: int
) -> list[RunEvent]:
    run = get_run(uow, tenant_id, ref)
    return uow.runs.events(run.id, after, limit)


def _run_id(ref: str) -> uuid.UUID:
    try:
        return uuid.UUID(ref)
    except ValueError:
        msg = f"workflow run '{ref}' not found"
        raise NotFound(msg) from None


def _check_tenant(tx: RunTransaction | None, ctx: CallContext, ref: str) -> RunTransaction:
    if tx is None or tx.run.tenant_id != ctx.principal.tenant_id:
        msg = f"workflow run '{ref}' not found"
        raise NotFound(msg)
    return tx


def cancel_run(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    ref: str,
    store: RunStore,
    advancer: RunAdvancer,
) -> None:
    """Request cancellation; running steps are killed, a rollback in progress stops."""
    require(ctx, Permission.MANAGE_RELEASES, uow_factory, "cancel workflow runs")
    run_id = _run_id(ref)
    with store.lock_run(run_id) as locked:
        tx = _check_tenant(locked, ctx, ref)
        if tx.run.state.is_terminal:
            msg = f"workflow run {ref} is already {tx.run.state}"
            raise Conflict(msg)
        if not tx.run.cancel_requested:
            advancer.cancel(tx, ctx.principal.name)
    with uow_factory() as uow:
        record(uow, ctx, "workflow_run.cancelled", "workflow_run", run_id)
        uow.commit()


def decide_step(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    ref: str,
    step_id: str,
    approve: bool,
    comment: str,
    store: RunStore,
    advancer: RunAdvancer,
) -> None:
    """Approve or reject a waiting `approval` step."""
    require(ctx, Permission.APPROVE, uow_factory, "decide approval steps")
    run_id = _run_id(ref)
    with store.lock_run(run_id) as locked:
        tx = _check_tenant(locked, ctx, ref)
        known = tx.steps([step_id])
        if step_id not in known:
            msg = f"step '{step_id}' not found in run {ref}"
            raise NotFound(msg)
        step = known[step_id]
        if step.state is not StepState.WAITING:
            msg = f"step {step_id} is {step.state}, not waiting for a decision"
            raise Conflict(msg)
        if approve:
            outputs = step.outputs | {"approved_by": ctx.principal.name, "comment": comment}
            advancer.succeed(tx, step, StepResult("succeeded", outputs=outputs))
        else:
            error = f"rejected by {ctx.principal.name}" + (f": {comment}" if comment else "")
            advancer.fail(tx, step, StepResult("failed", error=error, retryable=False))
    with uow_factory() as uow:
        action = "workflow_step.approved" if approve else "workflow_step.rejected"
        record(uow, ctx, action, "workflow_run", run_id, {"step": step_id, "comment": comment})
        uow.commit()
