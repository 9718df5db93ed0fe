"""Use cases for attachments: SBOMs, VEX documents, scan reports and attestations filed under an
image digest, uploaded by people and CI or discovered as OCI referrers in the registry.

Attachments are stored byte for byte as received (their sha256 is their digest) and never
change; the same content for the same image is stored once, so every upload is idempotent.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from stella.domain.attachment_formats import (
    FORMATS,
    AttachmentFormat,
    AttachmentKind,
    DocumentRejected,
    UnknownFormat,
    classify_document,
    formats_of,
    is_sha256_digest,
)
from stella.domain.errors import ImageNotFound, NotFound, PayloadTooLarge, ValidationFailed
from stella.domain.ids import new_id
from stella.domain.integrations import Integration
from stella.domain.pagination import Page, PageRequest, encode_cursor
from stella.domain.references import InvalidReference, parse_repository
from stella.domain.tenancy import Permission
from stella.services.context import CallContext, record, require
from stella.services.ports import UnitOfWork, UnitOfWorkFactory

# Referrer artifact types (or config media types) and the formats their documents may have.
REFERRER_FORMATS: dict[str, list[str]] = {
    "application/vnd.cyclonedx+json": ["cyclonedx-vex", "cyclonedx"],
    "application/spdx+json": ["spdx"],
    "application/openvex+json": ["openvex"],
    "application/vnd.in-toto+json": ["in-toto", "dsse"],
    "application/vnd.dsse.envelope.v1+json": ["dsse", "in-toto"],
}
_EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
MAX_SCANNED_COMPONENTS = 10_000


@dataclass(frozen=True, slots=True)
class Upload:
    """One document to attach: the image it is about, its bytes, and what it claims to be."""

    subject_digest: str
    content: bytes
    kind: AttachmentKind | None  # None: any kind, decided by the format
    format: str | None  # None: detected from the document
    source: str = "upload"
    source_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Added:
    """The stored attachment's metadata; `created` is False when it was already there."""

    attachment: dict[str, Any]
    created: bool


@dataclass(frozen=True, slots=True)
class ReferrerListing:
    """The descriptors of an image's referrers and how they were found (API or tag schema)."""

    method: str  # referrers-api | referrers-tag
    descriptors: list[dict[str, Any]]


class ReferrerSource(Protocol):
    """Reads the referrers of an image, and their manifests and blobs, from one registry."""

    def referrers(self, path: str, digest: str) -> ReferrerListing: ...
    def manifest(self, path: str, digest: str) -> dict[str, Any]:
        """The manifest; ImageNotFound when the registry no longer has it."""

    def blob(self, path: str, digest: str, max_bytes: int) -> bytes:
        """The blob, at most `max_bytes`; ImageNotFound when the registry does not have it."""


ReferrerSourceFactory = Callable[[str, Integration | None], ReferrerSource]
"""Builds a ReferrerSource for a registry host, configured by its integration when there is one."""


@dataclass
class Discovery:
    """What a discovery found: the images asked, the attachments stored, the referrers skipped."""

    subjects: list[dict[str, Any]] = field(default_factory=list)
    added: list[dict[str, Any]] = field(default_factory=list)
    existing: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


class IngestHook(Protocol):
    """Turns a newly stored SBOM or VEX document into security data (services/security.py):
    `ingest` runs in the storing transaction, `settle` after it committed."""

    def ingest(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, attachment: dict[str, Any], document: Any
    ) -> list[str]:
        """`document` is the stored attachment's parsed JSON (parsed once, to validate it)."""

    def settle(self, tenant_id: uuid.UUID, digests: list[str], cause: str) -> object: ...


def _check_subject(digest: str) -> None:
    if not is_sha256_digest(digest):
        raise ValidationFailed.single("digest", "must be sha256:<64 lowercase hex>")


def check_size(content: bytes, max_bytes: int) -> None:
    """PayloadTooLarge for a document over the limit; checked before anything parses it."""
    if len(content) > max_bytes:
        msg = f"document is larger than {max_bytes} bytes (STELLA_ATTACHMENT_MAX_BYTES)"
        raise PayloadTooLarge(msg)


def _format_of(upload: Upload, document: Any = None) -> tuple[AttachmentFormat, Any]:
    try:
        return classify_document(upload.content, upload.format, formats_of(upload.kind), document)
    except UnknownFormat as exc:
        raise ValidationFailed.single("format", str(exc)) from None
    except DocumentRejected as exc:
        raise ValidationFailed.single("document", str(exc)) from None


def add_attachment(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    upload: Upload,
    max_bytes: int,
    hook: IngestHook | None = None,
    document: Any = None,
) -> Added:
    """Validate and store one document; the same bytes for the same image are stored once.

    The content is parsed once (after its size is checked), or not at all when the caller
    already holds it parsed (`document`, e.g. a scan report that came inside a request)."""
    noun = f"{upload.kind}s" if upload.kind else "attachments"
    require(ctx, Permission.MANAGE_RELEASES, uow_factory, f"upload {noun}")
    _check_subject(upload.subject_digest)
    check_size(upload.content, max_bytes)
    fmt, parsed = _format_of(upload, document)
    with uow_factory() as uow:
        added = _store(uow, ctx, upload, fmt)
        touched = _ingest(hook, uow, ctx, added, parsed)
        uow.commit()
    if hook is not None and touched:
        hook.settle(ctx.principal.tenant_id, touched, f"{fmt.kind} {added.attachment['digest']}")
    return added


def _ingest(
    hook: IngestHook | None, uow: UnitOfWork, ctx: CallContext, added: Added, document: Any
) -> list[str]:
    """SBOMs and VEX documents feed the security verdicts (also when re-uploaded, so an SBOM
    stored before the feed existed can be ingested again)."""
    if hook is None or added.attachment["kind"] not in ("sbom", "vex"):
        return []
    return hook.ingest(uow, ctx.principal.tenant_id, added.attachment, document)


def _store(uow: UnitOfWork, ctx: CallContext, upload: Upload, fmt: AttachmentFormat) -> Added:
    values = {
        "id": new_id(),
        "tenant_id": ctx.principal.tenant_id,
        "subject_digest": upload.subject_digest,
        "kind": str(fmt.kind),
        "format": fmt.name,
        "media_type": fmt.media_type,
        "digest": "sha256:" + hashlib.sha256(upload.content).hexdigest(),
        "size": len(upload.content),
        "content": upload.content,
        "source": upload.source,
        "source_ref": upload.source_ref,
        "created_at": ctx.clock(),
        "created_by_name": ctx.principal.name,
    }
    stored = uow.attachments.add(values)
    created = stored["id"] == values["id"]
    if created:
        details = {
            "subject_digest": upload.subject_digest,
            "kind": values["kind"],
            "format": fmt.name,
            "digest": values["digest"],
            "size": values["size"],
            "source": upload.source,
        }
        record(uow, ctx, "attachment.added", "attachment", stored["id"], details)
    return Added(stored, created)


def list_attachments(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    digest: str,
    page: PageRequest,
    kind: AttachmentKind | None = None,
) -> Page[dict[str, Any]]:
    """Metadata of the attachments of one image, oldest first."""
    require(ctx, Permission.READ, uow_factory, "read attachments")
    _check_subject(digest)
    with uow_factory(read_only=True) as uow:
        rows = uow.attachments.for_digests(ctx.principal.tenant_id, [digest])
    rows = [r for r in rows if kind is None or r["kind"] == kind]
    start = 0
    if page.after is not None:
        ids = [str(r["id"]) for r in rows]
        start = ids.index(str(page.after)) + 1 if str(page.after) in ids else len(rows)
    items = rows[start : start + page.limit]
    more = start + page.limit < len(rows)
    return Page(items, encode_cursor(str(items[-1]["id"])) if more and items else None)


def _get(uow: UnitOfWork, tenant_id: uuid.UUID, ref: str) -> dict[str, Any]:
    try:
        attachment_id = uuid.UUID(ref)
    except ValueError:
        attachment_id = None
    found = None if attachment_id is None else uow.attachments.get(tenant_id, attachment_id)
    if found is None:
        msg = f"attachment '{ref}' not found"
        raise NotFound(msg)
    return found


def get_attachment(uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str) -> dict[str, Any]:
    """Metadata of one attachment; NotFound for unknown ids and other tenants' ids."""
    require(ctx, Permission.READ, uow_factory, "read attachments")
    with uow_factory(read_only=True) as uow:
        return _get(uow, ctx.principal.tenant_id, ref)


def attachment_content(
    uow_factory: UnitOfWorkFactory, ctx: CallContext, ref: str
) -> tuple[dict[str, Any], bytes]:
    """The metadata and the exact bytes of one attachment."""
    require(ctx, Permission.READ, uow_factory, "read attachments")
    tenant_id = ctx.principal.tenant_id
    with uow_factory(read_only=True) as uow:
        found = _get(uow, tenant_id, ref)
        content = uow.attachments.content(tenant_id, found["digest"])
    if content is None:  # rows are append-only: only a concurrent purge could get here
        msg = f"attachment '{ref}' not found"
        raise NotFound(msg)
    return found, content


# --- Referrer discovery ----------------------------------------------------------------------


def _repositories_holding(uow: UnitOfWork, tenant_id: uuid.UUID, digest: str) -> list[str]:
    """Repositories of the tenant's components that saw `digest` (from releases or pushes)."""
    found: list[str] = []
    for component in _components(uow, tenant_id):
        cursor: PageRequest | None = PageRequest(None, 500)
        while cursor is not None:
            versions = uow.components.list_versions(tenant_id, component.id, cursor)
            if any(v.digest == digest for v in versions.items):
                found.append(component.repository)
                break
            cursor = (
                PageRequest.from_query(versions.next_cursor, 500) if versions.next_cursor else None
            )
    return sorted(set(found))


def _components(uow: UnitOfWork, tenant_id: uuid.UUID) -> Iterator[Any]:
    page: PageRequest | None = PageRequest(None, 500)
    seen = 0
    while page is not None and seen < MAX_SCANNED_COMPONENTS:
        found = uow.components.page(tenant_id, page)
        seen += len(found.items)
        yield from found.items
        page = PageRequest.from_query(found.next_cursor, 500) if found.next_cursor else None


def _subjects(
    uow: UnitOfWork, tenant_id: uuid.UUID, digest: str | None, release: str | None
) -> list[tuple[str, str]]:
    if (digest is None) == (release is None):
        raise ValidationFailed.single("body", "give exactly one of digest or release")
    if release is not None:
        found = uow.releases.get(tenant_id, release)
        if found is None:
            msg = f"release '{release}' not found"
            raise NotFound(msg)
        return sorted({(c.repository, c.digest) for c in found.components})
    assert digest is not None  # noqa: S101 - exactly one of both was given
    _check_subject(digest)
    repositories = _repositories_holding(uow, tenant_id, digest)
    if not repositories:
        msg = (
            "no component version has this digest, so its registry is unknown; "
            "create a release with it, or let the registry notify Stella of the push"
        )
        raise ValidationFailed.single("digest", msg)
    return [(r, digest) for r in repositories]


def discover_referrers(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    digest: str | None,
    release: str | None,
    sources: ReferrerSourceFactory,
    max_bytes: int,
    hook: IngestHook | None = None,
) -> Discovery:
    """Store the SBOMs, VEX documents and attestations the registry holds as referrers of the
    image (or of every image of a release). Idempotent: known documents are reported as
    `existing`; referrers of other types, or with invalid documents, as `skipped`."""
    require(ctx, Permission.MANAGE_RELEASES, uow_factory, "discover attachments")
    tenant_id = ctx.principal.tenant_id
    with uow_factory(read_only=True) as uow:
        subjects = _subjects(uow, tenant_id, digest, release)
        registries = {i.host: i for i in uow.integrations.registries(tenant_id)}
    result = Discovery()
    uploads: list[tuple[Upload, Any]] = []
    for repository, subject in subjects:
        try:
            parsed = parse_repository(repository)
        except InvalidReference:
            continue
        source = sources(parsed.host, registries.get(parsed.host))
        listing = source.referrers(parsed.path, subject)
        result.subjects.append(
            {
                "repository": repository,
                "digest": subject,
                "method": listing.method,
                "referrers": len(listing.descriptors),
            }
        )
        for descriptor in listing.descriptors:
            fetched = _fetch(source, parsed.path, subject, descriptor, max_bytes, result)
            if fetched is not None:
                uploads.append(fetched)
    _store_discovered(uow_factory, ctx, uploads, result, hook)
    return result


def _fetch(
    source: ReferrerSource,
    path: str,
    subject: str,
    descriptor: dict[str, Any],
    max_bytes: int,
    result: Discovery,
) -> tuple[Upload, Any] | None:
    """The referrer's document as an upload, with the document parsed (once, to check it)."""
    ref = str(descriptor["digest"])

    def skip(reason: str) -> None:
        result.skipped.append({"subject_digest": subject, "referrer": ref, "reason": reason})

    try:
        manifest = source.manifest(path, ref)
    except ImageNotFound:  # a stale entry of the referrers tag index
        skip("the referrer manifest is no longer in the registry")
        return None
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    config_type = str((config or {}).get("mediaType") or "")
    artifact_type = str(
        manifest.get("artifactType")
        or descriptor.get("artifactType")
        or (config_type if config_type != _EMPTY_CONFIG else "")
    )
    candidates = REFERRER_FORMATS.get(artifact_type.split(";")[0].strip())
    if candidates is None:
        skip(f"artifact type '{artifact_type or 'none'}' is not an SBOM, VEX or attestation")
        return None
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers or not isinstance(layers[0], dict):
        skip("the referrer manifest has no layers")
        return None
    layer = layers[0]
    size = layer.get("size")
    if isinstance(size, int) and size > max_bytes:
        skip(f"the document is larger than {max_bytes} bytes (STELLA_ATTACHMENT_MAX_BYTES)")
        return None
    layer_digest = str(layer.get("digest"))
    if not is_sha256_digest(layer_digest):
        skip(f"the referrer's layer digest '{layer_digest[:80]}' is not sha256:<hex>")
        return None
    try:
        content = source.blob(path, layer_digest, max_bytes)
    except ImageNotFound:
        skip(f"the referrer's layer {layer_digest} is not in the registry")
        return None
    try:
        fmt, document = classify_document(content, None, candidates)
    except DocumentRejected as exc:
        skip(str(exc))
        return None
    return Upload(subject, content, fmt.kind, fmt.name, "referrers", ref), document


def _store_discovered(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    uploads: list[tuple[Upload, Any]],
    result: Discovery,
    hook: IngestHook | None,
) -> None:
    touched: list[str] = []
    with uow_factory() as uow:
        for upload, document in uploads:
            assert upload.format is not None  # noqa: S101 - classified while fetching
            added = _store(uow, ctx, upload, FORMATS[upload.format])
            (result.added if added.created else result.existing).append(added.attachment)
            touched += _ingest(hook, uow, ctx, added, document)
        uow.commit()
    if hook is not None and touched:
        hook.settle(ctx.principal.tenant_id, sorted(set(touched)), "referrers discovered")
