"""Integrations: configured connections to outside systems (registries first)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from stella.domain.errors import FieldError


class IntegrationType(enum.StrEnum):
    """Kinds of integration; the connector registry maps each to an implementation."""

    REGISTRY = "registry"


@dataclass(frozen=True, slots=True)
class Integration:
    """A configured integration. Credentials are references; the webhook secret is a hash."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    type: IntegrationType
    name: str
    url: str
    credentials_ref: str | None
    webhook_secret_ref: str | None
    webhook_secret_hash: str | None
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @property
    def host(self) -> str:
        """`host[:port]` of the URL, the prefix of repositories this registry serves."""
        return urlsplit(self.url).netloc


def validate_url(url: str) -> list[FieldError]:
    """A registry URL is `http(s)://host[:port]` with no path, query or user info."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return [FieldError("url", "must be http://host[:port] or https://host[:port]")]
    if "@" in parts.netloc:
        return [FieldError("url", "must not carry credentials; use credentials_ref")]
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        return [FieldError("url", "must not have a path, query or fragment")]
    return []
