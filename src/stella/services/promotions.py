"""Use cases of promotions: request, approve, reject, cancel, re-evaluate, override, replay.

Every change happens with the promotion's row locked (SELECT … FOR UPDATE on PostgreSQL, the
write transaction on SQLite), so concurrent approvals and cancellations are race-free. Each
evaluation is appended with its full context; a settled outcome gets a signed decision record.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from opentelemetry import trace

import stella
from stella.domain.canonical import canonical_json, digest
from stella.domain.deployments import CAPABILITY_FOR_TARGET, JobKind, JobState, detect_drift
from stella.domain.environments import Environment
from stella.domain.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    StellaError,
    ValidationFailed,
)
from stella.domain.ids import new_id
from stella.domain.pagination import Page, PageRequest
from stella.domain.promotions import Approval, Promotion, PromotionState, check_transition
from stella.domain.releases import Release, ReleaseState
from stella.domain.targets import Target, TargetState
from stella.domain.tenancy import Permission, Principal, Role
from stella.domain.workflow_runs import WorkflowRun
from stella.services import deployments, evidence, gates, security, workflows
from stella.services.context import CallContext, record, require
from stella.services.metrics import Metrics, NoMetrics
from stella.services.ports import DecisionSigner, UnitOfWork, UnitOfWorkFactory
from stella.services.specs import OverrideSpec, PromotionSpec, RunSpec
from stella.services.targets import environment_targets

log = logging.getLogger("stella.promotions")

StartRun = Callable[[CallContext, RunSpec], WorkflowRun]
"""Starts a workflow run (the workflow service, bound to its run store)."""


@dataclass(frozen=True)
class PromotionServices:
    """Collaborators every promotion use case needs."""

    uow: UnitOfWorkFactory
    evaluator: gates.PolicyEvaluator
    signer: DecisionSigner
    start_run: StartRun | None = None
    cancel_run: Callable[[CallContext, str], None] | None = None
    metrics: Metrics = field(default_factory=NoMetrics)
    # the built-in deploy workflow's name, saved for the tenant on first use
    default_workflow: Callable[[CallContext], str] | None = None


def _release(uow: UnitOfWork, tenant_id: uuid.UUID, ref: str) -> Release:
    release = uow.releases.get(tenant_id, ref)
    if release is None:
        raise ValidationFailed.single("release_id", f"release '{ref}' not found")
    if release.state is not ReleaseState.ACTIVE:
        raise ValidationFailed.single(
            "release_id",
            f"release {release.name} {release.version} is "
            f"{release.state}; only active releases are promoted",
        )
    return release


def _environments(
    uow: UnitOfWork, ctx: CallContext, spec: PromotionSpec
) -> tuple[Environment | None, Environment]:
    ordered = uow.environments.all(ctx.principal.tenant_id)
    by_ref = {e.slug: e for e in ordered} | {str(e.id): e for e in ordered}
    target = by_ref.get(spec.target_environment)
    if target is None:
        raise ValidationFailed.single(
            "target_environment", f"environment '{spec.target_environment}' not found"
        )
    if target.state.value == "retired":
        raise ValidationFailed.single(
            "target_environment", f"environment '{target.slug}' is retired"
        )
    if spec.source_environment is None:
        earlier = [e for e in ordered if e.promotion_order < target.promotion_order]
        return (earlier[-1] if earlier else None), target
    source = by_ref.get(spec.source_environment)
    if source is None:
        raise ValidationFailed.single(
            "source_environment", f"environment '{spec.source_environment}' not found"
        )
    if source.id == target.id:
        raise ValidationFailed.single("target_environment", "is the same as the source environment")
    if source.promotion_order > target.promotion_order:
        raise ValidationFailed.single(
            "target_environment",
            f"'{target.slug}' (order {target.promotion_order}) comes before '{source.slug}' "
            f"(order {source.promotion_order}); promotions go forward",
        )
    return source, target


def request_promotion(
    services: PromotionServices, ctx: CallContext, spec: PromotionSpec
) -> Promotion:
    """Create a promotion and evaluate its gates at once."""
    tracer = trace.get_tracer("stella.promotions")
    with tracer.start_as_current_span("promotion.request") as span:
        span.set_attribute("promotion.release", spec.release_id)
        span.set_attribute("promotion.target_environment", spec.target_environment)
        promotion = _request_promotion(services, ctx, spec)
        span.set_attribute("promotion.id", str(promotion.id))
        span.set_attribute("promotion.state", str(promotion.state))
        return promotion


def _request_promotion(
    services: PromotionServices, ctx: CallContext, spec: PromotionSpec
) -> Promotion:
    require(ctx, Permission.MANAGE_RELEASES, services.uow, "request promotions")
    with services.uow() as uow:
        release = _release(uow, ctx.principal.tenant_id, spec.release_id)
        uow.releases.lock(release.id)  # two racing requests for one release are serialised here
        source, target = _environments(uow, ctx, spec)
        for earlier in uow.promotions.into(ctx.principal.tenant_id, release.id, target.id):
            if earlier.state.is_open or earlier.state in {
                PromotionState.APPROVED,
                PromotionState.DEPLOYING,
                PromotionState.DEPLOYED,
            }:
                msg = (
                    f"release {release.name} {release.version} already has promotion "
                    f"{earlier.id} into {target.slug} ({earlier.state})"
                )
                raise Conflict(msg)
        now = ctx.clock()
        promotion = Promotion(
            id=new_id(),
            tenant_id=ctx.principal.tenant_id,
            release_id=release.id,
            release_name=release.name,
            release_version=release.version,
            source_environment_id=source.id if source else None,
            source_environment=source.slug if source else None,
            target_environment_id=target.id,
            target_environment=target.slug,
            requested_by=ctx.principal.user_id,
            requested_by_name=ctx.principal.name,
            requested_at=now,
            state=PromotionState.PENDING,
            updated_at=now,
        )
        uow.promotions.add(promotion)
        uow.promotions.add_event(
            promotion.id,
            None,
            "pending",
            ctx.principal.user_id,
            ctx.principal.name,
            "requested",
            now,
        )
        _evaluate(uow, services, ctx, promotion)
        record(
            uow,
            ctx,
            "promotion.requested",
            "promotion",
            promotion.id,
            {"release": f"{release.name}@{release.version}", "target": target.slug},
        )
        uow.commit()
    return _start_deployment(services, ctx, str(promotion.id))


def build_context(uow: UnitOfWork, promotion: Promotion, now: datetime) -> dict[str, Any]:
    """Everything the gates look at, gathered up front (the replayable record)."""
    tenant_id = promotion.tenant_id
    release = uow.releases.get(tenant_id, str(promotion.release_id))
    target = uow.environments.get_by_id(tenant_id, promotion.target_environment_id)
    if release is None or target is None:
        msg = f"promotion {promotion.id} refers to a release or environment that is gone"
        raise NotFound(msg)
    source = (
        uow.environments.get_by_id(tenant_id, promotion.source_environment_id)
        if promotion.source_environment_id
        else None
    )
    components = [
        {"name": c.name, "repository": c.repository, "digest": c.digest} for c in release.components
    ]
    security_input = security.security_context(
        uow, tenant_id, target, [c["digest"] for c in components], now
    )
    targets = environment_targets(uow, tenant_id, target.id)
    policies = []
    for name in target.policies:
        found = uow.policies.latest(tenant_id, name)
        policies.append(
            {
                "name": name,
                "version": found["version"],
                "hash": found["hash"],
                "rego": found["rego"],
            }
            if found
            else {"name": name, "version": 0, "hash": "missing", "rego": None}
        )
    configured = [str(g) for g in target.gates] or list(
        gates.PRODUCTION_DEFAULT_GATES
        if target.is_production
        else gates.NON_PRODUCTION_DEFAULT_GATES
    )
    return {
        "now": now.isoformat(),
        "promotion": {
            "id": str(promotion.id),
            "requested_by": str(promotion.requested_by),
            "requested_by_name": promotion.requested_by_name,
            "requested_at": promotion.requested_at.isoformat(),
            "kind": promotion.kind,
        },
        "release": {
            "id": str(release.id),
            "name": release.name,
            "version": release.version,
            "source_ref": release.source_ref,
            "components": components,
        },
        "source": None
        if source is None
        else {"id": str(source.id), "slug": source.slug, "name": source.name},
        "target": {
            "id": str(target.id),
            "slug": target.slug,
            "name": target.name,
            "is_production": target.is_production,
            "state": str(target.state),
            "gates": configured,
            "approval_policy": {
                "required_approvals": target.approval_policy.required_approvals,
                "approver_roles": [str(r) for r in target.approval_policy.approver_roles],
                "separation_of_duties": target.approval_policy.separation_of_duties,
            },
            "freeze_windows": [
                {k: v for k, v in asdict(w).items() if v is not None} for w in target.freeze_windows
            ],
        },
        "previous_promotions": []
        if source is None
        else [
            {"id": str(p.id), "state": str(p.state)}
            for p in uow.promotions.into(tenant_id, release.id, source.id)
        ],
        "approvals": [
            {
                "user_id": str(a.user_id),
                "user_name": a.user_name,
                "role": a.role,
                "decision": a.decision,
                "comment": a.comment,
                "at": a.at.isoformat(),
            }
            for a in uow.promotions.approvals(promotion.id)
        ],
        "security": security_input,
        "targets": [
            _target_context(uow, target, t, drift=promotion.kind != "rollback") for t in targets
        ],
        "policies": policies,
        "overrides": uow.promotions.overrides(promotion.id),
    }


def _target_context(
    uow: UnitOfWork, environment: Environment, target: Target, drift: bool = True
) -> dict[str, Any]:
    """A target as the health_check gate sees it: health, agent liveness and (if the
    environment blocks on it) drift — except for rollbacks, which are how drift is repaired."""
    entry: dict[str, Any] = {
        "name": target.name,
        "health": str(target.health),
        "state": str(target.state),
    }
    capability = CAPABILITY_FOR_TARGET.get(str(target.type))
    if target.agent_id is not None:
        agent = uow.agents.by_id(target.agent_id)
        entry["agent"] = str(agent.state) if agent else "missing"
    elif capability is not None:
        online = uow.agents.online_with(target.tenant_id, environment.id, capability)
        entry["agent"] = "online" if online else "offline"
    if drift and environment.deployment.block_on_drift:
        entry["drift"] = _drift_state(uow, target)
    return entry


def _drift_state(uow: UnitOfWork, target: Target) -> str:
    last = uow.jobs.last_succeeded(target.id)
    seen = uow.observations.get(target.id)
    if last is None or seen is None:
        return "unknown"
    task = deployments.load_task(uow, last)
    return "drifted" if detect_drift(task.containers, seen[0], str(target.id)) else "in_sync"


def _evaluate(
    uow: UnitOfWork, services: PromotionServices, ctx: CallContext, promotion: Promotion
) -> PromotionState:
    now = ctx.clock()
    context = build_context(uow, promotion, now)
    results = gates.evaluate(context, services.evaluator)
    state_name, reason = gates.outcome(context, results)
    state = PromotionState(state_name)
    for result in results:
        services.metrics.gate_evaluated(result.gate, result.passed)
    services.metrics.promotion_settled(promotion.target_environment, state_name)
    log.info(
        "promotion evaluated: %s",
        reason,
        extra={
            "promotion_id": str(promotion.id),
            "release_id": str(promotion.release_id),
            "environment_id": str(promotion.target_environment_id),
            "environment": promotion.target_environment,
            "outcome": state_name,
        },
    )
    result_docs = [r.to_json() for r in results]
    evaluation_id = uow.promotions.add_evaluation(
        promotion.id, context, result_docs, state_name, reason, now
    )
    check_transition(promotion.state, state)
    if state is not promotion.state:
        uow.promotions.set_state(promotion.id, state, now)
    uow.promotions.add_event(
        promotion.id,
        str(promotion.state),
        state_name,
        ctx.principal.user_id,
        ctx.principal.name,
        reason,
        now,
    )
    if state in {PromotionState.APPROVED, PromotionState.REJECTED}:
        _decide(
            uow, services, promotion, context, result_docs, evaluation_id, state_name, reason, now
        )
    return state


def _decide(
    uow: UnitOfWork,
    services: PromotionServices,
    promotion: Promotion,
    context: dict[str, Any],
    results: list[dict[str, Any]],
    evaluation_id: uuid.UUID,
    outcome: str,
    reason: str,
    now: datetime,
) -> None:
    predicate = {
        "promotion_id": str(promotion.id),
        "tenant_id": str(promotion.tenant_id),
        "release": {k: context["release"][k] for k in ("id", "name", "version")},
        "source_environment": promotion.source_environment,
        "target_environment": promotion.target_environment,
        "requested_by": promotion.requested_by_name,
        "gate_results": results,
        "approvals": context["approvals"],
        "policy_hashes": {p["name"]: p["hash"] for p in context["policies"]},
        "context_digest": digest(context),
        "evaluation_id": str(evaluation_id),
        "time_source": "system clock (UTC)",
        "decided_at": now.isoformat(),
        "evaluator_version": f"{gates.EVALUATOR_VERSION} (stella {stella.__version__})",
        "outcome": outcome,
        "reason": reason,
    }
    subjects = [
        {"name": c["repository"], "digest": {"sha256": c["digest"].removeprefix("sha256:")}}
        for c in context["release"]["components"]
    ]
    envelope = services.signer.sign_statement(subjects, predicate)
    uow.promotions.add_decision(
        {
            "promotion_id": promotion.id,
            "evaluation_id": evaluation_id,
            "outcome": outcome,
            "reason": reason,
            "envelope": envelope,
            "envelope_digest": digest(envelope),
            "keyid": services.signer.keyid,
            "created_at": now,
        }
    )
    sealed = evidence.seal_decision(
        uow, services.signer, promotion, context, results, envelope, outcome, reason, now
    )
    if sealed is not None:
        services.metrics.evidence_sealed(str(sealed.kind))


def _locked(uow: UnitOfWork, ctx: CallContext, ref: str) -> Promotion:
    promotion = uow.promotions.find(ctx.principal.tenant_id, ref, lock=True)
    if promotion is None:
        msg = f"promotion '{ref}' not found"
        raise NotFound(msg)
    return promotion


def decide(
    services: PromotionServices, ctx: CallContext, ref: str, approve: bool, comment: str
) -> Promotion:
    """Approve or reject; the gates are evaluated again with the new approval."""
    require(ctx, Permission.APPROVE, services.uow, "approve promotions")
    with services.uow() as uow:
        promotion = _locked(uow, ctx, ref)
        if not promotion.state.is_open:
            msg = f"promotion {promotion.id} is {promotion.state}; approvals are closed"
            raise Conflict(msg)
        if any(a.user_name == ctx.principal.name for a in promotion.approvals):
            msg = f"{ctx.principal.name} has already decided on promotion {promotion.id}"
            raise Conflict(msg)
        target = uow.environments.get_by_id(promotion.tenant_id, promotion.target_environment_id)
        assert target is not None  # noqa: S101 - foreign key
        if ctx.principal.role not in target.approval_policy.approver_roles:
            roles = ", ".join(target.approval_policy.approver_roles)
            msg = (
                f"role '{ctx.principal.role}' may not approve promotions into {target.slug} "
                f"({roles} may)"
            )
            raise PermissionDenied(msg)
        own = (
            ctx.principal.user_id == promotion.requested_by
            if ctx.principal.user_id is not None and promotion.requested_by is not None
            else ctx.principal.name == promotion.requested_by_name
        )
        if (
            approve
            and own
            and (target.is_production or target.approval_policy.separation_of_duties)
        ):
            where = "production" if target.is_production else "separation-of-duties"
            msg = f"separation of duties: the requester cannot approve their own {where} promotion"
            raise PermissionDenied(msg)
        uow.promotions.add_approval(
            promotion.id,
            Approval(
                ctx.principal.user_id,
                ctx.principal.name,
                str(ctx.principal.role),
                "approve" if approve else "reject",
                comment,
                ctx.clock(),
            ),
        )
        _evaluate(uow, services, ctx, promotion)
        record(
            uow,
            ctx,
            "promotion.approved" if approve else "promotion.rejected",
            "promotion",
            promotion.id,
            {"comment": comment},
        )
        uow.commit()
    return _start_deployment(services, ctx, ref)


def reevaluate(services: PromotionServices, ctx: CallContext, ref: str) -> Promotion:
    """Evaluate the gates again (a freeze window passed, a scan arrived…); appended, never
    overwriting earlier evaluations."""
    require(ctx, Permission.MANAGE_RELEASES, services.uow, "re-evaluate promotions")
    with services.uow() as uow:
        promotion = _locked(uow, ctx, ref)
        if not promotion.state.is_open:
            msg = f"promotion {promotion.id} is {promotion.state}; there is nothing to re-evaluate"
            raise Conflict(msg)
        _evaluate(uow, services, ctx, promotion)
        record(uow, ctx, "promotion.reevaluated", "promotion", promotion.id)
        uow.commit()
    return _start_deployment(services, ctx, ref)


def override(
    services: PromotionServices, ctx: CallContext, ref: str, spec: OverrideSpec
) -> Promotion:
    """Break-glass: an admin lets a promotion through a freeze window, with a reason (audited)."""
    require(ctx, Permission.ADMINISTER, services.uow, "override promotion gates")
    with services.uow() as uow:
        promotion = _locked(uow, ctx, ref)
        if not promotion.state.is_open:
            msg = f"promotion {promotion.id} is {promotion.state}; nothing to override"
            raise Conflict(msg)
        uow.promotions.add_override(
            promotion.id, spec.gate, ctx.principal.name, spec.reason, ctx.clock()
        )
        record(
            uow,
            ctx,
            "promotion.gate_overridden",
            "promotion",
            promotion.id,
            {"gate": spec.gate, "reason": spec.reason},
        )
        _evaluate(uow, services, ctx, promotion)
        uow.commit()
    return _start_deployment(services, ctx, ref)


def cancel(services: PromotionServices, ctx: CallContext, ref: str) -> Promotion:
    require(ctx, Permission.MANAGE_RELEASES, services.uow, "cancel promotions")
    with services.uow() as uow:
        promotion = _locked(uow, ctx, ref)
        check_transition(promotion.state, PromotionState.CANCELLED)
        now = ctx.clock()
        uow.promotions.set_state(promotion.id, PromotionState.CANCELLED, now)
        uow.promotions.add_event(
            promotion.id,
            str(promotion.state),
            "cancelled",
            ctx.principal.user_id,
            ctx.principal.name,
            "cancelled",
            now,
        )
        record(uow, ctx, "promotion.cancelled", "promotion", promotion.id)
        uow.commit()
    return get_promotion(services.uow, ctx, ref)


def get_promotion(uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str) -> Promotion:
    with uow_factory(read_only=True) as uow:
        promotion = uow.promotions.find(ctx.principal.tenant_id, ref)
    if promotion is None:
        msg = f"promotion '{ref}' not found"
        raise NotFound(msg)
    return promotion


def list_promotions(
    uow: UnitOfWork,
    ctx: CallContext,
    page: PageRequest,
    environment: str | None,
    state: str | None,
    release: str | None,
) -> Page[Promotion]:
    tenant_id = ctx.principal.tenant_id
    environment_id = release_id = None
    if environment is not None:
        env = uow.environments.get(tenant_id, environment)
        if env is None:
            raise ValidationFailed.single("environment", f"environment '{environment}' not found")
        environment_id = env.id
    if release is not None:
        found = uow.releases.get(tenant_id, release)
        if found is None:
            raise ValidationFailed.single("release", f"release '{release}' not found")
        release_id = found.id
    if state is not None and state not in {s.value for s in PromotionState}:
        raise ValidationFailed.single("state", f"unknown state '{state}'")
    return uow.promotions.page(tenant_id, page, environment_id, state, release_id)


def replay(services: PromotionServices, ctx: CallContext, ref: str) -> dict[str, Any]:
    """Run the gates again on the recorded context of the deciding (or latest) evaluation."""
    with services.uow(read_only=True) as uow:
        promotion = uow.promotions.find(ctx.principal.tenant_id, ref)
        if promotion is None:
            msg = f"promotion '{ref}' not found"
            raise NotFound(msg)
        decision = uow.promotions.decision(promotion.id)
        evaluations = uow.promotions.evaluations(promotion.id)
    recorded = next(
        (e for e in evaluations if decision and e["id"] == decision["evaluation_id"]),
        evaluations[-1],
    )
    replayed, state, reason = gates.replay(recorded["context"], services.evaluator)
    differences = _differences(recorded["results"], replayed)
    if (recorded["outcome"], recorded["reason"]) != (state, reason):
        differences.append(
            {
                "field": "outcome",
                "recorded": f"{recorded['outcome']}: {recorded['reason']}",
                "replayed": f"{state}: {reason}",
            }
        )
    if decision is not None:
        differences += _envelope_differences(decision["envelope"], replayed)
    return {
        "identical": not differences
        and canonical_json(recorded["results"]) == canonical_json(replayed),
        "differences": differences,
        "evaluation_seq": recorded["seq"],
        "outcome": state,
        "reason": reason,
    }


def _differences(
    recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    by_gate = {r["gate"]: r for r in replayed}
    for old in recorded:
        new = by_gate.get(old["gate"])
        if new is None:
            found.append(
                {
                    "gate": old["gate"],
                    "field": "gate",
                    "recorded": "evaluated",
                    "replayed": "not evaluated",
                }
            )
            continue
        for key in ("passed", "pending", "reason", "details", "inputs_digest"):
            if canonical_json(old.get(key)) != canonical_json(new.get(key)):
                found.append(
                    {
                        "gate": old["gate"],
                        "field": key,
                        "recorded": old.get(key),
                        "replayed": new.get(key),
                    }
                )
    return found


def _envelope_differences(
    envelope: dict[str, Any], replayed: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    import base64
    import json

    statement = json.loads(base64.b64decode(envelope["payload"]))
    signed = statement["predicate"]["gate_results"]
    if canonical_json(signed) != canonical_json(replayed):
        return [
            {
                "field": "decision",
                "recorded": "signed gate results",
                "replayed": "differ from the replayed gate results",
            }
        ]
    return []


def _start_deployment(services: PromotionServices, ctx: CallContext, ref: str) -> Promotion:
    """An approved promotion into an environment with a promotion workflow starts that workflow.

    The run is started by the system on the promotion's behalf (inputs: promotion_id,
    release_id, release, version, environment, components — those the template declares); the
    promotion is then `deploying` until the run ends (see `settle_deployments`). An environment
    without its own workflow but with active targets gets the built-in deploy workflow.
    """
    promotion = get_promotion(services.uow, ctx, ref)
    if promotion.state is not PromotionState.APPROVED or promotion.run_id or not services.start_run:
        return promotion
    with services.uow(read_only=True) as uow:
        target = uow.environments.get_by_id(promotion.tenant_id, promotion.target_environment_id)
        release = uow.releases.get(promotion.tenant_id, str(promotion.release_id))
        has_targets = target is not None and any(
            t.state is TargetState.ACTIVE
            for t in environment_targets(uow, promotion.tenant_id, target.id)
        )
    if target is None or release is None:
        return promotion
    system = CallContext(
        Principal(None, promotion.tenant_id, f"promotion:{promotion.id}", Role.ADMIN),
        ctx.correlation_id,
        ctx.clock,
    )
    workflow_name = target.promotion_workflow
    deploys = has_targets and target.deployment.deploy_on_approval
    default_workflow = services.default_workflow if deploys else None
    if workflow_name is None and default_workflow is None:
        return promotion  # nothing to deploy to: the promotion stays approved
    inputs = {
        "promotion_id": str(promotion.id),
        "kind": promotion.kind,
        "release_id": str(release.id),
        "release": release.name,
        "version": release.version,
        "environment": target.slug,
        "components": {c.name: f"{c.repository}@{c.digest}" for c in release.components},
    }
    try:
        if default_workflow is not None and workflow_name is None:
            workflow_name = default_workflow(system)
        workflow_name = str(workflow_name)
        with services.uow(read_only=True) as uow:
            declared = {
                i.name
                for i in workflows.get_template(uow, promotion.tenant_id, workflow_name).inputs
            }
        run = services.start_run(
            system,
            RunSpec(
                workflow=workflow_name,
                inputs={k: v for k, v in inputs.items() if k in declared},
            ),
        )
        state, reason, run_id = (
            PromotionState.DEPLOYING,
            f"workflow {workflow_name} run {run.id} started",
            run.id,
        )
    except Exception as exc:  # noqa: BLE001 - whatever stops the start, the promotion must not hang in approved
        detail = exc.detail if isinstance(exc, StellaError) else type(exc).__name__
        state, reason, run_id = (
            PromotionState.FAILED,
            f"could not start workflow {workflow_name}: {detail}",
            None,
        )
    with services.uow() as uow:
        locked = _locked(uow, ctx, ref)
        if locked.state is PromotionState.APPROVED:
            uow.promotions.set_state(locked.id, state, ctx.clock(), run_id)
            uow.promotions.add_event(
                locked.id, "approved", str(state), None, system.principal.name, reason, ctx.clock()
            )
            uow.commit()
            run_id = None
    if run_id is not None and services.cancel_run is not None:
        # the promotion was cancelled while its run was starting: stop the run, record why
        services.cancel_run(system, str(run_id))
    return get_promotion(services.uow, ctx, ref)


_RUN_OUTCOMES = {
    "succeeded": PromotionState.DEPLOYED,
    "failed": PromotionState.FAILED,
    "cancelled": PromotionState.FAILED,
    "rolled_back": PromotionState.ROLLED_BACK,
}


def settle_deployments(services: PromotionServices, clock: Callable[[], datetime]) -> int:
    """Move `deploying` promotions whose workflow run has ended to deployed/failed/rolled_back."""
    settled = 0
    with services.uow(read_only=True) as uow:
        deploying = uow.promotions.deploying()
        finished = []
        for promotion in deploying:
            run = (
                uow.runs.get_with_steps(promotion.tenant_id, promotion.run_id)
                if promotion.run_id
                else None
            )
            if run is not None and run.state.is_terminal:
                finished.append((promotion, run))
    for promotion, run in finished:
        state = _RUN_OUTCOMES[str(run.state)]
        with services.uow() as uow:
            locked = uow.promotions.find(promotion.tenant_id, str(promotion.id), lock=True)
            if locked is None or locked.state is not PromotionState.DEPLOYING:
                continue
            if state is PromotionState.FAILED and _rolled_back(uow, locked.id):
                state = PromotionState.ROLLED_BACK  # the deploy step restored the previous release
            uow.promotions.set_state(locked.id, state, clock())
            reason = f"workflow run {run.id} {run.state}" + (f": {run.error}" if run.error else "")
            uow.promotions.add_event(
                locked.id, "deploying", str(state), None, "workflow", reason, clock()
            )
            if state is PromotionState.DEPLOYED and locked.rollback_of is not None:
                _mark_undone(uow, locked, clock())
            uow.commit()
            settled += 1
    return settled


def _rolled_back(uow: UnitOfWork, promotion_id: uuid.UUID) -> bool:
    """True when the promotion's rollback jobs ran and all of them succeeded."""
    jobs = [j for j in uow.jobs.for_promotion(promotion_id) if j.kind is JobKind.ROLLBACK]
    return bool(jobs) and all(j.state is JobState.SUCCEEDED for j in jobs)


def _mark_undone(uow: UnitOfWork, rollback: Promotion, now: datetime) -> None:
    """A deployed rollback moves the promotion it undid from deployed to rolled_back."""
    undone = uow.promotions.find(rollback.tenant_id, str(rollback.rollback_of), lock=True)
    if undone is None or undone.state is not PromotionState.DEPLOYED:
        return
    uow.promotions.set_state(undone.id, PromotionState.ROLLED_BACK, now)
    uow.promotions.add_event(
        undone.id,
        "deployed",
        "rolled_back",
        None,
        "rollback",
        f"rolled back by promotion {rollback.id} to {rollback.release_version}",
        now,
    )
