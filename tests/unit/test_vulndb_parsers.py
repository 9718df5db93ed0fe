"""Scan reports, SBOMs and VEX documents → Findings, Components and VexStatements."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stella.adapters.vulndb import (
    SBOM_FORMATS,
    SCAN_FORMATS,
    VEX_FORMATS,
    parse_scan_report,
    sbom_components,
    vex_statements,
)
from stella.adapters.vulndb.reports import normalise_severity, score_severity
from stella.adapters.vulndb.sboms import purl_component
from stella.domain.attachment_formats import (
    DocumentRejected,
    UnknownFormat,
    detect,
    formats_of,
    parse_json,
)
from stella.domain.security import Component, Finding, VexStatement

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "security"
IMAGE = "sha256:b813fb05ab2420b0d264795bd43c124adfdca8db5dc8a01580ca383a91f2d2cc"
OTHER = "sha256:c4e5bd5d8c8ca27251f29fb361202875852a778940b9d13398e5814163024f6d"
HASHED = "sha256:26e6d28a185b8b27c590ab181a3e61902321e1b53c4b59515feb56be20756993"
LIBSSL_PURL = "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12.5"
LOG4J_PURL = "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"
LOG4J = "org.apache.logging.log4j:log4j-core"
NVD_LIBSSL = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"
NVD_LOG4J = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"


def load(name: str) -> Any:
    return parse_json((FIXTURES / name).read_bytes())


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("trivy.json", "trivy"),
        ("grype.json", "grype"),
        ("sarif.json", "sarif"),
        ("native.json", "native"),
        ("cyclonedx-sbom.json", "cyclonedx"),
        ("cyclonedx-vulns.json", "cyclonedx-vex"),
        ("spdx-2.3.json", "spdx"),
        ("spdx-3.0.json", "spdx"),
        ("openvex.json", "openvex"),
    ],
)
def test_fixtures_are_recognised_and_pass_the_upload_checks(name, fmt):
    document = load(name)
    found = detect(document, formats_of(None))
    assert found is not None
    assert found.name == fmt
    found.check(document)


# --- scan reports ----------------------------------------------------------------------------


def test_trivy_report():
    assert parse_scan_report("trivy", load("trivy.json")) == [
        Finding(
            advisory_id="CVE-2024-2511",
            package="libssl3",
            severity="high",
            aliases=("DSA-5678-1",),
            purl=LIBSSL_PURL,
            installed_version="3.0.11-1~deb12u2",
            fixed_version="3.0.13-1~deb12u1",
            cvss_score=7.5,
            cvss_vector=NVD_LIBSSL,
            title="openssl: Unbounded memory growth with session handling in TLSv1.3",
        ),
        Finding(  # no NVD v3 score: the other source's v3 wins over NVD's v2
            advisory_id="CVE-2023-50495",
            package="libtinfo6",
            severity="low",
            purl="pkg:deb/debian/libtinfo6@6.4-4?arch=amd64&distro=debian-12.5",
            installed_version="6.4-4",
            cvss_score=3.3,
            cvss_vector="CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:N/I:N/A:L",
            title="ncurses: segmentation fault via _nc_wrap_entry()",
        ),
        Finding(
            advisory_id="GHSA-248v-346w-9cwc",
            package="certifi",
            severity="medium",
            purl="pkg:pypi/certifi@2023.7.22",
            installed_version="2023.7.22",
            fixed_version="2024.7.4",
            title="Certifi removes GLOBALTRUST root certificate",
        ),
    ]


def test_trivy_findings_say_nothing_about_reachability():
    assert {f.reachable for f in parse_scan_report("trivy", load("trivy.json"))} == {None}
    assert {f.source for f in parse_scan_report("trivy", load("trivy.json"))} == {"scan"}


def test_grype_report():
    assert parse_scan_report("grype", load("grype.json")) == [
        Finding(
            advisory_id="GHSA-jfh8-c2jp-5v3q",
            package="log4j-core",
            severity="critical",
            aliases=("CVE-2021-44228",),
            purl=LOG4J_PURL,
            installed_version="2.14.1",
            fixed_version="2.15.0",
            cvss_score=10.0,
            cvss_vector=NVD_LOG4J,
        ),
        Finding(  # negligible is low; the related NVD record supplies the CVSS
            advisory_id="CVE-2023-42363",
            package="busybox",
            severity="low",
            purl="pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&upstream=busybox&distro=alpine-3.19.1",
            installed_version="1.36.1-r15",
            cvss_score=5.5,
            cvss_vector="CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H",
        ),
    ]


def test_sarif_report():
    assert parse_scan_report("sarif", load("sarif.json")) == [
        Finding(  # Trivy's SARIF: package and versions only in the message text
            advisory_id="CVE-2024-2511",
            package="libssl3",
            severity="high",
            installed_version="3.0.11-1~deb12u2",
            fixed_version="3.0.13-1~deb12u1",
            cvss_score=7.5,
            title="openssl: Unbounded memory growth with session handling in TLSv1.3",
        ),
        Finding(  # no security-severity: level note is low; properties give purl, reachable
            advisory_id="CVE-2023-50495",
            package="libtinfo6",
            severity="low",
            purl="pkg:deb/debian/libtinfo6@6.4-4?arch=amd64&distro=debian-12",
            installed_version="6.4-4",
            reachable=False,
            title="ncurses: segmentation fault via _nc_wrap_entry()",
        ),
        # the accepted SARIF suppression (ncurses-base) is left out
        Finding(
            advisory_id="GHSA-jfh8-c2jp-5v3q",
            package=LOG4J,
            severity="critical",
            aliases=("CVE-2021-44228",),
            purl=LOG4J_PURL,
            cvss_score=10.0,
            reachable=True,
            title="Remote code injection in Log4j",
        ),
        Finding(  # no rule description: the message's first line; the `pass` result is left out
            advisory_id="PY-REDOS-001",
            package="shop-api",
            severity="medium",
            title="Inefficient regular expression in validators.py",
        ),
    ]


@pytest.mark.parametrize(
    ("score", "level", "expected"),
    [
        ("9.0", "note", "critical"),
        ("8.9", "note", "high"),
        (7, "note", "high"),
        ("4.0", "error", "medium"),
        ("0.1", "error", "low"),
        ("0.0", "error", "high"),  # no score: the level decides
        ("n/a", "warning", "medium"),
        (None, "note", "low"),
        (None, None, "medium"),  # SARIF's default level is warning
        (None, "none", "low"),
    ],
)
def test_sarif_severity_from_score_else_level(score, level, expected):
    rule: dict[str, Any] = {"id": "R1"}
    if score is not None:
        rule["properties"] = {"security-severity": score}
    result: dict[str, Any] = {"ruleId": "R1", "message": {"text": "x"}}
    if level is not None:
        result["level"] = level
    document = {
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "t", "rules": [rule]}}, "results": [result]}],
    }
    [finding] = parse_scan_report("sarif", document)
    assert finding.severity == expected


def test_sarif_rule_found_by_index_and_default_level():
    document = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "t",
                        "rules": [
                            {"id": "A"},
                            {"id": "B", "defaultConfiguration": {"level": "error"}},
                        ],
                    }
                },
                "results": [{"ruleIndex": 1, "message": {"text": "m"}}],
            }
        ],
    }
    [finding] = parse_scan_report("sarif", document)
    assert (finding.advisory_id, finding.severity, finding.package) == ("B", "high", "")


def test_sarif_without_a_package_names_the_location():
    location = {"physicalLocation": {"artifactLocation": {"uri": "app/views.py"}}}
    document = _sarif({"ruleId": "S1", "level": "error", "locations": [location]})
    assert parse_scan_report("sarif", document) == [Finding("S1", "app/views.py", "high")]


def test_cyclonedx_report_gives_one_finding_per_affected_component():
    findings = parse_scan_report("cyclonedx", load("cyclonedx-vulns.json"))
    assert findings == [
        Finding(  # the worst rating and the highest score; references are aliases
            advisory_id="CVE-2021-44228",
            package=LOG4J,
            severity="critical",
            aliases=("GHSA-jfh8-c2jp-5v3q",),
            purl=LOG4J_PURL,
            installed_version="2.14.1",
            fixed_version="2.17.1",
            cvss_score=10.0,
            cvss_vector=NVD_LOG4J,
            title="Apache Log4j2 JNDI features do not protect against attacker controlled LDAP "
            "endpoints",
        ),
        Finding(  # bom-ref resolved to the component
            advisory_id="CVE-2024-2511",
            package="libssl3",
            severity="high",
            purl=LIBSSL_PURL,
            installed_version="3.0.11-1~deb12u2",
            cvss_score=7.5,
            cvss_vector=NVD_LIBSSL,
        ),
        Finding(  # a ref that is a purl, not a bom-ref of this BOM
            advisory_id="CVE-2024-2511",
            package="libcrypto3",
            severity="high",
            purl="pkg:deb/debian/libcrypto3@3.0.11-1~deb12u2?distro=debian-12",
            installed_version="3.0.11-1~deb12u2",
            cvss_score=7.5,
            cvss_vector=NVD_LIBSSL,
        ),
        Finding(
            advisory_id="GHSA-248v-346w-9cwc",
            package="certifi",
            severity="medium",  # GitHub's "moderate"
            purl="pkg:pypi/certifi@2023.7.22",
            installed_version="2023.7.22",
        ),
        Finding(  # the ref is the image the BOM describes
            advisory_id="GHSA-248v-346w-9cwc",
            package="registry.example.com/shop/api",
            severity="medium",
            purl="pkg:oci/api@sha256%3Ab813fb05ab2420b0d264795bd43c124adfdca8db5dc8a01580ca383a91f2d2cc"
            "?repository_url=registry.example.com%2Fshop%2Fapi",
            installed_version=IMAGE,
        ),
        Finding(  # an unresolvable BOM-Link stays visible as the package
            advisory_id="CVE-2023-50495",
            package="urn:cdx:0b7f8e02-3c3a-4a7e-9d5c-8b1f2a4e6c01/1#ncurses-ref",
            severity="low",
            cvss_score=0.0,
        ),
        Finding(  # no affects and no severity word: kept, severity from the score
            advisory_id="CVE-2022-0001",
            package="",
            severity="medium",
            cvss_score=6.1,
        ),
    ]


def test_native_report_drops_the_scanners_own_suppressions():
    assert parse_scan_report("native", load("native.json")) == [
        Finding(
            advisory_id="CVE-2024-2511",
            package="libssl3",
            severity="high",
            purl="pkg:deb/debian/libssl3@3.0.11-1~deb12u2?distro=debian-12",
            reachable=True,
        ),
        Finding(advisory_id="CVE-2023-42363", package="busybox", severity="low", reachable=False),
        Finding(  # no package: the purl's name; no reachable: unknown
            advisory_id="GHSA-jfh8-c2jp-5v3q",
            package=LOG4J,
            severity="critical",
            purl=LOG4J_PURL,
        ),
        Finding(advisory_id="STELLA-2024-0001", package="", severity="unknown", reachable=True),
    ]


def test_reports_accept_the_raw_body_and_deduplicate():
    body = (FIXTURES / "native.json").read_bytes()
    assert parse_scan_report("native", body) == parse_scan_report("native", json.loads(body))
    twice = {"findings": [{"id": "X-1", "severity": "low"}] * 2}
    assert parse_scan_report("native", twice) == [Finding("X-1", "", "low")]
    with pytest.raises(DocumentRejected, match=r"^not JSON: "):
        parse_scan_report("trivy", b'{"SchemaVersion": 2,')


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("CRITICAL", "critical"),
        ("High", "high"),
        (" medium ", "medium"),
        ("LOW", "low"),
        ("Negligible", "low"),
        ("moderate", "medium"),
        ("important", "high"),
        ("info", "low"),
        ("UNKNOWN", "unknown"),
        ("severe", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
        (3, "unknown"),
    ],
)
def test_normalise_severity(word, expected):
    assert normalise_severity(word) == expected


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (10.0, "critical"),
        (9.0, "critical"),
        (7.0, "high"),
        (4.0, "medium"),
        (0.1, "low"),
        (0.0, None),
        (None, None),
    ],
)
def test_score_severity(score, expected):
    assert score_severity(score) == expected


def test_unknown_scan_format_names_the_accepted_ones():
    with pytest.raises(ValueError, match="accepted: trivy, grype, sarif, cyclonedx, native") as e:
        parse_scan_report("snyk", {})
    assert isinstance(e.value, UnknownFormat)
    assert SCAN_FORMATS == ("trivy", "grype", "sarif", "cyclonedx", "native")


def _trivy(**vulnerability: Any) -> dict[str, Any]:
    base = {"VulnerabilityID": "CVE-1", "PkgName": "p"}
    return {
        "SchemaVersion": 2,
        "ArtifactName": "img",
        "Results": [{"Target": "t", "Vulnerabilities": [{**base, **vulnerability}]}],
    }


def _grype(**artifact: Any) -> dict[str, Any]:
    return {"matches": [{"vulnerability": {"id": "CVE-1"}, "artifact": artifact}]}


def _sarif(*results: Any) -> dict[str, Any]:
    runs = [{"tool": {"driver": {"name": "t"}}, "results": list(results)}]
    return {"version": "2.1.0", "runs": runs}


def _cdx(**extra: Any) -> dict[str, Any]:
    return {"bomFormat": "CycloneDX", "specVersion": "1.5", **extra}


@pytest.mark.parametrize(
    ("fmt", "document", "reason"),
    [
        ("trivy", [], "not a Trivy report: the document must be a JSON object"),
        ("trivy", {**_trivy(), "Results": {}}, "not a Trivy report: Results must be a list"),
        (
            "trivy",
            {**_trivy(), "Results": [{"Vulnerabilities": "none"}]},
            "not a Trivy report: Vulnerabilities must be a list",  # the upload check's words
        ),
        (
            "trivy",
            _trivy(PkgName=None),
            "not a Trivy report: Results[0].Vulnerabilities[0] must name a package",
        ),
        (
            "trivy",
            _trivy(PkgIdentifier={"PURL": 7}),
            "not a Trivy report: Results[0].Vulnerabilities[0].PkgIdentifier.PURL must be a string",
        ),
        (
            "trivy",
            _trivy(InstalledVersion=["1"]),
            "not a Trivy report: Results[0].Vulnerabilities[0].InstalledVersion must be a string",
        ),
        ("grype", {"matches": {}}, "not a Grype report: matches must be a list"),
        (
            "grype",
            _grype(version="1"),
            "not a Grype report: matches[0].artifact must name a package",
        ),
        (
            "grype",
            {
                "matches": [
                    {
                        "vulnerability": {"id": "X"},
                        "artifact": {"name": "p"},
                        "relatedVulnerabilities": [1],
                    }
                ]
            },
            "not a Grype report: matches[0].relatedVulnerabilities[0] must be an object",
        ),
        ("sarif", {"version": "2.0.0", "runs": []}, "not SARIF: version must be '2.1.0'"),
        (
            "sarif",
            _sarif({"message": {"text": "m"}}),
            "not SARIF: runs[0].results[0].ruleId missing",
        ),
        (
            "sarif",
            _sarif({"ruleId": "R", "properties": {"purl": ["pkg:pypi/x"]}}),
            "not SARIF: runs[0].results[0].properties.purl must be a string",
        ),
        ("cyclonedx", _cdx(), "not CycloneDX: vulnerabilities missing"),
        (
            "cyclonedx",
            _cdx(vulnerabilities=[{"id": "CVE-1", "affects": [{"versions": []}]}]),
            "not CycloneDX: vulnerabilities[0].affects[0].ref must be a non-empty string",
        ),
        (
            "cyclonedx",
            _cdx(vulnerabilities=[{"id": "CVE-1", "ratings": {}}]),
            "not CycloneDX: vulnerabilities[0].ratings must be a list",
        ),
        ("cyclonedx", _cdx(vulnerabilities=[{}]), "not CycloneDX: vulnerabilities[0].id must be"),
        ("native", {"findings": [{"id": "X"}]}, "not a native scan report: findings[0].severity"),
        (
            "native",
            {"findings": [{"id": "X", "severity": "low", "suppressed": "yes"}]},
            "not a native scan report: findings[0].suppressed must be true or false",
        ),
        (
            "native",
            {"findings": [{"id": "X", "severity": "low", "reachable": 1}]},
            "not a native scan report: findings[0].reachable must be true or false",
        ),
    ],
)
def test_malformed_reports_are_rejected_with_the_reason(fmt, document, reason):
    with pytest.raises(DocumentRejected) as e:
        parse_scan_report(fmt, document)
    assert str(e.value).startswith(reason)


# --- SBOMs -----------------------------------------------------------------------------------


def test_cyclonedx_sbom_components_nested_and_deduplicated():
    assert sbom_components("cyclonedx", load("cyclonedx-sbom.json")) == [
        Component("django", "4.2.7", "pkg:pypi/django@4.2.7", "PyPI"),
        Component("@babel/traverse", "7.22.5", "pkg:npm/%40babel/traverse@7.22.5", "npm"),
        Component(
            "libssl3",
            "3.0.11-1~deb12u2",
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&upstream=openssl&distro=debian-12",
            "Debian:12",
        ),
        Component(
            "busybox",
            "1.36.1-r15",
            "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&upstream=busybox&distro=alpine-3.19.1",
            "Alpine:v3.19",
        ),
        Component(
            "org.springframework:spring-webmvc",
            "6.0.13",
            "pkg:maven/org.springframework/spring-webmvc@6.0.13",
            "Maven",
        ),
        Component(
            "org.springframework:spring-web",
            "6.0.13",
            "pkg:maven/org.springframework/spring-web@6.0.13",
            "Maven",
        ),
        Component("golang.org/x/net", "v0.17.0", "pkg:golang/golang.org/x/net@v0.17.0", "Go"),
        Component("debian", "12.5"),  # no purl: listed, never matched by ecosystem
    ]


def test_spdx_2_sbom():
    assert sbom_components("spdx", load("spdx-2.3.json")) == [
        Component("requests", "2.31.0", "pkg:pypi/requests@2.31.0", "PyPI"),
        Component(
            "musl",
            "1.2.4_git20230717-r4",
            "pkg:apk/alpine/musl@1.2.4_git20230717-r4?arch=x86_64&distro=3.19.1",
            "Alpine:v3.19",
        ),
        Component(
            "github.com/gorilla/mux", "v1.8.1", "pkg:golang/github.com/gorilla/mux@v1.8.1", "Go"
        ),
        Component(
            "openssl-libs",
            "1:3.0.7-25.el9_3",
            "pkg:rpm/redhat/openssl-libs@3.0.7-25.el9_3?arch=x86_64&epoch=1&distro=rhel-9.3",
            "Red Hat",
        ),
        Component("vendored-lib"),  # NOASSERTION is no version
    ]


def test_spdx_3_json_ld_sbom():
    assert sbom_components("spdx", load("spdx-3.0.json")) == [
        Component("flask", "3.0.0", "pkg:pypi/flask@3.0.0", "PyPI"),
        Component("serde", "1.0.193", "pkg:cargo/serde@1.0.193", "crates.io"),
    ]


@pytest.mark.parametrize(
    ("purl", "ecosystem", "name"),
    [
        ("pkg:pypi/Django_Rest@1.0", "PyPI", "django-rest"),
        ("pkg:npm/lodash@4.17.21", "npm", "lodash"),
        ("pkg:npm/%40angular/core@17.0.0", "npm", "@angular/core"),
        ("pkg:maven/org.yaml/snakeyaml@2.0", "Maven", "org.yaml:snakeyaml"),
        ("pkg:golang/github.com/foo/bar/v2@v2.0.1#sub/pkg", "Go", "github.com/foo/bar/v2"),
        ("pkg:cargo/serde@1.0.0", "crates.io", "serde"),
        ("pkg:gem/rails@7.1.0", "RubyGems", "rails"),
        ("pkg:nuget/Newtonsoft.Json@13.0.1", "NuGet", "Newtonsoft.Json"),
        ("pkg:composer/laravel/framework@10.0.0", "Packagist", "laravel/framework"),
        ("pkg:hex/phoenix@1.7.0", "Hex", "phoenix"),
        ("pkg:pub/http@1.1.0", "Pub", "http"),
        ("pkg:deb/debian/curl@7.88.1-10?distro=debian-12", "Debian:12", "curl"),
        ("pkg:deb/debian/curl@7.88.1-10?distro=debian-12.5", "Debian:12", "curl"),
        ("pkg:deb/debian/curl@7.88.1-10?distro=bookworm", "Debian:12", "curl"),
        ("pkg:deb/debian/curl@7.88.1-10", "Debian", "curl"),
        ("pkg:deb/ubuntu/curl@8.5.0-2ubuntu10?distro=ubuntu-24.04", "Ubuntu", "curl"),
        ("pkg:deb/kali/curl@8.5.0", None, "kali/curl"),
        ("pkg:apk/alpine/musl@1.2.4-r2?distro=alpine-3.19", "Alpine:v3.19", "musl"),
        ("pkg:apk/alpine/musl@1.2.4-r2?distro=3.18.6", "Alpine:v3.18", "musl"),
        ("pkg:apk/alpine/musl@1.2.4-r2?distro=alpine-edge", "Alpine", "musl"),
        ("pkg:apk/wolfi/glibc@2.39-r1", "Wolfi", "glibc"),
        ("pkg:rpm/redhat/bash@5.1.8-6.el9", "Red Hat", "bash"),
        ("pkg:rpm/rocky/bash@5.1.8-6.el9", "Rocky Linux", "bash"),
        ("pkg:rpm/almalinux/bash@5.1.8-6.el9", "AlmaLinux", "bash"),
        ("pkg:rpm/opensuse/bash@5.2.15", "openSUSE", "bash"),
        ("pkg:rpm/fedora/bash@5.2.26", None, "fedora/bash"),
        ("pkg:github/actions/checkout@v4", None, "actions/checkout"),
    ],
)
def test_purl_to_osv_ecosystem_and_name(purl, ecosystem, name):
    component = purl_component(purl)
    assert (component.ecosystem, component.name) == (ecosystem, name)
    assert component.purl == purl


def test_purl_edge_cases():
    # the SBOM's version wins (Trivy moves a Debian epoch to a qualifier); else the purl's
    assert purl_component("pkg:deb/debian/a@2.0?epoch=1", "a", "1:2.0").version == "1:2.0"
    assert purl_component("pkg:npm/a@2.0", "a").version == "2.0"
    # a type OSV does not know keeps the document's name
    assert purl_component("pkg:oci/api@sha256%3Aab", "registry/api", None) == Component(
        "registry/api", "sha256:ab", "pkg:oci/api@sha256%3Aab", None
    )
    # not a purl: dropped, the component keeps its own name and version
    assert purl_component("PKG:pypi/x@1", "x", "1") == Component("x", "1")
    assert purl_component("cpe:2.3:a:x:y:1", "y", "1") == Component("y", "1")
    assert purl_component("pkg:", "z") == Component("z")
    assert purl_component(None, "z", "2") == Component("z", "2")
    # surrounding whitespace is not part of the purl
    assert purl_component(" pkg:gem/rake@13.0.0 ").purl == "pkg:gem/rake@13.0.0"


def test_sbom_without_purls_or_with_unknown_format():
    document = {"bomFormat": "CycloneDX", "specVersion": "1.5", "components": [{"name": "x"}]}
    assert sbom_components("cyclonedx", document) == [Component("x")]
    with pytest.raises(UnknownFormat, match="accepted: cyclonedx, spdx"):
        sbom_components("syft-json", document)
    assert SBOM_FORMATS == ("cyclonedx", "spdx")


@pytest.mark.parametrize(
    ("fmt", "document", "reason"),
    [
        ("cyclonedx", {"bomFormat": "SPDX"}, "not CycloneDX: bomFormat must be 'CycloneDX'"),
        (
            "cyclonedx",
            _cdx(components=[{"name": "a", "components": [{"version": "1"}]}]),
            "not CycloneDX: components[0].components[0].name must be a non-empty string",
        ),
        (
            "cyclonedx",
            _cdx(components=[{"name": "a", "purl": 1}]),
            "not CycloneDX: components[0].purl must be a string",
        ),
        ("spdx", {"spdxVersion": "SPDX-1.2"}, "not SPDX: spdxVersion must start with 'SPDX-2'"),
        (
            "spdx",
            {
                "spdxVersion": "SPDX-2.3",
                "SPDXID": "SPDXRef-DOCUMENT",
                "name": "n",
                "packages": [{"SPDXID": "p", "name": "p", "externalRefs": {}}],
            },
            "not SPDX: packages[0].externalRefs must be a list",
        ),
        (
            "spdx",
            {
                "@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld",
                "@graph": [{"type": "software_Package"}],
            },
            "not SPDX: @graph[0].name must be a non-empty string",
        ),
        ("spdx", {"@context": "https://example.com", "@graph": []}, "not SPDX: @context must name"),
    ],
)
def test_malformed_sboms_are_rejected_with_the_reason(fmt, document, reason):
    with pytest.raises(DocumentRejected) as e:
        sbom_components(fmt, document)
    assert str(e.value).startswith(reason)


# --- VEX -------------------------------------------------------------------------------------


def test_openvex_statements():
    stamp = datetime(2024, 5, 3, 11, 0, tzinfo=UTC)  # the document's, for statements without
    assert vex_statements("openvex", load("openvex.json"), "sha256:" + "e" * 64) == [
        VexStatement(
            vulnerability="CVE-2021-44228",
            status="not_affected",
            aliases=("GHSA-jfh8-c2jp-5v3q",),
            products=(IMAGE,),  # the digest inside the pkg:oci purl
            subcomponents=(LOG4J_PURL,),
            justification="vulnerable_code_not_in_execute_path",
            impact_statement="The JNDI lookup is never reached: message lookups are disabled.",
            timestamp=datetime(2024, 5, 3, 10, 45, tzinfo=UTC),
            document="sha256:" + "e" * 64,
        ),
        VexStatement(
            vulnerability="CVE-2024-2511",
            status="fixed",
            products=(  # a plain digest; a product without one keeps its @id and purl
                OTHER,
                "https://example.com/products/shop-api",
                "pkg:oci/api?repository_url=registry.example.com/shop/api&tag=1.4.2",
            ),
            subcomponents=("pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12",),
            timestamp=stamp,
            document="sha256:" + "e" * 64,
        ),
        VexStatement(  # only an @id; hashes.sha-256 is the image digest
            vulnerability="https://github.com/advisories/GHSA-248v-346w-9cwc",
            status="under_investigation",
            products=(HASHED,),
            timestamp=stamp,
            document="sha256:" + "e" * 64,
        ),
        VexStatement(
            vulnerability="CVE-2023-50495",
            status="affected",
            timestamp=stamp,
            document="sha256:" + "e" * 64,
        ),
    ]


def test_cyclonedx_vex_statements():
    assert vex_statements("cyclonedx-vex", load("cyclonedx-vulns.json")) == [
        VexStatement(
            vulnerability="CVE-2021-44228",
            status="not_affected",
            aliases=("GHSA-jfh8-c2jp-5v3q",),
            products=(IMAGE,),  # metadata.component's pkg:oci purl
            subcomponents=(LOG4J_PURL,),  # bom-ref → the component's purl
            justification="code_not_reachable",
            impact_statement="JndiLookup.class is removed from the shaded jar at build time",
            timestamp=datetime(2024, 5, 3, 9, 30, tzinfo=UTC),  # analysis.lastUpdated
        ),
        VexStatement(  # exploitable; the second ref is already a purl
            vulnerability="CVE-2024-2511",
            status="affected",
            products=(IMAGE,),
            subcomponents=(
                LIBSSL_PURL,
                "pkg:deb/debian/libcrypto3@3.0.11-1~deb12u2?distro=debian-12",
            ),
            timestamp=datetime(2024, 5, 3, 10, 0, tzinfo=UTC),  # metadata.timestamp
        ),
        VexStatement(  # in_triage; the ref to the product itself is no subcomponent
            vulnerability="GHSA-248v-346w-9cwc",
            status="under_investigation",
            products=(IMAGE,),
            subcomponents=("pkg:pypi/certifi@2023.7.22",),
            timestamp=datetime(2024, 5, 3, 10, 0, tzinfo=UTC),
        ),
        VexStatement(  # false_positive; an unresolvable ref is kept, not widened to "any"
            vulnerability="CVE-2023-50495",
            status="not_affected",
            products=(IMAGE,),
            subcomponents=("urn:cdx:0b7f8e02-3c3a-4a7e-9d5c-8b1f2a4e6c01/1#ncurses-ref",),
            justification="code_not_present",
            timestamp=datetime(2024, 5, 1, 8, 0, tzinfo=UTC),  # analysis.firstIssued
        ),
        VexStatement(
            vulnerability="CVE-2022-0001",
            status="fixed",  # resolved
            products=(IMAGE,),
            timestamp=datetime(2024, 5, 3, 10, 0, tzinfo=UTC),
        ),
    ]


def test_cyclonedx_vex_product_without_digest_is_its_purl_and_none_without_metadata():
    document = load("cyclonedx-vulns.json")
    document["metadata"]["component"]["purl"] = "pkg:oci/api?tag=1.4.2"
    assert vex_statements("cyclonedx-vex", document)[0].products == ("pkg:oci/api?tag=1.4.2",)
    del document["metadata"]
    statement = vex_statements("cyclonedx-vex", document)[0]
    assert (statement.products, statement.timestamp) == (
        (),
        datetime(2024, 5, 3, 9, 30, tzinfo=UTC),
    )


def test_openvex_string_vulnerability_naive_time_and_identifiers_purl():
    document = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "statements": [
            {
                "vulnerability": "CVE-2024-0001",
                "timestamp": "2024-01-02T03:04:05",
                "products": [
                    {"identifiers": {"purl": f"pkg:oci/app@{IMAGE.replace(':', '%3A')}"}},
                    {
                        "@id": "pkg:pypi/app@1.0",
                        "subcomponents": [{"identifiers": {"purl": "pkg:pypi/jinja2@3.1.2"}}],
                    },
                ],
                "status": "fixed",
            }
        ],
    }
    [statement] = vex_statements("openvex", document)
    assert statement.vulnerability == "CVE-2024-0001"
    assert statement.products == (IMAGE, "pkg:pypi/app@1.0")
    assert statement.subcomponents == ("pkg:pypi/jinja2@3.1.2",)
    assert statement.timestamp == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert statement.document is None
    assert VexStatement.from_json(statement.to_json()) == statement


def _openvex(**statement: Any) -> dict[str, Any]:
    base = {"vulnerability": {"name": "CVE-1"}, "status": "fixed"}
    return {"@context": "https://openvex.dev/ns/v0.2.0", "statements": [{**base, **statement}]}


@pytest.mark.parametrize(
    ("fmt", "document", "reason"),
    [
        ("openvex", {"@context": "https://example.com"}, "not OpenVEX: @context must start with"),
        ("openvex", _openvex(status="maybe"), "not OpenVEX: statements[0].status must be one of"),
        (
            "openvex",
            _openvex(timestamp="yesterday"),
            "not OpenVEX: statements[0].timestamp must be an RFC 3339 time",
        ),
        (
            "openvex",
            {**_openvex(), "timestamp": 1714730000},
            "not OpenVEX: timestamp must be an RFC 3339 time",
        ),
        (
            "openvex",
            _openvex(products=[{"subcomponents": []}]),
            "not OpenVEX: statements[0].products[0] must have an @id, identifiers or hashes",
        ),
        (
            "openvex",
            _openvex(products=[{"@id": "pkg:pypi/a", "subcomponents": [{}]}]),
            "not OpenVEX: statements[0].products[0].subcomponents[0] must have an @id",
        ),
        (
            "cyclonedx-vex",
            _cdx(vulnerabilities=[{"id": "CVE-1", "analysis": {"state": "wontfix"}}]),
            "not CycloneDX VEX: vulnerabilities[0].analysis.state must be one of",
        ),
        (
            "cyclonedx-vex",
            _cdx(
                vulnerabilities=[
                    {"id": "CVE-1", "analysis": {"state": "resolved"}, "affects": [{}]}
                ]
            ),
            "not CycloneDX VEX: vulnerabilities[0].affects[0].ref must be a non-empty string",
        ),
        (
            "cyclonedx-vex",
            _cdx(
                vulnerabilities=[
                    {"id": "CVE-1", "analysis": {"state": "resolved", "lastUpdated": "soon"}}
                ]
            ),
            "not CycloneDX VEX: vulnerabilities[0].analysis.lastUpdated must be an RFC 3339 time",
        ),
    ],
)
def test_malformed_vex_is_rejected_with_the_reason(fmt, document, reason):
    with pytest.raises(DocumentRejected) as e:
        vex_statements(fmt, document)
    assert str(e.value).startswith(reason)


def test_unknown_vex_format_and_fixtures_are_not_mutated():
    with pytest.raises(UnknownFormat, match="accepted: openvex, cyclonedx-vex"):
        vex_statements("csaf", {})
    assert VEX_FORMATS == ("openvex", "cyclonedx-vex")
    document = load("openvex.json")
    before = copy.deepcopy(document)
    vex_statements("openvex", document)
    parse_scan_report("cyclonedx", load("cyclonedx-vulns.json"))
    assert document == before
