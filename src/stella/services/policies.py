"""Use cases for Rego policies (versioned) and scan verdicts (the security gate's input)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

from stella.domain.errors import NotFound
from stella.domain.ids import new_id
from stella.domain.tenancy import Permission
from stella.services.context import CallContext, record, require
from stella.services.ports import UnitOfWork, UnitOfWorkFactory
from stella.services.specs import PolicySpec

PolicyChecker = Callable[[str], None]
"""Raises ValidationFailed (naming line and message) for a policy that does not compile."""


def save_policy(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, spec: PolicySpec, check: PolicyChecker
) -> tuple[dict[str, Any], bool]:
    """Store a new version of a policy (unless its text is unchanged); returns (policy, created)."""
    require(ctx, Permission.ADMINISTER, uow_factory, "save policies")
    check(spec.rego)
    policy_hash = "sha256:" + hashlib.sha256(spec.rego.encode()).hexdigest()
    with uow_factory() as uow:
        latest = uow.policies.latest(ctx.principal.tenant_id, spec.name)
        if latest is not None and latest["hash"] == policy_hash:
            return latest, False
        values = {
            "id": new_id(),
            "tenant_id": ctx.principal.tenant_id,
            "name": spec.name,
            "version": (latest["version"] + 1) if latest else 1,
            "rego": spec.rego,
            "hash": policy_hash,
            "created_at": ctx.clock(),
            "created_by_name": ctx.principal.name,
        }
        uow.policies.add(values)
        record(
            uow,
            ctx,
            "policy.created",
            "policy",
            values["id"],
            {"name": spec.name, "version": values["version"], "hash": policy_hash},
        )
        uow.commit()
    return values, True


def get_policy(uow: UnitOfWork, tenant_id: uuid.UUID, name: str) -> dict[str, Any]:
    found = uow.policies.latest(tenant_id, name)
    if found is None:
        msg = f"policy '{name}' not found"
        raise NotFound(msg)
    return found
