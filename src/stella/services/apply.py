"""`stella apply -f`: make environments, integrations, components and targets match a document.

The whole document is applied in one transaction, so a bad entry changes nothing. A dry run
performs exactly the same steps and rolls back, so its plan is the plan that would run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from stella.domain.environments import Environment
from stella.domain.errors import FieldError, StellaError, ValidationFailed
from stella.domain.tenancy import Permission
from stella.services import components, environments, integrations, targets
from stella.services.changes import changed_fields
from stella.services.context import CallContext, record, require
from stella.services.ports import UnitOfWork, UnitOfWorkFactory
from stella.services.specs import ApplyDocument

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class PlanEntry:
    """What apply does (or did) to one resource."""

    kind: str
    name: str
    action: str  # create | update | unchanged
    changes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    entries: list[PlanEntry]
    dry_run: bool
    generated_secrets: dict[str, str]  # integration name → webhook secret, shown once

    @property
    def changed(self) -> bool:
        return any(e.action != "unchanged" for e in self.entries)


@dataclass(frozen=True, slots=True)
class _Step(Generic[E]):
    """One resource of the document: its current state and how to build, add or update it."""

    kind: str
    name: str
    current: E | None
    build: Callable[[E | None], E]
    add: Callable[[E], None]
    update: Callable[[E], None]


def _converge(uow: UnitOfWork, ctx: CallContext, step: _Step[Any]) -> PlanEntry:
    proposed = step.build(step.current)
    resource_id = getattr(proposed, "id", None)
    if step.current is None:
        step.add(proposed)
        details: dict[str, Any] = {"name": step.name, "via": "apply"}
        record(uow, ctx, f"{step.kind}.created", step.kind, resource_id, details)
        return PlanEntry(step.kind, step.name, "create")
    changes = changed_fields(step.current, proposed)
    if not changes:
        return PlanEntry(step.kind, step.name, "unchanged")
    step.update(proposed)
    details = {"changed": changes, "via": "apply"}
    record(uow, ctx, f"{step.kind}.updated", step.kind, resource_id, details)
    return PlanEntry(step.kind, step.name, "update", changes)


def _checked(
    uow: UnitOfWork, environment: Environment, store: Callable[[Environment], None]
) -> None:
    environments.check_order_free(uow, environment)
    store(environment)


def _located(kind: str, index: int, document: ApplyDocument, exc: StellaError) -> ValidationFailed:
    """Prefix an error with where the entry sits in the document (`targets.2.environment`)."""
    sections = ["environment", "integration", "component"]
    offset = 0
    if kind != "target":
        for section in sections:
            size = len(getattr(document, section + "s"))
            if index < offset + size:
                kind, index = section, index - offset
                break
            offset += size
    prefix = f"{kind}s.{index}"
    errors = [FieldError(f"{prefix}.{e.field}", e.message) for e in exc.errors] or [
        FieldError(prefix, exc.detail)
    ]
    return ValidationFailed.of(errors)


def apply_document(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, document: ApplyDocument, dry_run: bool
) -> ApplyResult:
    """Converge the tenant's configuration on `document`; see the module docstring."""
    require(ctx, Permission.ADMINISTER, uow_factory, "apply configuration")
    tenant_id: uuid.UUID = ctx.principal.tenant_id
    now: datetime = ctx.clock()
    entries: list[PlanEntry] = []
    secrets: dict[str, str] = {}
    with uow_factory() as uow:
        steps: list[_Step[Any]] = []
        for spec_e in document.environments:
            steps.append(
                _Step(
                    "environment",
                    spec_e.slug,
                    uow.environments.get(tenant_id, spec_e.slug),
                    partial(environments.build_environment, spec_e, tenant_id, now),
                    partial(_checked, uow, store=uow.environments.add),
                    partial(_checked, uow, store=uow.environments.update),
                )
            )
        for spec_i in document.integrations:
            current = uow.integrations.get(tenant_id, spec_i.name)
            secret_hash = current.webhook_secret_hash if current else None
            if current is None and not spec_i.webhook_secret_ref:
                secrets[spec_i.name], secret_hash = integrations.new_webhook_secret()
            steps.append(
                _Step(
                    "integration",
                    spec_i.name,
                    current,
                    partial(
                        integrations.build_integration,
                        spec_i,
                        tenant_id,
                        now,
                        secret_hash=secret_hash,
                    ),
                    uow.integrations.add,
                    uow.integrations.update,
                )
            )
        for spec_c in document.components:
            steps.append(
                _Step(
                    "component",
                    spec_c.name,
                    uow.components.get(tenant_id, spec_c.name),
                    partial(components.build_component, spec_c, tenant_id, now),
                    uow.components.add,
                    uow.components.update,
                )
            )
        for index, step in enumerate(steps):
            try:
                entries.append(_converge(uow, ctx, step))
            except StellaError as exc:
                raise _located(step.kind, index, document, exc) from exc
        # Targets come last and are looked up late: they may name environments created above.
        for index, spec_t in enumerate(document.targets):
            step = _Step(
                "target",
                spec_t.name,
                uow.targets.get(tenant_id, spec_t.name),
                partial(targets.build_target, uow, spec_t, tenant_id, now),
                uow.targets.add,
                uow.targets.update,
            )
            try:
                entries.append(_converge(uow, ctx, step))
            except StellaError as exc:
                raise _located("target", index, document, exc) from exc
        if not dry_run:
            uow.commit()
    return ApplyResult(entries, dry_run, {} if dry_run else secrets)


def parse_document(data: Any) -> ApplyDocument:
    """Validate a loaded YAML/JSON document; errors name their path (`targets.0.type`)."""
    try:
        return ApplyDocument.model_validate(data)
    except ValidationError as exc:
        errors = [
            FieldError(".".join(str(p) for p in e["loc"]) or "document", e["msg"])
            for e in exc.errors()
        ]
        raise ValidationFailed.of(errors) from None
