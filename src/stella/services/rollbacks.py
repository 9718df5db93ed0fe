"""Explicit rollbacks: `stella rollback --env prod [--to RELEASE]`.

A rollback is a promotion of kind `rollback` that redeploys a release the environment ran
before. It goes through the environment's gates like any promotion (approvals, freeze windows,
policy…), so undoing a change in production is as controlled as making it; once deployed, the
promotion it undid becomes `rolled_back`.
"""

from __future__ import annotations

from stella.domain.errors import Conflict, ValidationFailed
from stella.domain.ids import new_id
from stella.domain.pagination import PageRequest
from stella.domain.promotions import Promotion, PromotionState
from stella.domain.tenancy import Permission
from stella.services.context import CallContext, record, require
from stella.services.environments import get_environment
from stella.services.promotions import (
    PromotionServices,
    _evaluate,
    _start_deployment,
)

_DEPLOYED_BEFORE = {PromotionState.DEPLOYED, PromotionState.ROLLED_BACK}


def request_rollback(
    services: PromotionServices, ctx: CallContext, environment: str, to: str | None
) -> Promotion:
    require(ctx, Permission.MANAGE_RELEASES, services.uow, "request rollbacks")
    tenant = ctx.principal.tenant_id
    with services.uow() as uow:
        env = get_environment(uow, tenant, environment)
        history = sorted(
            uow.promotions.page(tenant, PageRequest(limit=500), env.id, None, None).items,
            key=lambda p: p.id,
            reverse=True,
        )
        current = next((p for p in history if p.state is PromotionState.DEPLOYED), None)
        if current is None:
            msg = f"nothing is deployed to {env.slug}; there is nothing to roll back"
            raise Conflict(msg)
        # by default: the newest release still standing as deployed (one rolled back is
        # not a good place to return to; name it with --to if you mean it)
        earlier = [
            p
            for p in history
            if p.state is PromotionState.DEPLOYED
            and p.release_id != current.release_id
            and p.id < current.id
        ]
        if to is not None:
            wanted = uow.releases.get(tenant, to)
            if wanted is None:
                raise ValidationFailed.single("to", f"release '{to}' not found")
            if wanted.id == current.release_id:
                raise ValidationFailed.single(
                    "to", f"{wanted.name} {wanted.version} is what {env.slug} runs now"
                )
            if not any(p.release_id == wanted.id for p in history if p.state in _DEPLOYED_BEFORE):
                raise ValidationFailed.single(
                    "to", f"{wanted.name} {wanted.version} was never deployed to {env.slug}"
                )
            release = wanted
        elif earlier:
            found = uow.releases.get(tenant, str(earlier[0].release_id))
            if found is None:
                raise ValidationFailed.single("to", "the previous release no longer exists")
            release = found
        else:
            msg = f"{env.slug} ran no earlier release; there is nothing to roll back to"
            raise Conflict(msg)
        for other in history:
            if other.kind == "rollback" and (
                other.state.is_open
                or other.state in {PromotionState.APPROVED, PromotionState.DEPLOYING}
            ):
                msg = f"rollback {other.id} into {env.slug} is already {other.state}"
                raise Conflict(msg)
        uow.releases.lock(release.id)
        now = ctx.clock()
        promotion = Promotion(
            id=new_id(),
            tenant_id=tenant,
            release_id=release.id,
            release_name=release.name,
            release_version=release.version,
            source_environment_id=None,
            source_environment=None,
            target_environment_id=env.id,
            target_environment=env.slug,
            requested_by=ctx.principal.user_id,
            requested_by_name=ctx.principal.name,
            requested_at=now,
            state=PromotionState.PENDING,
            updated_at=now,
            kind="rollback",
            rollback_of=current.id,
        )
        uow.promotions.add(promotion)
        uow.promotions.add_event(
            promotion.id,
            None,
            "pending",
            ctx.principal.user_id,
            ctx.principal.name,
            f"rollback of {current.release_name} {current.release_version} "
            f"(promotion {current.id}) to {release.version}",
            now,
        )
        _evaluate(uow, services, ctx, promotion)
        record(
            uow,
            ctx,
            "promotion.rollback_requested",
            "promotion",
            promotion.id,
            {"environment": env.slug, "from": current.release_version, "to": release.version},
        )
        uow.commit()
    return _start_deployment(services, ctx, str(promotion.id))
