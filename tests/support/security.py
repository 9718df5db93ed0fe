"""Security documents and uploads shared by the e2e tests: the OSV advisory for requests
(CVE-2023-32681), CycloneDX SBOMs, OpenVEX statements, advisory feeds, a Trivy report with a
critical openssl finding, and an estate whose release is exposed to the advisory."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from tests.support.promotions import Estate, build_estate

REQUESTS_CVE = "CVE-2023-32681"
REQUESTS_GHSA = "GHSA-j8r2-6x86-q33q"
REQUESTS_ADVISORY = {
    "schema_version": "1.6.0",
    "id": REQUESTS_GHSA,
    "aliases": [REQUESTS_CVE],
    "summary": "Unintended leak of Proxy-Authorization header in requests",
    "modified": "2023-06-01T00:00:00Z",
    "published": "2023-05-22T20:30:00Z",
    "database_specific": {"severity": "HIGH"},
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "requests", "purl": "pkg:pypi/requests"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "2.3.0"}, {"fixed": "2.31.0"}]}
            ],
        }
    ],
}
OPENSSL_CVE = "CVE-2024-0727"


def sbom(*packages: tuple[str, str]) -> dict:
    """A CycloneDX SBOM of PyPI packages, (name, version) each."""
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "components": [
            {"type": "library", "name": n, "version": v, "purl": f"pkg:pypi/{n}@{v}"}
            for n, v in packages
        ],
    }


def openvex(digest: str, status: str, timestamp: str, **extra) -> dict:
    """An OpenVEX document with one statement on requests 2.28.1 in the image `digest`."""
    statement = {
        "vulnerability": {"name": REQUESTS_CVE},
        "products": [{"@id": digest, "subcomponents": [{"@id": "pkg:pypi/requests@2.28.1"}]}],
        "status": status,
        **extra,
    }
    return {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": f"https://vex.example.com/{status}/{timestamp}",
        "author": "Security Team",
        "timestamp": timestamp,
        "version": 1,
        "statements": [statement],
    }


def vex_on(
    vulnerability: str, products: list[dict], status: str = "not_affected", **extra: Any
) -> dict:
    """An OpenVEX document with one statement on `vulnerability` in `products` (OpenVEX product
    objects: an image by `pkg:oci/…` purl or digest, or a package purl); `not_affected` by
    default, with a justification."""
    if status == "not_affected":
        extra.setdefault("justification", "vulnerable_code_not_in_execute_path")
    return {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": f"https://vex.example.com/{vulnerability}/{json.dumps(products, sort_keys=True)}",
        "author": "Security Team",
        "timestamp": "2026-11-20T00:00:00Z",
        "version": 1,
        "statements": [
            {"vulnerability": {"name": vulnerability}, "products": products, "status": status}
            | extra
        ],
    }


def openssl_trivy(**vulnerability: Any) -> dict:
    """A Trivy report with one critical finding, OPENSSL_CVE in openssl (fixed in 3.0.13);
    `vulnerability`: more fields of that finding."""
    return {
        "SchemaVersion": 2,
        "ArtifactName": "app",
        "Results": [
            {
                "Target": "app (debian 12.4)",
                "Class": "os-pkgs",
                "Type": "debian",
                "Vulnerabilities": [
                    {
                        "VulnerabilityID": OPENSSL_CVE,
                        "PkgName": "openssl",
                        "PkgIdentifier": {"PURL": "pkg:deb/debian/openssl@3.0.11-1~deb12u2"},
                        "InstalledVersion": "3.0.11-1~deb12u2",
                        "FixedVersion": "3.0.13-1~deb12u1",
                        "Severity": "CRITICAL",
                        **vulnerability,
                    }
                ],
            }
        ],
    }


def feed(*advisories: dict) -> bytes:
    """An offline advisory feed: a zip of OSV documents."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for advisory in advisories:
            archive.writestr(f"osv/{advisory['id']}.json", json.dumps(advisory))
    return out.getvalue()


def upload(api, path: str, digest: str, document: dict | bytes):
    """POST a JSON document (or its bytes, as given) to `path` (/sboms, /vex) for `digest`;
    `api`: the in-process TenantClient or a live server's httpx client."""
    return api.request(
        "POST",
        path,
        params={"digest": digest},
        content=document if isinstance(document, bytes) else json.dumps(document),
        headers={"Content-Type": "application/json"},
    )


def import_feed(api, body: bytes):
    return api.request(
        "POST", "/advisories/import", content=body, headers={"Content-Type": "application/zip"}
    )


def exposed_estate(api, registry_url: str, repository: str) -> Estate:
    """dev → stage → prod with a release whose SBOM has requests 2.28.1, then the advisory
    against it imported: the release's verdict fails everywhere."""
    estate = build_estate(api, registry_url, repository)
    attached = upload(api, "/sboms", estate.digest, sbom(("requests", "2.28.1")))
    assert attached.status_code == 201, attached.text
    imported = import_feed(api, feed(REQUESTS_ADVISORY))
    assert imported.status_code == 200, imported.text
    return estate
