"""Security storage: SBOM components, VEX statements, advisories, matches, waivers, verdicts."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, func, insert, or_, select, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from stella.adapters.db import tables as t
from stella.adapters.db.repository_base import chunked, execute, mapping
from stella.domain.ids import new_id
from stella.domain.security import Advisory, Component, Finding, VexStatement, Waiver


class SqlSbomRepository:
    """The components of each image's newest SBOM (replaced when a newer SBOM arrives)."""

    table = t.sbom_components

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def replace(
        self,
        tenant_id: uuid.UUID,
        digest: str,
        attachment_digest: str,
        components: list[Component],
    ) -> None:
        c = self.table.c
        execute(self._conn, delete(self.table).where(c.tenant_id == tenant_id, c.digest == digest))
        rows = [
            {
                "id": new_id(),
                "tenant_id": tenant_id,
                "digest": digest,
                "attachment_digest": attachment_digest,
                "name": comp.name[:512],
                "version": None if comp.version is None else comp.version[:256],
                "purl": None if comp.purl is None else comp.purl[:1024],
                "ecosystem": comp.ecosystem,
            }
            for comp in components
        ]
        for part in chunked(rows):
            execute(self._conn, insert(self.table).values(list(part)))

    def components(self, tenant_id: uuid.UUID, digest: str) -> list[Component]:
        c = self.table.c
        stmt = select(c.name, c.version, c.purl, c.ecosystem).where(
            c.tenant_id == tenant_id, c.digest == digest
        )
        return [
            Component(r.name, r.version, r.purl, r.ecosystem) for r in execute(self._conn, stmt)
        ]

    def digests(self, tenant_id: uuid.UUID) -> list[str]:
        """Every image digest that has an SBOM."""
        c = self.table.c
        stmt = select(c.digest).where(c.tenant_id == tenant_id).distinct().order_by(c.digest)
        return [r.digest for r in execute(self._conn, stmt)]

    def digests_with_packages(
        self, tenant_id: uuid.UUID, packages: set[tuple[str, str]]
    ) -> list[str]:
        """Digests whose SBOM lists one of `packages`: (OSV base ecosystem, name) pairs. The
        ecosystem matches with or without a release (`Debian` ~ `Debian:12`); names compare
        case-blind, with the separators PyPI treats as equal."""
        by_ecosystem: dict[str, set[str]] = {}
        for ecosystem, name in packages:
            low = name.strip().lower()
            canonical = re.sub(r"[-_.]+", "-", low)
            by_ecosystem.setdefault(ecosystem, set()).update(
                {low, canonical, canonical.replace("-", "_"), canonical.replace("-", ".")}
                | {low.replace("/", ":"), low.replace(":", "/")}
            )
        c = self.table.c
        found: set[str] = set()
        for ecosystem, variants in sorted(by_ecosystem.items()):
            ordered = sorted(variants)
            for part in chunked(ordered):
                stmt = (
                    select(c.digest)
                    .where(
                        c.tenant_id == tenant_id,
                        or_(c.ecosystem == ecosystem, c.ecosystem.like(f"{ecosystem}:%")),
                        func.lower(c.name).in_(part),
                    )
                    .distinct()
                )
                found |= {r.digest for r in execute(self._conn, stmt)}
        return sorted(found)

    def evidence_times(self, tenant_id: uuid.UUID, digests: list[str]) -> dict[str, datetime]:
        """When the newest SBOM or scan report of each digest arrived."""
        if not digests:
            return {}
        a = t.evidence_attachments.c
        stmt = (
            select(a.subject_digest, func.max(a.created_at).label("at"))
            .where(
                a.tenant_id == tenant_id,
                a.subject_digest.in_(digests),
                a.kind.in_(["sbom", "scan"]),
            )
            .group_by(a.subject_digest)
        )
        found = {r.subject_digest: r.at for r in execute(self._conn, stmt)}
        v = t.scan_verdicts.c
        scans = (
            select(v.digest, func.max(v.created_at).label("at"))
            .where(v.tenant_id == tenant_id, v.digest.in_(digests))
            .group_by(v.digest)
        )
        for row in execute(self._conn, scans):
            found[row.digest] = max(found.get(row.digest, row.at), row.at)
        return found


class SqlVexRepository:
    """Parsed VEX statements, one row per statement, keyed by its vulnerability id."""

    table = t.vex_statements

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def ingested(self, tenant_id: uuid.UUID, attachment_digest: str) -> bool:
        c = self.table.c
        stmt = select(c.id).where(
            c.tenant_id == tenant_id, c.attachment_digest == attachment_digest
        )
        return execute(self._conn, stmt.limit(1)).first() is not None

    def add(
        self,
        tenant_id: uuid.UUID,
        attachment_digest: str,
        statements: list[VexStatement],
        now: datetime,
    ) -> None:
        rows = [
            {
                "id": new_id(),
                "tenant_id": tenant_id,
                "attachment_digest": attachment_digest,
                "vulnerability": s.vulnerability[:128],
                "statement": s.to_json(),
                "created_at": now,
            }
            for s in statements
        ]
        if rows:
            execute(self._conn, insert(self.table).values(rows))

    def for_ids(self, tenant_id: uuid.UUID, ids: set[str]) -> list[VexStatement]:
        """Statements about any of `ids`, in the order they were recorded."""
        if not ids:
            return []
        c = self.table.c
        stmt = (
            select(c.statement)
            .where(c.tenant_id == tenant_id, c.vulnerability.in_(sorted(ids)))
            .order_by(c.created_at, c.id)
        )
        return [VexStatement.from_json(r.statement) for r in execute(self._conn, stmt)]


def _insert(conn: Connection, table: Any) -> Any:
    return (postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


def _advisory(row: Any) -> Advisory:
    m = mapping(row)
    return Advisory(
        id=m["advisory_id"],
        aliases=tuple(m["aliases"]),
        summary=m["summary"],
        severity=m["severity"],
        cvss_score=m["cvss_score"],
        cvss_vector=m["cvss_vector"],
        modified=m["modified"],
        published=m["published"],
        affected=tuple(m["affected"]),
    )


class SqlAdvisoryRepository:
    """The imported advisory feed; an advisory is replaced only when its content changed."""

    table = t.advisories

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def upsert(self, tenant_id: uuid.UUID, advisory: Advisory, digest: str, now: datetime) -> str:
        """`added`, `updated` or `unchanged`."""
        c = self.table.c
        current = execute(
            self._conn,
            select(c.digest).where(c.tenant_id == tenant_id, c.advisory_id == advisory.id),
        ).first()
        if current is not None and current.digest == digest:
            return "unchanged"
        values = {
            "aliases": list(advisory.aliases),
            "summary": advisory.summary,
            "severity": advisory.severity,
            "cvss_score": advisory.cvss_score,
            "cvss_vector": advisory.cvss_vector,
            "modified": advisory.modified,
            "published": advisory.published,
            "affected": list(advisory.affected),
            "digest": digest,
            "imported_at": now,
        }
        if current is None:
            execute(
                self._conn,
                insert(self.table).values(tenant_id=tenant_id, advisory_id=advisory.id, **values),
            )
            return "added"
        execute(
            self._conn,
            update(self.table)
            .where(c.tenant_id == tenant_id, c.advisory_id == advisory.id)
            .values(**values),
        )
        return "updated"

    def get(self, tenant_id: uuid.UUID, advisory_id: str) -> Advisory | None:
        c = self.table.c
        row = execute(
            self._conn,
            select(self.table).where(c.tenant_id == tenant_id, c.advisory_id == advisory_id),
        ).first()
        return None if row is None else _advisory(row)

    def ids_for(self, tenant_id: uuid.UUID, any_id: str) -> list[str]:
        """Every id the advisories known as `any_id` go by: their own ids and their aliases
        (CVE ↔ GHSA ↔ OSV); empty when no imported advisory has that id or alias.

        Only the advisories with that id (primary key) or alias are read: on PostgreSQL the
        alias test is `aliases @> '["<id>"]'`, served by the GIN index on `aliases`; SQLite
        has no index for JSON array members and tests them in the engine (`json_each`)."""
        c = self.table.c
        if self._conn.dialect.name == "postgresql":
            named = type_coerce(c.aliases, JSONB).contains(
                type_coerce([any_id], JSONB)  # one JSONB parameter, as the index expects
            )
        else:
            members = func.json_each(c.aliases).table_valued("value")
            named = exists(select(1).select_from(members).where(members.c.value == any_id))
        stmt = select(c.advisory_id, c.aliases).where(
            c.tenant_id == tenant_id, or_(c.advisory_id == any_id, named)
        )
        ids: set[str] = set()
        for row in execute(self._conn, stmt):
            ids |= {row.advisory_id, *(row.aliases or [])}
        return sorted(ids)

    def all(self, tenant_id: uuid.UUID, batch: int = 2000) -> Iterator[Advisory]:
        c = self.table.c
        after = ""
        while True:
            stmt = (
                select(self.table)
                .where(c.tenant_id == tenant_id, c.advisory_id > after)
                .order_by(c.advisory_id)
                .limit(batch)
            )
            rows = execute(self._conn, stmt).all()
            for row in rows:
                yield _advisory(row)
            if len(rows) < batch:
                return
            after = rows[-1].advisory_id

    def stamp(self, tenant_id: uuid.UUID) -> tuple[int, str]:
        """(count, newest import time): changes whenever the feed does."""
        c = self.table.c
        stmt = select(func.count().label("n"), func.max(c.imported_at).label("newest")).where(
            c.tenant_id == tenant_id
        )
        row: Any = execute(self._conn, stmt).one()
        return int(row.n), str(row.newest)


class SqlAdvisoryMatchRepository:
    """Which advisories hit which image digests (recomputed when SBOMs or advisories change)."""

    table = t.advisory_matches

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def replace(self, tenant_id: uuid.UUID, digest: str, findings: list[Finding]) -> None:
        c = self.table.c
        execute(self._conn, delete(self.table).where(c.tenant_id == tenant_id, c.digest == digest))
        rows = {
            (f.advisory_id, f.purl or f.package): {
                "tenant_id": tenant_id,
                "digest": digest,
                "advisory_id": f.advisory_id[:128],
                "package": (f.purl or f.package)[:512],
                "finding": f.to_json(),
            }
            for f in findings
        }
        values = list(rows.values())
        for part in chunked(values):
            execute(self._conn, insert(self.table).values(list(part)))

    def for_digests(self, tenant_id: uuid.UUID, digests: list[str]) -> dict[str, list[Finding]]:
        if not digests:
            return {}
        c = self.table.c
        stmt = (
            select(c.digest, c.finding)
            .where(c.tenant_id == tenant_id, c.digest.in_(digests))
            .order_by(c.digest, c.advisory_id, c.package)
        )
        found: dict[str, list[Finding]] = {}
        for row in execute(self._conn, stmt):
            found.setdefault(row.digest, []).append(Finding.from_json(row.finding))
        return found

    def digests_hit_by(self, tenant_id: uuid.UUID, advisory_ids: list[str]) -> list[str]:
        if not advisory_ids:
            return []
        c = self.table.c
        stmt = (
            select(c.digest)
            .where(c.tenant_id == tenant_id, c.advisory_id.in_(advisory_ids))
            .distinct()
            .order_by(c.digest)
        )
        return [r.digest for r in execute(self._conn, stmt)]


class SqlWaiverRepository:
    table = t.waivers

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, values: dict[str, Any]) -> None:
        execute(self._conn, insert(self.table).values(values))

    def get(self, tenant_id: uuid.UUID, waiver_id: uuid.UUID) -> dict[str, Any] | None:
        c = self.table.c
        row = execute(
            self._conn, select(self.table).where(c.tenant_id == tenant_id, c.id == waiver_id)
        ).first()
        return None if row is None else dict(mapping(row))

    def revoke(self, waiver_id: uuid.UUID, now: datetime) -> None:
        c = self.table.c
        execute(
            self._conn,
            update(self.table)
            .where(c.id == waiver_id, c.revoked_at.is_(None))
            # a revoked waiver has no expiry left to handle: out of the workers' expiry scan
            .values(revoked_at=now, expiry_handled_at=func.coalesce(c.expiry_handled_at, now)),
        )

    def expired_unhandled(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Waivers (of every tenant) that ran out and whose expiry nobody has handled yet."""
        c = self.table.c
        stmt = (
            select(self.table)
            .where(c.expiry_handled_at.is_(None), c.expires_at <= now, c.revoked_at.is_(None))
            .order_by(c.expires_at, c.id)
            .limit(limit)
        )
        return [dict(mapping(r)) for r in execute(self._conn, stmt)]

    def claim_expiry(self, waiver_id: uuid.UUID, now: datetime) -> bool:
        """Mark the expiry handled; False when another worker got there first."""
        c = self.table.c
        result = execute(
            self._conn,
            update(self.table)
            .where(c.id == waiver_id, c.expiry_handled_at.is_(None))
            .values(expiry_handled_at=now),
        )
        return bool(result.rowcount == 1)

    def release_expiry(self, waiver_id: uuid.UUID) -> None:
        """Hand a claimed expiry back (its handling failed): the next pass takes it again."""
        c = self.table.c
        execute(
            self._conn, update(self.table).where(c.id == waiver_id).values(expiry_handled_at=None)
        )

    def listed(self, tenant_id: uuid.UUID, include_inactive: bool = False) -> list[dict[str, Any]]:
        c = self.table.c
        stmt = select(self.table).where(c.tenant_id == tenant_id)
        if not include_inactive:
            stmt = stmt.where(c.revoked_at.is_(None))
        return [dict(mapping(r)) for r in execute(self._conn, stmt.order_by(c.created_at, c.id))]

    def active(self, tenant_id: uuid.UUID, now: datetime) -> list[Waiver]:
        return [
            Waiver(
                id=str(w["id"]),
                advisory_id=w["advisory_id"],
                package=w["package"],
                reason=w["reason"],
                expires_at=w["expires_at"],
                created_by=w["created_by_name"],
                environment=w["environment"],
            )
            for w in self.listed(tenant_id)
            if w["expires_at"] > now
        ]


class SqlSecurityVerdictRepository:
    """The append-only history of verdicts per image digest and environment."""

    table = t.security_verdicts

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add(self, values: dict[str, Any]) -> None:
        execute(self._conn, insert(self.table).values(values))

    def latest(
        self, tenant_id: uuid.UUID, digests: list[str]
    ) -> dict[tuple[str, uuid.UUID], dict[str, Any]]:
        """The newest verdict of each (digest, environment): one row each, not the history
        (the newest by `computed_at`, then by id, which is time-ordered)."""
        if not digests:
            return {}
        c = self.table.c
        found: dict[tuple[str, uuid.UUID], dict[str, Any]] = {}
        for part in chunked(digests):
            newest = (
                select(
                    c.id,
                    func.row_number()
                    .over(
                        partition_by=(c.digest, c.environment_id),
                        order_by=(c.computed_at.desc(), c.id.desc()),
                    )
                    .label("rank"),
                )
                .where(c.tenant_id == tenant_id, c.digest.in_(part))
                .subquery()
            )
            stmt = select(self.table).where(c.id.in_(select(newest.c.id).where(newest.c.rank == 1)))
            for row in execute(self._conn, stmt):
                found[(row.digest, row.environment_id)] = dict(mapping(row))
        return found

    def releases_containing(self, tenant_id: uuid.UUID, digests: list[str]) -> list[dict[str, Any]]:
        return releases_containing(self._conn, tenant_id, digests)

    def history(self, tenant_id: uuid.UUID, digest: str | None, limit: int) -> list[dict[str, Any]]:
        c = self.table.c
        stmt = select(self.table).where(c.tenant_id == tenant_id)
        if digest is not None:
            stmt = stmt.where(c.digest == digest)
        stmt = stmt.order_by(c.computed_at.desc(), c.id.desc()).limit(limit)
        return [dict(mapping(r)) for r in execute(self._conn, stmt)]


def releases_containing(
    conn: Connection, tenant_id: uuid.UUID, digests: list[str]
) -> list[dict[str, Any]]:
    """Releases (id, name, version, state) with a component pinned to one of `digests`."""
    if not digests:
        return []
    rc, r = t.release_components.c, t.releases.c
    stmt = (
        select(r.id, r.name, r.version, r.state, rc.name.label("component"), rc.digest)
        .join(t.releases, r.id == rc.release_id)
        .where(r.tenant_id == tenant_id, rc.digest.in_(digests))
        .order_by(r.name, r.version, rc.name)
    )
    return [dict(mapping(row)) for row in execute(conn, stmt)]
