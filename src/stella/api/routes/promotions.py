"""/api/v1 promotions, their decisions and replays, policies, scans and signing keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from stella.adapters.policy.rego import check_policy
from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.schemas import ListOf
from stella.domain.errors import NotFound
from stella.domain.promotions import Promotion
from stella.services import audit_chain
from stella.services import policies as policy_svc
from stella.services import promotions as svc
from stella.services.specs import DecisionSpec, OverrideSpec, PolicySpec, PromotionSpec

router = APIRouter()


class GateResultOut(BaseModel):
    gate: str
    passed: bool
    pending: bool
    reason: str
    details: dict[str, Any]
    inputs_digest: str


class ApprovalOut(BaseModel):
    user: str
    role: str
    decision: str
    comment: str
    at: datetime


class PromotionOut(BaseModel):
    id: str
    state: str
    release_id: str
    release: str
    source_environment: str | None
    target_environment: str
    requested_by: str
    requested_at: datetime
    updated_at: datetime
    gate_results: list[GateResultOut]
    approvals: list[ApprovalOut]
    decision: dict[str, Any] | None
    kind: str = "promotion"
    rollback_of: str | None = None

    @classmethod
    def of(cls, p: Promotion) -> PromotionOut:
        return cls(
            id=str(p.id),
            state=p.state,
            release_id=str(p.release_id),
            release=f"{p.release_name}@{p.release_version}",
            source_environment=p.source_environment,
            target_environment=p.target_environment,
            requested_by=p.requested_by_name,
            requested_at=p.requested_at,
            updated_at=p.updated_at,
            gate_results=[GateResultOut(**r.to_json()) for r in p.gate_results],
            approvals=[
                ApprovalOut(
                    user=a.user_name, role=a.role, decision=a.decision, comment=a.comment, at=a.at
                )
                for a in p.approvals
            ],
            decision=p.decision,
            kind=p.kind,
            rollback_of=str(p.rollback_of) if p.rollback_of else None,
        )


@router.post("/promotions", status_code=201, tags=["promotions"])
def request_promotion(container: ContainerDep, ctx: Ctx, spec: PromotionSpec) -> PromotionOut:
    """Evaluates every gate of the target environment at once."""
    return PromotionOut.of(svc.request_promotion(container.promotions, ctx, spec))


@router.get("/promotions", tags=["promotions"])
def list_promotions(
    container: ContainerDep,
    ctx: Ctx,
    page: Page,
    environment: Annotated[str | None, Query(description="target environment slug or id")] = None,
    state: Annotated[str | None, Query()] = None,
    release: Annotated[str | None, Query(description="release id or name@version")] = None,
) -> ListOf[PromotionOut]:
    with container.read_uow() as uow:
        found = svc.list_promotions(uow, ctx, page, environment, state, release)
    return ListOf(items=[PromotionOut.of(p) for p in found.items], next_cursor=found.next_cursor)


@router.get("/promotions/{ref}", tags=["promotions"])
def get_promotion(container: ContainerDep, ctx: Ctx, ref: str) -> PromotionOut:
    return PromotionOut.of(svc.get_promotion(container.uow, ctx, ref))


@router.post("/promotions/{ref}/approve", tags=["promotions"])
def approve(
    container: ContainerDep, ctx: Ctx, ref: str, body: DecisionSpec | None = None
) -> PromotionOut:
    comment = body.comment if body else ""
    return PromotionOut.of(svc.decide(container.promotions, ctx, ref, True, comment))


@router.post("/promotions/{ref}/reject", tags=["promotions"])
def reject(
    container: ContainerDep, ctx: Ctx, ref: str, body: DecisionSpec | None = None
) -> PromotionOut:
    reason = (body.reason or body.comment) if body else ""
    return PromotionOut.of(svc.decide(container.promotions, ctx, ref, False, reason))


@router.post("/promotions/{ref}/cancel", tags=["promotions"])
def cancel(container: ContainerDep, ctx: Ctx, ref: str) -> PromotionOut:
    return PromotionOut.of(svc.cancel(container.promotions, ctx, ref))


@router.post("/promotions/{ref}/reevaluate", tags=["promotions"])
def reevaluate(container: ContainerDep, ctx: Ctx, ref: str) -> PromotionOut:
    return PromotionOut.of(svc.reevaluate(container.promotions, ctx, ref))


@router.post("/promotions/{ref}/override", tags=["promotions"])
def override(container: ContainerDep, ctx: Ctx, ref: str, spec: OverrideSpec) -> PromotionOut:
    """Break-glass (admin): pass the freeze window gate, with a reason that is audited."""
    return PromotionOut.of(svc.override(container.promotions, ctx, ref, spec))


@router.get("/promotions/{ref}/events", tags=["promotions"])
def promotion_events(container: ContainerDep, ctx: Ctx, ref: str) -> ListOf[dict[str, Any]]:
    """Every state transition: who, when, from, to, why. Append-only."""
    promotion = svc.get_promotion(container.uow, ctx, ref)
    with container.read_uow() as uow:
        events = uow.promotions.events(promotion.id)
    items = [
        {
            "seq": e["seq"],
            "from": e["from_state"],
            "to": e["to_state"],
            "by": e["actor_name"],
            "reason": e["reason"],
            "at": e["at"].isoformat(),
        }
        for e in events
    ]
    return ListOf(items=items, next_cursor=None)


@router.get("/promotions/{ref}/evaluations", tags=["promotions"])
def promotion_evaluations(container: ContainerDep, ctx: Ctx, ref: str) -> ListOf[dict[str, Any]]:
    """Every gate evaluation, oldest first (without its context: see /evaluations/{seq})."""
    promotion = svc.get_promotion(container.uow, ctx, ref)
    with container.read_uow() as uow:
        evaluations = uow.promotions.evaluations(promotion.id)
    items = [_evaluation_out(e, with_context=False) for e in evaluations]
    return ListOf(items=items, next_cursor=None)


@router.get("/promotions/{ref}/evaluations/{seq}", tags=["promotions"])
def promotion_evaluation(container: ContainerDep, ctx: Ctx, ref: str, seq: int) -> dict[str, Any]:
    """One evaluation with the full context its gates were computed from (what replay uses)."""
    promotion = svc.get_promotion(container.uow, ctx, ref)
    with container.read_uow() as uow:
        evaluation = uow.promotions.evaluation_by_seq(promotion.id, seq)
    if evaluation is None:
        msg = f"promotion {ref} has no evaluation {seq}"
        raise NotFound(msg)
    return _evaluation_out(evaluation, with_context=True)


def _evaluation_out(e: dict[str, Any], with_context: bool) -> dict[str, Any]:
    out = {
        "seq": e["seq"],
        "outcome": e["outcome"],
        "reason": e["reason"],
        "evaluated_at": e["evaluated_at"].isoformat(),
        "results": e["results"],
    }
    return out | ({"context": e["context"]} if with_context else {})


@router.get("/promotions/{ref}/decision", tags=["promotions"])
def decision(container: ContainerDep, ctx: Ctx, ref: str) -> dict[str, Any]:
    """The signed decision record: a DSSE envelope around an in-toto Statement."""
    promotion = svc.get_promotion(container.uow, ctx, ref)
    with container.read_uow() as uow:
        found = uow.promotions.decision(promotion.id)
    if found is None:
        msg = f"promotion {ref} has no decision yet (it is {promotion.state})"
        raise NotFound(msg)
    return dict(found["envelope"])


@router.post("/promotions/{ref}/replay", tags=["promotions"])
def replay(container: ContainerDep, ctx: Ctx, ref: str) -> dict[str, Any]:
    """Re-run the gates on the recorded context: identical, or the exact differences."""
    return svc.replay(container.promotions, ctx, ref)


@router.get("/keys", tags=["evidence"])
def keys(container: ContainerDep, ctx: Ctx) -> dict[str, Any]:
    """Every public key the server signs or signed with; `current` marks the one in use."""
    ring = container.signing_key
    with container.read_uow() as uow:
        registered = {k["keyid"]: k for k in uow.signing_keys.all()}
    found = audit_chain.known_public_keys(ring.public_keys(), registered.values())
    current = ring.keyid
    return {
        "keys": [
            {
                "keyid": keyid,
                "algorithm": "ed25519",
                "public_key_pem": pem,
                "current": keyid == current,
                "created_at": _iso(registered.get(keyid, {}).get("created_at")),
                "retired_at": None
                if keyid == current
                else _iso(registered.get(keyid, {}).get("retired_at")),
            }
            for keyid, pem in sorted(found.items(), key=lambda kv: kv[0] != current)
        ]
    }


def _iso(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


@router.post("/policies", status_code=201, tags=["policies"])
def save_policy(
    container: ContainerDep, ctx: Ctx, spec: PolicySpec, response: Response
) -> dict[str, Any]:
    """A Rego policy in package `stella.promotion`; `deny` messages fail the policy gate."""
    policy, created = policy_svc.save_policy(container.uow, ctx, spec, check_policy)
    if not created:
        response.status_code = 200
    return _policy_out(policy)


@router.get("/policies", tags=["policies"])
def list_policies(container: ContainerDep, ctx: Ctx) -> ListOf[dict[str, Any]]:
    with container.read_uow() as uow:
        found = uow.policies.all_latest(ctx.principal.tenant_id)
    return ListOf(items=[_policy_out(p) for p in found], next_cursor=None)


@router.get("/policies/{name}", tags=["policies"])
def get_policy(container: ContainerDep, ctx: Ctx, name: str) -> dict[str, Any]:
    with container.read_uow() as uow:
        return _policy_out(policy_svc.get_policy(uow, ctx.principal.tenant_id, name), rego=True)


def _policy_out(policy: dict[str, Any], rego: bool = False) -> dict[str, Any]:
    out = {
        "id": str(policy["id"]),
        "name": policy["name"],
        "version": policy["version"],
        "hash": policy["hash"],
        "created_at": policy["created_at"].isoformat(),
        "created_by": policy["created_by_name"],
    }
    return out | ({"rego": policy["rego"]} if rego else {})
