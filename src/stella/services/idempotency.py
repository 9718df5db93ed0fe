"""How long an `Idempotency-Key` is remembered, and forgetting it afterwards."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from stella.services.auth import bearer_token_hash
from stella.services.ports import Clock, UnitOfWorkFactory

# a client retries within minutes; a day covers a CI job re-run the next morning's start too
RETENTION = timedelta(hours=24)


def purge_expired_keys(uow_factory: UnitOfWorkFactory, clock: Clock, limit: int = 1000) -> int:
    """Forget keys older than RETENTION (bounded per pass; the workers call it periodically)."""
    with uow_factory() as uow:
        purged = uow.idempotency.purge(clock() - RETENTION, limit)
        uow.commit()
    return purged


def recorded_key(
    uow_factory: UnitOfWorkFactory, authorization: str | None, key: str
) -> dict[str, Any] | None:
    """The caller's recorded `key` (what its first request made), or None: also when the
    caller is not authenticated, which the route itself then answers. One read transaction:
    this runs before every POST that carries a key."""
    token_hash = bearer_token_hash(authorization)
    if token_hash is None:
        return None
    with uow_factory(read_only=True) as uow:
        principal = uow.tokens.find_principal(token_hash)
        if principal is None:
            return None
        return uow.idempotency.find(principal.tenant_id, str(principal.user_id), key)
