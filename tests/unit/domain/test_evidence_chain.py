"""The hash chain's pure rules: links recompute, and the first broken one is named."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from stella.domain.evidence import (
    GENESIS_HASH,
    ChainEntry,
    ChainEntryType,
    PacketKind,
    check_links,
    link_hash,
    packet_id,
)

NOW = datetime(2026, 3, 3, tzinfo=UTC)


def chain(length: int) -> list[ChainEntry]:
    tenant = uuid.uuid4()
    entries, prev = [], GENESIS_HASH
    for seq in range(1, length + 1):
        entry_id = uuid.uuid4()
        content = f"sha256:{seq:064x}"
        entry_hash = link_hash(seq, prev, "audit_event", str(entry_id), content)
        entries.append(
            ChainEntry(
                tenant, seq, ChainEntryType.AUDIT_EVENT, entry_id, content, prev, entry_hash, NOW
            )
        )
        prev = entry_hash
    return entries


def test_an_intact_chain_has_no_problem():
    assert check_links(chain(5), GENESIS_HASH) is None
    assert check_links([], GENESIS_HASH) is None


def test_changed_content_is_named_at_its_entry():
    entries = chain(5)
    entries[2] = replace(entries[2], content_digest="sha256:" + "f" * 64)
    problem = check_links(entries, GENESIS_HASH)
    assert problem is not None
    assert (problem.seq, problem.reason) == (3, "the entry's hash does not match its contents")


def test_a_recomputed_entry_breaks_the_next_link():
    entries = chain(5)
    forged = "sha256:" + "e" * 64
    entries[1] = replace(
        entries[1],
        content_digest=forged,
        entry_hash=link_hash(
            2, entries[1].prev_hash, "audit_event", str(entries[1].entry_id), forged
        ),
    )
    problem = check_links(entries, GENESIS_HASH)
    assert problem is not None
    assert problem.seq == 3
    assert "link to the previous entry is broken" in problem.reason


def test_a_missing_entry_is_named():
    entries = chain(5)
    del entries[2]
    problem = check_links(entries, GENESIS_HASH)
    assert problem is not None
    assert problem.reason == "entry 3 is missing (the chain jumps to 4)"


def test_a_chain_must_follow_the_expected_head():
    entries = chain(3)
    problem = check_links(entries[1:], "sha256:" + "1" * 64)
    assert problem is not None
    assert problem.seq == 2


def test_packet_ids_are_deterministic_per_subject_and_revision():
    subject = uuid.uuid4()
    assert packet_id(PacketKind.DEPLOYMENT, subject) == packet_id(PacketKind.DEPLOYMENT, subject)
    assert packet_id(PacketKind.DEPLOYMENT, subject) != packet_id(PacketKind.DEPLOYMENT, subject, 2)
    assert packet_id(PacketKind.DEPLOYMENT, subject) != packet_id(
        PacketKind.PROMOTION_DECISION, subject
    )
