"""Keyset pagination values shared by every list query."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Generic, TypeVar

from stella.domain.errors import ValidationFailed

T = TypeVar("T")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Where a list starts (`after`, decoded from the opaque cursor) and how many items."""

    after: str | int | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def from_query(cls, cursor: str | None, limit: int | None) -> PageRequest:
        """Build from `?cursor=&limit=`; a tampered cursor or a bad limit is a 422."""
        size = DEFAULT_LIMIT if limit is None else limit
        if not 1 <= size <= MAX_LIMIT:
            msg = f"must be between 1 and {MAX_LIMIT}"
            raise ValidationFailed.single("limit", msg)
        if not cursor:
            return cls(None, size)
        msg = "is not a cursor returned by this API"
        try:
            value = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * 4))
        except ValueError:
            raise ValidationFailed.single("cursor", msg) from None
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ValidationFailed.single("cursor", msg)
        return cls(value, size)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of items and the cursor for the next page (None on the last)."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(value: str | int) -> str:
    """Opaque cursor for the sort key of the last item of a page."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
