"""Security decisioning end to end, on SQLite and PostgreSQL: an SBOM is matched against a newly
imported offline advisory, the release is reported exposed where it runs, its production
promotion is blocked with the reason, and a VEX `not_affected` statement unblocks it; changed
verdicts are recorded and notified with an HMAC-signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from stella.adapters.notify import WebhookNotifier
from stella.adapters.secrets import resolve_secret
from tests.support.promotions import build_estate, gate
from tests.support.security import (
    REQUESTS_ADVISORY,
    exposed_estate,
    feed,
    import_feed,
    openssl_trivy,
    openvex,
    sbom,
    upload,
)

UNRELATED_ADVISORY = {
    "id": "PYSEC-2099-1",
    "modified": "2026-01-01T00:00:00Z",
    "database_specific": {"severity": "CRITICAL"},
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "flask"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}]}],
        }
    ],
}
BROKEN_ADVISORY = {
    "id": "PYSEC-2099-2",
    "modified": "2026-01-01T00:00:00Z",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "urllib3"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "not a version!"}]}],
        }
    ],
}


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict, bytes]]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        return


@pytest.fixture
def webhook(container, monkeypatch):
    """A real HTTP receiver on loopback that the security services notify."""
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    Receiver.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("STELLA_SECRET_WEBHOOK", "s3cret-hmac-key")
    monkeypatch.setattr(
        container.security,
        "notify",
        WebhookNotifier(
            f"http://127.0.0.1:{server.server_address[1]}/hook",
            "env:STELLA_SECRET_WEBHOOK",
            resolve_secret,
        ),
    )
    yield Receiver.received
    server.shutdown()
    server.server_close()


def wait_for_webhook(received, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not received:
        time.sleep(0.05)
    assert received, "no webhook arrived"
    return received[0]


def approve_as(api, promotion_id: str, token: str):
    response = api.post(f"/promotions/{promotion_id}/approve", {"comment": "ok"}, token=token)
    assert response.status_code == 200, response.text
    return response.json()


def test_new_advisory_exposes_blocks_prod_and_vex_unblocks(api, registry_url, repository, webhook):
    estate = build_estate(api, registry_url, repository)
    digest = estate.digest
    assert (
        upload(api, "/sboms", digest, sbom(("requests", "2.28.1"), ("idna", "3.4"))).status_code
        == 201
    )
    dev = api.post("/promotions", {"release_id": estate.release_id, "target_environment": "dev"})
    assert dev.json()["state"] == "approved"
    stage = api.post(
        "/promotions", {"release_id": estate.release_id, "target_environment": "stage"}
    ).json()
    assert approve_as(api, stage["id"], estate.approvers[0])["state"] == "approved"

    # the security team imports the offline feed: one advisory hits requests 2.28.1
    imported = import_feed(api, feed(REQUESTS_ADVISORY, UNRELATED_ADVISORY, BROKEN_ADVISORY))
    assert imported.status_code == 200, imported.text
    summary = imported.json()
    assert (summary["added"], summary["updated"], summary["unchanged"]) == (2, 0, 0)
    assert [s["source"] for s in summary["skipped"]] == ["PYSEC-2099-2"]
    assert "not a version!" in summary["skipped"][0]["reason"]
    changed = {(c["environment"], c["new"]) for c in summary["verdict_changes"]}
    assert {("dev", "fail"), ("stage", "fail"), ("prod", "fail")} <= changed
    assert all("GHSA-j8r2-6x86-q33q" in c["new_blocking"] for c in summary["verdict_changes"])
    assert all(c["releases"] == ["api@1.0.0"] for c in summary["verdict_changes"])

    headers, body = wait_for_webhook(webhook)
    expected = "sha256=" + hmac.new(b"s3cret-hmac-key", body, hashlib.sha256).hexdigest()
    assert headers["X-Stella-Signature"] == expected
    assert json.loads(body)["event"] == "release_verdict_changed"

    # importing the same feed again changes nothing
    again = import_feed(api, feed(REQUESTS_ADVISORY, UNRELATED_ADVISORY)).json()
    assert (again["added"], again["unchanged"], again["verdict_changes"]) == (0, 2, [])

    exposure = api.get("/exposure", params={"advisory": "CVE-2023-32681"}).json()
    assert exposure["ids"] == ["CVE-2023-32681", "GHSA-j8r2-6x86-q33q"]
    assert sorted(e["environment"] for e in exposure["environments"]) == ["dev", "stage"]
    finding = exposure["environments"][0]["digests"][0]["findings"][0]
    assert (finding["package"], finding["installed_version"], finding["fixed_version"]) == (
        "requests",
        "2.28.1",
        "2.31.0",
    )
    assert [r["version"] for r in exposure["releases"]] == ["1.0.0"]
    assert api.get("/exposure", params={"advisory": "CVE-1999-0001"}).json()["environments"] == []

    prod = api.post(
        "/promotions", {"release_id": estate.release_id, "target_environment": "prod"}
    ).json()
    assert prod["state"] == "blocked"
    security = gate(prod, "security")
    assert security["passed"] is False
    assert "1 high (GHSA-j8r2-6x86-q33q)" in security["reason"]
    blocking = security["details"]["verdicts"]["api"]["blocking"]
    assert [(b["package"], b["fixed_version"]) for b in blocking] == [("requests", "2.31.0")]

    # the supplier says the vulnerable code is not used: the statement unblocks prod
    vex = openvex(
        digest,
        "not_affected",
        "2026-11-20T00:00:00Z",
        justification="vulnerable_code_not_in_execute_path",
    )
    assert upload(api, "/vex", digest, vex).status_code == 201
    regated = api.get(f"/promotions/{prod['id']}").json()
    assert regated["state"] == "awaiting_approval", gate(regated, "security")
    security = gate(regated, "security")
    assert security["passed"] is True
    assert "1 suppressed by VEX" in security["reason"]
    suppressed = security["details"]["verdicts"]["api"]["suppressed"][0]
    assert suppressed["vex"]["justification"] == "vulnerable_code_not_in_execute_path"
    exposure = api.get("/exposure", params={"advisory": "GHSA-j8r2-6x86-q33q"}).json()
    assert exposure["environments"] == []

    # a newer, equally specific statement saying affected wins again
    newer = openvex(digest, "affected", "2026-11-26T00:00:00Z", action_statement="upgrade")
    assert upload(api, "/vex", digest, newer).status_code == 201
    assert api.get(f"/promotions/{prod['id']}").json()["state"] == "blocked"

    history = api.get("/verdicts", params={"digest": digest}).json()
    prod_now = next(v for v in history["verdicts"] if v["environment"] == "prod")
    assert prod_now["state"] == "fail"
    states = [h["state"] for h in history["history"] if h["environment"] == "prod"]
    assert states[:3] == ["fail", "pass", "fail"]  # newest first: blocked, VEX, advisory
    audit = api.get("/audit-events", params={"action": "release.verdict_changed"}).json()
    assert len(audit["items"]) >= 3
    replayed = api.post(f"/promotions/{prod['id']}/replay").json()
    assert replayed["identical"] is True, replayed


def test_a_waiver_lets_one_advisory_through_until_it_expires(api, registry_url, repository):
    estate = exposed_estate(api, registry_url, repository)
    dev = api.post("/promotions", {"release_id": estate.release_id, "target_environment": "dev"})
    assert dev.json()["state"] == "blocked"
    viewer = api.user_token("viewer")
    spec = {
        "advisory": "CVE-2023-32681",
        "package": "pkg:pypi/requests",
        "reason": "fixed by our proxy config; upgrade planned",
        "ttl": "7d",
        "environment": "dev",
    }
    assert api.post("/waivers", spec, token=viewer).status_code == 403
    created = api.post("/waivers", spec)
    assert created.status_code == 201, created.text
    # the waiver re-evaluates the verdicts, and the blocked promotion is gated again at once
    again = api.get(f"/promotions/{dev.json()['id']}").json()
    assert again["state"] == "approved"
    assert "1 waived" in gate(again, "security")["reason"]
    for bad, field in (
        ({**spec, "ttl": None, "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({**spec, "ttl": "soon"}, "ttl"),
        ({**spec, "environment": "nowhere"}, "environment"),
        ({k: v for k, v in spec.items() if k != "reason"}, "reason"),
    ):
        response = api.post("/waivers", bad)
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["field"] == field
    revoked = api.post(f"/waivers/{created.json()['id']}/revoke")
    assert revoked.json()["revoked_at"] is not None
    assert api.get("/waivers").json()["items"] == []


def test_scanner_reports_become_findings(api, registry_url, repository):
    estate = build_estate(api, registry_url, repository)
    trivy = openssl_trivy(CVSS={"nvd": {"V3Score": 9.8, "V3Vector": "CVSS:3.1/AV:N/AC:L"}})
    response = api.post("/scans", {"digest": estate.digest, "format": "trivy", "report": trivy})
    assert response.status_code == 201, response.text
    scan = response.json()
    assert scan["blocking"] == ["CVE-2024-0727"]
    assert scan["report_digest"].startswith("sha256:")
    shown = api.get(f"/scans/{scan['id']}").json()
    assert shown["findings"][0]["fixed_version"] == "3.0.13-1~deb12u1"
    dev = api.post("/promotions", {"release_id": estate.release_id, "target_environment": "dev"})
    assert "1 critical (CVE-2024-0727)" in gate(dev.json(), "security")["reason"]
    attachments = api.get("/attachments", params={"digest": estate.digest}).json()["items"]
    assert [a["format"] for a in attachments] == ["native", "trivy"]  # build_estate's, this one


NATIVE_FINDINGS = [
    {"id": "CVE-2026-0101", "severity": "critical", "reachable": True},
    {"id": "CVE-2026-0102", "severity": "medium", "package": "zlib"},
    {"id": "CVE-2026-0103", "severity": "high", "suppressed": True},
]


def test_a_native_scan_is_an_attachment_and_its_decisions_evidence(api, registry_url, repository):
    """The native shorthand (`{"digest", "findings"}`) is stored as the native report
    `{"findings": [...]}` like any scanner's report: content-addressed, listed, downloadable
    byte for byte, stored once, and named in the evidence of the decisions that used it."""
    estate = build_estate(api, registry_url, repository)  # it posts a native scan too
    response = api.post("/scans", {"digest": estate.digest, "findings": NATIVE_FINDINGS})
    assert response.status_code == 201, response.text
    scan = response.json()
    assert (scan["format"], scan["blocking"]) == ("native", ["CVE-2026-0101"])
    assert scan["report_digest"].startswith("sha256:")

    listed = api.get("/attachments", params={"digest": estate.digest, "kind": "scan"}).json()
    used = next(a for a in listed["items"] if a["digest"] == scan["report_digest"])
    assert (used["format"], used["media_type"]) == (
        "native",
        "application/vnd.stella.findings+json",
    )
    content = api.get(f"/attachments/{used['id']}/content")
    assert "sha256:" + hashlib.sha256(content.content).hexdigest() == scan["report_digest"]
    stored = json.loads(content.content)["findings"]
    assert [f["id"] for f in stored] == [f["id"] for f in NATIVE_FINDINGS]
    assert [f["advisory_id"] for f in api.get(f"/scans/{scan['id']}").json()["findings"]] == [
        "CVE-2026-0101",
        "CVE-2026-0102",
    ]  # the scanner's own suppression is left out, as for a native report
    assert len(listed["items"]) == 2  # build_estate's native scan is an attachment too

    again = api.post("/scans", {"digest": estate.digest, "findings": NATIVE_FINDINGS}).json()
    assert again["report_digest"] == scan["report_digest"]
    assert len(api.get("/attachments", params={"digest": estate.digest}).json()["items"]) == 2

    blocked = api.post(
        "/promotions", {"release_id": estate.release_id, "target_environment": "dev"}
    )
    assert "1 critical (CVE-2026-0101)" in gate(blocked.json(), "security")["reason"]
    clean = api.post("/scans", {"digest": estate.digest, "findings": []}).json()
    assert api.get(f"/promotions/{blocked.json()['id']}").json()["state"] == "approved"
    packets = api.get("/evidence", params={"kind": "promotion_decision"}).json()["items"]
    packet = api.get(f"/evidence/{packets[0]['id']}").json()
    evidence = packet["statement"]["predicate"]["attachments"]
    assert {(a["kind"], a["format"]) for a in evidence} == {("scan", "native")}
    assert {scan["report_digest"], clean["report_digest"]} <= {a["digest"] for a in evidence}


def test_a_native_scan_over_the_attachment_limit_is_refused(api, container, monkeypatch):
    digest = "sha256:" + "d" * 64
    monkeypatch.setattr(container.settings, "attachment_max_bytes", 100)
    response = api.post("/scans", {"digest": digest, "findings": NATIVE_FINDINGS})
    assert response.status_code == 413, response.text
    assert api.get("/attachments", params={"digest": digest}).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"digest": "sha256:abc", "format": "native"}, "digest"),
        ({"digest": "sha256:" + "a" * 64, "format": "nessus", "report": {}}, "format"),
        ({"digest": "sha256:" + "a" * 64, "format": "trivy"}, "report"),
        ({"digest": "sha256:" + "a" * 64, "format": "trivy", "report": {"Results": 3}}, "report"),
        ({"digest": "sha256:" + "a" * 64, "format": "sarif", "report": {"runs": []}}, "report"),
    ],
)
def test_bad_scan_reports_are_rejected_with_the_field(api, body, field):
    response = api.post("/scans", body)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


def test_malformed_truncated_and_huge_uploads(api, container):
    digest = "sha256:" + "b" * 64
    truncated = api.request(
        "POST", "/scans", content=b'{"digest": "' + digest.encode() + b'", "rep',
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert truncated.status_code == 422
    huge = b"[" + b"0," * (container.settings.attachment_max_bytes // 2) + b"0]"
    too_big = api.request(
        "POST", "/advisories/import", content=huge, headers={"Content-Type": "application/json"}
    )
    assert too_big.status_code == 413
    not_a_feed = api.request(
        "POST", "/advisories/import", content=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert not_a_feed.status_code == 422
    assert not_a_feed.json()["errors"][0]["field"] == "body"
    releaser = api.user_token("releaser")
    refused = api.request(
        "POST",
        "/advisories/import",
        token=releaser,
        content=json.dumps(REQUESTS_ADVISORY).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert refused.status_code == 403


def test_exposure_rejects_a_missing_advisory_and_isolates_tenants(api, other_tenant):
    assert api.get("/exposure").status_code == 422
    import_feed(api, feed(REQUESTS_ADVISORY))
    assert api.get("/advisories/CVE-2023-32681").json()["id"] == "GHSA-j8r2-6x86-q33q"
    assert other_tenant.get("/advisories/CVE-2023-32681").status_code == 404


def test_each_environment_has_its_own_security_policy(api, registry_url, repository):
    estate = build_estate(api, registry_url, repository)
    prod = api.get("/environments/prod").json()
    assert prod["security"] == {
        "blocking_severities": ["critical", "high"],
        "reachable_only": True,
        "max_scan_age_days": None,
        "on_unknown": "block",
    }
    # the estate's scan has a high finding marked unreachable: counted once reachability is not
    # required any more
    patched = api.patch("/environments/dev", {"security": {"reachable_only": False}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["security"]["blocking_severities"] == ["critical", "high"]
    dev = api.post("/promotions", {"release_id": estate.release_id, "target_environment": "dev"})
    assert dev.json()["state"] == "blocked"
    assert "CVE-2026-0001" in gate(dev.json(), "security")["reason"]
    for bad, field in (
        ({"security": {"blocking_severities": ["urgent"]}}, "security.blocking_severities.0"),
        ({"security": {"on_unknown": "maybe"}}, "security.on_unknown"),
        ({"security": {"max_scan_age_days": 0}}, "security.max_scan_age_days"),
    ):
        response = api.patch("/environments/dev", bad)
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["field"] == field


def test_without_a_scan_the_policy_decides(api, registry_url, repository):
    from tests.support.oci import push_image

    digest = push_image(registry_url, repository, "v2", f"unscanned {repository}")
    api.post("/components", {"name": "svc", "repository": f"{registry_url[7:]}/{repository}"})
    api.post("/environments", {"name": "Dev", "slug": "dev", "promotion_order": 1})
    release = api.post(
        "/releases", {"name": "svc", "version": "1.0.0", "components": {"svc": "v2"}}
    ).json()
    assert release["components"][0]["digest"] == digest
    blocked = api.post("/promotions", {"release_id": release["id"], "target_environment": "dev"})
    assert gate(blocked.json(), "security")["reason"].startswith("no scan verdict for svc")
    api.patch("/environments/dev", {"security": {"on_unknown": "pass"}})
    again = api.post(f"/promotions/{blocked.json()['id']}/reevaluate").json()
    assert again["state"] == "approved"
