"""How long an `Idempotency-Key` is remembered, and forgetting it afterwards."""

from __future__ import annotations

from datetime import timedelta

from stella.services.ports import Clock, UnitOfWorkFactory

# a client retries within minutes; a day covers a CI job re-run the next morning's start too
RETENTION = timedelta(hours=24)


def purge_expired_keys(uow_factory: UnitOfWorkFactory, clock: Clock, limit: int = 1000) -> int:
    """Forget keys older than RETENTION (bounded per pass; the workers call it periodically)."""
    with uow_factory() as uow:
        purged = uow.idempotency.purge(clock() - RETENTION, limit)
        uow.commit()
    return purged
