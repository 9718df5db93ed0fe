"""Sign-in for the web UI: an API token becomes a browser session (cookie) with a CSRF token.

The session stores only hashes: of its own id (the cookie value) and of the API token, which is
resolved on every request, so revoking the token (or deleting the user) ends the session too.

The sign-in form itself is protected before any session exists by a double-submit token (see
`new_login_token`); expired sessions are deleted by the worker (`purge_expired_sessions`, once
a minute), not on sign-in.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from stella.domain.errors import Unauthenticated
from stella.domain.tenancy import Principal
from stella.services.auth import hash_token
from stella.services.ports import Clock, UnitOfWorkFactory

SESSION_LIFETIME = timedelta(hours=8)
# how long a sign-in form may be open before it must be loaded again
LOGIN_FORM_LIFETIME = timedelta(hours=1)
# how often a worker deletes expired sessions
PURGE_INTERVAL_SECONDS = 60.0

log = logging.getLogger(__name__)


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


def new_login_token(clock: Clock) -> str:
    """A fresh value for the sign-in form's double-submit check: `<issued epoch>.<random>`.

    It goes both into a pre-session cookie (HttpOnly, SameSite=Strict, so another site can
    neither read it nor have the browser send it) and into a hidden field of the form; a
    sign-in is accepted only when the two match. A hostile page can make a browser post the
    form, but it cannot know the cookie's value, so it cannot log the browser into its own
    account ("login CSRF").
    """
    return f"{int(clock().timestamp())}.{secrets.token_urlsafe(32)}"


def login_token_age(token: str | None, clock: Clock) -> timedelta | None:
    """How old a well-formed login token is (None when it is not one)."""
    issued, _, random_part = (token or "").partition(".")
    if not issued.isdigit() or len(random_part) < 32:
        return None
    return timedelta(seconds=clock().timestamp() - int(issued))


def login_token_valid(cookie: str | None, submitted: str | None, clock: Clock) -> bool:
    """The form's token is the cookie's, and was issued less than `LOGIN_FORM_LIFETIME` ago."""
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        return False
    age = login_token_age(cookie, clock)
    return age is not None and timedelta(seconds=-60) <= age < LOGIN_FORM_LIFETIME


def login_token_reusable(token: str | None, clock: Clock) -> bool:
    """A login token still good for at least half its lifetime (shown again in another tab)."""
    age = login_token_age(token, clock)
    return age is not None and timedelta(0) <= age < LOGIN_FORM_LIFETIME / 2


def purge_expired_sessions(
    uow_factory: UnitOfWorkFactory, clock: Clock, limit: int = 10_000
) -> int:
    """Delete up to `limit` expired sessions (one indexed delete in a short transaction of
    its own, bounded so a pass after a long outage stays short); how many were deleted."""
    with uow_factory() as uow:
        purged = uow.web_sessions.purge_expired(clock(), limit)
        uow.commit()
    if purged:
        log.info("purged expired web sessions", extra={"count": purged})
    return purged
