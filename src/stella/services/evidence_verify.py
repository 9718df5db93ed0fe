"""Offline verification of an evidence bundle: needs the bundle and a public key, nothing else.

Checks, in order, stopping at the first problem (which it names):
1. the manifest is signed by a trusted key, and lists every member with its sha256;
2. every member is present, unaltered, and nothing else is in the bundle;
3. every packet is signed by a trusted key and is the packet its name and the manifest say;
4. the chain links recompute from the first exported entry to the signed checkpoint, and every
   packet and audit event in the bundle is in the chain with the same content digest;
5. every promotion decision replays: the gates, run again on the recorded context, give the
   signed results, outcome and reason.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stella.domain.audit import AuditEvent
from stella.domain.canonical import canonical_json, digest
from stella.domain.evidence import (
    BUNDLE_PREDICATE,
    CHECKPOINT_PREDICATE,
    ChainEntry,
    ChainEntryType,
    audit_event_digest,
    check_links,
    packet_content_digest,
)
from stella.services import gates

EnvelopeVerifier = Callable[[Any, bytes], dict[str, Any]]
KeyIdOf = Callable[[bytes], str]


class BundleInvalid(Exception):
    """The first problem found in a bundle."""


@dataclass
class BundleReport:
    packets: int = 0
    decisions_replayed: int = 0
    deployments: int = 0
    audit_events: int = 0
    attachments: int = 0
    chain_entries: int = 0
    checkpoint: dict[str, Any] = field(default_factory=dict)
    period: dict[str, Any] = field(default_factory=dict)
    environment: str | None = None
    summary: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problem": self.problem,
            "period": self.period,
            "environment": self.environment,
            "packets": self.packets,
            "decisions_replayed": self.decisions_replayed,
            "deployments": self.deployments,
            "audit_events": self.audit_events,
            "attachments": self.attachments,
            "chain_entries": self.chain_entries,
            "checkpoint": self.checkpoint,
            "summary": self.summary,
        }


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(members: dict[str, bytes], name: str) -> Any:
    try:
        return json.loads(members[name])
    except KeyError:
        msg = f"{name} is missing from the bundle"
        raise BundleInvalid(msg) from None
    except ValueError as exc:
        msg = f"{name} is not JSON ({exc})"
        raise BundleInvalid(msg) from None


class _Verifier:
    def __init__(
        self,
        members: dict[str, bytes],
        trusted: dict[str, bytes],
        verify_envelope: EnvelopeVerifier,
        evaluator: gates.PolicyEvaluator,
    ) -> None:
        self.members = members
        self.trusted = trusted  # keyid -> PEM
        self.verify_envelope = verify_envelope
        self.evaluator = evaluator
        self.report = BundleReport()

    def signed(self, name: str, envelope: Any, predicate_type: str | None) -> dict[str, Any]:
        """The statement of an envelope signed by a trusted key."""
        signatures = envelope.get("signatures") if isinstance(envelope, dict) else None
        keyids = [s.get("keyid") for s in signatures or [] if isinstance(s, dict)]
        usable = [k for k in keyids if k in self.trusted]
        if not usable:
            shown = ", ".join(str(k) for k in keyids) or "no key"
            msg = f"{name} is signed by an unknown key ({shown}), not by the key given"
            raise BundleInvalid(msg)
        try:
            statement = self.verify_envelope(envelope, self.trusted[usable[0]])
        except Exception as exc:  # noqa: BLE001 - the verifier's reason is the report
            msg = f"{name}: {exc}"
            raise BundleInvalid(msg) from None
        if predicate_type and statement.get("predicateType") != predicate_type:
            msg = f"{name} is not a {predicate_type} statement"
            raise BundleInvalid(msg)
        return statement

    def manifest(self) -> dict[str, Any]:
        statement = self.signed(
            "manifest.dsse.json", _json(self.members, "manifest.dsse.json"), BUNDLE_PREDICATE
        )
        listed: dict[str, str] = {}
        for subject in statement.get("subject", []):
            listed[subject["name"]] = "sha256:" + subject["digest"]["sha256"]
        for name, expected in sorted(listed.items()):
            if name not in self.members:
                msg = f"{name} is missing from the bundle (the manifest lists it)"
                raise BundleInvalid(msg)
            actual = _sha256(self.members[name])
            if actual != expected:
                msg = f"{name} was altered (sha256 {actual}, the manifest says {expected})"
                raise BundleInvalid(msg)
        extra = sorted(set(self.members) - set(listed) - {"manifest.dsse.json"})
        if extra:
            msg = f"{extra[0]} is in the bundle but not in its signed manifest"
            raise BundleInvalid(msg)
        predicate: dict[str, Any] = statement["predicate"]
        self.report.period = predicate.get("period", {})
        self.report.environment = predicate.get("environment")
        return predicate

    def packets(self, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
        statements: dict[str, dict[str, Any]] = {}
        for entry in manifest.get("packets", []):
            name = f"packets/{entry['id']}.dsse.json"
            envelope = _json(self.members, name)
            statement = self.signed(name, envelope, None)
            packet = statement["predicate"].get("packet", {})
            if packet.get("id") != entry["id"]:
                msg = f"{name} holds packet {packet.get('id')}, not {entry['id']}"
                raise BundleInvalid(msg)
            payload_digest = _sha256(_payload(envelope))
            if payload_digest != entry["digest"]:
                msg = f"{name}: its digest {payload_digest} differs from the manifest's"
                raise BundleInvalid(msg)
            statements[entry["id"]] = {"statement": statement, "envelope": envelope}
        unlisted = sorted(
            n for n in self.members if n.startswith("packets/") and n[8:-10] not in statements
        )
        if unlisted:
            msg = f"{unlisted[0]} is not a packet the manifest lists"
            raise BundleInvalid(msg)
        self.report.packets = len(statements)
        return statements

    def attachments(self, statements: dict[str, dict[str, Any]]) -> None:
        index = _json(self.members, "attachments/index.json")
        present = {a["digest"] for a in index}
        for item in index:
            name = f"attachments/{item['digest'].removeprefix('sha256:')}"
            if name not in self.members or _sha256(self.members[name]) != item["digest"]:
                msg = f"{name} is missing or does not hash to its name"
                raise BundleInvalid(msg)
        for packet_id, found in statements.items():
            for ref in found["statement"]["predicate"].get("attachments", []):
                if ref["digest"] not in present:
                    msg = f"packet {packet_id} references attachment {ref['digest']}, absent"
                    raise BundleInvalid(msg)
        self.report.attachments = len(index)

    def chain(
        self, manifest: dict[str, Any], statements: dict[str, dict[str, Any]]
    ) -> dict[str, ChainEntry]:
        checkpoint = self.signed(
            "chain/checkpoint.dsse.json",
            _json(self.members, "chain/checkpoint.dsse.json"),
            CHECKPOINT_PREDICATE,
        )["predicate"]
        self.report.checkpoint = {k: checkpoint[k] for k in ("size", "root_hash", "created_at")}
        if checkpoint["size"] != manifest["checkpoint"]["size"]:
            msg = "chain/checkpoint.dsse.json is not the checkpoint the manifest names"
            raise BundleInvalid(msg)
        entries = []
        for number, line in enumerate(self.members["chain/entries.jsonl"].splitlines(), 1):
            try:
                raw = json.loads(line)
                entries.append(
                    ChainEntry(
                        tenant_id=uuid.UUID(int=0),
                        seq=int(raw["seq"]),
                        entry_type=ChainEntryType(raw["entry_type"]),
                        entry_id=uuid.UUID(raw["entry_id"]),
                        content_digest=raw["content_digest"],
                        prev_hash=raw["prev_hash"],
                        entry_hash=raw["entry_hash"],
                        recorded_at=datetime.fromisoformat(raw["recorded_at"]),
                    )
                )
            except (ValueError, KeyError, TypeError):
                msg = f"chain/entries.jsonl line {number} is not a chain entry"
                raise BundleInvalid(msg) from None
        self.report.chain_entries = len(entries)
        if entries:
            problem = check_links(entries, entries[0].prev_hash)
            if problem:
                msg = f"chain entry {problem.seq}: {problem.reason}"
                raise BundleInvalid(msg)
            if entries[0].seq != manifest["chain"]["from_seq"]:
                msg = "chain/entries.jsonl does not start where the manifest says"
                raise BundleInvalid(msg)
        last = entries[-1] if entries else None
        if checkpoint["size"] and (last is None or last.seq != checkpoint["size"]):
            end = 0 if last is None else last.seq
            if statements or end:
                msg = (
                    f"the chain is truncated: its entries end at {end}, the signed checkpoint "
                    f"covers {checkpoint['size']}"
                )
                raise BundleInvalid(msg)
        if last is not None and last.entry_hash != checkpoint["root_hash"]:
            msg = "the chain does not end in the signed checkpoint's root hash"
            raise BundleInvalid(msg)
        by_id = {str(e.entry_id): e for e in entries}
        for packet_id, found in statements.items():
            entry = by_id.get(packet_id)
            if entry is None or entry.entry_type is not ChainEntryType.EVIDENCE_PACKET:
                msg = f"packet {packet_id} is not in the audit chain"
                raise BundleInvalid(msg)
            if entry.content_digest != packet_content_digest(found["envelope"]):
                msg = f"packet {packet_id} differs from what the audit chain recorded"
                raise BundleInvalid(msg)
        return by_id

    def events(self, chain: dict[str, ChainEntry]) -> None:
        lines = self.members["audit/events.jsonl"].splitlines()
        for number, line in enumerate(lines, 1):
            try:
                raw = json.loads(line)
                event = AuditEvent(
                    id=uuid.UUID(raw["id"]),
                    tenant_id=uuid.UUID(raw["tenant_id"]),
                    actor_id=uuid.UUID(raw["actor_id"]) if raw["actor_id"] else None,
                    actor_name=raw["actor_name"],
                    action=raw["action"],
                    resource_type=raw["resource_type"],
                    resource_id=raw["resource_id"],
                    occurred_at=datetime.fromisoformat(raw["occurred_at"]),
                    correlation_id=raw["correlation_id"],
                    details=raw["details"],
                )
            except (ValueError, KeyError, TypeError):
                msg = f"audit/events.jsonl line {number} is not an audit event"
                raise BundleInvalid(msg) from None
            entry = chain.get(str(event.id))
            if entry is None:
                msg = f"audit event {event.id} ({event.action}) is not in the audit chain"
                raise BundleInvalid(msg)
            if entry.content_digest != audit_event_digest(event):
                msg = f"audit event {event.id} ({event.action}) differs from the chain's record"
                raise BundleInvalid(msg)
        self.report.audit_events = len(lines)

    def replay(self, statements: dict[str, dict[str, Any]]) -> None:
        for packet_id, found in sorted(statements.items()):
            predicate = found["statement"]["predicate"]
            kind = predicate["packet"]["kind"]
            line = {"id": packet_id, "kind": kind, "sealed_at": predicate["packet"]["sealed_at"]}
            if kind == "deployment":
                self.report.deployments += 1
                what = predicate["what"]
                line |= {
                    "release": f"{what['release']['name']}@{what['release']['version']}",
                    "target": what["target"]["name"],
                    "outcome": predicate["outcome"]["state"],
                }
                decision = predicate["why"].get("decision_packet")
                if decision and decision["id"] in statements:
                    envelope = statements[decision["id"]]["envelope"]
                    if _sha256(_payload(envelope)) != decision["digest"]:
                        msg = f"packet {packet_id} names a decision packet that differs"
                        raise BundleInvalid(msg)
                self.report.summary.append(line)
                continue
            self._replay_decision(packet_id, predicate)
            what = predicate["what"]
            line |= {
                "release": f"{what['release']['name']}@{what['release']['version']}",
                "target": what["target_environment"]["slug"],
                "outcome": predicate["why"]["outcome"],
                "replayed": "identical",
            }
            self.report.summary.append(line)

    def _replay_decision(self, packet_id: str, predicate: dict[str, Any]) -> None:
        context = predicate["replay"]["context"]
        if digest(context) != predicate["replay"]["context_digest"]:
            msg = f"packet {packet_id}: the recorded context does not match its digest"
            raise BundleInvalid(msg)
        record = predicate["why"]["decision_record"]
        signed = self.signed(f"decision record in packet {packet_id}", record["envelope"], None)
        if signed["predicate"].get("context_digest") != predicate["replay"]["context_digest"]:
            msg = f"packet {packet_id}: the decision record was made on another context"
            raise BundleInvalid(msg)
        replayed, outcome, reason = gates.replay(context, self.evaluator)
        recorded = predicate["why"]["gate_results"]
        if canonical_json(replayed) != canonical_json(recorded):
            changed = [r["gate"] for r, o in zip(replayed, recorded, strict=False) if r != o] or [
                "(the set of gates)"
            ]
            msg = (
                f"the decision of packet {packet_id} does not replay: gate {changed[0]} "
                "gives a different result"
            )
            raise BundleInvalid(msg)
        if (outcome, reason) != (predicate["why"]["outcome"], predicate["why"]["reason"]):
            msg = f"the decision of packet {packet_id} replays to '{outcome}: {reason}'"
            raise BundleInvalid(msg)
        if canonical_json(signed["predicate"]["gate_results"]) != canonical_json(recorded):
            msg = f"packet {packet_id}: the signed decision record has other gate results"
            raise BundleInvalid(msg)
        self.report.decisions_replayed += 1


def _payload(envelope: dict[str, Any]) -> bytes:
    return base64.b64decode(envelope["payload"])


def verify_bundle(
    members: dict[str, bytes],
    trusted_keys: list[bytes],
    key_id_of: KeyIdOf,
    verify_envelope: EnvelopeVerifier,
    evaluator: gates.PolicyEvaluator,
) -> BundleReport:
    """Verify `members` (name → bytes) against `trusted_keys` (PEM public keys)."""
    verifier = _Verifier(
        members, {key_id_of(pem): pem for pem in trusted_keys}, verify_envelope, evaluator
    )
    try:
        manifest = verifier.manifest()
        statements = verifier.packets(manifest)
        verifier.attachments(statements)
        chain = verifier.chain(manifest, statements)
        verifier.events(chain)
        verifier.replay(statements)
    except BundleInvalid as exc:
        verifier.report.problem = str(exc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        verifier.report.problem = (
            f"the bundle's documents are malformed ({type(exc).__name__}: {exc})"
        )
    return verifier.report
