"""Promotions: moving one release into the next environment, through gates and approvals."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stella.domain.errors import Conflict


class PromotionState(enum.StrEnum):
    PENDING = "pending"
    BLOCKED = "blocked"  # a gate failed; re-evaluable
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    DEPLOYING = "deploying"
    DEPLOYED = "deployed"
    REJECTED = "rejected"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        """Still deciding: gates may be re-evaluated, approvals given, the request cancelled."""
        return self in {
            PromotionState.PENDING,
            PromotionState.BLOCKED,
            PromotionState.AWAITING_APPROVAL,
        }


_TRANSITIONS: dict[PromotionState, frozenset[PromotionState]] = {
    PromotionState.PENDING: frozenset(
        {
            PromotionState.BLOCKED,
            PromotionState.AWAITING_APPROVAL,
            PromotionState.APPROVED,
            PromotionState.REJECTED,
            PromotionState.CANCELLED,
        }
    ),
    PromotionState.BLOCKED: frozenset(
        {
            PromotionState.BLOCKED,
            PromotionState.AWAITING_APPROVAL,
            PromotionState.APPROVED,
            PromotionState.REJECTED,
            PromotionState.CANCELLED,
        }
    ),
    PromotionState.AWAITING_APPROVAL: frozenset(
        {
            PromotionState.BLOCKED,
            PromotionState.AWAITING_APPROVAL,
            PromotionState.APPROVED,
            PromotionState.REJECTED,
            PromotionState.CANCELLED,
        }
    ),
    PromotionState.APPROVED: frozenset({PromotionState.DEPLOYING, PromotionState.CANCELLED}),
    PromotionState.DEPLOYING: frozenset(
        {PromotionState.DEPLOYED, PromotionState.FAILED, PromotionState.ROLLED_BACK}
    ),
    PromotionState.DEPLOYED: frozenset({PromotionState.ROLLED_BACK}),
    PromotionState.REJECTED: frozenset(),
    PromotionState.FAILED: frozenset(),
    PromotionState.ROLLED_BACK: frozenset(),
    PromotionState.CANCELLED: frozenset(),
}


def check_transition(current: PromotionState, new: PromotionState) -> None:
    """Raise Conflict unless the state machine allows `current → new`."""
    if new not in _TRANSITIONS[current]:
        msg = f"promotion is {current}; it cannot become {new}"
        raise Conflict(msg)


@dataclass(frozen=True, slots=True)
class Approval:
    """One person's decision on a promotion."""

    user_id: uuid.UUID | None
    user_name: str
    role: str
    decision: str  # approve | reject
    comment: str
    at: datetime


@dataclass(frozen=True, slots=True)
class GateResult:
    """The result of one gate: passed or not, why, and a digest of exactly what it looked at."""

    gate: str
    passed: bool
    reason: str
    details: dict[str, Any]
    inputs_digest: str
    pending: bool = False  # not failed for good: waiting for approvals

    def to_json(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "passed": self.passed,
            "pending": self.pending,
            "reason": self.reason,
            "details": self.details,
            "inputs_digest": self.inputs_digest,
        }


@dataclass(frozen=True, slots=True)
class Promotion:
    """A request to move a release from one environment to the next."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    release_id: uuid.UUID
    release_name: str
    release_version: str
    source_environment_id: uuid.UUID | None
    source_environment: str | None
    target_environment_id: uuid.UUID
    target_environment: str
    requested_by: uuid.UUID | None
    requested_by_name: str
    requested_at: datetime
    state: PromotionState
    updated_at: datetime
    run_id: uuid.UUID | None = None
    kind: str = "promotion"  # or "rollback": redeploys an earlier release into the environment
    rollback_of: uuid.UUID | None = None  # the deployed promotion a rollback undoes
    gate_results: tuple[GateResult, ...] = ()
    approvals: tuple[Approval, ...] = ()
    decision: dict[str, Any] | None = field(default=None)
