"""/api/v1 attachments: SBOMs, VEX documents, scan reports and attestations of image digests.

Uploads take the document itself as the request body (raw JSON, stored byte for byte) and
the image digest as `?digest=`; `?format=` names the format when detection should not decide.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from stella.adapters.registry.referrers import referrer_source_factory
from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.schemas import ListOf
from stella.domain.attachment_formats import AttachmentKind, formats_of
from stella.services import attachments as svc

router = APIRouter(tags=["attachments"])

UPLOAD_PATHS = frozenset(f"/api/v1{p}" for p in ("/sboms", "/vex", "/attestations", "/attachments"))
"""Paths whose bodies may be as large as STELLA_ATTACHMENT_MAX_BYTES."""

DigestQuery = Annotated[
    str, Query(description="the image digest the document is about: sha256:<64 hex>")
]


class AttachmentOut(BaseModel):
    id: str
    subject_digest: str
    kind: str
    format: str
    media_type: str
    digest: str
    size: int
    source: str
    source_ref: str | None
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, row: dict[str, Any]) -> AttachmentOut:
        return cls(
            id=str(row["id"]),
            subject_digest=row["subject_digest"],
            kind=row["kind"],
            format=row["format"],
            media_type=row["media_type"],
            digest=row["digest"],
            size=row["size"],
            source=row["source"],
            source_ref=row["source_ref"],
            created_at=row["created_at"],
            created_by=row["created_by_name"],
        )


class DiscoverSpec(BaseModel):
    """Exactly one of `digest` (an image some component version has) or `release`."""

    model_config = ConfigDict(extra="forbid")
    digest: str | None = Field(default=None, max_length=80)
    release: str | None = Field(default=None, max_length=300)


class SubjectOut(BaseModel):
    repository: str
    digest: str
    method: str
    referrers: int


class SkippedOut(BaseModel):
    subject_digest: str
    referrer: str
    reason: str


class DiscoveryOut(BaseModel):
    subjects: list[SubjectOut]
    added: list[AttachmentOut]
    existing: list[AttachmentOut]
    skipped: list[SkippedOut]


def _raw_body(kind: AttachmentKind | None) -> dict[str, Any]:
    names = ", ".join(formats_of(kind))
    return {
        "requestBody": {
            "required": True,
            "description": f"the document itself, stored byte for byte ({names})",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }


async def _upload(
    request: Request,
    response: Response,
    container: ContainerDep,
    ctx: Ctx,
    kind: AttachmentKind | None,
    digest: str,
    format_name: str | None,
) -> AttachmentOut:
    upload = svc.Upload(digest, await request.body(), kind, format_name)
    max_bytes = container.settings.attachment_max_bytes
    added = await run_in_threadpool(
        svc.add_attachment, container.uow, ctx, upload, max_bytes, container.security_hook
    )
    if not added.created:
        response.status_code = 200
    return AttachmentOut.of(added.attachment)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "this document was already attached to this digest"},
    413: {"description": "larger than STELLA_ATTACHMENT_MAX_BYTES"},
    422: {"description": "not JSON, not the format, or a bad digest; `errors` names the field"},
}
FormatQuery = Annotated[
    str | None, Query(alias="format", max_length=32, description="default: detected")
]


@router.post(
    "/sboms", status_code=201, openapi_extra=_raw_body(AttachmentKind.SBOM), responses=_RESPONSES
)
async def upload_sbom(
    request: Request,
    response: Response,
    container: ContainerDep,
    ctx: Ctx,
    digest: DigestQuery,
    format_name: FormatQuery = None,
) -> AttachmentOut:
    """Attach an SBOM (CycloneDX JSON, SPDX 2 JSON or SPDX 3 JSON-LD) to an image digest."""
    return await _upload(
        request, response, container, ctx, AttachmentKind.SBOM, digest, format_name
    )


@router.post(
    "/vex", status_code=201, openapi_extra=_raw_body(AttachmentKind.VEX), responses=_RESPONSES
)
async def upload_vex(
    request: Request,
    response: Response,
    container: ContainerDep,
    ctx: Ctx,
    digest: DigestQuery,
    format_name: FormatQuery = None,
) -> AttachmentOut:
    """Attach a VEX document (OpenVEX or CycloneDX VEX) to an image digest."""
    return await _upload(request, response, container, ctx, AttachmentKind.VEX, digest, format_name)


@router.post(
    "/attestations",
    status_code=201,
    openapi_extra=_raw_body(AttachmentKind.ATTESTATION),
    responses=_RESPONSES,
)
async def upload_attestation(
    request: Request,
    response: Response,
    container: ContainerDep,
    ctx: Ctx,
    digest: DigestQuery,
    format_name: FormatQuery = None,
) -> AttachmentOut:
    """Attach an attestation (an in-toto Statement or a DSSE envelope) to an image digest."""
    return await _upload(
        request, response, container, ctx, AttachmentKind.ATTESTATION, digest, format_name
    )


@router.post("/attachments", status_code=201, openapi_extra=_raw_body(None), responses=_RESPONSES)
async def upload_attachment(
    request: Request,
    response: Response,
    container: ContainerDep,
    ctx: Ctx,
    digest: DigestQuery,
    format_name: FormatQuery = None,
) -> AttachmentOut:
    """Attach a document of any kind, scan reports (trivy, grype, sarif, native) included."""
    return await _upload(request, response, container, ctx, None, digest, format_name)


@router.get("/attachments")
def list_attachments(
    container: ContainerDep,
    ctx: Ctx,
    page: Page,
    digest: DigestQuery,
    kind: AttachmentKind | None = None,
) -> ListOf[AttachmentOut]:
    """Metadata of an image's attachments, oldest first."""
    found = svc.list_attachments(container.uow, ctx, digest, page, kind)
    return ListOf(items=[AttachmentOut.of(a) for a in found.items], next_cursor=found.next_cursor)


@router.post("/attachments/discover")
def discover_attachments(container: ContainerDep, ctx: Ctx, spec: DiscoverSpec) -> DiscoveryOut:
    """Store the image's OCI referrers that are SBOMs, VEX or attestations (502: registry down).

    The referrers API is asked first; registries without it are read through the referrers
    tag schema (`sha256-<hex>`). Idempotent: documents already stored are listed as `existing`.
    """
    sources = referrer_source_factory(container.settings.registry_timeout_seconds)
    found = svc.discover_referrers(
        container.uow,
        ctx,
        spec.digest,
        spec.release,
        sources,
        container.settings.attachment_max_bytes,
        container.security_hook,
    )
    return DiscoveryOut(
        subjects=[SubjectOut(**s) for s in found.subjects],
        added=[AttachmentOut.of(a) for a in found.added],
        existing=[AttachmentOut.of(a) for a in found.existing],
        skipped=[SkippedOut(**s) for s in found.skipped],
    )


@router.get("/attachments/{ref}")
def get_attachment(container: ContainerDep, ctx: Ctx, ref: str) -> AttachmentOut:
    return AttachmentOut.of(svc.get_attachment(container.uow, ctx, ref))


@router.get(
    "/attachments/{ref}/content",
    response_class=Response,
    responses={200: {"description": "the document exactly as uploaded, with its media type"}},
)
def get_attachment_content(container: ContainerDep, ctx: Ctx, ref: str) -> Response:
    found, content = svc.attachment_content(container.uow, ctx, ref)
    return Response(
        content,
        media_type=found["media_type"],
        headers={"ETag": f'"{found["digest"]}"', "X-Content-Digest": found["digest"]},
    )
