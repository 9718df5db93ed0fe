"""Sign-in for the web UI: an API token becomes a browser session (cookie) with a CSRF token.

The session stores only hashes: of its own id (the cookie value) and of the API token, which is
resolved on every request, so revoking the token (or deleting the user) ends the session too.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from stella.domain.errors import Unauthenticated
from stella.domain.tenancy import Principal
from stella.services.auth import hash_token
from stella.services.ports import Clock, UnitOfWorkFactory

SESSION_LIFETIME = timedelta(hours=8)


class SessionExpired(Unauthenticated):
    """The browser's session ended (expired, signed out, or its token was revoked)."""


@dataclass(frozen=True)
class WebSession:
    cookie: str  # the value the browser keeps (only its hash is stored)
    principal: Principal
    csrf: str


def sign_in(
    uow_factory: UnitOfWorkFactory, token: str, clock: Clock, lifetime: timedelta = SESSION_LIFETIME
) -> WebSession:
    """A new session for the holder of `token`; Unauthenticated for an invalid one."""
    token_hash = hash_token(token.strip())
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = clock()
    with uow_factory() as uow:
        principal = uow.tokens.find_principal(token_hash)
        if principal is None:
            msg = "that API token is not valid (or was revoked)"
            raise Unauthenticated(msg)
        uow.web_sessions.purge_expired(now)
        uow.web_sessions.add(
            {
                "id_hash": hash_token(cookie),
                "tenant_id": principal.tenant_id,
                "token_hash": token_hash,
                "csrf": csrf,
                "created_at": now,
                "expires_at": now + lifetime,
            }
        )
        uow.commit()
    return WebSession(cookie, principal, csrf)


def resolve(uow_factory: UnitOfWorkFactory, cookie: str | None, clock: Clock) -> WebSession:
    """The session a cookie stands for; SessionExpired when there is none (any more)."""
    if not cookie:
        msg = "sign in to continue"
        raise SessionExpired(msg)
    with uow_factory(read_only=True) as uow:
        found = uow.web_sessions.get(hash_token(cookie))
        principal = uow.tokens.find_principal(found["token_hash"]) if found else None
    if found is None or found["expires_at"] <= clock() or principal is None:
        msg = "your session has expired; sign in again"
        raise SessionExpired(msg)
    return WebSession(cookie, principal, str(found["csrf"]))


def sign_out(uow_factory: UnitOfWorkFactory, cookie: str | None) -> None:
    if not cookie:
        return
    with uow_factory() as uow:
        uow.web_sessions.delete(hash_token(cookie))
        uow.commit()
