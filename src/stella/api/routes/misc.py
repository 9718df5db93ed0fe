"""/api/v1 users, audit events, apply and the registry webhook."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.schemas import (
    ApplyOut,
    AuditEventOut,
    CreatedUserOut,
    IssuedTokenOut,
    ListOf,
    TokenOut,
    UserOut,
    WebhookOut,
)
from stella.services import auth, queries
from stella.services.apply import apply_document, parse_document
from stella.services.auth import create_user
from stella.services.specs import UserSpec
from stella.services.webhooks import receive_registry_push

router = APIRouter()


@router.post("/users", status_code=201, tags=["users"])
def post_user(container: ContainerDep, ctx: Ctx, spec: UserSpec) -> CreatedUserOut:
    """Admin only; the token is in this response and nowhere else, ever."""
    issued = create_user(container.uow, ctx, spec)
    return CreatedUserOut(**UserOut.of(issued.user).model_dump(), token=issued.token)


@router.get("/users", tags=["users"])
def get_users(container: ContainerDep, ctx: Ctx, page: Page) -> ListOf[UserOut]:
    with container.read_uow() as uow:
        found = queries.list_users(uow, ctx.principal.tenant_id, page)
    return ListOf(items=[UserOut.of(u) for u in found.items], next_cursor=found.next_cursor)


@router.get("/users/{ref}/tokens", tags=["users"])
def get_user_tokens(container: ContainerDep, ctx: Ctx, ref: str) -> ListOf[TokenOut]:
    """The user's tokens, active and revoked (prefixes only). Admins, or the user."""
    tokens = auth.list_tokens(container.uow, ctx, ref)
    return ListOf(items=[TokenOut.of(t) for t in tokens], next_cursor=None)


@router.post("/users/{ref}/tokens", status_code=201, tags=["users"])
def post_user_token(container: ContainerDep, ctx: Ctx, ref: str) -> IssuedTokenOut:
    """Issue a further token (rotation: issue, switch over, revoke the old one)."""
    issued, token = auth.issue_token(container.uow, ctx, ref)
    return IssuedTokenOut(**TokenOut.of(issued).model_dump(), token=token)


@router.post("/users/{ref}/tokens/revoke", tags=["users"])
def revoke_user_tokens(container: ContainerDep, ctx: Ctx, ref: str) -> ListOf[TokenOut]:
    """Revoke every active token of the user; their web sessions end at once."""
    revoked = auth.revoke_tokens(container.uow, ctx, ref)
    return ListOf(items=[TokenOut.of(t) for t in revoked], next_cursor=None)


@router.post("/users/{ref}/tokens/{token_id}/revoke", tags=["users"])
def revoke_user_token(container: ContainerDep, ctx: Ctx, ref: str, token_id: str) -> TokenOut:
    """Revoke one token; requests and web sessions using it are refused from now on."""
    (revoked,) = auth.revoke_tokens(container.uow, ctx, ref, token_id)
    return TokenOut.of(revoked)


@router.get("/audit-events", tags=["audit"])
def get_audit_events(
    container: ContainerDep,
    ctx: Ctx,
    page: Page,
    resource_type: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> ListOf[AuditEventOut]:
    with container.read_uow() as uow:
        found = queries.list_audit_events(uow, ctx.principal.tenant_id, page, resource_type, action)
    return ListOf(items=[AuditEventOut.of(a) for a in found.items], next_cursor=found.next_cursor)


@router.post("/apply", tags=["apply"])
def post_apply(
    container: ContainerDep,
    ctx: Ctx,
    document: dict[str, Any],
    dry_run: bool = False,
) -> ApplyOut:
    """Converge on a declarative document (what `stella apply -f` sends); one transaction."""
    result = apply_document(container.uow, ctx, parse_document(document), dry_run)
    return ApplyOut.of(result)


@router.post("/webhooks/registry/{integration_id}", tags=["webhooks"])
async def post_registry_webhook(
    request: Request,
    container: ContainerDep,
    integration_id: str,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> WebhookOut:
    """Docker distribution notifications; authenticated by `Authorization: Bearer <secret>`."""
    raw = await request.body()
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        body = None  # reported as a malformed envelope, after the secret is checked
    request_id = request.scope.get("state", {}).get("request_id")

    def receive() -> WebhookOut:
        outcome = receive_registry_push(
            container.uow,
            integration_id,
            authorization,
            body,
            container.clock,
            request_id,
            container.resolve_secret,
        )
        return WebhookOut(
            recorded=outcome.recorded, duplicates=outcome.duplicates, ignored=outcome.ignored
        )

    return await run_in_threadpool(receive)
