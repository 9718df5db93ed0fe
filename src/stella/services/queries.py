"""Read-only queries that need no more than a repository call (users, audit events)."""

from __future__ import annotations

import uuid

from stella.domain.audit import AuditEvent
from stella.domain.pagination import Page, PageRequest
from stella.domain.tenancy import User
from stella.services.ports import UnitOfWork


def list_users(uow: UnitOfWork, tenant_id: uuid.UUID, page: PageRequest) -> Page[User]:
    return uow.users.page(tenant_id, page)


def list_audit_events(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    page: PageRequest,
    resource_type: str | None,
    action: str | None,
) -> Page[AuditEvent]:
    return uow.audit.page(tenant_id, page, resource_type, action)
