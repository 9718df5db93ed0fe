"""Tenants, users and API tokens: bootstrap, user creation and token authentication."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from stella.domain.errors import Conflict, NotFound, Unauthenticated
from stella.domain.ids import new_id
from stella.domain.tenancy import ApiToken, Permission, Principal, Role, Tenant, User
from stella.services.context import CallContext, record, require
from stella.services.ports import Clock, UnitOfWork, UnitOfWorkFactory
from stella.services.specs import UserSpec

TOKEN_PREFIX = "stl_"  # noqa: S105 - a visible prefix, not a secret
DEFAULT_TENANT = "default"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A user and the token issued to them; the token is shown once and never stored."""

    user: User
    token: str


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


def _issue(uow: UnitOfWork, user: User, clock: Clock) -> tuple[ApiToken, str]:
    """A new token for `user`: what is kept of it, and the token itself (shown once, never
    stored)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    prefix, now = token[:12], clock()
    token_id = uow.tokens.add(user, hash_token(token), prefix, now)
    return ApiToken(token_id, user.id, prefix, now, None), token


def create_tenant(
    uow_factory: UnitOfWorkFactory, name: str, admin_name: str, clock: Clock
) -> IssuedToken:
    """Create a tenant with its first admin; used by `stella admin bootstrap` and tests."""
    with uow_factory() as uow:
        if uow.tenants.get_by_name(name) is not None:
            msg = f"tenant '{name}' already exists"
            raise Conflict(msg)
        now = clock()
        tenant = Tenant(id=new_id(), name=name, created_at=now)
        uow.tenants.add(tenant)
        admin = User(new_id(), tenant.id, admin_name, Role.ADMIN, now)
        uow.users.add(admin)
        _, token = _issue(uow, admin, clock)
        ctx = CallContext(Principal(admin.id, tenant.id, admin.name, admin.role), None, clock)
        record(uow, ctx, "tenant.created", "tenant", tenant.id, {"name": name})
        uow.commit()
    return IssuedToken(admin, token)


def bootstrap(uow_factory: UnitOfWorkFactory, clock: Clock) -> IssuedToken | None:
    """Create the default tenant and its admin when the database has no tenant yet."""
    with uow_factory() as uow:
        if uow.tenants.count() > 0:
            return None
    return create_tenant(uow_factory, DEFAULT_TENANT, "admin", clock)


def create_user(uow_factory: UnitOfWorkFactory, ctx: CallContext, spec: UserSpec) -> IssuedToken:
    """An admin creates a user with a role; the returned token is shown once."""
    require(ctx, Permission.ADMINISTER, uow_factory, "create users")
    with uow_factory() as uow:
        if uow.users.get(ctx.principal.tenant_id, spec.name) is not None:
            msg = f"user '{spec.name}' already exists"
            raise Conflict(msg)
        user = User(new_id(), ctx.principal.tenant_id, spec.name, spec.role, ctx.clock())
        uow.users.add(user)
        _, token = _issue(uow, user, ctx.clock)
        record(uow, ctx, "user.created", "user", user.id, {"name": user.name, "role": user.role})
        uow.commit()
    return IssuedToken(user, token)


def create_user_as_operator(
    uow_factory: UnitOfWorkFactory, tenant_name: str, spec: UserSpec, clock: Clock
) -> IssuedToken:
    """`stella admin create-user`: an operator with database access creates a user."""
    with uow_factory() as uow:
        tenant = uow.tenants.get_by_name(tenant_name)
        if tenant is None:
            msg = f"tenant '{tenant_name}' does not exist; run `stella admin bootstrap` first"
            raise Conflict(msg)
    operator = Principal(None, tenant.id, "operator", Role.ADMIN)
    return create_user(uow_factory, CallContext(operator, None, clock), spec)


def bearer_token_hash(authorization: str | None) -> str | None:
    """The stored hash of the token in `Authorization: Bearer <token>`, or None without one."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return hash_token(token.strip())


def authenticate(uow_factory: UnitOfWorkFactory, authorization: str | None) -> Principal:
    """Resolve `Authorization: Bearer <token>` to a principal, or raise Unauthenticated."""
    token_hash = bearer_token_hash(authorization)
    if token_hash is None:
        msg = "missing API token; send Authorization: Bearer <token>"
        raise Unauthenticated(msg)
    with uow_factory() as uow:
        principal = uow.tokens.find_principal(token_hash)
    if principal is None:
        msg = "invalid or revoked API token"
        raise Unauthenticated(msg)
    return principal


# --- API tokens of a user --------------------------------------------------------------------


def _token_owner(uow: UnitOfWork, ctx: CallContext, user_ref: str) -> User:
    user = uow.users.get(ctx.principal.tenant_id, user_ref)
    if user is None:
        msg = f"user '{user_ref}' not found"
        raise NotFound(msg)
    return user


def _may_manage_tokens(ctx: CallContext, uow_factory: UnitOfWorkFactory, user: User) -> None:
    """Admins manage everybody's tokens; anyone may manage their own (e.g. revoke a leak)."""
    if ctx.principal.user_id != user.id:
        require(ctx, Permission.ADMINISTER, uow_factory, "manage another user's tokens")


def list_tokens(uow_factory: UnitOfWorkFactory, ctx: CallContext, user_ref: str) -> list[ApiToken]:
    with uow_factory(read_only=True) as uow:
        user = _token_owner(uow, ctx, user_ref)
    _may_manage_tokens(ctx, uow_factory, user)
    with uow_factory(read_only=True) as uow:
        return uow.tokens.for_user(ctx.principal.tenant_id, user.id)


def issue_token(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, user_ref: str
) -> tuple[ApiToken, str]:
    """A further token for the user (to rotate: issue, switch over, revoke the old one)."""
    with uow_factory(read_only=True) as uow:
        user = _token_owner(uow, ctx, user_ref)
    _may_manage_tokens(ctx, uow_factory, user)
    with uow_factory() as uow:
        issued, token = _issue(uow, user, ctx.clock)
        record(uow, ctx, "token.issued", "user", user.id, {"token": str(issued.id)})
        uow.commit()
    return issued, token


def revoke_tokens(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    user_ref: str,
    token_id: str | None = None,
) -> list[ApiToken]:
    """Revoke one token of the user, or all of them; the web sessions they opened end too."""
    with uow_factory(read_only=True) as uow:
        user = _token_owner(uow, ctx, user_ref)
    _may_manage_tokens(ctx, uow_factory, user)
    wanted = None if token_id is None else parse_token_id(token_id)
    with uow_factory() as uow:
        if wanted is not None and not any(
            token.id == wanted for token in uow.tokens.for_user(ctx.principal.tenant_id, user.id)
        ):
            msg = f"token '{token_id}' of user '{user.name}' not found"
            raise NotFound(msg)
        revoked = uow.tokens.revoke(ctx.principal.tenant_id, user.id, wanted, ctx.clock())
        if wanted is not None and not revoked:
            msg = f"token '{token_id}' is already revoked"
            raise Conflict(msg)
        for token in revoked:
            record(uow, ctx, "token.revoked", "user", user.id, {"token": str(token.id)})
        uow.commit()
    return revoked


def parse_token_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        msg = f"token '{raw}' not found"
        raise NotFound(msg) from None
