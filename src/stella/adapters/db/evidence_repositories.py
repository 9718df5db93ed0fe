"""Evidence storage: sealed packets, attachments, the audit hash chain, checkpoints, keys."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import Connection, Row, Table, and_, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from stella.adapters.db import tables as t
from stella.adapters.db.repository_base import chunked, execute, mapping, parse_uuid
from stella.domain.audit import AuditEvent
from stella.domain.errors import ValidationFailed
from stella.domain.evidence import (
    GENESIS_HASH,
    ChainEntry,
    ChainEntryType,
    EvidencePacket,
    PacketKind,
    link_hash,
)
from stella.domain.pagination import Page, PageRequest, encode_cursor


def _insert(conn: Connection, table: Table) -> Any:
    return (postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def _packet(row: Row[Any]) -> EvidencePacket:
    values = dict(mapping(row))
    values["kind"] = PacketKind(values["kind"])
    return EvidencePacket(**values)


class SqlEvidenceRepository:
    """Sealed evidence packets (append-only; the database refuses updates and deletes)."""

    table = t.evidence_packets

    def __init__(self, conn: Connection, chain: PendingChain) -> None:
        self._conn = conn
        self._chain = chain

    def add(self, packet: EvidencePacket, content_digest: str) -> bool:
        """Store a packet unless one for the same subject and revision exists (then False:
        two workers sealed the same job; the first one counts)."""
        stmt = (
            _insert(self._conn, self.table)
            .values(asdict(packet))
            .on_conflict_do_nothing()
            .returning(self.table.c.id)
        )
        # RETURNING, not rowcount: psycopg reports -1 for INSERT … ON CONFLICT DO NOTHING here
        added = execute(self._conn, stmt).first() is not None
        if added:
            self._chain.note(
                packet.tenant_id, ChainEntryType.EVIDENCE_PACKET, packet.id, content_digest
            )
        return added

    def get(self, tenant_id: uuid.UUID, ref: str) -> EvidencePacket | None:
        """By id, or by digest (`sha256:…`)."""
        as_uuid = parse_uuid(ref)
        condition = self.table.c.id == as_uuid if as_uuid else self.table.c.digest == ref
        stmt = self.table.select().where(self.table.c.tenant_id == tenant_id, condition)
        row = execute(self._conn, stmt).first()
        return None if row is None else _packet(row)

    def by_ids(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, EvidencePacket]:
        if not ids:
            return {}
        found = {}
        for part in chunked(ids):
            stmt = self.table.select().where(self.table.c.id.in_(part))
            found.update({row.id: _packet(row) for row in execute(self._conn, stmt)})
        return found

    def latest_for(self, kind: PacketKind, subject_id: uuid.UUID) -> EvidencePacket | None:
        stmt = (
            self.table.select()
            .where(self.table.c.kind == str(kind), self.table.c.subject_id == subject_id)
            .order_by(self.table.c.revision.desc())
            .limit(1)
        )
        row = execute(self._conn, stmt).first()
        return None if row is None else _packet(row)

    def _filtered(
        self,
        tenant_id: uuid.UUID,
        release_id: uuid.UUID | None,
        environment_id: uuid.UUID | None,
        since: datetime | None,
        until: datetime | None,
        kind: str | None = None,
    ) -> Any:
        c = self.table.c
        stmt = self.table.select().where(c.tenant_id == tenant_id)
        if release_id is not None:
            stmt = stmt.where(c.release_id == release_id)
        if environment_id is not None:
            stmt = stmt.where(c.environment_id == environment_id)
        if since is not None:
            stmt = stmt.where(c.sealed_at >= since)
        if until is not None:
            stmt = stmt.where(c.sealed_at < until)
        if kind is not None:
            stmt = stmt.where(c.kind == kind)
        return stmt

    def page(
        self,
        tenant_id: uuid.UUID,
        page: PageRequest,
        release_id: uuid.UUID | None = None,
        environment_id: uuid.UUID | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        kind: str | None = None,
    ) -> Page[EvidencePacket]:
        """Newest first, keyset on (sealed_at, id)."""
        c = self.table.c
        stmt = self._filtered(tenant_id, release_id, environment_id, since, until, kind)
        if page.after is not None:
            at, _, last_id = str(page.after).partition("|")
            try:
                when, after_id = datetime.fromisoformat(at), uuid.UUID(last_id)
            except ValueError:
                raise ValidationFailed.single(
                    "cursor", "is not a cursor returned by this API"
                ) from None
            stmt = stmt.where(or_(c.sealed_at < when, and_(c.sealed_at == when, c.id < after_id)))
        stmt = stmt.order_by(c.sealed_at.desc(), c.id.desc()).limit(page.limit + 1)
        rows = list(execute(self._conn, stmt).all())
        items = [_packet(r) for r in rows[: page.limit]]
        cursor = None
        if len(rows) > page.limit:
            last = items[-1]
            cursor = encode_cursor(f"{last.sealed_at.isoformat()}|{last.id}")
        return Page(items, cursor)

    def in_period(
        self,
        tenant_id: uuid.UUID,
        since: datetime,
        until: datetime,
        environment_id: uuid.UUID | None,
        batch: int = 500,
    ) -> Iterator[EvidencePacket]:
        """Every packet sealed in [since, until), oldest first, read in batches."""
        c = self.table.c
        base = self._filtered(tenant_id, None, environment_id, since, until)
        after: tuple[datetime, uuid.UUID] | None = None
        while True:
            stmt = base
            if after is not None:
                stmt = stmt.where(
                    or_(c.sealed_at > after[0], and_(c.sealed_at == after[0], c.id > after[1]))
                )
            rows = execute(self._conn, stmt.order_by(c.sealed_at, c.id).limit(batch)).all()
            for row in rows:
                yield _packet(row)
            if len(rows) < batch:
                return
            after = (rows[-1].sealed_at, rows[-1].id)


class SqlAttachmentRepository:
    """SBOMs, VEX documents, scan reports and attestations attached to image digests."""

    table = t.evidence_attachments
    columns: ClassVar[list[Any]] = [c for c in t.evidence_attachments.c if c.name != "content"]

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, values: dict[str, Any]) -> dict[str, Any]:
        """Store an attachment; the same content for the same digest is stored once."""
        stmt = _insert(self._conn, self.table).values(values).on_conflict_do_nothing()
        execute(self._conn, stmt)
        found = self.find(values["tenant_id"], values["subject_digest"], values["digest"])
        assert found is not None  # noqa: S101 - inserted or already there
        return found

    def find(self, tenant_id: uuid.UUID, subject_digest: str, digest: str) -> dict[str, Any] | None:
        c = self.table.c
        stmt = select(*self.columns).where(
            c.tenant_id == tenant_id, c.subject_digest == subject_digest, c.digest == digest
        )
        row = execute(self._conn, stmt).first()
        return None if row is None else dict(mapping(row))

    def get(self, tenant_id: uuid.UUID, attachment_id: uuid.UUID) -> dict[str, Any] | None:
        c = self.table.c
        stmt = select(*self.columns).where(c.tenant_id == tenant_id, c.id == attachment_id)
        row = execute(self._conn, stmt).first()
        return None if row is None else dict(mapping(row))

    def for_digests(self, tenant_id: uuid.UUID, digests: list[str]) -> list[dict[str, Any]]:
        c = self.table.c
        if not digests:
            return []
        stmt = (
            select(*self.columns)
            .where(c.tenant_id == tenant_id, c.subject_digest.in_(digests))
            .order_by(c.subject_digest, c.created_at, c.id)
        )
        return [dict(mapping(r)) for r in execute(self._conn, stmt).all()]

    def content(self, tenant_id: uuid.UUID, digest: str) -> bytes | None:
        c = self.table.c
        stmt = select(c.content).where(c.tenant_id == tenant_id, c.digest == digest).limit(1)
        row = execute(self._conn, stmt).first()
        return None if row is None else bytes(row.content)


class PendingChain:
    """Chain entries noted during a unit of work, linked into the tenant's chain at commit.

    Linking happens last in the transaction, under a lock on the tenant's chain head: the lock
    is held only for the moment before commit, and it is the last lock the transaction takes,
    so writers never deadlock on it.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pending: list[tuple[uuid.UUID, ChainEntryType, uuid.UUID, str]] = []

    def note(
        self,
        tenant_id: uuid.UUID,
        entry_type: ChainEntryType,
        entry_id: uuid.UUID,
        content_digest: str,
    ) -> None:
        self._pending.append((tenant_id, entry_type, entry_id, content_digest))

    def link(self) -> None:
        """Append everything noted to the chains; called by the unit of work's commit."""
        pending, self._pending = self._pending, []
        for tenant_id in sorted({p[0] for p in pending}):
            entries = [p for p in pending if p[0] == tenant_id]
            append_links(self._conn, tenant_id, [(p[1], p[2], p[3]) for p in entries])

    def discard(self) -> None:
        self._pending = []


def append_links(
    conn: Connection,
    tenant_id: uuid.UUID,
    entries: list[tuple[ChainEntryType, uuid.UUID, str]],
) -> list[ChainEntry]:
    """Lock the tenant's chain head, append `entries` after it and move the head."""
    heads = t.audit_chain_heads
    now = datetime.now(UTC)
    execute(
        conn,
        _insert(conn, heads)
        .values(tenant_id=tenant_id, size=0, head_hash=GENESIS_HASH, updated_at=now)
        .on_conflict_do_nothing(),
    )
    head = execute(
        conn, select(heads).where(heads.c.tenant_id == tenant_id).with_for_update()
    ).one()
    size, prev = int(head.size), str(head.head_hash)
    links: list[ChainEntry] = []
    for entry_type, entry_id, content in entries:
        size += 1
        entry_hash = link_hash(size, prev, str(entry_type), str(entry_id), content)
        links.append(
            ChainEntry(tenant_id, size, entry_type, entry_id, content, prev, entry_hash, now)
        )
        prev = entry_hash
    if links:
        rows = [asdict(link) | {"entry_type": str(link.entry_type)} for link in links]
        execute(conn, insert(t.audit_chain).values(rows))
        execute(
            conn,
            update(heads)
            .where(heads.c.tenant_id == tenant_id)
            .values(size=size, head_hash=prev, updated_at=now),
        )
    return links


def _entry(row: Row[Any]) -> ChainEntry:
    values = dict(mapping(row))
    values["entry_type"] = ChainEntryType(values["entry_type"])
    return ChainEntry(**values)


class SqlAuditChainRepository:
    """Reading the chain, its head and its signed checkpoints."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def head(self, tenant_id: uuid.UUID) -> tuple[int, str]:
        heads = t.audit_chain_heads
        row = execute(self._conn, select(heads).where(heads.c.tenant_id == tenant_id)).first()
        return (0, GENESIS_HASH) if row is None else (int(row.size), str(row.head_hash))

    def entries(
        self, tenant_id: uuid.UUID, from_seq: int, to_seq: int | None = None, limit: int = 1000
    ) -> list[ChainEntry]:
        """Entries from `from_seq` (inclusive) up to `to_seq` (inclusive), at most `limit`."""
        c = t.audit_chain.c
        stmt = select(t.audit_chain).where(c.tenant_id == tenant_id, c.seq >= from_seq)
        if to_seq is not None:
            stmt = stmt.where(c.seq <= to_seq)
        rows = execute(self._conn, stmt.order_by(c.seq).limit(limit)).all()
        return [_entry(r) for r in rows]

    def entry_at(self, tenant_id: uuid.UUID, seq: int) -> ChainEntry | None:
        found = self.entries(tenant_id, seq, seq, 1)
        return found[0] if found else None

    def entries_for(
        self, tenant_id: uuid.UUID, entry_type: ChainEntryType, ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, ChainEntry]:
        if not ids:
            return {}
        c = t.audit_chain.c
        found = {}
        for part in chunked(ids):
            stmt = select(t.audit_chain).where(
                c.tenant_id == tenant_id, c.entry_type == str(entry_type), c.entry_id.in_(part)
            )
            found.update({r.entry_id: _entry(r) for r in execute(self._conn, stmt)})
        return found

    def add_checkpoint(self, values: dict[str, Any]) -> None:
        execute(self._conn, insert(t.audit_checkpoints).values(values))

    def latest_checkpoint(self, tenant_id: uuid.UUID) -> dict[str, Any] | None:
        c = t.audit_checkpoints.c
        stmt = (
            select(t.audit_checkpoints)
            .where(c.tenant_id == tenant_id)
            .order_by(c.size.desc(), c.created_at.desc())
            .limit(1)
        )
        row = execute(self._conn, stmt).first()
        return None if row is None else dict(mapping(row))

    def checkpoints(self, tenant_id: uuid.UUID, limit: int = 50) -> list[dict[str, Any]]:
        c = t.audit_checkpoints.c
        stmt = (
            select(t.audit_checkpoints)
            .where(c.tenant_id == tenant_id)
            .order_by(c.size.desc(), c.created_at.desc())
            .limit(limit)
        )
        return [dict(mapping(r)) for r in execute(self._conn, stmt).all()]

    def tenants_grown_since_checkpoint(self) -> list[uuid.UUID]:
        """Tenants whose chain has entries no checkpoint covers yet."""
        heads, cps = t.audit_chain_heads, t.audit_checkpoints
        covered = (
            select(func.max(cps.c.size))
            .where(cps.c.tenant_id == heads.c.tenant_id)
            .scalar_subquery()
        )
        stmt = select(heads.c.tenant_id).where(heads.c.size > func.coalesce(covered, 0))
        return [r.tenant_id for r in execute(self._conn, stmt).all()]

    def audit_events(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, AuditEvent]:
        if not ids:
            return {}
        table = t.audit_events
        found = {}
        for part in chunked(ids):
            rows = execute(self._conn, select(table).where(table.c.id.in_(part)))
            found.update({r.id: AuditEvent(**mapping(r)) for r in rows})
        return found

    def count_audit_events(self, tenant_id: uuid.UUID) -> int:
        table = t.audit_events
        stmt = select(func.count()).where(table.c.tenant_id == tenant_id)
        return int(execute(self._conn, stmt).scalar_one())

    def audit_events_in_period(
        self, tenant_id: uuid.UUID, since: datetime, until: datetime, batch: int = 1000
    ) -> Iterator[AuditEvent]:
        table = t.audit_events
        c = table.c
        after: tuple[datetime, uuid.UUID] | None = None
        while True:
            stmt = select(table).where(
                c.tenant_id == tenant_id, c.occurred_at >= since, c.occurred_at < until
            )
            if after is not None:
                stmt = stmt.where(
                    or_(c.occurred_at > after[0], and_(c.occurred_at == after[0], c.id > after[1]))
                )
            rows = execute(self._conn, stmt.order_by(c.occurred_at, c.id).limit(batch)).all()
            for row in rows:
                yield AuditEvent(**mapping(row))
            if len(rows) < batch:
                return
            after = (rows[-1].occurred_at, rows[-1].id)


class SqlSigningKeyRepository:
    """Public halves of every signing key the server has used, current and retired."""

    table = t.signing_keys

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def register(self, keyid: str, public_key_pem: str, now: datetime) -> None:
        stmt = (
            _insert(self._conn, self.table)
            .values(
                keyid=keyid,
                algorithm="ed25519",
                public_key_pem=public_key_pem,
                created_at=now,
                retired_at=None,
            )
            .on_conflict_do_nothing()
        )
        execute(self._conn, stmt)

    def retire(self, keyid: str, now: datetime) -> None:
        execute(
            self._conn,
            update(self.table)
            .where(self.table.c.keyid == keyid, self.table.c.retired_at.is_(None))
            .values(retired_at=now),
        )

    def all(self) -> list[dict[str, Any]]:
        stmt = select(self.table).order_by(self.table.c.created_at, self.table.c.keyid)
        return [dict(mapping(r)) for r in execute(self._conn, stmt).all()]
