"""/api/v1/evidence (sealed packets and the audit export) and /api/v1/audit (chain checks)."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from stella.adapters.evidence_bundle import BundleWriter
from stella.adapters.signing.dsse import verify_envelope
from stella.api.deps import ContainerDep, Ctx, Page
from stella.api.schemas import ListOf
from stella.bootstrap import Container
from stella.domain.evidence import EvidencePacket, PacketKind
from stella.domain.tenancy import Permission
from stella.services import audit_chain, evidence_export
from stella.services import evidence as svc
from stella.services.context import CallContext, require

router = APIRouter()


class PacketOut(BaseModel):
    id: str
    kind: str
    subject_id: str
    revision: int
    supersedes: str | None
    release_id: str | None
    environment_id: str | None
    promotion_id: str | None
    digest: str
    keyid: str
    sealed_at: datetime

    @classmethod
    def of(cls, packet: EvidencePacket) -> PacketOut:
        return cls(**svc.packet_summary(packet))


class PacketDetail(PacketOut):
    envelope: dict[str, Any]
    statement: dict[str, Any]


@router.get("/evidence", tags=["evidence"])
def list_evidence(
    container: ContainerDep,
    ctx: Ctx,
    page: Page,
    release: str | None = None,
    environment: str | None = None,
    from_: Annotated[str | None, Query(alias="from", description="2026-03-01 or RFC 3339")] = None,
    to: Annotated[str | None, Query(description="2026-03-31 (inclusive) or RFC 3339")] = None,
    kind: Annotated[PacketKind | None, Query(description="the kind of decision sealed")] = None,
) -> ListOf[PacketOut]:
    """Sealed evidence packets, newest first."""
    require(ctx, Permission.READ, container.uow, "read evidence")
    found = svc.list_packets(container.read_uow, ctx, page, release, environment, from_, to, kind)
    return ListOf(items=[PacketOut.of(p) for p in found.items], next_cursor=found.next_cursor)


def _stream(path: str) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 16):
            yield chunk


@router.get(
    "/evidence/export",
    tags=["evidence"],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/gzip": {}}}},
)
def export_evidence(
    container: ContainerDep,
    ctx: Ctx,
    from_: Annotated[str, Query(alias="from", description="first day, 2026-03-01")],
    to: Annotated[str, Query(description="last day (inclusive), 2026-03-31")],
    environment: str | None = None,
) -> StreamingResponse:
    """The period's packets, attachments, audit events, chain and checkpoint as one signed
    tar.gz that `stella evidence verify` checks offline."""
    request = evidence_export.plan_export(container.uow, ctx, from_, to, environment)
    return bundle_response(container, ctx, request, f"{from_}-{to}-{environment or 'all'}")


def bundle_response(
    container: Container, ctx: CallContext, request: evidence_export.ExportRequest, label: str
) -> StreamingResponse:
    """Write the bundle to a temporary file (its manifest needs every member's digest first),
    then stream it and delete it."""
    fd, path = tempfile.mkstemp(prefix="stella-evidence-", suffix=".tar.gz")
    try:
        with os.fdopen(fd, "wb") as handle:
            writer = BundleWriter(handle)
            evidence_export.write_bundle(
                container.uow,
                container.signing_key,
                container.signing_key.public_keys,
                ctx,
                request,
                writer,
            )
            writer.close()
    except BaseException:
        os.unlink(path)
        raise
    name = "stella-evidence-" + re.sub(r"[^A-Za-z0-9._-]", "_", label) + ".tar.gz"
    return StreamingResponse(
        _stream(path),
        media_type="application/gzip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
        background=BackgroundTask(os.unlink, path),
    )


@router.get("/evidence/{ref}", tags=["evidence"])
def get_evidence(container: ContainerDep, ctx: Ctx, ref: str) -> PacketDetail:
    """One packet (by id or `sha256:` digest): its index fields, envelope and statement."""
    require(ctx, Permission.READ, container.uow, "read evidence")
    packet = svc.get_packet(container.read_uow, ctx, ref)
    return PacketDetail(
        **svc.packet_summary(packet),
        envelope=packet.envelope,
        statement=audit_chain.statement_of(packet.envelope),
    )


class CorrectionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, description="why the packet is corrected")
    changes: dict[str, Any] = Field(
        default_factory=dict, description="what is corrected (free-form JSON, signed as given)"
    )


@router.post("/evidence/{ref}/corrections", status_code=201, tags=["evidence"])
def correct_evidence(
    container: ContainerDep, ctx: Ctx, ref: str, spec: CorrectionSpec
) -> PacketDetail:
    """Seal a correction (admin): a new revision that supersedes the packet; the original is
    kept unchanged. Correcting a packet that was already superseded is a 409."""
    packet = svc.correct_packet(
        container.uow, container.signing_key, ctx, ref, spec.reason, spec.changes
    )
    return PacketDetail(
        **svc.packet_summary(packet),
        envelope=packet.envelope,
        statement=audit_chain.statement_of(packet.envelope),
    )


@router.get("/audit/verify", tags=["audit"])
def verify_audit_chain(container: ContainerDep, ctx: Ctx) -> dict[str, Any]:
    """Walk the tenant's audit chain: links, row contents, signatures, latest checkpoint. The
    first problem found is named (`ok` false); nothing is changed."""
    report = audit_chain.verify_chain(
        container.read_uow, ctx, verify_envelope, container.signing_key.public_keys()
    )
    return report.to_json()


@router.get("/audit/checkpoints", tags=["audit"])
def list_checkpoints(container: ContainerDep, ctx: Ctx) -> dict[str, Any]:
    """Signed tree heads of the tenant's audit chain, newest first."""
    require(ctx, Permission.READ, container.uow, "read audit checkpoints")
    with container.read_uow() as uow:
        found = uow.chain.checkpoints(ctx.principal.tenant_id)
    return {"items": [audit_chain.checkpoint_summary(c) for c in found], "next_cursor": None}


@router.post("/audit/checkpoints", status_code=201, tags=["audit"])
def create_checkpoint(container: ContainerDep, ctx: Ctx) -> dict[str, Any]:
    """Sign a checkpoint of the chain as it is now (workers also do this periodically)."""
    require(ctx, Permission.ADMINISTER, container.uow, "sign audit checkpoints")
    with container.uow() as uow:
        values = audit_chain.checkpoint(
            uow, container.signing_key, ctx.principal.tenant_id, ctx.clock()
        )
        uow.commit()
    return audit_chain.checkpoint_summary(values)
