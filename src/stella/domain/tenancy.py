"""Tenants, users, roles and what each role may do."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime


class Role(enum.StrEnum):
    """A user's role; each role's permissions are listed in ROLE_PERMISSIONS."""

    VIEWER = "viewer"
    RELEASER = "releaser"
    APPROVER = "approver"
    ADMIN = "admin"


class Permission(enum.StrEnum):
    """Actions that are checked before a service runs."""

    READ = "read"
    MANAGE_RELEASES = "manage_releases"  # create releases, components, component versions
    APPROVE = "approve"
    ADMINISTER = "administer"  # environments, targets, integrations, users, apply


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.RELEASER: frozenset({Permission.READ, Permission.MANAGE_RELEASES}),
    Role.APPROVER: frozenset({Permission.READ, Permission.APPROVE}),
    Role.ADMIN: frozenset(Permission),
}


@dataclass(frozen=True, slots=True)
class Tenant:
    """An isolated organisation; every tenant-owned row carries its id."""

    id: uuid.UUID
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class User:
    """A person or automation account inside one tenant."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    role: Role
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiToken:
    """What is kept of an API token: never the token, only its hash (elsewhere) and prefix."""

    id: uuid.UUID
    user_id: uuid.UUID
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the authenticated user (None for an operator at the console)."""

    user_id: uuid.UUID | None
    tenant_id: uuid.UUID
    name: str
    role: Role

    def can(self, permission: Permission) -> bool:
        """True when this principal's role grants `permission`."""
        return permission in ROLE_PERMISSIONS[self.role]


SYSTEM_ACTOR = "system"
