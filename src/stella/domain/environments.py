"""Environments: the ordered stages (dev → stage → prod) a release is promoted through."""

from __future__ import annotations

import enum
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stella.domain.deployments import DeploymentPolicy
from stella.domain.durations import parse_duration
from stella.domain.errors import FieldError
from stella.domain.security import SecurityPolicy
from stella.domain.tenancy import Role

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_RRULE_FREQS = {"DAILY", "WEEKLY", "MONTHLY", "YEARLY"}
_RRULE_KEYS = {"FREQ", "INTERVAL", "BYDAY", "BYMONTH", "BYMONTHDAY", "BYHOUR", "COUNT", "UNTIL"}


class EnvironmentState(enum.StrEnum):
    """Active environments accept promotions; frozen ones block them; retired ones are history."""

    ACTIVE = "active"
    FROZEN = "frozen"
    RETIRED = "retired"


class GateName(enum.StrEnum):
    """Gates an environment may require; evaluated by the promotion engine."""

    PREVIOUS_ENVIRONMENT = "previous_environment"
    APPROVAL = "approval"
    FREEZE_WINDOW = "freeze_window"
    POLICY = "policy"
    SECURITY = "security"
    HEALTH_CHECK = "health_check"


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """How many approvals a promotion into the environment needs, and from whom."""

    required_approvals: int = 0
    approver_roles: tuple[Role, ...] = (Role.APPROVER, Role.ADMIN)
    separation_of_duties: bool = False


@dataclass(frozen=True, slots=True)
class FreezeWindow:
    """A period without promotions: absolute (`start`..`end`) or recurring (`rrule`+`duration`).

    Times stay as the user wrote them (RFC 3339, or local time plus `timezone` for rules) so a
    recurring window follows daylight-saving changes of its zone.
    """

    name: str
    start: str
    end: str | None = None
    rrule: str | None = None
    duration: str | None = None
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class Environment:
    """A deployment stage of one tenant."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    slug: str
    promotion_order: int
    is_production: bool
    state: EnvironmentState
    gates: tuple[GateName, ...]
    policies: tuple[str, ...]
    approval_policy: ApprovalPolicy
    freeze_windows: tuple[FreezeWindow, ...]
    created_at: datetime
    updated_at: datetime
    description: str = field(default="")
    promotion_workflow: str | None = None  # template run when a promotion into it is approved
    deployment: DeploymentPolicy = field(default_factory=DeploymentPolicy)
    security: SecurityPolicy = field(default_factory=SecurityPolicy)


def _parse_instant(value: str, path: str, errors: list[FieldError]) -> datetime | None:
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        errors.append(FieldError(path, f"'{value}' is not an RFC 3339 date-time"))
        return None
    return instant


def validate_freeze_window(window: FreezeWindow, path: str) -> list[FieldError]:
    """Every problem with one freeze window, each naming its field path."""
    errors: list[FieldError] = []
    start = _parse_instant(window.start, f"{path}.start", errors)
    if window.rrule is None:
        if window.end is None:
            errors.append(FieldError(f"{path}.end", "an absolute window needs `end` (or `rrule`)"))
        elif start is not None:
            end = _parse_instant(window.end, f"{path}.end", errors)
            if start.tzinfo is None:
                errors.append(FieldError(f"{path}.start", "needs a UTC offset, e.g. Z"))
            elif end is not None and end.tzinfo is None:
                errors.append(FieldError(f"{path}.end", "needs a UTC offset, e.g. Z"))
            elif end is not None and end <= start:
                errors.append(FieldError(f"{path}.end", "must be after start"))
        return errors
    errors.extend(_validate_rrule(window.rrule, f"{path}.rrule"))
    if window.duration is None:
        errors.append(FieldError(f"{path}.duration", "a recurring window needs a duration"))
    else:
        try:
            if parse_duration(window.duration).total_seconds() <= 0:
                errors.append(FieldError(f"{path}.duration", "must be positive"))
        except ValueError as exc:
            errors.append(FieldError(f"{path}.duration", str(exc)))
    if window.timezone is not None:
        try:
            ZoneInfo(window.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(FieldError(f"{path}.timezone", f"unknown time zone '{window.timezone}'"))
    return errors


def _validate_rrule(rule: str, path: str) -> list[FieldError]:
    parts = dict(p.partition("=")[::2] for p in rule.split(";") if p)
    unknown = sorted(set(parts) - _RRULE_KEYS)
    if unknown:
        return [FieldError(path, f"unsupported rule part(s): {', '.join(unknown)}")]
    if parts.get("FREQ") not in _RRULE_FREQS:
        return [FieldError(path, "needs FREQ=DAILY, WEEKLY, MONTHLY or YEARLY")]
    return []


def validate_environment_fields(
    slug: str | None, promotion_order: int | None, policy: ApprovalPolicy | None
) -> list[FieldError]:
    """Rules on plain fields of an environment, for create and update alike."""
    errors: list[FieldError] = []
    if slug is not None and not SLUG_RE.match(slug):
        errors.append(FieldError("slug", "lowercase letters, digits and hyphens, 1-63 characters"))
    if promotion_order is not None and promotion_order < 1:
        errors.append(FieldError("promotion_order", "must be 1 or more"))
    if policy is not None and policy.required_approvals < 0:
        errors.append(FieldError("approval_policy.required_approvals", "must be 0 or more"))
    if policy is not None and not policy.approver_roles:
        errors.append(FieldError("approval_policy.approver_roles", "name at least one role"))
    return errors
