"""/releases (search, filter, pages) and /releases/{id} (components, verdicts, promotions)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from stella.domain.pagination import Page, PageRequest
from stella.domain.promotions import Promotion
from stella.domain.releases import Release, ReleaseState
from stella.services import promotions as promotion_svc
from stella.services import releases as svc
from stella.services.security import verdicts_now
from stella.services.specs import PromotionSpec
from stella.web.core import Web, WebContext, back, check_csrf, form
from stella.web.pages.promotions import REFUSALS

router = APIRouter()

PAGE_SIZE = 25
PROMOTIONS_SHOWN = 200


def search(
    user: WebContext, q: str, state: ReleaseState | None, cursor: str | None
) -> Page[Release]:
    """Newest first; `q` is a case-blind substring of the name or version, or
    `name@version` (searched by the database, paged like the API's list)."""
    request = PageRequest.from_query(cursor, PAGE_SIZE)
    with user.container.read_uow() as uow:
        return svc.list_releases(uow, user.principal.tenant_id, request, None, state, q or None)


@router.get("/releases")
def releases_page(user: Web, q: str = "", state: str = "", cursor: str | None = None) -> Response:
    q = q.strip()[:128]
    chosen = ReleaseState(state) if state in {s.value for s in ReleaseState} else None
    page = search(user, q, chosen, cursor)
    with user.container.read_uow() as uow:
        anything = bool(page.items) or bool(
            svc.list_releases(uow, user.principal.tenant_id, PageRequest(limit=1), None, None).items
        )
    query = "&".join(
        part
        for part in (
            f"q={quote(q, safe='')}" if q else "",
            f"state={chosen.value}" if chosen else "",
        )
        if part
    )
    return user.render(
        "releases.html",
        nav="releases",
        releases=page.items,
        next_cursor=page.next_cursor,
        base="/releases" + (f"?{query}" if query else ""),
        q=q,
        state=chosen.value if chosen else "",
        states=[s.value for s in ReleaseState],
        anything=anything,
        cursor=cursor,
    )


def _promotions(user: WebContext, release: Release) -> list[Promotion]:
    with user.container.read_uow() as uow:
        found = promotion_svc.list_promotions(
            uow, user.ctx, PageRequest(limit=PROMOTIONS_SHOWN), None, None, str(release.id)
        )
    return found.items


def _verdicts(user: WebContext, release: Release) -> dict[str, Any]:
    """Per component: the verdict in every active environment (state, reason)."""
    rows = []
    environments: list[str] = []
    for component in release.components:
        now = verdicts_now(user.container.security, user.ctx, component.digest)
        by_env = {v["environment"]: v for v in now["verdicts"]}
        for slug in by_env:
            if slug not in environments:
                environments.append(slug)
        rows.append({"component": component, "verdicts": by_env})
    return {"environments": environments, "rows": rows}


@router.get("/releases/{ref}")
def release_page(user: Web, ref: str) -> Response:
    tenant_id = user.principal.tenant_id
    with user.container.read_uow() as uow:
        release = svc.get_release(uow, tenant_id, ref)
        environments = [e for e in uow.environments.all(tenant_id) if e.state.value != "retired"]
    promotions = _promotions(user, release)
    latest: dict[str, Promotion] = {}
    for promotion in promotions:  # newest first: the first one seen per environment wins
        latest.setdefault(promotion.target_environment, promotion)
    where = [(e, latest.get(e.slug)) for e in environments]
    return user.render(
        "release.html",
        nav="releases",
        release=release,
        where=where,
        history=promotions,
        security=_verdicts(user, release),
        environments=environments,
        may_promote=user.can("manage_releases") and release.state is ReleaseState.ACTIVE,
    )


@router.post("/releases/{ref}/promote")
async def promote(request: Request, user: Web, ref: str) -> Response:
    submitted = await form(request)
    check_csrf(user, submitted)

    def load() -> Release:
        with user.container.read_uow() as uow:
            return svc.get_release(uow, user.principal.tenant_id, ref)

    release = await run_in_threadpool(load)
    path = f"/releases/{release.id}"
    target = submitted.get("environment", "").strip()
    if not target:
        return back(request, path, error="choose the environment to promote to")
    spec = PromotionSpec(release_id=str(release.id), target_environment=target)
    try:
        promotion = await run_in_threadpool(
            promotion_svc.request_promotion, user.container.promotions, user.ctx, spec
        )
    except REFUSALS as exc:
        return back(request, path, error=exc.detail)
    return back(
        request,
        f"/promotions/{promotion.id}",
        notice=f"Promotion to {promotion.target_environment} requested: {promotion.state}.",
    )
