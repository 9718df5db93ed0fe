"""/promotions/{id}: gates, approvals, the signed decision, events and the actions on it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from stella.domain.errors import Conflict, PermissionDenied, ValidationFailed
from stella.domain.evidence import PacketKind
from stella.domain.promotions import Promotion, PromotionState
from stella.services import promotions as svc
from stella.web.core import Web, WebContext, back, check_csrf, form
from stella.web.pages.runs import event_stream, fragment, live_stream

router = APIRouter()

MAX_COMMENT = 2000
# the page stops following a promotion once nothing more will happen to it on its own
_FOLLOWED = {
    PromotionState.PENDING,
    PromotionState.BLOCKED,
    PromotionState.AWAITING_APPROVAL,
    PromotionState.APPROVED,
    PromotionState.DEPLOYING,
}
REFUSALS = (PermissionDenied, Conflict, ValidationFailed)


def load(user: WebContext, ref: str) -> dict[str, Any]:
    """The promotion and everything its page shows."""
    promotion = svc.get_promotion(user.container.read_uow, user.ctx, ref)
    with user.container.read_uow() as uow:
        events = uow.promotions.events(promotion.id)
        packet = uow.evidence.latest_for(PacketKind.PROMOTION_DECISION, promotion.id)
        target = uow.environments.get_by_id(promotion.tenant_id, promotion.target_environment_id)
    return {
        "p": promotion,
        "events": list(reversed(events)),
        "packet": packet,
        "target": target,
        "is_open": promotion.state.is_open,
    }


def _finished(promotion: Promotion) -> bool:
    if promotion.state is PromotionState.APPROVED:
        return promotion.run_id is None  # approved with nothing to deploy stays approved
    return promotion.state not in _FOLLOWED


@router.get("/promotions/{ref}")
def promotion_page(user: Web, ref: str) -> Response:
    values = load(user, ref)
    return user.render(
        "promotion.html",
        nav="releases",
        live=not _finished(values["p"]),
        may_approve=user.can("approve"),
        may_manage=user.can("manage_releases"),
        **values,
    )


@router.get("/promotions/{ref}/stream")
async def promotion_stream(request: Request, user: Web, ref: str) -> StreamingResponse:
    """Server-sent events: the state and the gates/approvals/decision part when they change."""
    await run_in_threadpool(load, user, ref)  # 404 before the stream starts

    def poll() -> tuple[dict[str, Any], bool]:
        values = load(user, ref)
        message = {
            "html": {
                "promotion-state": fragment("promotion.html", "promotion_state", **values),
                "promotion-live": fragment("promotion.html", "promotion_live", **values),
            },
            "classes": {"promotion-actions": "card" if values["is_open"] else "card hidden"},
        }
        return message, _finished(values["p"])

    return event_stream(live_stream(request, poll))


async def _act(
    request: Request,
    user: WebContext,
    ref: str,
    action: Callable[[dict[str, str]], Promotion],
    done: str,
) -> Response:
    """CSRF first (a forged form changes nothing: 403 page), then the service; a refusal
    (permissions, separation of duties, a closed promotion) comes back as a flash error."""
    submitted = await form(request)
    check_csrf(user, submitted)
    promotion = await run_in_threadpool(svc.get_promotion, user.container.read_uow, user.ctx, ref)
    path = f"/promotions/{promotion.id}"
    text = submitted.get("comment", "")
    if len(text) > MAX_COMMENT:
        return back(request, path, error=f"the comment is longer than {MAX_COMMENT} characters")
    try:
        await run_in_threadpool(action, submitted)
    except REFUSALS as exc:
        return back(request, path, error=exc.detail)
    return back(request, path, notice=done)


@router.post("/promotions/{ref}/approve")
async def approve(request: Request, user: Web, ref: str) -> Response:
    def action(submitted: dict[str, str]) -> Promotion:
        comment = submitted.get("comment", "").strip()
        return svc.decide(user.container.promotions, user.ctx, ref, True, comment)

    return await _act(request, user, ref, action, "Your approval is recorded.")


@router.post("/promotions/{ref}/reject")
async def reject(request: Request, user: Web, ref: str) -> Response:
    def action(submitted: dict[str, str]) -> Promotion:
        reason = submitted.get("comment", "").strip()
        return svc.decide(user.container.promotions, user.ctx, ref, False, reason)

    return await _act(request, user, ref, action, "Your rejection is recorded.")


@router.post("/promotions/{ref}/cancel")
async def cancel(request: Request, user: Web, ref: str) -> Response:
    def action(_: dict[str, str]) -> Promotion:
        return svc.cancel(user.container.promotions, user.ctx, ref)

    return await _act(request, user, ref, action, "The promotion is cancelled.")


@router.post("/promotions/{ref}/reevaluate")
async def reevaluate(request: Request, user: Web, ref: str) -> Response:
    def action(_: dict[str, str]) -> Promotion:
        return svc.reevaluate(user.container.promotions, user.ctx, ref)

    return await _act(request, user, ref, action, "The gates were evaluated again.")
