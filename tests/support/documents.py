"""Small, real-shaped SBOM, VEX, scan and attestation documents, built per test."""

from __future__ import annotations

import base64
import json
import uuid


def dumps(document: dict) -> bytes:
    """Pretty-printed on purpose: byte-exact storage is visible in the whitespace."""
    return json.dumps(document, indent=2).encode()


def cyclonedx(components: int = 2, name: str = "api") -> dict:
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {"component": {"type": "container", "name": name}},
        "components": [
            {
                "type": "library",
                "name": f"lib{i}",
                "version": f"1.{i}.0",
                "purl": f"pkg:pypi/lib{i}@1.{i}.0",
            }
            for i in range(components)
        ],
    }


def spdx2() -> dict:
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "api-image",
        "documentNamespace": f"https://example.com/spdx/{uuid.uuid4()}",
        "creationInfo": {"created": "2026-11-27T00:00:00Z", "creators": ["Tool: test"]},
        "packages": [
            {"SPDXID": "SPDXRef-Package-openssl", "name": "openssl", "versionInfo": "3.0.13"}
        ],
    }


def spdx3() -> dict:
    return {
        "@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld",
        "@graph": [
            {"type": "CreationInfo", "@id": "_:creationinfo", "specVersion": "3.0.1"},
            {"type": "software_Package", "spdxId": "urn:pkg:openssl", "name": "openssl"},
        ],
    }


def openvex(digest: str, status: str = "not_affected", **extra) -> dict:
    statement = {
        "vulnerability": {"name": "CVE-2026-0001"},
        "products": [{"@id": f"pkg:oci/api?repository_url=127.0.0.1:5000/app/api&digest={digest}"}],
        "status": status,
    }
    if status == "not_affected":
        statement["justification"] = "vulnerable_code_not_in_execute_path"
    statement.update(extra)
    return {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": f"https://example.com/vex/{uuid.uuid4()}",
        "author": "security@example.com",
        "timestamp": "2026-11-27T00:00:00Z",
        "version": 1,
        "statements": [statement],
    }


def cyclonedx_vex() -> dict:
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "vulnerabilities": [
            {
                "id": "CVE-2026-0002",
                "analysis": {"state": "not_affected", "justification": "code_not_reachable"},
                "affects": [{"ref": "urn:cdx:api"}],
            }
        ],
    }


def trivy() -> dict:
    return {
        "SchemaVersion": 2,
        "ArtifactName": "127.0.0.1:5000/app/api:v1",
        "ArtifactType": "container_image",
        "Results": [
            {
                "Target": "debian 12",
                "Vulnerabilities": [{"VulnerabilityID": "CVE-2026-0003", "Severity": "HIGH"}],
            }
        ],
    }


def grype() -> dict:
    return {
        "matches": [
            {
                "vulnerability": {"id": "CVE-2026-0004", "severity": "Medium"},
                "artifact": {"name": "zlib", "version": "1.2.13"},
            }
        ],
        "source": {"type": "image"},
        "descriptor": {"name": "grype", "version": "0.80.0"},
    }


def sarif() -> dict:
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "semgrep"}}, "results": []}],
    }


def native() -> dict:
    return {"findings": [{"id": "CVE-2026-0005", "severity": "low"}]}


def in_toto(digest: str) -> dict:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "127.0.0.1:5000/app/api", "digest": {"sha256": digest[7:]}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example.com/ci"}},
    }


def dsse(digest: str) -> dict:
    payload = base64.b64encode(json.dumps(in_toto(digest)).encode()).decode()
    return {
        "payloadType": "application/vnd.in-toto+json",
        "payload": payload,
        "signatures": [
            {"keyid": "test", "sig": base64.b64encode(b"not a real signature").decode()}
        ],
    }
