"""Re-evaluation and ingestion at scale, on SQLite and PostgreSQL: every open promotion a
verdict change concerns is gated again (however many), only those into an environment whose
verdict changed, nothing is recorded when nothing changed, a VEX document re-evaluates exactly
the images its statements apply to (by digest, by package purl, or anywhere), and an upload is
parsed once, after its size was checked."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import insert, select

from stella.adapters.db import tables as t
from stella.domain.errors import PayloadTooLarge
from stella.domain.ids import new_id
from stella.domain.tenancy import Principal, Role
from stella.services import security as svc
from stella.services.context import CallContext
from tests.support.promotions import build_estate
from tests.support.security import (
    OPENSSL_CVE,
    REQUESTS_ADVISORY,
    REQUESTS_CVE,
    exposed_estate,
    feed,
    import_feed,
    openssl_trivy,
    openvex,
    sbom,
    upload,
    vex_on,
)

WAIVER = {
    "advisory": REQUESTS_CVE,
    "package": "pkg:pypi/requests",
    "reason": "fixed by our proxy config",
    "ttl": "7d",
    "environment": "dev",
}


def promote(api, release_id: str, environment: str) -> dict:
    response = api.post(
        "/promotions", {"release_id": release_id, "target_environment": environment}
    )
    assert response.status_code == 201, response.text
    return response.json()


def history(api, digest: str) -> list[dict]:
    return api.get("/verdicts", params={"digest": digest}).json()["history"]


def audit(api, action: str) -> list[dict]:
    return api.get("/audit-events", params={"action": action, "limit": 500}).json()["items"]


def test_every_open_promotion_is_gated_again_not_only_the_first_500(
    api, container, registry_url, repository, monkeypatch
):
    estate = exposed_estate(api, registry_url, repository)
    blocked = promote(api, estate.release_id, "dev")
    assert blocked["state"] == "blocked"
    with container.engine.begin() as conn:
        row = dict(
            conn.execute(select(t.promotions).where(t.promotions.c.id == uuid.UUID(blocked["id"])))
            .one()
            ._mapping
        )
        clones = [{**row, "id": new_id()} for _ in range(520)]
        conn.execute(insert(t.promotions), clones)
    regated: list[str] = []
    monkeypatch.setattr(container.security, "regate", lambda ctx, ref: regated.append(ref))

    assert api.post("/waivers", WAIVER).status_code == 201  # dev: fail -> pass

    assert len(regated) == 521
    assert set(regated) == {blocked["id"]} | {str(c["id"]) for c in clones}


def test_only_promotions_into_an_environment_whose_verdict_changed_are_gated_again(
    api, registry_url, repository
):
    estate = exposed_estate(api, registry_url, repository)
    dev = promote(api, estate.release_id, "dev")
    stage = promote(api, estate.release_id, "stage")
    assert (dev["state"], stage["state"]) == ("blocked", "blocked")
    evaluations = len(api.get(f"/promotions/{stage['id']}/evaluations").json()["items"])

    assert api.post("/waivers", WAIVER).status_code == 201  # only dev's verdict changes

    assert api.get(f"/promotions/{dev['id']}").json()["state"] == "approved"
    reevaluated = {e["resource_id"] for e in audit(api, "promotion.reevaluated")}
    assert reevaluated == {dev["id"]}  # stage's gate reads the same verdict as before
    assert len(api.get(f"/promotions/{stage['id']}/evaluations").json()["items"]) == evaluations


def test_nothing_is_recorded_when_nothing_changed(api, container, registry_url, repository):
    estate = exposed_estate(api, registry_url, repository)
    tenant_id = api.issued.user.tenant_id
    recorded = history(api, estate.digest)
    assert {(h["environment"], h["state"]) for h in recorded if h["previous_state"]} == {
        ("dev", "fail"),
        ("stage", "fail"),
        ("prod", "fail"),
    }
    changes = audit(api, "release.verdict_changed")

    # the same SBOM again, the same feed again, and a plain re-evaluation: no news
    assert upload(api, "/sboms", estate.digest, sbom(("requests", "2.28.1"))).status_code == 200
    assert import_feed(api, feed(REQUESTS_ADVISORY)).json()["verdict_changes"] == []
    assert svc.reevaluate(container.security, tenant_id, [estate.digest], "again") == []

    assert history(api, estate.digest) == recorded
    assert audit(api, "release.verdict_changed") == changes


def test_a_digest_named_twice_is_recorded_once_per_environment(api, container):
    for order, slug in enumerate(("dev", "prod"), start=1):
        api.post("/environments", {"name": slug, "slug": slug, "promotion_order": order})
    digest = "sha256:" + uuid.uuid4().hex * 2
    tenant_id = api.issued.user.tenant_id
    changes = svc.reevaluate(container.security, tenant_id, [digest, digest], "twice")
    assert sorted(c["environment"] for c in changes) == ["dev", "prod"]  # no scan: unknown
    assert sorted(h["environment"] for h in history(api, digest)) == ["dev", "prod"]


# --- a VEX document re-evaluates exactly the images its statements apply to ------------------


def new_digest() -> str:
    return "sha256:" + uuid.uuid4().hex * 2


@pytest.fixture
def reevaluated(monkeypatch) -> list[list[str]]:
    """The digests each re-evaluation was asked for, while the test runs."""
    calls: list[list[str]] = []
    real = svc.reevaluate

    def spy(services, tenant_id, digests, cause):
        calls.append(sorted(set(digests)))
        return real(services, tenant_id, digests, cause)

    monkeypatch.setattr(svc, "reevaluate", spy)
    return calls


def vex_changes(api, digest: str) -> set[tuple[str, str]]:
    return {
        (h["environment"], h["state"]) for h in history(api, digest) if h["cause"][:4] == "vex "
    }


def test_a_package_purl_statement_reevaluates_every_image_with_that_package(
    api, registry_url, repository, reevaluated
):
    """The statement names requests 2.28.1, not an image: it applies to every image whose
    requests has the CVE, whichever image the document is attached to, and to no other."""
    estate = exposed_estate(api, registry_url, repository)
    blocked = promote(api, estate.release_id, "dev")
    assert blocked["state"] == "blocked"
    other, clean, subject = new_digest(), new_digest(), new_digest()
    assert upload(api, "/sboms", other, sbom(("requests", "2.28.1"))).status_code == 201
    assert upload(api, "/sboms", clean, sbom(("idna", "3.4"))).status_code == 201
    reevaluated.clear()

    document = vex_on(REQUESTS_CVE, [{"@id": "pkg:pypi/requests@2.28.1"}])
    response = upload(api, "/vex", subject, document)
    assert response.status_code == 201, response.text

    assert reevaluated == [sorted([estate.digest, other])]
    everywhere = {("dev", "pass"), ("stage", "pass"), ("prod", "pass")}
    assert vex_changes(api, estate.digest) == everywhere
    assert vex_changes(api, other) == everywhere
    assert history(api, subject) == []  # no finding there: nothing to decide
    assert api.get(f"/promotions/{blocked['id']}").json()["state"] == "approved"


@pytest.mark.parametrize(
    "product",
    [
        lambda digest: f"pkg:oci/app@{digest}",
        lambda digest: f"pkg:oci/app@{digest.replace(':', '%3A')}?repository_url=r.example/app",
    ],
    ids=["oci-purl", "oci-purl-encoded"],
)
def test_an_oci_purl_statement_reevaluates_the_image_it_names_not_the_one_it_is_attached_to(
    api, registry_url, repository, reevaluated, product
):
    estate = exposed_estate(api, registry_url, repository)
    other = new_digest()
    assert upload(api, "/sboms", other, sbom(("requests", "2.28.1"))).status_code == 201
    before = history(api, other)
    reevaluated.clear()

    document = vex_on(REQUESTS_CVE, [{"@id": product(estate.digest)}])
    response = upload(api, "/vex", other, document)  # attached to the other image
    assert response.status_code == 201, response.text

    assert reevaluated == [[estate.digest]]
    assert vex_changes(api, estate.digest) == {("dev", "pass"), ("stage", "pass"), ("prod", "pass")}
    assert history(api, other) == before
    assert {
        v["state"] for v in api.get("/verdicts", params={"digest": other}).json()["verdicts"]
    } == {"fail"}


OPENSSL_PURL = "pkg:deb/debian/openssl@3.0.11-1~deb12u2"
CYCLONEDX_VEX = {  # no metadata.component: the statement is about any image with that openssl
    "bomFormat": "CycloneDX",
    "specVersion": "1.5",
    "version": 1,
    "components": [{"type": "library", "name": "openssl", "bom-ref": "ssl", "purl": OPENSSL_PURL}],
    "vulnerabilities": [
        {
            "id": OPENSSL_CVE,
            "analysis": {"state": "not_affected", "justification": "code_not_reachable"},
            "affects": [{"ref": "ssl"}],
        }
    ],
}


@pytest.mark.parametrize(
    "document",
    [vex_on(OPENSSL_CVE, [{"@id": "pkg:deb/debian/openssl"}]), CYCLONEDX_VEX],
    ids=["openvex-package-product", "cyclonedx-vex-no-product"],
)
def test_a_statement_without_an_image_unblocks_a_scanned_image_it_applies_to(
    api, registry_url, repository, reevaluated, document
):
    """An image known only through its scanner's report (no SBOM), waiting in a promotion: a
    VEX document attached to another image, about openssl wherever it is, unblocks it."""
    estate = build_estate(api, registry_url, repository)
    trivy = {"digest": estate.digest, "format": "trivy", "report": openssl_trivy()}
    assert api.post("/scans", trivy).status_code == 201
    blocked = promote(api, estate.release_id, "dev")
    assert blocked["state"] == "blocked"
    reevaluated.clear()

    response = upload(api, "/vex", new_digest(), document)
    assert response.status_code == 201, response.text

    assert reevaluated == [[estate.digest]]
    assert ("dev", "pass") in vex_changes(api, estate.digest)
    assert api.get(f"/promotions/{blocked['id']}").json()["state"] == "approved"


# --- uploads are parsed once, after the size check -------------------------------------------


@pytest.fixture
def json_loads(monkeypatch):
    """The documents `json.loads` was given, while the test runs."""
    seen: list[Any] = []
    real = json.loads

    def loads(s, *args, **kwargs):
        seen.append(s)
        return real(s, *args, **kwargs)

    monkeypatch.setattr(json, "loads", loads)
    return seen


def test_an_uploaded_sbom_or_vex_is_parsed_once(api, json_loads):
    digest = "sha256:" + uuid.uuid4().hex * 2
    document = json.dumps(sbom(("requests", "2.28.1"), ("idna", "3.4"))).encode()
    response = upload(api, "/sboms", digest, document)
    assert response.status_code == 201, response.text
    assert json_loads.count(document) == 1  # validated and ingested from one parse
    statement = openvex(
        digest,
        "not_affected",
        "2026-11-20T00:00:00Z",
        justification="vulnerable_code_not_in_execute_path",
    )
    vex = json.dumps(statement).encode()
    response = upload(api, "/vex", digest, vex)
    assert response.status_code == 201, response.text
    assert json_loads.count(vex) == 1


TRIVY = openssl_trivy()


def test_a_scan_report_is_parsed_once(api, json_loads):
    digest = "sha256:" + uuid.uuid4().hex * 2
    response = api.post("/scans", {"digest": digest, "format": "trivy", "report": TRIVY})
    assert response.status_code == 201, response.text
    parsed = [s for s in json_loads if isinstance(s, str | bytes) and OPENSSL_CVE in str(s)]
    assert len(parsed) == 1, parsed  # the request's, not once more to store the report


def test_a_scan_report_over_the_limit_is_refused_before_it_is_read(api, container, monkeypatch):
    read: list[str] = []
    parsers = container.security.parsers

    class Spy:
        def __getattr__(self, name):
            return getattr(parsers, name)

        def scan_findings(self, format_name, document):
            read.append(format_name)
            return parsers.scan_findings(format_name, document)

    monkeypatch.setattr(container.security, "parsers", Spy())
    ctx = CallContext(
        Principal(api.issued.user.id, api.issued.user.tenant_id, "admin", Role.ADMIN),
        None,
        container.clock,
    )
    content = json.dumps(TRIVY).encode()
    digest = "sha256:" + uuid.uuid4().hex * 2
    with pytest.raises(PayloadTooLarge):
        svc.record_scan_report(
            container.security, ctx, digest, "trivy", content, TRIVY, len(content) - 1
        )
    assert read == []
    stored = svc.record_scan_report(
        container.security, ctx, digest, "trivy", content, TRIVY, len(content)
    )
    assert (read, stored["blocking"]) == (["trivy"], [OPENSSL_CVE])


def test_a_scan_report_with_nan_is_refused(api):
    body = (
        '{"digest": "sha256:' + "c" * 64 + '", "format": "native", '
        '"report": {"findings": [], "score": NaN}}'
    )
    response = api.request(
        "POST", "/scans", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "report"
