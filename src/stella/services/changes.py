"""Comparing an entity with its proposed next state, for PATCH, audit details and apply plans."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

# Bookkeeping fields that never count as a user-visible change.
_IGNORED = frozenset({"id", "tenant_id", "created_at", "updated_at"})


def changed_fields(current: Any, proposed: Any) -> list[str]:
    """Names of dataclass fields whose values differ between two versions of an entity."""
    return [
        f.name
        for f in fields(current)
        if f.name not in _IGNORED and getattr(current, f.name) != getattr(proposed, f.name)
    ]
