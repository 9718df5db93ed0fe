"""What every page needs: templates, the signed-in user, CSRF checks, forms, error pages.

Pages are rendered on the server with Jinja2 (autoescaping everything user-supplied) and work
without JavaScript; `static/stella.js` only adds local times, live run updates and
confirmations. Nothing is fetched from the internet: the CSS and JS are the project's own.
"""

from __future__ import annotations

import base64
import hmac
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from stella.api.deps import ContainerDep
from stella.bootstrap import Container
from stella.domain.errors import PermissionDenied
from stella.domain.tenancy import Permission
from stella.services.context import CallContext
from stella.services.web_sessions import SessionExpired, WebSession, resolve

COOKIE = "stella_session"
FLASH_COOKIE = "stella_flash"  # the one-time message a POST leaves for the page it redirects to
# the sign-in form's pre-session cookie (double-submit token), sent to /login only
LOGIN_COOKIE = "stella_login"
LOGIN_PATH = "/login"
HERE = Path(__file__).parent
templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _iso(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _short(digest: Any) -> str:
    text = str(digest or "")
    return text[:19] + "…" if text.startswith("sha256:") and len(text) > 19 else text


templates.filters["iso"] = _iso
templates.filters["short"] = _short


class WebContext:
    """The signed-in user of a page request, their CSRF token and what they may do."""

    def __init__(self, request: Request, container: Container, session: WebSession) -> None:
        self.request = request
        self.container = container
        self.session = session
        self.principal = session.principal
        self.ctx = CallContext(
            session.principal, request.scope.get("state", {}).get("request_id"), container.clock
        )

    def can(self, permission: str) -> bool:
        return self.principal.can(Permission(permission))

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        return render(self.request, template, status, user=self, **values)


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    flash = read_flash(request)
    html = templates.get_template(template).render(
        request=request,
        path=request.url.path,
        notice=flash.get("notice"),
        error=flash.get("error"),
        **values,
    )
    response = HTMLResponse(html, status_code=status)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/", samesite="strict", httponly=True)
    return response


def read_flash(request: Request) -> dict[str, str]:
    """The message the previous POST left for this page (shown once); {} when none or garbled."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return {}
    try:
        decoded = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except ValueError:
        return {}
    if not isinstance(decoded, dict):
        return {}
    return {k: v for k, v in decoded.items() if k in {"notice", "error"} and isinstance(v, str)}


def get_web_context(request: Request, container: ContainerDep) -> WebContext:
    session = resolve(container.read_uow, request.cookies.get(COOKIE), container.clock)
    return WebContext(request, container, session)


Web = Annotated[WebContext, Depends(get_web_context)]


async def form(request: Request) -> dict[str, str]:
    """A urlencoded form (the UI's forms post nothing else)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site: an `Origin` (or, without
    one, a `Referer`) naming a host other than the one addressed. Requests that carry neither,
    or `Origin: null` (what browsers send for our own forms, whose pages have
    `Referrer-Policy: no-referrer`), are left to the CSRF token."""
    claimed = request.headers.get("origin")
    if not claimed or claimed == "null":
        claimed = request.headers.get("referer")
    if not claimed or claimed == "null":
        return True
    try:
        parts = urlsplit(claimed)
    except ValueError:
        return False
    host = request.headers.get("host", "")
    return parts.scheme in {"http", "https"} and parts.netloc.lower() == host.lower()


def check_csrf(user: WebContext, submitted: dict[str, str]) -> None:
    """Every state-changing form carries the session's CSRF token (and, when the browser names
    where the form came from, it came from this site)."""
    if not hmac.compare_digest(submitted.get("csrf", ""), user.session.csrf):
        msg = "the form is missing its security token (CSRF); reload the page and try again"
        raise PermissionDenied(msg)
    if not same_origin(user.request):
        msg = "the form was sent from another site (CSRF); reload the page and try again"
        raise PermissionDenied(msg)


def secure_cookies(request: Request) -> bool:
    """Cookies get `Secure` when the page is served over HTTPS (uvicorn takes the scheme from
    `X-Forwarded-Proto` when the proxy's address is in FORWARDED_ALLOW_IPS)."""
    return request.url.scheme == "https"


def back(request: Request, path: str, **message: str) -> RedirectResponse:
    """Redirect after a POST, with a notice or an error shown once on the next page.

    The message travels in a short-lived cookie, not in the address: a link made by anyone
    else (`?notice=Your release is approved`) can then never put words in Stella's mouth."""
    response = RedirectResponse(path, status_code=303)
    kept = {k: v[:300] for k, v in message.items() if v}
    if kept:
        response.set_cookie(
            FLASH_COOKIE,
            base64.urlsafe_b64encode(json.dumps(kept).encode()).decode(),
            max_age=60,
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure_cookies(request),
        )
    return response


def login_redirect(request: Request, expired: bool) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    query = f"next={quote(target, safe='')}" + ("&expired=1" if expired else "")
    return RedirectResponse(f"/login?{query}", status_code=303)


def is_page(request: Request) -> bool:
    """Requests the UI answers (not the API, the agent protocol or operational endpoints)."""
    path = request.url.path
    operational = ("/openapi", "/docs", "/redoc", "/metrics", "/healthz", "/readyz")
    return not path.startswith(("/api/", "/agent/", *operational))


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    return render(request, "error.html", status, title=title, detail=detail, code=status)


__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "LOGIN_PATH",
    "SessionExpired",
    "Web",
    "WebContext",
    "back",
    "check_csrf",
    "error_page",
    "form",
    "is_page",
    "login_redirect",
    "render",
    "same_origin",
    "secure_cookies",
]
