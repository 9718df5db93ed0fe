"""Components: named services mapped to an image repository, and the versions pushed to it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stella.domain.errors import FieldError
from stella.domain.secrets import parse_secret_ref

# The subset of a Compose service that Stella uses to run a component.
RUNTIME_KEYS = frozenset(
    {"command", "environment", "ports", "volumes", "network_mode", "healthcheck", "restart", "init"}
)


@dataclass(frozen=True, slots=True)
class Component:
    """A deployable service of one tenant; `repository` is `host[:port]/path`."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    repository: str
    runtime: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ComponentVersion:
    """A digest seen for a component, from a registry push notification or a release."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    component_id: uuid.UUID
    digest: str
    tag: str | None
    media_type: str | None
    pushed_at: datetime


def validate_runtime(runtime: dict[str, Any]) -> list[FieldError]:
    """Unknown runtime keys and literal secrets in `environment` are rejected."""
    errors = [
        FieldError(f"runtime.{key}", f"unknown key; allowed: {', '.join(sorted(RUNTIME_KEYS))}")
        for key in runtime
        if key not in RUNTIME_KEYS
    ]
    environment = runtime.get("environment", {})
    if not isinstance(environment, dict):
        errors.append(FieldError("runtime.environment", "must be a mapping of NAME: value"))
        return errors
    for name, value in environment.items():
        if isinstance(value, str) and value.partition(":")[0] in {"env", "file", "vault"}:
            try:
                parse_secret_ref(value)
            except ValueError as exc:
                errors.append(FieldError(f"runtime.environment.{name}", str(exc)))
    return errors
