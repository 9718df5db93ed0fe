"""Audit export: every evidence packet of a period in one signed, offline-verifiable bundle.

Layout (documented in docs/evidence.md and in the bundle's README.md):

    manifest.dsse.json          signed in-toto Statement; its subjects are every other member
    README.md                   how to verify, for the person who receives the bundle
    packets/<id>.dsse.json      the sealed packets (DSSE envelopes), one per decision/deployment
    attachments/index.json      SBOMs, VEX, scans, attestations the packets reference...
    attachments/<sha256 hex>    ...byte for byte
    audit/events.jsonl          the audit events of the period
    chain/entries.jsonl         the hash-chain links from the first exported entry to...
    chain/checkpoint.dsse.json  ...a checkpoint signed at export time
    keys/<keyid hex>.pub.pem    the public keys that signed anything in the bundle
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from stella.domain.canonical import canonical_json
from stella.domain.errors import ValidationFailed
from stella.domain.evidence import (
    BUNDLE_FORMAT,
    BUNDLE_PREDICATE,
    ChainEntryType,
    EvidencePacket,
    audit_event_document,
)
from stella.domain.tenancy import Permission
from stella.services import audit_chain
from stella.services.context import CallContext, record, require
from stella.services.evidence import parse_day_or_time, statement_digest
from stella.services.ports import DecisionSigner, UnitOfWorkFactory

README = """# Stella evidence bundle

This archive holds the sealed evidence of one period: one packet per promotion decision and per
deployment, the SBOMs/VEX/scans/attestations they reference, the audit events, and the part of
the tamper-evident audit chain that covers them, up to a checkpoint signed at export time.

Verify it offline (no server, no network) with the orchestrator's published public key:

    stella evidence verify THIS_FILE.tar.gz --key stella-public.pem

The verifier checks the signed manifest against every member, every packet's signature, the
chain links up to the signed checkpoint, that every packet and event is in the chain, and
replays every promotion decision from its recorded gate context.

Layout: manifest.dsse.json (signed list of every member's sha256), packets/<id>.dsse.json,
attachments/index.json + attachments/<sha256>, audit/events.jsonl, chain/entries.jsonl,
chain/checkpoint.dsse.json, keys/<keyid>.pub.pem.
"""


class BundleSink(Protocol):
    """Where the members go (a tar.gz writer); `digests` maps member names to sha256."""

    @property
    def digests(self) -> dict[str, str]: ...

    def add(self, name: str, data: bytes) -> str: ...


@dataclass(frozen=True)
class ExportRequest:
    since: datetime
    until: datetime
    environment_id: uuid.UUID | None
    environment: str | None
    label: str  # e.g. 2026-03-01..2026-03-31


def plan_export(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    since: str | None,
    until: str | None,
    environment: str | None,
) -> ExportRequest:
    """Check the request before anything is written: both ends given, in order."""
    require(ctx, Permission.READ, uow_factory, "export evidence")
    start = parse_day_or_time("from", since)
    end = parse_day_or_time("to", until, end=True)
    if start is None:
        raise ValidationFailed.single("from", "is required (e.g. 2026-03-01)")
    if end is None:
        raise ValidationFailed.single("to", "is required (e.g. 2026-03-31)")
    if end <= start:
        raise ValidationFailed.single("to", "must not be before `from`")
    environment_id = None
    if environment:
        with uow_factory(read_only=True) as uow:
            env = uow.environments.get(ctx.principal.tenant_id, environment)
        if env is None:
            raise ValidationFailed.single("environment", f"environment '{environment}' not found")
        environment_id = env.id
    return ExportRequest(start, end, environment_id, environment, f"{since}..{until}")


def _json(value: Any) -> bytes:
    return canonical_json(value)


def _hex(keyid: str) -> str:
    return keyid.removeprefix("sha256:")


def write_bundle(
    uow_factory: UnitOfWorkFactory,
    signer: DecisionSigner,
    public_keys: Callable[[], dict[str, str]],
    ctx: CallContext,
    request: ExportRequest,
    sink: BundleSink,
) -> dict[str, Any]:
    """Write the bundle's members into `sink`; returns the manifest's predicate."""
    tenant_id = ctx.principal.tenant_id
    packets: list[EvidencePacket] = []
    attachment_digests: dict[str, dict[str, Any]] = {}
    subjects: set[str] = set()
    events_lines: list[bytes] = []
    with uow_factory(read_only=True) as uow:
        for packet in uow.evidence.in_period(
            tenant_id, request.since, request.until, request.environment_id
        ):
            packets.append(packet)
            sink.add(f"packets/{packet.id}.dsse.json", _json(packet.envelope))
            statement = audit_chain.statement_of(packet.envelope)
            for attachment in statement["predicate"].get("attachments", []):
                attachment_digests.setdefault(attachment["digest"], attachment)
            ids = (packet.subject_id, packet.promotion_id, packet.release_id)
            subjects |= {str(i) for i in ids if i is not None}
        index = []
        for digest_value, attachment in sorted(attachment_digests.items()):
            content = uow.attachments.content(tenant_id, digest_value)
            if content is None:
                continue
            sink.add(f"attachments/{digest_value.removeprefix('sha256:')}", content)
            index.append(attachment)
        sink.add("attachments/index.json", _json(index))
        event_ids: list[uuid.UUID] = []
        for event in uow.chain.audit_events_in_period(tenant_id, request.since, request.until):
            if request.environment_id is not None and event.resource_id not in subjects:
                continue
            event_ids.append(event.id)
            events_lines.append(_json(audit_event_document(event)) + b"\n")
        sink.add("audit/events.jsonl", b"".join(events_lines))
        first = [
            e.seq
            for e in uow.chain.entries_for(
                tenant_id, ChainEntryType.AUDIT_EVENT, event_ids
            ).values()
        ] + [
            e.seq
            for e in uow.chain.entries_for(
                tenant_id, ChainEntryType.EVIDENCE_PACKET, [p.id for p in packets]
            ).values()
        ]
    with uow_factory() as uow:
        checkpoint = audit_chain.checkpoint(uow, signer, tenant_id, ctx.clock())
        record(
            uow,
            ctx,
            "evidence.exported",
            "evidence",
            None,
            {
                "from": request.since.isoformat(),
                "to": request.until.isoformat(),
                "environment": request.environment,
                "packets": len(packets),
                "checkpoint_size": checkpoint["size"],
            },
        )
        uow.commit()
    size = int(checkpoint["size"])
    start = min(first) if first else size + 1
    lines: list[bytes] = []
    with uow_factory(read_only=True) as uow:
        seq = start
        while seq <= size:
            entries = uow.chain.entries(tenant_id, seq, size, 5000)
            if not entries:
                break
            lines += [_json(e.to_json()) + b"\n" for e in entries]
            seq = entries[-1].seq + 1
    sink.add("chain/entries.jsonl", b"".join(lines))
    sink.add("chain/checkpoint.dsse.json", _json(checkpoint["envelope"]))
    keys = public_keys()
    used = {p.keyid for p in packets} | {checkpoint["keyid"], signer.keyid}
    for keyid in sorted(used):
        if keyid in keys:
            sink.add(f"keys/{_hex(keyid)}.pub.pem", keys[keyid].encode())
    sink.add("README.md", README.encode())
    predicate = {
        "format": BUNDLE_FORMAT,
        "tenant_id": str(tenant_id),
        "period": {"from": request.since.isoformat(), "to": request.until.isoformat()},
        "environment": request.environment,
        "created_at": ctx.clock().isoformat(),
        "created_by": ctx.principal.name,
        "counts": {
            "packets": len(packets),
            "attachments": len(index),
            "audit_events": len(events_lines),
            "chain_entries": len(lines),
        },
        "checkpoint": {"size": size, "root_hash": checkpoint["root_hash"]},
        "chain": {"from_seq": start, "to_seq": size},
        "packets": [
            {
                "id": str(p.id),
                "kind": str(p.kind),
                "digest": statement_digest(p.envelope),
                "sealed_at": p.sealed_at.isoformat(),
            }
            for p in packets
        ],
    }
    manifest_subjects = [
        {"name": name, "digest": {"sha256": value.removeprefix("sha256:")}}
        for name, value in sorted(sink.digests.items())
    ]
    envelope = signer.sign_statement(manifest_subjects, predicate, BUNDLE_PREDICATE)
    sink.add("manifest.dsse.json", json.dumps(envelope, indent=2).encode())
    return predicate
