"""Audit events: the append-only record of every create, change and denial."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Who did what to which resource, when, and under which request (correlation id)."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    actor_id: uuid.UUID | None
    actor_name: str
    action: str  # e.g. release.created, environment.updated, access.denied
    resource_type: str
    resource_id: str | None
    occurred_at: datetime
    correlation_id: str | None
    details: dict[str, Any] = field(default_factory=dict)
