"""Evidence: sealed packets, the tamper-evident audit chain and its signed checkpoints.

Pure definitions shared by the server (which writes them) and the offline verifier (which only
has a bundle and a public key): how a chain link is hashed, what digest an audit event or a
packet contributes to the chain, and the predicate types of what gets signed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from stella.domain.audit import AuditEvent
from stella.domain.canonical import digest

GENESIS_HASH = "sha256:" + "0" * 64
PACKET_NAMESPACE = uuid.UUID("8f4a7c52-36a5-4c0e-9d1e-6c3f1b0d2e71")

DECISION_PREDICATE = "https://stella-ops.org/evidence/promotion-decision/v1"
DEPLOYMENT_PREDICATE = "https://stella-ops.org/evidence/deployment/v1"
CHECKPOINT_PREDICATE = "https://stella-ops.org/attestations/audit-checkpoint/v1"
BUNDLE_PREDICATE = "https://stella-ops.org/evidence/bundle/v1"
BUNDLE_FORMAT = "stella-evidence-bundle/1"


class PacketKind(StrEnum):
    PROMOTION_DECISION = "promotion_decision"
    DEPLOYMENT = "deployment"

    @property
    def predicate_type(self) -> str:
        return DECISION_PREDICATE if self is PacketKind.PROMOTION_DECISION else DEPLOYMENT_PREDICATE


class ChainEntryType(StrEnum):
    AUDIT_EVENT = "audit_event"
    EVIDENCE_PACKET = "evidence_packet"


def packet_id(kind: PacketKind, subject_id: uuid.UUID, revision: int = 1) -> uuid.UUID:
    """Packets have deterministic ids, so a deployment's sticker can name its packet before
    the packet is sealed (the packet describes how the deployment ended)."""
    return uuid.uuid5(PACKET_NAMESPACE, f"{kind}:{subject_id}:{revision}")


@dataclass(frozen=True, slots=True)
class EvidencePacket:
    """A sealed packet: the DSSE envelope is the evidence; the other fields index it."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    kind: PacketKind
    subject_id: uuid.UUID
    revision: int
    supersedes: uuid.UUID | None
    release_id: uuid.UUID | None
    environment_id: uuid.UUID | None
    promotion_id: uuid.UUID | None
    digest: str
    keyid: str
    envelope: dict[str, Any]
    sealed_at: datetime


@dataclass(frozen=True, slots=True)
class ChainEntry:
    """One link: what was appended (type, id, content digest) and the hash that binds it to
    everything appended before it."""

    tenant_id: uuid.UUID
    seq: int
    entry_type: ChainEntryType
    entry_id: uuid.UUID
    content_digest: str
    prev_hash: str
    entry_hash: str
    recorded_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "entry_type": str(self.entry_type),
            "entry_id": str(self.entry_id),
            "content_digest": self.content_digest,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
            "recorded_at": self.recorded_at.isoformat(),
        }


def link_hash(seq: int, prev_hash: str, entry_type: str, entry_id: str, content: str) -> str:
    """The hash of chain entry `seq`: the canonical JSON of the link's fields, so changing any
    entry changes every hash after it."""
    return digest(
        {
            "seq": seq,
            "prev": prev_hash,
            "type": entry_type,
            "id": entry_id,
            "content": content,
        }
    )


def audit_event_document(event: AuditEvent) -> dict[str, Any]:
    """An audit event as JSON, exactly as the chain hashes it and a bundle carries it."""
    return {
        "id": str(event.id),
        "tenant_id": str(event.tenant_id),
        "actor_id": None if event.actor_id is None else str(event.actor_id),
        "actor_name": event.actor_name,
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "occurred_at": event.occurred_at.isoformat(),
        "correlation_id": event.correlation_id,
        "details": event.details,
    }


def audit_event_digest(event: AuditEvent) -> str:
    return digest(audit_event_document(event))


def packet_content_digest(envelope: dict[str, Any]) -> str:
    """What a packet contributes to the chain: its whole envelope (payload and signatures)."""
    return digest(envelope)


def checkpoint_predicate(
    tenant_id: uuid.UUID, size: int, root_hash: str, created_at: datetime
) -> dict[str, Any]:
    """A signed tree head: the chain of `tenant_id` had `size` entries ending in `root_hash`."""
    return {
        "tenant_id": str(tenant_id),
        "size": size,
        "root_hash": root_hash,
        "created_at": created_at.isoformat(),
        "time_source": "system clock (UTC)",
    }


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first thing wrong with a chain: where and why."""

    seq: int | None
    entry_type: str | None
    entry_id: str | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "entry_type": self.entry_type,
            "entry_id": self.entry_id,
            "reason": self.reason,
        }


def check_links(entries: list[ChainEntry], expected_prev: str) -> ChainProblem | None:
    """The first broken link in consecutive `entries` whose first entry follows `expected_prev`."""
    prev = expected_prev
    expected_seq = entries[0].seq if entries else 0
    for entry in entries:
        where = (entry.seq, str(entry.entry_type), str(entry.entry_id))
        if entry.seq != expected_seq:
            return ChainProblem(
                *where, f"entry {expected_seq} is missing (the chain jumps to {entry.seq})"
            )
        if entry.prev_hash != prev:
            return ChainProblem(
                *where, "the link to the previous entry is broken (prev_hash does not match)"
            )
        recomputed = link_hash(
            entry.seq, entry.prev_hash, str(entry.entry_type), str(entry.entry_id),
            entry.content_digest,
        )  # fmt: skip
        if recomputed != entry.entry_hash:
            return ChainProblem(*where, "the entry's hash does not match its contents")
        prev = entry.entry_hash
        expected_seq += 1
    return None
