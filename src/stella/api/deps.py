"""FastAPI dependencies: the container, the authenticated caller and the call context."""

from __future__ import annotations

import time
from collections import deque
from threading import Lock
from typing import Annotated

from fastapi import Depends, Header, Query, Request

from stella.bootstrap import Container
from stella.domain.errors import RateLimited, Unauthenticated
from stella.domain.pagination import MAX_LIMIT, PageRequest
from stella.domain.tenancy import Principal
from stella.services.auth import authenticate
from stella.services.context import CallContext


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


class AuthFailureLimiter:
    """Counts failed token checks per client address in a sliding minute (per process).

    Guessing tokens is hopeless at 256 bits, but a flood of failures is worth slowing down.
    """

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[str, deque[float]] = {}
        self._lock = Lock()

    def check(self, client: str) -> None:
        with self._lock:
            window = self._recent(client)
            if len(window) >= self.per_minute:
                retry = int(60 - (time.monotonic() - window[0])) + 1
                msg = "too many failed authentications from this client; retry later"
                raise RateLimited(msg, retry)

    def failed(self, client: str) -> None:
        with self._lock:
            self._recent(client).append(time.monotonic())
            if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
                self._failures.pop(next(iter(self._failures)))

    def _recent(self, client: str) -> deque[float]:
        window = self._failures.setdefault(client, deque())
        while window and time.monotonic() - window[0] > 60:
            window.popleft()
        return window


def get_principal(
    request: Request,
    container: ContainerDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    limiter: AuthFailureLimiter = request.app.state.auth_limiter
    client = request.client.host if request.client else "unknown"
    limiter.check(client)
    try:
        return authenticate(container.read_uow, authorization)
    except Unauthenticated:
        limiter.failed(client)
        raise


def get_context(
    request: Request,
    container: ContainerDep,
    principal: Annotated[Principal, Depends(get_principal)],
) -> CallContext:
    state = request.scope.get("state", {})
    return CallContext(
        principal,
        state.get("request_id"),
        container.clock,
        idempotency=state.get("idempotency"),  # set by IdempotencyMiddleware
    )


def get_page(
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> PageRequest:
    return PageRequest.from_query(cursor, limit)


Ctx = Annotated[CallContext, Depends(get_context)]
Page = Annotated[PageRequest, Depends(get_page)]
