"""Use cases for releases: create (resolving every tag to a digest), change state, read.

Registry calls happen outside any database transaction: a slow registry must never hold a
write lock, and an unreachable one must leave nothing half-created.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from stella.domain.components import Component, ComponentVersion
from stella.domain.errors import (
    Conflict,
    FieldError,
    ImageNotFound,
    ImmutableResource,
    NotFound,
    ValidationFailed,
)
from stella.domain.ids import new_id
from stella.domain.integrations import Integration
from stella.domain.pagination import Page, PageRequest
from stella.domain.references import ImageReference, InvalidReference, parse_image_reference
from stella.domain.releases import IMMUTABLE_MESSAGE, ComponentDigest, Release, ReleaseState
from stella.domain.tenancy import Permission
from stella.domain.versions import parse_semver
from stella.services.context import CallContext, record, require
from stella.services.ports import RegistryConnectorFactory, UnitOfWork, UnitOfWorkFactory
from stella.services.specs import ReleaseSpec


@dataclass(frozen=True, slots=True)
class _Planned:
    name: str
    component: Component
    reference: ImageReference


def _reference_for(component: Component, value: str) -> ImageReference:
    """`value` is a full reference, or only `tag` / `@sha256:…` of the component's repository."""
    if value.startswith("@") or ("/" not in value and ":" not in value.split("@")[0]):
        separator = "" if value.startswith("@") else ":"
        value = f"{component.repository}{separator}{value}"
    reference = parse_image_reference(value)
    if str(reference.repository) != component.repository:
        msg = (
            f"image repository {reference.repository} is not the repository of component "
            f"'{component.name}' ({component.repository})"
        )
        raise InvalidReference(msg)
    return reference


def _plan(uow: UnitOfWork, ctx: CallContext, spec: ReleaseSpec) -> list[_Planned]:
    errors: list[FieldError] = []
    try:
        parse_semver(spec.version)
    except ValueError as exc:
        errors.append(FieldError("version", str(exc)))
    if spec.state not in {ReleaseState.DRAFT, ReleaseState.ACTIVE}:
        errors.append(FieldError("state", "a new release is draft or active"))
    known = uow.components.by_names(ctx.principal.tenant_id, sorted(spec.components))
    planned: list[_Planned] = []
    for name, value in sorted(spec.components.items()):
        component = known.get(name)
        if component is None:
            errors.append(
                FieldError(f"components.{name}", f"unknown component '{name}'; create it first")
            )
            continue
        try:
            planned.append(_Planned(name, component, _reference_for(component, value)))
        except InvalidReference as exc:
            errors.append(FieldError(f"components.{name}", str(exc)))
    if errors:
        raise ValidationFailed.of(errors)
    if uow.releases.exists(ctx.principal.tenant_id, spec.name, spec.version):
        msg = f"release {spec.name} {spec.version} already exists; releases are immutable"
        raise Conflict(msg)
    return planned


def _pin(
    planned: list[_Planned],
    registries: dict[str, Integration],
    connectors: RegistryConnectorFactory,
) -> list[ComponentDigest]:
    pinned: list[ComponentDigest] = []
    errors: list[FieldError] = []
    for item in planned:
        host = item.reference.repository.host
        connector = connectors(host, registries.get(host))
        try:
            if item.reference.digest is not None:
                resolved = connector.verify_digest(item.reference)
            else:
                resolved = connector.resolve_digest(item.reference)
        except ImageNotFound as exc:
            errors.append(FieldError(f"components.{item.name}", exc.detail))
            continue
        pinned.append(
            ComponentDigest(
                name=item.name,
                repository=item.component.repository,
                digest=resolved.digest,
                resolved_from_tag=item.reference.tag,
                media_type=resolved.media_type,
            )
        )
    if errors:
        raise ValidationFailed.of(errors)
    return pinned


def create_release(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    spec: ReleaseSpec,
    connectors: RegistryConnectorFactory,
) -> Release:
    """Pin every component to a digest and store the release; nothing is stored on failure."""
    require(ctx, Permission.MANAGE_RELEASES, uow_factory, "create releases")
    with uow_factory(read_only=True) as uow:
        planned = _plan(uow, ctx, spec)
        registries = {i.host: i for i in uow.integrations.registries(ctx.principal.tenant_id)}
    pinned = _pin(planned, registries, connectors)
    now = ctx.clock()
    release = Release(
        id=new_id(),
        tenant_id=ctx.principal.tenant_id,
        name=spec.name,
        version=spec.version,
        source_ref=spec.source_ref,
        state=spec.state,
        components=tuple(pinned),
        created_at=now,
        created_by=ctx.principal.user_id,
        created_by_name=ctx.principal.name,
    )
    with uow_factory() as uow:
        if uow.releases.exists(ctx.principal.tenant_id, spec.name, spec.version):
            msg = f"release {spec.name} {spec.version} already exists; releases are immutable"
            raise Conflict(msg)
        uow.releases.add(release)
        for item, digest in zip(planned, pinned, strict=True):
            uow.components.add_version(
                ComponentVersion(
                    new_id(),
                    release.tenant_id,
                    item.component.id,
                    digest.digest,
                    digest.resolved_from_tag,
                    digest.media_type,
                    now,
                )
            )
        details = {
            "name": spec.name,
            "version": spec.version,
            "digests": {c.name: c.digest for c in pinned},
        }
        record(uow, ctx, "release.created", "release", release.id, details)
        uow.commit()
    return release


def get_release(uow: UnitOfWork, tenant_id: uuid.UUID, ref: str) -> Release:
    release = uow.releases.get(tenant_id, ref)
    if release is None:
        msg = f"release '{ref}' not found"
        raise NotFound(msg)
    return release


def change_release_state(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str, state: ReleaseState
) -> Release:
    """The only change a release allows: draft → active → deprecated (and back to active)."""
    require(ctx, Permission.MANAGE_RELEASES, uow_factory, f"mark releases {state}")
    with uow_factory() as uow:
        release = get_release(uow, ctx.principal.tenant_id, ref)
        new_state = release.transition_to(state)
        uow.releases.set_state(release, new_state, ctx.clock())
        record(
            uow,
            ctx,
            f"release.{new_state}",
            "release",
            release.id,
            {"from": release.state, "to": new_state},
        )
        uow.commit()
    return replace(release, state=new_state)


def refuse_modification(uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str) -> None:
    """PUT/PATCH/DELETE on a release: 404 if unknown, otherwise 405 (and the attempt is audited)."""
    with uow_factory() as uow:
        release = get_release(uow, ctx.principal.tenant_id, ref)
        record(uow, ctx, "release.modification_refused", "release", release.id)
        uow.commit()
    raise ImmutableResource(IMMUTABLE_MESSAGE)


def list_releases(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    page: PageRequest,
    name: str | None,
    state: ReleaseState | None,
    query: str | None = None,
) -> Page[Release]:
    return uow.releases.page(tenant_id, page, name, state, query)
