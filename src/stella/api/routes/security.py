"""/api/v1 scans, advisories, exposure, waivers and security verdicts."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from stella.api.deps import ContainerDep, Ctx
from stella.domain.attachment_formats import DocumentRejected
from stella.domain.durations import parse_duration
from stella.domain.errors import NotFound, PayloadTooLarge, ValidationFailed
from stella.domain.tenancy import Permission
from stella.services import security as svc
from stella.services.context import require
from stella.services.specs import ScanSpec

router = APIRouter()
UPLOAD_PATHS = frozenset({"/api/v1/scans", "/api/v1/advisories/import"})


def _scan_out(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(values["id"]),
        "digest": values["digest"],
        "format": values["format"],
        "blocking": values["blocking"],
        "findings": len(values["findings"]),
        "report_digest": values.get("report_digest"),
        "created_at": values["created_at"].isoformat(),
    }


@router.post("/scans", status_code=201, tags=["security"])
def upload_scan(container: ContainerDep, ctx: Ctx, spec: ScanSpec) -> dict[str, Any]:
    """A scan of one image digest: the native `findings`, or a scanner's `report` (Trivy,
    Grype, SARIF 2.1, CycloneDX with vulnerabilities, native). The report (for the native
    shorthand, `{"findings": [...]}`) is kept as evidence, normalised to findings, and the
    digest's verdicts are recomputed."""
    report = spec.report
    if report is None:
        if spec.format != "native":
            raise ValidationFailed.single("report", f"a {spec.format} scan needs its `report`")
        # the shorthand is the native report's findings: stored as that report, like any other
        report = {"findings": [f.model_dump(exclude_none=True) for f in spec.findings]}
    try:  # the report, parsed with the request, is not parsed again: NaN is refused here
        content = json.dumps(report, ensure_ascii=False, allow_nan=False).encode()
    except ValueError as exc:
        raise ValidationFailed.single("report", f"not JSON: {exc}") from None
    try:
        values = svc.record_scan_report(
            container.security,
            ctx,
            spec.digest,
            spec.format,
            content,
            report,
            container.settings.attachment_max_bytes,
        )
    except DocumentRejected as exc:
        raise ValidationFailed.single("report", str(exc)) from None
    return _scan_out(values)


@router.get("/scans/{scan_id}", tags=["security"])
def get_scan(container: ContainerDep, ctx: Ctx, scan_id: str) -> dict[str, Any]:
    """One scan with its normalised findings."""
    require(ctx, Permission.READ, container.uow, "read scans")
    with container.read_uow() as uow:
        found = uow.verdicts.get(ctx.principal.tenant_id, scan_id)
    if found is None:
        msg = f"scan '{scan_id}' not found"
        raise NotFound(msg)
    return _scan_out(found) | {
        "findings": [f.to_json() for f in svc.stored_findings(found)],
        "created_by": found["created_by_name"],
    }


@router.post("/advisories/import", tags=["security"])
async def import_advisories(request: Request, container: ContainerDep, ctx: Ctx) -> dict[str, Any]:
    """Import OSV advisories (admin): the body is a zip of OSV JSON files
    (`application/zip`), or JSON (one advisory or a list). Idempotent; invalid advisories are
    skipped and reported, the rest imported; every stored SBOM is matched again and changed
    verdicts are returned (and notified)."""
    body = await request.body()
    if len(body) > container.settings.attachment_max_bytes:
        msg = f"the feed is larger than {container.settings.attachment_max_bytes} bytes"
        raise PayloadTooLarge(msg)
    if not body:
        raise ValidationFailed.single("body", "send a zip of OSV files or OSV JSON")
    zipped = body[:4] == b"PK\x03\x04"
    if not zipped:
        try:
            json.loads(body)
        except ValueError as exc:
            raise ValidationFailed.single(
                "body", f"neither a zip of OSV files nor JSON ({exc})"
            ) from None
    fd, name = tempfile.mkstemp(suffix=".zip" if zipped else ".json")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(body)
        summary = await run_in_threadpool(_import, container, ctx, Path(name))
    finally:
        os.unlink(name)
    return summary


def _import(container: Any, ctx: Any, path: Path) -> dict[str, Any]:
    try:
        return svc.import_advisories(container.security, ctx, path).to_json()
    except ValueError as exc:  # not a zip, not JSON: the reader says why
        raise ValidationFailed.single("body", str(exc)) from None


@router.get("/advisories/{advisory_id}", tags=["security"])
def get_advisory(container: ContainerDep, ctx: Ctx, advisory_id: str) -> dict[str, Any]:
    require(ctx, Permission.READ, container.uow, "read advisories")
    with container.read_uow() as uow:
        ids = uow.advisories.ids_for(ctx.principal.tenant_id, advisory_id)
        candidates = (uow.advisories.get(ctx.principal.tenant_id, i) for i in ids)
        found = next((a for a in candidates if a is not None), None)
    if found is None:
        msg = f"advisory '{advisory_id}' not found"
        raise NotFound(msg)
    return {
        "id": found.id,
        "aliases": list(found.aliases),
        "summary": found.summary,
        "severity": found.severity,
        "cvss_score": found.cvss_score,
        "cvss_vector": found.cvss_vector,
        "modified": found.modified.isoformat() if found.modified else None,
        "affected": list(found.affected),
    }


@router.get("/exposure", tags=["security"])
def exposure(
    container: ContainerDep,
    ctx: Ctx,
    advisory: Annotated[str, Query(min_length=1, max_length=128, description="CVE-…, GHSA-…")],
) -> dict[str, Any]:
    """Which environments and targets run an image affected by the advisory now, and which
    releases contain one."""
    return svc.exposure(container.read_uow, ctx, advisory)


class WaiverSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advisory: str = Field(min_length=1, max_length=128)
    package: str = Field(min_length=1, max_length=1024, description="package name or purl")
    reason: str = Field(min_length=1, max_length=2000)
    expires_at: datetime | None = Field(default=None, description="RFC 3339, with a zone")
    ttl: str | None = Field(default=None, description="or a duration from now: 7d, 72h, P30D")
    environment: str | None = Field(default=None, max_length=63)


def _waiver_out(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(values["id"]),
        "advisory": values["advisory_id"],
        "package": values["package"],
        "environment": values["environment"],
        "reason": values["reason"],
        "expires_at": values["expires_at"].isoformat(),
        "created_at": values["created_at"].isoformat(),
        "created_by": values["created_by_name"],
        "revoked_at": values["revoked_at"].isoformat() if values["revoked_at"] else None,
    }


@router.post("/waivers", status_code=201, tags=["security"])
def create_waiver(container: ContainerDep, ctx: Ctx, spec: WaiverSpec) -> dict[str, Any]:
    """An explicit, expiring, audited exception for one advisory on one package (admin)."""
    now = ctx.clock()
    if (spec.expires_at is None) == (spec.ttl is None):
        raise ValidationFailed.single("expires_at", "give exactly one of expires_at and ttl")
    if spec.expires_at is not None:
        if spec.expires_at.tzinfo is None:
            raise ValidationFailed.single("expires_at", "needs a zone (e.g. Z)")
        expires = spec.expires_at
    else:
        assert spec.ttl is not None  # noqa: S101 - checked above
        try:
            expires = now + parse_duration(spec.ttl)
        except ValueError as exc:
            raise ValidationFailed.single("ttl", str(exc)) from None
    values = svc.create_waiver(
        container.security, ctx, spec.advisory, spec.package, spec.reason, expires, spec.environment
    )
    return _waiver_out(values)


@router.get("/waivers", tags=["security"])
def list_waivers(
    container: ContainerDep, ctx: Ctx, include_revoked: bool = False
) -> dict[str, Any]:
    require(ctx, Permission.READ, container.uow, "read waivers")
    with container.read_uow() as uow:
        found = uow.waivers.listed(ctx.principal.tenant_id, include_revoked)
    return {"items": [_waiver_out(w) for w in found], "next_cursor": None}


@router.post("/waivers/{waiver_id}/revoke", tags=["security"])
def revoke_waiver(container: ContainerDep, ctx: Ctx, waiver_id: str) -> dict[str, Any]:
    return _waiver_out(svc.revoke_waiver(container.security, ctx, waiver_id))


@router.get("/verdicts", tags=["security"])
def verdicts(
    container: ContainerDep,
    ctx: Ctx,
    digest: Annotated[str, Query(pattern=r"^sha256:[a-f0-9]{64}$")],
) -> dict[str, Any]:
    """The digest's current verdict in every environment, computed now, and its history of
    recorded changes."""
    return svc.verdicts_now(container.security, ctx, digest)
