"""Evidence through the API on SQLite and PostgreSQL: decisions sealed into signed packets, the
audit hash chain naming a row edited behind the server's back, signed checkpoints catching a
rewritten or truncated chain, and the export bundle verified offline with every tampering
named."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from stella.adapters.evidence_bundle import BundleError, read_bundle
from stella.adapters.policy.rego import RegoPolicyEvaluator
from stella.adapters.signing.dsse import key_id_from_pem, public_pem, verify_envelope
from stella.domain.evidence import link_hash
from stella.services.evidence_verify import verify_bundle
from tests.support.promotions import build_estate


@pytest.fixture
def estate(api, registry_url, repository):
    return build_estate(api, registry_url, repository)


def promote(api, release_id, target):
    response = api.post("/promotions", {"release_id": release_id, "target_environment": target})
    assert response.status_code == 201, response.text
    return response.json()


def promote_approved(api, estate, target):
    """Promote and, where the environment wants approvals, approve as other users."""
    promotion = promote(api, estate.release_id, target)
    for token in estate.approvers[:2]:
        if promotion["state"] != "awaiting_approval":
            break
        response = api.post(
            f"/promotions/{promotion['id']}/approve", {"comment": "<b>ok</b>"}, token=token
        )
        assert response.status_code == 200, response.text
        promotion = response.json()
    assert promotion["state"] == "approved", promotion
    return promotion


def tenant_of(api) -> uuid.UUID:
    return api.issued.user.tenant_id


def _table(database, name: str) -> str:
    return f"release.{name}" if database.kind == "postgresql" else name


@contextmanager
def behind_the_servers_back(database, table: str):
    """A connection that may rewrite `table`: the append-only trigger is lifted for the length
    of one transaction (what someone with direct database access could do)."""
    with database.engine.begin() as conn:
        if database.kind == "postgresql":
            conn.execute(text(f"ALTER TABLE release.{table} DISABLE TRIGGER USER"))
            yield conn
            conn.execute(text(f"ALTER TABLE release.{table} ENABLE TRIGGER USER"))
            return
        triggers = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name=:t"),
            {"t": table},
        ).all()
        for name, _ in triggers:
            conn.execute(text(f"DROP TRIGGER {name}"))
        yield conn
        for _, sql in triggers:
            conn.execute(text(sql))


def chain_rows(database, tenant_id):
    with database.engine.connect() as conn:
        return conn.execute(
            text(
                f"SELECT seq, entry_type, entry_id, content_digest, entry_hash "
                f"FROM {_table(database, 'audit_chain')} WHERE tenant_id = :t ORDER BY seq"
            ),
            {"t": tenant_id if database.kind == "postgresql" else tenant_id.hex},
        ).all()


def _id(database, value: uuid.UUID):
    return value if database.kind == "postgresql" else value.hex


def verify(api) -> dict:
    response = api.get("/audit/verify")
    assert response.status_code == 200, response.text
    return response.json()


def test_each_decision_is_sealed_into_a_signed_packet(api, estate):
    dev = promote(api, estate.release_id, "dev")
    packets = api.get("/evidence", params={"kind": "promotion_decision"}).json()["items"]
    assert [p["promotion_id"] for p in packets] == [dev["id"]]
    by_id = api.get(f"/evidence/{packets[0]['id']}").json()
    by_digest = api.get(f"/evidence/{packets[0]['digest']}").json()
    assert by_id == by_digest
    key = api.get("/keys").json()["keys"][0]
    statement = verify_envelope(by_id["envelope"], key["public_key_pem"].encode())
    predicate = statement["predicate"]
    assert statement["predicateType"].endswith("/promotion-decision/v1")
    assert statement["subject"][0]["digest"]["sha256"] == estate.digest.removeprefix("sha256:")
    assert predicate["who"]["requested_by"]["name"] == "admin"
    assert predicate["what"]["release"]["version"] == "1.0.0"
    assert predicate["why"]["outcome"] == "approved"
    assert [g["gate"] for g in predicate["why"]["gate_results"]] == [
        "previous_environment",
        "security",
    ]
    assert predicate["why"]["decision_record"]["envelope"] == (
        api.get(f"/promotions/{dev['id']}/decision").json()
    )
    assert predicate["when"]["time_source"] == "system clock (UTC)"
    assert predicate["replay"]["context"]["release"]["id"] == estate.release_id


def test_listing_filters_and_rejects_bad_filters(api, estate):
    promote(api, estate.release_id, "dev")
    promote_approved(api, estate, "stage")
    assert len(api.get("/evidence", params={"environment": "stage"}).json()["items"]) == 1
    assert len(api.get("/evidence", params={"release": estate.release_id}).json()["items"]) == 2
    assert api.get("/evidence", params={"from": "2000-01-01", "to": "2000-01-31"}).json() == {
        "items": [],
        "next_cursor": None,
    }
    first = api.get("/evidence", params={"limit": 1}).json()
    second = api.get("/evidence", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert first["items"][0]["id"] != second["items"][0]["id"]
    for params, field in (
        ({"from": "yesterday"}, "from"),
        ({"kind": "lunch"}, "kind"),
        ({"environment": "nowhere"}, "environment"),
        ({"release": "nothing"}, "release"),
    ):
        response = api.get("/evidence", params=params)
        assert response.status_code == 422, params
        assert response.json()["errors"][0]["field"] == field
    assert api.get(f"/evidence/{uuid.uuid4()}").status_code == 404
    assert api.get("/evidence/sha256:" + "0" * 64).status_code == 404


def test_other_tenants_cannot_see_packets(api, other_tenant, estate):
    promote(api, estate.release_id, "dev")
    packet = api.get("/evidence").json()["items"][0]
    assert other_tenant.get(f"/evidence/{packet['id']}").status_code == 404
    assert other_tenant.get("/evidence").json()["items"] == []


def test_intact_chain_verifies_and_an_edited_event_is_named(api, estate, database):
    promote(api, estate.release_id, "dev")
    report = verify(api)
    assert report["ok"] is True, report
    assert report["checked"] == report["size"] > 3
    assert report["evidence_packets"] == 1

    rows = chain_rows(database, tenant_of(api))
    victim = next(r for r in rows if r.entry_type == "audit_event" and r.seq > 1)
    with behind_the_servers_back(database, "audit_events") as conn:
        conn.execute(
            text(
                f"UPDATE {_table(database, 'audit_events')} SET actor_name = 'mallory' "
                "WHERE id = :id"
            ),
            {"id": _id(database, uuid.UUID(str(victim.entry_id)))},
        )
    report = verify(api)
    assert report["ok"] is False
    assert report["problem"]["seq"] == victim.seq
    assert report["problem"]["entry_id"] == str(uuid.UUID(str(victim.entry_id)))
    assert "altered" in report["problem"]["reason"]
    assert report["checked"] == victim.seq - 1


def test_an_edited_packet_is_named(api, estate, database):
    promote(api, estate.release_id, "dev")
    packet = api.get("/evidence").json()["items"][0]
    envelope = api.get(f"/evidence/{packet['id']}").json()["envelope"]
    forged = envelope | {"payload": envelope["payload"][:-8] + "AAAAAAA="}
    with behind_the_servers_back(database, "evidence_packets") as conn:
        conn.execute(
            text(f"UPDATE {_table(database, 'evidence_packets')} SET envelope = :e WHERE id = :id"),
            {"e": json.dumps(forged), "id": _id(database, uuid.UUID(packet["id"]))},
        )
    report = verify(api)
    assert report["ok"] is False
    assert report["problem"]["entry_id"] == packet["id"]
    assert "altered after sealing" in report["problem"]["reason"]


def test_a_rewritten_chain_is_caught_by_the_signed_checkpoint(api, estate, database):
    """Someone edits an event AND recomputes every hash after it: the links are consistent
    again, but the head no longer matches what the server signed."""
    promote(api, estate.release_id, "dev")
    assert api.post("/audit/checkpoints").status_code == 201
    tenant = tenant_of(api)
    rows = chain_rows(database, tenant)
    victim = next(r for r in rows if r.entry_type == "audit_event")
    with behind_the_servers_back(database, "audit_events") as conn:
        conn.execute(
            text(f"UPDATE {_table(database, 'audit_events')} SET details = :d WHERE id = :id"),
            {
                "d": json.dumps({"forged": True}),
                "id": _id(database, uuid.UUID(str(victim.entry_id))),
            },
        )
    # recompute the event's digest and every later link, as a careful forger would
    api_report = verify(api)
    assert api_report["problem"]["seq"] == victim.seq
    from stella.adapters.db.evidence_repositories import SqlAuditChainRepository
    from stella.domain.evidence import audit_event_digest

    with database.engine.connect() as conn:
        chain = SqlAuditChainRepository(conn)
        event = chain.audit_events([uuid.UUID(str(victim.entry_id))])[
            uuid.UUID(str(victim.entry_id))
        ]
        entries = chain.entries(tenant, 1, limit=100_000)
    prev = entries[victim.seq - 2].entry_hash if victim.seq > 1 else "sha256:" + "0" * 64
    with behind_the_servers_back(database, "audit_chain") as conn:
        for entry in entries[victim.seq - 1 :]:
            content = audit_event_digest(event) if entry.seq == victim.seq else entry.content_digest
            new_hash = link_hash(
                entry.seq, prev, str(entry.entry_type), str(entry.entry_id), content
            )
            conn.execute(
                text(
                    f"UPDATE {_table(database, 'audit_chain')} SET content_digest = :c, "
                    "prev_hash = :p, entry_hash = :h WHERE tenant_id = :t AND seq = :s"
                ),
                {
                    "c": content,
                    "p": prev,
                    "h": new_hash,
                    "t": _id(database, tenant),
                    "s": entry.seq,
                },
            )
            prev = new_hash
        conn.execute(
            text(
                f"UPDATE {_table(database, 'audit_chain_heads')} SET head_hash = :h "
                "WHERE tenant_id = :t"
            ),
            {"h": prev, "t": _id(database, tenant)},
        )
    report = verify(api)
    assert report["ok"] is False
    assert "rewritten" in report["problem"]["reason"], report


def test_a_truncated_chain_is_caught_by_the_signed_checkpoint(api, estate, database):
    promote(api, estate.release_id, "dev")
    assert api.post("/audit/checkpoints").status_code == 201
    tenant = tenant_of(api)
    rows = chain_rows(database, tenant)
    size = len(rows)
    with behind_the_servers_back(database, "audit_chain") as conn:
        conn.execute(
            text(
                f"DELETE FROM {_table(database, 'audit_chain')} WHERE tenant_id = :t AND seq > :s"
            ),
            {"t": _id(database, tenant), "s": size - 2},
        )
    report = verify(api)
    assert report["ok"] is False
    assert f"the chain head says {size} entries" in report["problem"]["reason"]
    # a careful forger also moves the head back: the signed checkpoint still remembers
    with database.engine.begin() as conn:
        conn.execute(
            text(
                f"UPDATE {_table(database, 'audit_chain_heads')} SET size = :s, head_hash = :h "
                "WHERE tenant_id = :t"
            ),
            {"s": size - 2, "h": rows[size - 3].entry_hash, "t": _id(database, tenant)},
        )
    report = verify(api)
    assert report["ok"] is False
    assert (
        f"a checkpoint covers {size} entries, only {size - 2} remain"
        in (report["problem"]["reason"])
    )


def test_an_event_inserted_behind_the_servers_back_is_reported(api, estate, database):
    promote(api, estate.release_id, "dev")
    tenant = tenant_of(api)
    with database.engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {_table(database, 'audit_events')} (id, tenant_id, actor_id, "
                "actor_name, action, resource_type, resource_id, occurred_at, correlation_id, "
                "details) VALUES (:id, :t, NULL, 'ghost', 'release.created', 'release', NULL, "
                ":at, NULL, :d)"
            ),
            {
                "id": _id(database, uuid.uuid4()),
                "t": _id(database, tenant),
                "at": datetime.now(UTC) if database.kind == "postgresql" else "2026-01-01 00:00:00",
                "d": "{}",
            },
        )
    report = verify(api)
    assert report["ok"] is False
    assert "not in the chain" in report["problem"]["reason"]


# --- the export bundle ---------------------------------------------------------------------


def export(api, since: str, until: str, **extra) -> bytes:
    response = api.get("/evidence/export", params={"from": since, "to": until, **extra})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    return response.content


def check(bundle: bytes, *pems: bytes, tmp_path):
    path = tmp_path / f"bundle-{uuid.uuid4().hex[:6]}.tar.gz"
    path.write_bytes(bundle)
    return verify_bundle(
        read_bundle(path), list(pems), key_id_from_pem, verify_envelope, RegoPolicyEvaluator()
    )


def rewrite(bundle: bytes, change) -> bytes:
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as old,
        tarfile.open(fileobj=out, mode="w:gz") as new,
    ):
        for info in old:
            data = old.extractfile(info).read()
            changed = change(info.name, data)
            if changed is not None:
                info.size = len(changed)
                new.addfile(info, io.BytesIO(changed))
    return out.getvalue()


def members(bundle: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        return tar.getnames()


def test_export_rejects_bad_periods(api):
    for params, field in (
        ({"to": "2026-03-31"}, "from"),
        ({"from": "2026-03-01"}, "to"),
        ({"from": "2026-03-31", "to": "2026-03-01"}, "to"),
        ({"from": "March", "to": "2026-03-31"}, "from"),
        ({"from": "2026-03-01", "to": "2026-03-31", "environment": "nowhere"}, "environment"),
    ):
        response = api.get("/evidence/export", params=params)
        assert response.status_code == 422, params
        assert response.json()["errors"][0]["field"] == field


def test_an_empty_period_gives_a_valid_empty_bundle(api, tmp_path):
    bundle = export(api, "2001-03-01", "2001-03-31")
    key = api.get("/keys").json()["keys"][0]["public_key_pem"].encode()
    report = check(bundle, key, tmp_path=tmp_path)
    assert report.ok, report.problem
    assert (report.packets, report.audit_events) == (0, 0)


def test_bundle_verifies_replays_and_names_every_tampering(api, estate, tmp_path):
    for env in ("dev", "stage", "prod"):
        promote_approved(api, estate, env)
    today = datetime.now(UTC).date().isoformat()
    bundle = export(api, today, today)
    key = api.get("/keys").json()["keys"][0]["public_key_pem"].encode()
    report = check(bundle, key, tmp_path=tmp_path)
    assert report.ok, report.problem
    assert report.decisions_replayed == 3  # prod's includes a Rego policy, replayed offline
    assert report.audit_events > 2
    assert report.checkpoint["size"] >= report.chain_entries > 0

    for name in members(bundle):

        def flip(member, data, name=name):
            if member != name:
                return data
            middle = len(data) // 2
            return data[:middle] + bytes([data[middle] ^ 0x20]) + data[middle + 1 :]

        tampered = check(rewrite(bundle, flip), key, tmp_path=tmp_path)
        assert not tampered.ok, name
        assert name in tampered.problem, (name, tampered.problem)

        dropped = check(
            rewrite(bundle, lambda m, d, name=name: None if m == name else d),
            key,
            tmp_path=tmp_path,
        )
        assert not dropped.ok, name
        assert name in dropped.problem, (name, dropped.problem)

    assert check(rewrite(bundle, lambda m, d: d), key, tmp_path=tmp_path).ok  # a faithful copy
    smuggled = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as old,
        tarfile.open(fileobj=smuggled, mode="w:gz") as new,
    ):
        for info in old:
            new.addfile(info, old.extractfile(info))
        info = tarfile.TarInfo("packets/extra.dsse.json")
        info.size = 2
        new.addfile(info, io.BytesIO(b"{}"))
    extra = check(smuggled.getvalue(), key, tmp_path=tmp_path)
    assert "packets/extra.dsse.json is in the bundle but not in its signed manifest" in (
        extra.problem or ""
    )

    stranger = public_pem(Ed25519PrivateKey.generate().public_key()).encode()
    unknown = check(bundle, stranger, tmp_path=tmp_path)
    assert "signed by an unknown key" in unknown.problem


def test_environment_filter_keeps_only_that_environment(api, estate, tmp_path):
    for env in ("dev", "stage"):
        promote_approved(api, estate, env)
    today = datetime.now(UTC).date().isoformat()
    bundle = export(api, today, today, environment="stage")
    key = api.get("/keys").json()["keys"][0]["public_key_pem"].encode()
    report = check(bundle, key, tmp_path=tmp_path)
    assert report.ok, report.problem
    assert report.decisions_replayed == 1
    assert [line["target"] for line in report.summary] == ["stage"]


def test_a_file_that_is_no_bundle_is_refused(tmp_path):
    path = tmp_path / "not.tar.gz"
    path.write_bytes(b"hello")
    with pytest.raises(BundleError, match=r"not a readable tar\.gz"):
        read_bundle(path)
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    path.write_bytes(evil.getvalue())
    with pytest.raises(BundleError, match="clean relative path"):
        read_bundle(path)


def test_a_correction_is_a_new_revision_and_the_original_stays(api, estate):
    promote(api, estate.release_id, "dev")
    original = api.get("/evidence").json()["items"][0]
    before = api.get(f"/evidence/{original['id']}").json()
    viewer = api.user_token("viewer")
    body = {"reason": "approver's name was misspelt", "changes": {"who.approvals[0].user": "Eve"}}
    refused = api.post(f"/evidence/{original['id']}/corrections", body, token=viewer)
    assert refused.status_code == 403
    corrected = api.post(f"/evidence/{original['id']}/corrections", body)
    assert corrected.status_code == 201, corrected.text
    fixed = corrected.json()
    assert (fixed["revision"], fixed["supersedes"]) == (2, original["id"])
    assert (
        fixed["statement"]["predicate"]["correction"]["original"]["digest"] == (original["digest"])
    )
    assert fixed["statement"]["predicate"]["why"] == before["statement"]["predicate"]["why"]
    assert api.get(f"/evidence/{original['id']}").json() == before  # never changed
    again = api.post(f"/evidence/{original['id']}/corrections", body)
    assert again.status_code == 409
    assert fixed["id"] in again.json()["detail"]
    for bad, field in (({"reason": ""}, "reason"), ({"reason": "x", "extra": 1}, "extra")):
        response = api.post(f"/evidence/{fixed['id']}/corrections", bad)
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == field
    assert verify(api)["ok"] is True
