"""Security storage reads only what it returns, on SQLite and PostgreSQL: the newest verdict of
each (digest, environment) is one row however long its history, and an advisory is found by
id or alias without reading the tenant's whole feed (through an index on PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert

from stella.adapters.db import tables as t
from stella.adapters.db.security_repositories import (
    SqlAdvisoryRepository,
    SqlSecurityVerdictRepository,
)
from stella.domain.ids import new_id
from stella.domain.security import Advisory

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class CountingConnection:
    """A connection that counts the rows its SELECTs hand to the repository."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.rows = 0

    def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        result = self._conn.execute(statement, *args, **kwargs)
        if not result.returns_rows:
            return result
        frozen = result.freeze()
        self.rows += len(frozen.data)
        return frozen()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def environment_ids(api) -> tuple[uuid.UUID, uuid.UUID]:
    ids = []
    for order, slug in enumerate(("dev", "prod"), start=1):
        created = api.post(
            "/environments", {"name": slug.title(), "slug": slug, "promotion_order": order}
        )
        assert created.status_code == 201, created.text
        ids.append(uuid.UUID(created.json()["id"]))
    return ids[0], ids[1]


def verdict(tenant_id, digest, environment_id, state, at, id_ms=None) -> dict[str, Any]:
    return {
        "id": new_id(id_ms),
        "tenant_id": tenant_id,
        "digest": digest,
        "environment_id": environment_id,
        "state": state,
        "reason": f"{state} at {at.isoformat()}",
        "blocking": [] if state == "pass" else ["CVE-2026-0001"],
        "previous_state": None,
        "previous_blocking": None,
        "cause": "test",
        "computed_at": at,
    }


def test_latest_reads_one_row_per_digest_and_environment(api, database):
    tenant_id = api.issued.user.tenant_id
    dev, prod = environment_ids(api)
    digest, other, never = ("sha256:" + c * 64 for c in "abc")
    with database.engine.begin() as conn:
        repository = SqlSecurityVerdictRepository(conn)
        for i in range(60):  # a long history in dev, alternating
            state = "fail" if i % 2 else "pass"
            repository.add(verdict(tenant_id, digest, dev, state, T0 + timedelta(minutes=i)))
        last = T0 + timedelta(hours=5)
        # two verdicts computed at the same instant: the later id is the newer, as before
        repository.add(verdict(tenant_id, digest, prod, "pass", last, id_ms=2_000_000))
        newest_prod = verdict(tenant_id, digest, prod, "fail", last, id_ms=3_000_000)
        repository.add(newest_prod)
        repository.add(verdict(tenant_id, other, dev, "pass", T0))

    with database.engine.connect() as conn:
        counting = CountingConnection(conn)
        latest = SqlSecurityVerdictRepository(counting).latest(tenant_id, [digest, other, never])
    assert sorted(latest, key=str) == sorted([(digest, dev), (digest, prod), (other, dev)], key=str)
    assert latest[(digest, dev)]["state"] == "fail"
    assert latest[(digest, dev)]["computed_at"] == T0 + timedelta(minutes=59)
    assert latest[(digest, prod)]["id"] == newest_prod["id"]
    assert latest[(other, dev)]["state"] == "pass"
    assert counting.rows == 3  # not the 63 rows of history


def test_latest_of_many_digests(api, database):
    """More digests than one IN list holds are answered too (in batches)."""
    tenant_id = api.issued.user.tenant_id
    dev, _ = environment_ids(api)
    digests = [f"sha256:{i:064x}" for i in range(1200)]
    with database.engine.begin() as conn:
        repository = SqlSecurityVerdictRepository(conn)
        for digest in digests:
            repository.add(verdict(tenant_id, digest, dev, "fail", T0))
        repository.add(verdict(tenant_id, digests[-1], dev, "pass", T0 + timedelta(hours=1)))
    with database.engine.connect() as conn:
        latest = SqlSecurityVerdictRepository(conn).latest(tenant_id, digests)
    assert len(latest) == 1200
    assert latest[(digests[-1], dev)]["state"] == "pass"
    assert latest[(digests[0], dev)]["state"] == "fail"


def _feed(tenant_id, conn) -> None:
    repository = SqlAdvisoryRepository(conn)
    for i in range(40):
        advisory = Advisory(f"PYSEC-2026-{i}", aliases=(f"CVE-2026-{1000 + i}",))
        repository.upsert(tenant_id, advisory, f"sha256:{i:064x}", T0)
    repository.upsert(
        tenant_id,
        Advisory("GHSA-aaaa-bbbb-cccc", aliases=("CVE-2026-0042", "PYSEC-2026-X")),
        "sha256:" + "1" * 64,
        T0,
    )
    repository.upsert(
        tenant_id, Advisory("OSV-2026-7", aliases=("CVE-2026-0042",)), "sha256:" + "2" * 64, T0
    )


def test_ids_for_reads_only_the_advisories_with_that_id_or_alias(api, other_tenant, database):
    tenant_id = api.issued.user.tenant_id
    with database.engine.begin() as conn:
        _feed(tenant_id, conn)
        # another tenant knows the alias too: never read
        SqlAdvisoryRepository(conn).upsert(
            other_tenant.issued.user.tenant_id,
            Advisory("GHSA-zzzz-zzzz-zzzz", aliases=("CVE-2026-0042",)),
            "sha256:" + "3" * 64,
            T0,
        )
    with database.engine.connect() as conn:
        counting = CountingConnection(conn)
        repository = SqlAdvisoryRepository(counting)
        assert repository.ids_for(tenant_id, "CVE-2026-0042") == [
            "CVE-2026-0042",
            "GHSA-aaaa-bbbb-cccc",
            "OSV-2026-7",
            "PYSEC-2026-X",
        ]
        assert counting.rows == 2  # the two advisories with that alias, not all 42
        counting.rows = 0
        assert repository.ids_for(tenant_id, "PYSEC-2026-3") == ["CVE-2026-1003", "PYSEC-2026-3"]
        assert repository.ids_for(tenant_id, "CVE-2026-1007") == ["CVE-2026-1007", "PYSEC-2026-7"]
        assert counting.rows == 2
        assert repository.ids_for(tenant_id, "CVE-1999-0001") == []
        assert repository.ids_for(tenant_id, 'x"]') == []  # an id is a value, not JSON


@pytest.mark.postgresql_only  # SQLite cannot index JSON array members; the row count test covers it
def test_postgres_finds_an_alias_through_the_index(api, database):
    """PostgreSQL: with a feed of realistic size (and its statistics), the alias lookup is
    planned through the GIN index of migration 0009, not through the tenant's whole feed."""
    assert database.kind == "postgresql"
    tenant_id = api.issued.user.tenant_id
    rows = [
        {
            "tenant_id": tenant_id,
            "advisory_id": f"PYSEC-2026-{i}",
            "aliases": [f"CVE-2026-{10_000 + i}"],
            "summary": "",
            "severity": "high",
            "affected": [],
            "digest": f"sha256:{i:064x}",
            "imported_at": T0,
        }
        for i in range(3000)
    ]
    with database.engine.begin() as conn:
        conn.execute(insert(t.advisories), rows)
        conn.exec_driver_sql("ANALYZE release.advisories")
    with database.engine.connect() as conn:
        sent: list[tuple[str, Any]] = []

        def capture(conn, cursor, statement, parameters, context, executemany):
            sent.append((statement, parameters))

        event.listen(conn, "before_cursor_execute", capture)
        found = SqlAdvisoryRepository(conn).ids_for(tenant_id, "CVE-2026-12345")
        event.remove(conn, "before_cursor_execute", capture)
        assert found == ["CVE-2026-12345", "PYSEC-2026-2345"]
        (statement, parameters), *_ = sent
        plan = "\n".join(
            r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        )
    assert "ix_advisories_aliases" in plan, plan
