"""Targets: the hosts and services a release is deployed to, each inside one environment."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stella.domain.errors import FieldError
from stella.domain.secrets import looks_secret, parse_secret_ref


class TargetType(enum.StrEnum):
    """How Stella reaches a target; ECS, Nomad and WinRM arrive with their adapters."""

    DOCKER_HOST = "docker_host"
    COMPOSE_HOST = "compose_host"
    SSH_REMOTE = "ssh_remote"
    ECS_SERVICE = "ecs_service"
    NOMAD_JOB = "nomad_job"
    WINRM_REMOTE = "winrm_remote"


class TargetState(enum.StrEnum):
    """Whether deployments may be sent to the target."""

    ACTIVE = "active"
    DISABLED = "disabled"


class HealthStatus(enum.StrEnum):
    """Last known health, reported by agents or probes."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class Target:
    """A deployment target of one environment."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    environment_id: uuid.UUID
    name: str
    type: TargetType
    labels: dict[str, str]
    connection: dict[str, Any]
    agent_id: uuid.UUID | None
    state: TargetState
    health: HealthStatus
    created_at: datetime
    updated_at: datetime


def validate_connection(connection: dict[str, Any], path: str = "connection") -> list[FieldError]:
    """Connection settings may name secrets only by reference (`env:NAME`, `file:/path`)."""
    errors: list[FieldError] = []
    for key, value in connection.items():
        field_path = f"{path}.{key}"
        if isinstance(value, dict):
            errors.extend(validate_connection(value, field_path))
        elif looks_secret(key):
            if not isinstance(value, str):
                errors.append(FieldError(field_path, "must be a secret reference string"))
                continue
            try:
                parse_secret_ref(value)
            except ValueError as exc:
                errors.append(FieldError(field_path, f"secret values are never stored; {exc}"))
    return errors


def validate_labels(labels: dict[str, str]) -> list[FieldError]:
    """Label keys and values are short printable strings, as with container labels."""
    errors: list[FieldError] = []
    for key, value in labels.items():
        if (
            not key
            or len(key) > 63
            or not key.replace("-", "").replace("_", "").replace(".", "").replace("/", "").isalnum()
        ):
            errors.append(FieldError(f"labels.{key}", "keys are 1-63 of [A-Za-z0-9._/-]"))
        if len(value) > 255:
            errors.append(FieldError(f"labels.{key}", "values are at most 255 characters"))
    return errors
