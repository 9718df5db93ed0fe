"""The tamper-evident audit chain: signed checkpoints and verification.

Every audit event and evidence packet is linked into its tenant's hash chain when it is
committed (see the unit of work). A checkpoint signs the chain's size and head hash, so even
someone able to rewrite rows and recompute every hash after them is caught: the recomputed head
no longer matches what the server signed.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stella.domain.evidence import (
    CHECKPOINT_PREDICATE,
    GENESIS_HASH,
    ChainEntry,
    ChainEntryType,
    ChainProblem,
    audit_event_digest,
    check_links,
    checkpoint_predicate,
    packet_content_digest,
)
from stella.domain.ids import new_id
from stella.domain.tenancy import Permission
from stella.services.context import CallContext, require
from stella.services.ports import Clock, DecisionSigner, UnitOfWork, UnitOfWorkFactory

EnvelopeVerifier = Any  # (envelope, public key PEM bytes) -> statement; raises on failure


def checkpoint(
    uow: UnitOfWork, signer: DecisionSigner, tenant_id: uuid.UUID, now: datetime
) -> dict[str, Any]:
    """Sign the tenant's current chain head (size, root hash, time) and store it."""
    size, root = uow.chain.head(tenant_id)
    predicate = checkpoint_predicate(tenant_id, size, root, now)
    subject = [
        {"name": f"audit-chain/{tenant_id}", "digest": {"sha256": root.removeprefix("sha256:")}}
    ]
    envelope = signer.sign_statement(subject, predicate, CHECKPOINT_PREDICATE)
    values = {
        "id": new_id(),
        "tenant_id": tenant_id,
        "size": size,
        "root_hash": root,
        "keyid": signer.keyid,
        "envelope": envelope,
        "created_at": now,
    }
    uow.signing_keys.register(signer.keyid, signer.public_key_pem, now)
    uow.chain.add_checkpoint(values)
    return values


def checkpoint_grown(uow_factory: UnitOfWorkFactory, signer: DecisionSigner, clock: Clock) -> int:
    """Periodic: checkpoint every tenant whose chain grew since its last checkpoint."""
    with uow_factory(read_only=True) as uow:
        tenants = uow.chain.tenants_grown_since_checkpoint()
    for tenant_id in tenants:
        with uow_factory() as uow:
            checkpoint(uow, signer, tenant_id, clock())
            uow.commit()
    return len(tenants)


def checkpoint_summary(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(values["id"]),
        "size": values["size"],
        "root_hash": values["root_hash"],
        "keyid": values["keyid"],
        "created_at": values["created_at"].isoformat(),
        "envelope": values["envelope"],
    }


@dataclass
class ChainReport:
    """What `stella audit verify` prints: how far the chain checked out, and the first problem."""

    size: int = 0
    checked: int = 0
    audit_events: int = 0
    evidence_packets: int = 0
    checkpoint: dict[str, Any] | None = None
    problem: ChainProblem | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "checked": self.checked,
            "audit_events": self.audit_events,
            "evidence_packets": self.evidence_packets,
            "checkpoint": self.checkpoint,
            "problem": None if self.problem is None else self.problem.to_json(),
            "warnings": self.warnings,
        }


def _content_problem(
    uow: UnitOfWork,
    entries: list[ChainEntry],
    verify: EnvelopeVerifier,
    keys: dict[str, str],
) -> ChainProblem | None:
    """Compare every entry with the row it names, as the row is now."""
    event_ids = [e.entry_id for e in entries if e.entry_type is ChainEntryType.AUDIT_EVENT]
    packet_ids = [e.entry_id for e in entries if e.entry_type is ChainEntryType.EVIDENCE_PACKET]
    events = uow.chain.audit_events(event_ids)
    packets = uow.evidence.by_ids(packet_ids)
    for entry in entries:
        where = (entry.seq, str(entry.entry_type), str(entry.entry_id))
        if entry.entry_type is ChainEntryType.AUDIT_EVENT:
            event = events.get(entry.entry_id)
            if event is None:
                return ChainProblem(*where, "the audit event was deleted")
            if audit_event_digest(event) != entry.content_digest:
                return ChainProblem(
                    *where,
                    f"audit event {event.id} ({event.action}) was altered after it was recorded",
                )
            continue
        packet = packets.get(entry.entry_id)
        if packet is None:
            return ChainProblem(*where, "the evidence packet was deleted")
        if packet_content_digest(packet.envelope) != entry.content_digest:
            return ChainProblem(*where, f"evidence packet {packet.id} was altered after sealing")
        problem = _packet_problem(packet.envelope, packet.keyid, packet.id, verify, keys)
        if problem:
            return ChainProblem(*where, problem)
    return None


def _packet_problem(
    envelope: dict[str, Any],
    keyid: str,
    identity: uuid.UUID,
    verify: EnvelopeVerifier,
    keys: dict[str, str],
) -> str | None:
    pem = keys.get(keyid)
    if pem is None:
        return f"evidence packet {identity} is signed by unknown key {keyid}"
    try:
        statement = verify(envelope, pem.encode())
    except Exception as exc:  # noqa: BLE001 - the verifier's reason is the report
        return f"evidence packet {identity}: {exc}"
    if statement["predicate"].get("packet", {}).get("id") != str(identity):
        return f"evidence packet {identity}: the signed packet id differs from the row's"
    return None


def _checkpoint_problem(
    cp: dict[str, Any],
    at: ChainEntry | None,
    size: int,
    verify: EnvelopeVerifier,
    keys: dict[str, str],
) -> ChainProblem | None:
    where = (int(cp["size"]), None, None)
    pem = keys.get(cp["keyid"])
    if pem is None:
        return ChainProblem(*where, f"the checkpoint is signed by unknown key {cp['keyid']}")
    try:
        statement = verify(cp["envelope"], pem.encode())
    except Exception as exc:  # noqa: BLE001 - the verifier's reason is the report
        return ChainProblem(*where, f"the checkpoint's signature does not verify: {exc}")
    signed = statement["predicate"]
    if signed.get("size") != cp["size"] or signed.get("root_hash") != cp["root_hash"]:
        return ChainProblem(*where, "the checkpoint row differs from what was signed")
    if cp["size"] > size:
        return ChainProblem(
            *where,
            f"the chain was truncated: a checkpoint covers {cp['size']} entries, "
            f"only {size} remain",
        )
    root = GENESIS_HASH if at is None else at.entry_hash
    if root != cp["root_hash"]:
        return ChainProblem(
            *where,
            f"the chain was rewritten: entry {cp['size']} no longer hashes to the signed "
            "checkpoint's root",
        )
    return None


def known_public_keys(
    ring_keys: dict[str, str], registered: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """Every public key the server signs or signed with, by key id: the key ring's (current and
    retired) first, then keys registered in the database (`signing_keys` rows) that the ring no
    longer holds."""
    found = dict(ring_keys)
    for row in registered:
        found.setdefault(row["keyid"], row["public_key_pem"])
    return found


def verify_chain(
    uow_factory: UnitOfWorkFactory,
    ctx: CallContext,
    verify: EnvelopeVerifier,
    known_keys: dict[str, str],
    batch: int = 2000,
) -> ChainReport:
    """Walk the caller's tenant chain: links, row contents, signatures, checkpoint."""
    require(ctx, Permission.READ, uow_factory, "verify the audit chain")
    tenant_id = ctx.principal.tenant_id
    report = ChainReport()
    with uow_factory(read_only=True) as uow:
        keys = known_public_keys(known_keys, uow.signing_keys.all())
        size, head = uow.chain.head(tenant_id)
        report.size = size
        prev, seq = GENESIS_HASH, 1
        while report.problem is None:
            entries = uow.chain.entries(tenant_id, seq, limit=batch)
            if not entries:
                break
            report.problem = check_links(entries, prev) or (
                None
                if entries[0].seq == seq
                else ChainProblem(seq, None, None, f"entry {seq} is missing")
            )
            report.problem = report.problem or _content_problem(uow, entries, verify, keys)
            if report.problem is None:
                report.checked += len(entries)
                report.audit_events += sum(
                    e.entry_type is ChainEntryType.AUDIT_EVENT for e in entries
                )
                report.evidence_packets += len(entries) - sum(
                    e.entry_type is ChainEntryType.AUDIT_EVENT for e in entries
                )
                prev, seq = entries[-1].entry_hash, entries[-1].seq + 1
        if report.problem is not None and report.problem.seq is not None:
            report.checked = report.problem.seq - 1  # everything before it checked out
        if report.problem is None and (report.checked != size or prev != head):
            report.problem = ChainProblem(
                report.checked,
                None,
                None,
                f"the chain head says {size} entries ending in {head}, "
                f"the entries end at {report.checked} with {prev}",
            )
        cp = uow.chain.latest_checkpoint(tenant_id)
        if report.problem is None and cp is not None:
            at = uow.chain.entry_at(tenant_id, int(cp["size"])) if cp["size"] else None
            report.problem = _checkpoint_problem(cp, at, report.checked, verify, keys)
        if cp is not None:
            report.checkpoint = {k: v for k, v in checkpoint_summary(cp).items() if k != "envelope"}
        else:
            report.warnings.append("no signed checkpoint yet (workers sign one periodically)")
        if report.problem is None:
            unchained = uow.chain.count_audit_events(tenant_id) - report.audit_events
            if unchained:
                report.problem = ChainProblem(
                    None, "audit_event", None, f"{unchained} audit event(s) are not in the chain "
                    "(inserted behind the server's back)",
                )  # fmt: skip
    return report


def statement_of(envelope: dict[str, Any]) -> dict[str, Any]:
    """The (unverified) statement inside an envelope, for display."""
    result: dict[str, Any] = json.loads(base64.b64decode(envelope["payload"]))
    return result
