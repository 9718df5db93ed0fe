"""FastAPI dependencies: the container, the authenticated caller and the call context."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from stella.bootstrap import Container
from stella.domain.pagination import MAX_LIMIT, PageRequest
from stella.domain.tenancy import Principal
from stella.services.auth import authenticate
from stella.services.context import CallContext


def get_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


ContainerDep = Annotated[Container, Depends(get_container)]


def get_principal(
    container: ContainerDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    return authenticate(container.read_uow, authorization)


def get_context(
    request: Request,
    container: ContainerDep,
    principal: Annotated[Principal, Depends(get_principal)],
) -> CallContext:
    return CallContext(principal, request.scope.get("state", {}).get("request_id"), container.clock)


def get_page(
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
) -> PageRequest:
    return PageRequest.from_query(cursor, limit)


Ctx = Annotated[CallContext, Depends(get_context)]
Page = Annotated[PageRequest, Depends(get_page)]
