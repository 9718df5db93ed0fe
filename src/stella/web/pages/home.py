"""/login, /logout and / (the environment pipeline)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from stella.api.deps import ContainerDep
from stella.domain.errors import Unauthenticated
from stella.domain.pagination import PageRequest
from stella.services import drift
from stella.services.security import security_context, verdict_from_context
from stella.services.targets import environment_targets
from stella.services.web_sessions import SESSION_LIFETIME, sign_in, sign_out
from stella.web.core import COOKIE, Web, WebContext, check_csrf, form, render

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not send the user elsewhere afterwards."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/login")
def login_page(request: Request, next: str | None = None, expired: str | None = None) -> Response:
    message = "Your session has expired; sign in again." if expired else None
    return render(request, "login.html", next=_safe_next(next), message=message, user=None)


@router.post("/login")
async def login(request: Request, container: ContainerDep) -> Response:
    submitted = await form(request)
    target = _safe_next(submitted.get("next"))
    try:
        session = sign_in(container.uow, submitted.get("token", ""), container.clock)
    except Unauthenticated as exc:
        return render(
            request, "login.html", 401, next=target, message=None, failure=exc.detail, user=None
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        session.cookie,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request, user: Web) -> Response:
    check_csrf(user, await form(request))
    sign_out(user.container.uow, request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _current_release(uow: Any, tenant_id: Any, environment_id: Any) -> Any:
    """The release the environment runs: its newest deployed promotion, else approved one."""
    for state in ("deployed", "approved"):
        page = uow.promotions.page(tenant_id, PageRequest(limit=1), environment_id, state, None)
        if page.items:
            return page.items[0]
    return None


def pipeline(user: WebContext) -> list[dict[str, Any]]:
    container, tenant_id = user.container, user.principal.tenant_id
    now = container.clock()
    drifted: dict[str, int] = {}
    for item in drift.check_drift(container.read_uow, user.ctx, None):
        drifted[item.environment] = drifted.get(item.environment, 0) + (item.state == "drifted")
    stages = []
    with container.read_uow() as uow:
        for env in uow.environments.all(tenant_id):
            current = _current_release(uow, tenant_id, env.id)
            release = uow.releases.get(tenant_id, str(current.release_id)) if current else None
            waiting = []
            for state in ("awaiting_approval", "blocked", "pending"):
                page = uow.promotions.page(tenant_id, PageRequest(limit=20), env.id, state, None)
                waiting += page.items
            targets = environment_targets(uow, tenant_id, env.id)
            failing = []
            if release is not None:
                digests = [c.digest for c in release.components]
                context = security_context(uow, tenant_id, env, digests, now)
                for component in release.components:
                    verdict = verdict_from_context(context, component.digest, now)
                    if verdict.state == "fail":
                        failing.append({"component": component.name, "reason": verdict.reason})
            stages.append(
                {
                    "env": env,
                    "promotion": current,
                    "release": release,
                    "waiting": waiting,
                    "targets": targets,
                    "healthy": sum(1 for t in targets if str(t.health) == "healthy"),
                    "drifted": drifted.get(env.slug, 0),
                    "exposure": failing,
                }
            )
    return stages


@router.get("/")
def home(user: Web) -> Response:
    return user.render("pipeline.html", stages=pipeline(user), nav="pipeline")
