"""/login, /logout and / (the environment pipeline)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from stella.api.deps import ContainerDep
from stella.bootstrap import Container
from stella.domain.errors import Unauthenticated
from stella.domain.pagination import PageRequest
from stella.services import drift
from stella.services.security import security_context, verdict_from_context
from stella.services.targets import environment_targets
from stella.services.web_sessions import (
    LOGIN_FORM_LIFETIME,
    SESSION_LIFETIME,
    login_token_reusable,
    login_token_valid,
    new_login_token,
    sign_in,
    sign_out,
)
from stella.web.core import (
    COOKIE,
    LOGIN_COOKIE,
    LOGIN_PATH,
    Web,
    WebContext,
    check_csrf,
    form,
    render,
    same_origin,
    secure_cookies,
)

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not send the user elsewhere afterwards. Browsers
    read a backslash as `/` and drop tabs and newlines, so a target like `/` + backslash +
    `evil.example` would be `//evil.example` (another site) to them: such targets are refused
    too, whatever the redirect's encoding of them."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _login_form(
    request: Request,
    container: Container,
    status: int,
    next: str,
    token: str | None = None,
    **values: Any,
) -> Response:
    """The sign-in page with its double-submit token: in the form and in a pre-session cookie
    (`token` when it is still good, else a fresh one)."""
    if not login_token_reusable(token, container.clock):
        token = new_login_token(container.clock)
    values.setdefault("message", None)
    response = render(
        request, "login.html", status, next=next, login_csrf=token, user=None, **values
    )
    response.set_cookie(
        LOGIN_COOKIE,
        str(token),
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
        max_age=int(LOGIN_FORM_LIFETIME.total_seconds()),
        path=LOGIN_PATH,
    )
    return response


@router.get("/login")
def login_page(
    request: Request,
    container: ContainerDep,
    next: str | None = None,
    expired: str | None = None,
) -> Response:
    message = "Your session has expired; sign in again." if expired else None
    token = request.cookies.get(LOGIN_COOKIE)
    return _login_form(request, container, 200, _safe_next(next), token, message=message)


@router.post("/login")
async def login(request: Request, container: ContainerDep) -> Response:
    submitted = await form(request)
    target = _safe_next(submitted.get("next"))
    token = request.cookies.get(LOGIN_COOKIE)
    # login CSRF: the form must come from a page this server gave this browser
    if not same_origin(request) or not login_token_valid(
        token, submitted.get("login_csrf"), container.clock
    ):
        failure = (
            "The sign-in form had expired or did not come from this site (its security token "
            "did not match), so you were not signed in. Sign in again."
        )
        return _login_form(request, container, 403, target, None, failure=failure)
    try:
        session = sign_in(container.uow, submitted.get("token", ""), container.clock)
    except Unauthenticated as exc:
        return _login_form(request, container, 401, target, token, failure=exc.detail)
    # a session this browser had before ends: one browser, one session
    sign_out(container.uow, request.cookies.get(COOKIE))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        session.cookie,
        httponly=True,
        samesite="strict",
        secure=secure_cookies(request),
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path="/",
    )
    # the login token is single-use
    response.delete_cookie(
        LOGIN_COOKIE,
        path=LOGIN_PATH,
        secure=secure_cookies(request),
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/logout")
async def logout(request: Request, user: Web) -> Response:
    check_csrf(user, await form(request))
    sign_out(user.container.uow, request.cookies.get(COOKIE))
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(
        COOKIE, path="/", secure=secure_cookies(request), httponly=True, samesite="strict"
    )
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
