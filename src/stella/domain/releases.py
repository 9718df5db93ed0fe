"""Releases: immutable, digest-pinned bundles of component images with a SemVer version."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from stella.domain.errors import Conflict

IMMUTABLE_MESSAGE = "releases are immutable; create a new release"


class ReleaseState(enum.StrEnum):
    """Lifecycle of a release; only the state ever changes after creation."""

    DRAFT = "draft"
    ACTIVE = "active"
    DEPRECATED = "deprecated"


# A deprecated release can be re-activated, e.g. after a deprecation by mistake.
_ALLOWED_TRANSITIONS: dict[ReleaseState, frozenset[ReleaseState]] = {
    ReleaseState.DRAFT: frozenset({ReleaseState.ACTIVE, ReleaseState.DEPRECATED}),
    ReleaseState.ACTIVE: frozenset({ReleaseState.DEPRECATED}),
    ReleaseState.DEPRECATED: frozenset({ReleaseState.ACTIVE}),
}


@dataclass(frozen=True, slots=True)
class ComponentDigest:
    """One component of a release, pinned to a digest."""

    name: str
    repository: str
    digest: str
    resolved_from_tag: str | None
    media_type: str | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """A release of one tenant; `components` is sorted by component name."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    version: str
    source_ref: str | None
    state: ReleaseState
    components: tuple[ComponentDigest, ...]
    created_at: datetime
    created_by: uuid.UUID | None
    created_by_name: str

    def transition_to(self, state: ReleaseState) -> ReleaseState:
        """Check that moving to `state` is allowed and return it; raise Conflict otherwise."""
        if state not in _ALLOWED_TRANSITIONS[self.state]:
            msg = f"release {self.name} {self.version} is {self.state}; it cannot become {state}"
            raise Conflict(msg)
        return state
