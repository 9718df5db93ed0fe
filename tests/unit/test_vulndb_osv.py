"""OSV advisories offline: parsing, import from directories and zips, matching components."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stella.adapters.vulndb import osv
from stella.adapters.vulndb.matching import AdvisoryIndex, normalise_name
from stella.adapters.vulndb.osv import (
    AdvisoryRejected,
    OsvImportError,
    cvss3_base_score,
    normalise_severity,
    parse_osv,
    parse_osv_with_notes,
    read_osv,
)
from stella.domain.security import Advisory, Component, Finding

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "security" / "osv"
VALID = {
    "debian/DSA-5678-1.json",
    "alpine/ALPINE-CVE-2024-22222.json",
    "pypi/GHSA-j8r2-6x86-q33q.json",
    "pypi/PYSEC-2023-175.json",
    "npm/GHSA-35jh-r3h4-6jhm.json",
    "maven/GHSA-jjjh-jjxp-wpff.json",
    "go/GO-2023-2102.json",
    "git/OSV-2022-1047.json",
    "partial/GHSA-2222-3333-4444.json",
}


def _doc(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / path).read_text())
    return data


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def index() -> AdvisoryIndex:
    return AdvisoryIndex(parse_osv(_doc(path)) for path in sorted(VALID))


def _ids(index: AdvisoryIndex, name: str, version: str | None, **kw: Any) -> list[str]:
    return [f.advisory_id for f in index.match(Component(name, version, **kw))]


# --- parsing ---------------------------------------------------------------------------------


def test_debian_advisory() -> None:
    doc = _doc("debian/DSA-5678-1.json")
    assert parse_osv(doc) == Advisory(
        id="DSA-5678-1",
        aliases=("CVE-2024-11111",),
        summary="libcalc -- security update",
        severity="unknown",
        cvss_score=None,
        cvss_vector=None,
        modified=datetime(2024, 4, 13, 10, 15, 30, 123456, tzinfo=UTC),
        published=_at("2024-04-12T00:00:00"),
        affected=tuple(doc["affected"]),
    )


def test_alpine_advisory_takes_its_summary_from_details() -> None:
    advisory = parse_osv(_doc("alpine/ALPINE-CVE-2024-22222.json"))
    assert advisory.summary == "busybox: use-after-free in awk"
    assert advisory.aliases == ()  # `upstream` is not an alias
    assert advisory.affected[0]["package"]["ecosystem"] == "Alpine:v3.19"
    assert advisory.modified == _at("2024-02-05T09:30:00")


def test_pypi_advisory_with_database_severity_and_cvss_vector() -> None:
    advisory = parse_osv(_doc("pypi/GHSA-j8r2-6x86-q33q.json"))
    assert advisory.id == "GHSA-j8r2-6x86-q33q"
    assert advisory.aliases == ("CVE-2023-32681", "PYSEC-2023-74")
    assert advisory.summary == "Unintended leak of Proxy-Authorization header in requests"
    assert advisory.severity == "medium"  # database_specific MODERATE wins over the score
    assert advisory.cvss_score == 6.1
    assert advisory.cvss_vector == "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N"
    assert advisory.published == _at("2023-05-22T20:36:32")
    assert advisory.modified == _at("2023-11-08T04:12:38")


def test_pypi_advisory_with_a_versions_list_gets_its_severity_from_cvss() -> None:
    advisory = parse_osv(_doc("pypi/PYSEC-2023-175.json"))
    assert advisory.severity == "critical"
    assert advisory.cvss_score == 9.8
    assert advisory.aliases == ("CVE-2023-44271", "GHSA-8ghj-p4vj-mr35")
    assert advisory.affected[0]["versions"] == ["9.0.0", "9.0.1", "9.1.0", "9.1.1", "9.2.0"]


def test_npm_maven_go_and_git_advisories() -> None:
    npm = parse_osv(_doc("npm/GHSA-35jh-r3h4-6jhm.json"))
    assert (npm.severity, npm.cvss_score, len(npm.affected)) == ("high", 7.2, 2)
    assert npm.modified == _at("2023-11-08T03:59:32")
    maven = parse_osv(_doc("maven/GHSA-jjjh-jjxp-wpff.json"))
    assert (maven.severity, maven.cvss_score) == ("high", 7.5)
    assert maven.affected[0]["package"]["name"] == "com.fasterxml.jackson.core:jackson-databind"
    go = parse_osv(_doc("go/GO-2023-2102.json"))
    assert go.aliases == ("CVE-2023-39325", "GHSA-4374-p667-p6c8")
    assert (go.severity, go.cvss_score, go.cvss_vector) == ("unknown", None, None)
    git = parse_osv(_doc("git/OSV-2022-1047.json"))
    assert git.severity == "medium"
    assert git.published == datetime(2022, 10, 20, 0, 1, 2, 123000, tzinfo=UTC)
    assert git.affected[0]["ranges"][0]["type"] == "GIT"


def test_unknown_ecosystem_entry_is_dropped_and_the_rest_kept() -> None:
    advisory, notes = parse_osv_with_notes(_doc("partial/GHSA-2222-3333-4444.json"))
    assert [a["package"]["ecosystem"] for a in advisory.affected] == ["crates.io"]
    assert notes == [
        "affected[1]: unknown ecosystem 'Cobol-Central' (example-archive); entry dropped"
    ]
    assert advisory.severity == "critical"
    assert advisory.modified == _at("2024-06-01T12:00:00")  # no offset: read as UTC


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        (
            "invalid/PYSEC-2099-1.json",
            "affected[0].ranges[0].events[1]: fixed 'not a version' is not a valid pypi version"
            " (ECOSYSTEM range, ecosystem PyPI)",
        ),
        ("invalid/missing-id.json", "missing id"),
        (
            "invalid/UNKNOWN-2024-1.json",
            "no usable affected entry: affected[0]: unknown ecosystem 'Cobol-Central' (payroll);"
            " entry dropped",
        ),
    ],
)
def test_invalid_fixtures_are_rejected_with_a_reason(path: str, reason: str) -> None:
    with pytest.raises(AdvisoryRejected) as caught:
        parse_osv(_doc(path))
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"affected": {"package": {}}}, "affected is not a list"),
        ({"id": ""}, "missing id"),
        ({"withdrawn": "2024-02-01T00:00:00Z"}, "X-1 was withdrawn at 2024-02-01T00:00:00Z"),
        ({"modified": "yesterday"}, "modified 'yesterday' is not an RFC 3339 time"),
        ({"aliases": "CVE-1"}, "aliases is not a list of strings"),
        (
            {"affected": [{"package": {"ecosystem": "Debian:12", "name": "x"}, "ranges": [{}]}]},
            "affected[0].ranges[0] has no type",
        ),
        (
            {
                "affected": [
                    {
                        "package": {"ecosystem": "Debian:12", "name": "x"},
                        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "(bad)"}]}],
                    }
                ]
            },
            "affected[0].ranges[0].events[0]: introduced '(bad)' is not a valid debian version"
            " (ECOSYSTEM range, ecosystem Debian)",
        ),
        (
            {
                "affected": [
                    {
                        "package": {"ecosystem": "Go", "name": "x"},
                        "ranges": [{"type": "SEMVER", "events": [{"fixed": "banana"}]}],
                    }
                ]
            },
            "affected[0].ranges[0].events[0]: fixed 'banana' is not a valid semver version"
            " (SEMVER range, ecosystem Go)",
        ),
        (
            {
                "affected": [
                    {
                        "package": {"ecosystem": "npm", "name": "x"},
                        "ranges": [{"type": "SEMVER", "events": [{"broken": "1.0.0"}]}],
                    }
                ]
            },
            "affected[0].ranges[0].events[0] is not one of introduced/fixed/last_affected/limit"
            " with a string",
        ),
    ],
)
def test_malformed_documents_are_rejected(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(AdvisoryRejected) as caught:
        parse_osv({"id": "X-1", **change})
    assert str(caught.value) == reason


def test_git_ranges_and_incomparable_ecosystems_are_not_validated() -> None:
    advisory = parse_osv(
        {
            "id": "X-2",
            "affected": [
                {
                    "package": {"ecosystem": "GitHub Actions", "name": "a/b"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"fixed": "not-checked"}]}],
                },
                {"ranges": [{"type": "GIT", "repo": "r", "events": [{"fixed": "abc"}]}]},
            ],
        }
    )
    assert len(advisory.affected) == 2


def test_cvss3_base_scores() -> None:
    assert cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H") == 9.8
    assert cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H") == 10.0
    assert cvss3_base_score("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N") == 5.9
    assert cvss3_base_score("CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H") == 7.8
    assert cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N") == 0.0
    assert cvss3_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H") is None
    assert cvss3_base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H") is None


def test_cvss_v4_vector_alone_keeps_the_vector_without_score() -> None:
    vector = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
    advisory = parse_osv({"id": "X-3", "severity": [{"type": "CVSS_V4", "score": vector}]})
    assert (advisory.severity, advisory.cvss_score, advisory.cvss_vector) == (
        "unknown",
        None,
        vector,
    )


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("CRITICAL", "critical"),
        ("Important", "high"),
        ("MODERATE", "medium"),
        ("negligible", "low"),
        ("unimportant", "low"),
        ("whatever", None),
        (3, None),
    ],
)
def test_severity_words(word: object, expected: str | None) -> None:
    assert normalise_severity(word) == expected


# --- import ----------------------------------------------------------------------------------


def test_directory_import_skips_invalid_documents_with_reasons() -> None:
    result = read_osv(FIXTURES)
    assert sorted(a.id for a in result.advisories) == sorted(
        parse_osv(_doc(path)).id for path in VALID
    )
    assert sorted(result.skipped) == [
        (
            "PYSEC-2099-1",
            "affected[0].ranges[0].events[1]: fixed 'not a version' is not a valid pypi version"
            " (ECOSYSTEM range, ecosystem PyPI)",
        ),
        (
            "UNKNOWN-2024-1",
            "no usable affected entry: affected[0]: unknown ecosystem 'Cobol-Central' (payroll);"
            " entry dropped",
        ),
        ("invalid/missing-id.json", "missing id"),
        (
            "invalid/truncated.json",
            "not valid JSON: Expecting value: line 1 column 36 (char 35)",
        ),
    ]
    assert result.dropped == [
        (
            "GHSA-2222-3333-4444",
            "affected[1]: unknown ecosystem 'Cobol-Central' (example-archive); entry dropped",
        )
    ]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _fixture_members() -> dict[str, bytes]:
    return {p.relative_to(FIXTURES).as_posix(): p.read_bytes() for p in FIXTURES.rglob("*.json")}


def test_zip_import_equals_directory_import(tmp_path: Path) -> None:
    members = _fixture_members() | {"README.md": b"not json, not read"}
    result = read_osv(_zip(tmp_path / "all.zip", members))
    from_dir = read_osv(FIXTURES)
    assert sorted(a.id for a in result.advisories) == sorted(a.id for a in from_dir.advisories)
    assert sorted(r for _, r in result.skipped) == sorted(r for _, r in from_dir.skipped)
    assert ("all.zip:invalid/missing-id.json", "missing id") in result.skipped


def test_zip_with_path_traversal_is_rejected(tmp_path: Path) -> None:
    source = _zip(tmp_path / "evil.zip", {"ok.json": b"{}", "../escape.json": b"{}"})
    with pytest.raises(OsvImportError, match=r"unsafe member names .*\.\./escape\.json"):
        read_osv(source)
    absolute = _zip(tmp_path / "abs.zip", {"/etc/passwd.json": b"{}"})
    with pytest.raises(OsvImportError, match="unsafe member names"):
        read_osv(absolute)


def test_oversized_zip_member_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(osv, "MAX_DOCUMENT_BYTES", 2000)
    big = json.dumps({"id": "BIG-1", "details": "x" * 5000}).encode()
    members = {"big.json": big, "go.json": (FIXTURES / "go/GO-2023-2102.json").read_bytes()}
    result = read_osv(_zip(tmp_path / "feed.zip", members))
    assert [a.id for a in result.advisories] == ["GO-2023-2102"]
    assert result.skipped == [("feed.zip:big.json", f"{len(big)} bytes is over the 2000 limit")]


def test_zip_limits_on_total_size_and_member_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _zip(tmp_path / "feed.zip", _fixture_members())
    monkeypatch.setattr(osv, "MAX_ZIP_TOTAL_BYTES", 1000)
    with pytest.raises(OsvImportError, match="over the 1000 limit"):
        read_osv(source)
    monkeypatch.undo()
    monkeypatch.setattr(osv, "MAX_ZIP_MEMBERS", 3)
    with pytest.raises(OsvImportError, match="members, over the 3 limit"):
        read_osv(source)


def test_sources_that_are_neither_zip_nor_json(tmp_path: Path) -> None:
    fake_zip = tmp_path / "feed.zip"
    fake_zip.write_bytes(b"this is not a zip")
    with pytest.raises(OsvImportError, match="is not a zip archive"):
        read_osv(fake_zip)
    tarball = tmp_path / "feed.tar.gz"
    tarball.write_bytes(b"\x1f\x8b\x08\x00 gzip bytes")
    with pytest.raises(OsvImportError, match="neither a zip archive nor a JSON file"):
        read_osv(tarball)
    with pytest.raises(OsvImportError, match="does not exist"):
        read_osv(tmp_path / "missing")


def test_single_json_file_with_one_advisory_or_a_list(tmp_path: Path) -> None:
    one = read_osv(FIXTURES / "go/GO-2023-2102.json")
    assert [a.id for a in one.advisories] == ["GO-2023-2102"]
    many = tmp_path / "feed.json"
    many.write_text(json.dumps([_doc("go/GO-2023-2102.json"), {"summary": "no id"}, 7]))
    result = read_osv(many)
    assert [a.id for a in result.advisories] == ["GO-2023-2102"]
    assert result.skipped == [
        ("feed.json[1]", "missing id"),
        ("feed.json[2]", "the document is not a JSON object"),
    ]


# --- matching --------------------------------------------------------------------------------


def test_requests_boundaries_and_finding_fields(index: AdvisoryIndex) -> None:
    purl = "pkg:pypi/requests@2.30.0"
    assert index.match(Component("requests", "2.30.0", purl=purl, ecosystem="PyPI")) == [
        Finding(
            advisory_id="GHSA-j8r2-6x86-q33q",
            package="requests",
            severity="medium",
            aliases=("CVE-2023-32681", "PYSEC-2023-74"),
            purl=purl,
            installed_version="2.30.0",
            fixed_version="2.31.0",
            cvss_score=6.1,
            cvss_vector="CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N",
            title="Unintended leak of Proxy-Authorization header in requests",
            source="advisory",
        )
    ]
    assert _ids(index, "requests", "2.0.0", ecosystem="PyPI") == ["GHSA-j8r2-6x86-q33q"]
    assert _ids(index, "requests", "2.0", ecosystem="PyPI") == ["GHSA-j8r2-6x86-q33q"]
    assert _ids(index, "requests", "1.9.9", ecosystem="PyPI") == []
    assert _ids(index, "requests", "2.31.0", ecosystem="PyPI") == []
    assert _ids(index, "requests", "2.31.0rc1", ecosystem="PyPI") == ["GHSA-j8r2-6x86-q33q"]


def test_pypi_names_are_normalised(index: AdvisoryIndex) -> None:
    assert _ids(index, "Requests", "2.30.0", ecosystem="PyPI") == ["GHSA-j8r2-6x86-q33q"]
    assert _ids(index, "pillow", "9.1", ecosystem="PyPI") == ["PYSEC-2023-175"]
    assert normalise_name("PyPI", "Zope.Interface__x") == "zope-interface-x"
    assert normalise_name("npm", "Lodash") == "Lodash"


def test_explicit_versions_list(index: AdvisoryIndex) -> None:
    finding = index.match(Component("Pillow", "9.0.1", purl="pkg:pypi/pillow@9.0.1"))
    assert [(f.advisory_id, f.fixed_version, f.severity) for f in finding] == [
        ("PYSEC-2023-175", None, "critical")
    ]
    assert _ids(index, "Pillow", "9.0.2", ecosystem="PyPI") == []


def test_debian_epochs_and_revisions(index: AdvisoryIndex) -> None:
    def hit(version: str, ecosystem: str = "Debian:12") -> bool:
        return _ids(index, "libcalc", version, ecosystem=ecosystem) == ["DSA-5678-1"]

    assert hit("1.2.3-0.1")
    assert hit("1.2.3~rc1-1")  # a tilde sorts before the release
    assert hit("0.9-5")
    assert not hit("1.2.3-1")  # == fixed
    assert not hit("1.2.3-1+deb12u1")
    assert not hit("1.2.3-2")
    assert not hit("1:1.0-1")  # the epoch outranks the upstream version
    assert hit("1.2.3-0.1", ecosystem="Debian")  # plain ecosystem matches a release
    assert not hit("1.2.3-0.1", ecosystem="Debian:11")  # another release does not
    finding = index.match(Component("libcalc", "1.2.2-1", ecosystem="Debian:12"))
    assert finding[0].fixed_version == "1.2.3-1"


def test_release_suffix_on_either_side(index: AdvisoryIndex) -> None:
    plain = AdvisoryIndex(
        [
            parse_osv(
                {
                    "id": "DEB-PLAIN",
                    "affected": [
                        {
                            "package": {"ecosystem": "Debian", "name": "zlib"},
                            "ranges": [
                                {
                                    "type": "ECOSYSTEM",
                                    "events": [{"introduced": "0"}, {"fixed": "2"}],
                                }
                            ],
                        }
                    ],
                }
            )
        ]
    )
    assert _ids(plain, "zlib", "1:1.2-1", ecosystem="Debian") == []
    assert _ids(plain, "zlib", "1.2-1", ecosystem="Debian:12") == ["DEB-PLAIN"]
    assert _ids(plain, "zlib", "1.2-1", purl="pkg:deb/debian/zlib@1.2-1?distro=debian-12") == [
        "DEB-PLAIN"
    ]
    purl = "pkg:deb/debian/libcalc@1.2.3-0.1?distro=bookworm"
    assert _ids(index, "libcalc", "1.2.3-0.1", purl=purl) == ["DSA-5678-1"]
    purl = "pkg:deb/debian/libcalc@1.2.3-0.1?distro=debian-11"
    assert _ids(index, "libcalc", "1.2.3-0.1", purl=purl) == []


def test_alpine_revisions(index: AdvisoryIndex) -> None:
    assert _ids(index, "busybox", "1.36.1-r15", ecosystem="Alpine:v3.19") == [
        "ALPINE-CVE-2024-22222"
    ]
    assert _ids(index, "busybox", "1.36.1-r2", ecosystem="Alpine") == ["ALPINE-CVE-2024-22222"]
    assert _ids(index, "busybox", "1.36.1-r16", ecosystem="Alpine:v3.19") == []
    assert _ids(index, "busybox", "1.37.0-r0", ecosystem="Alpine:v3.19") == []
    assert _ids(index, "busybox", "1.36.1-r15", ecosystem="Alpine:v3.18") == []
    purl = "pkg:apk/alpine/busybox@1.36.1-r15?distro=3.19.1"
    assert _ids(index, "busybox", "1.36.1-r15", purl=purl) == ["ALPINE-CVE-2024-22222"]


def test_npm_semver_and_last_affected_inclusive(index: AdvisoryIndex) -> None:
    assert _ids(index, "lodash", "4.17.20", purl="pkg:npm/lodash@4.17.20") == [
        "GHSA-35jh-r3h4-6jhm"
    ]
    assert _ids(index, "lodash", "4.17.21", ecosystem="npm") == []
    assert _ids(index, "lodash", "0.1.0", ecosystem="npm") == ["GHSA-35jh-r3h4-6jhm"]
    scoped = "@example/template"
    assert _ids(index, scoped, "0.9.9", ecosystem="npm") == []
    assert _ids(index, scoped, "1.0.0", ecosystem="npm") == ["GHSA-35jh-r3h4-6jhm"]
    assert _ids(index, scoped, "1.4.2", ecosystem="npm") == ["GHSA-35jh-r3h4-6jhm"]
    assert _ids(index, scoped, "1.4.3-beta.1", ecosystem="npm") == []
    assert _ids(index, scoped, "1.4.3", ecosystem="npm") == []
    finding = index.match(Component(scoped, "1.4.2", ecosystem="npm"))[0]
    assert finding.fixed_version is None
    assert _ids(index, "Lodash", "4.17.20", ecosystem="npm") == []  # npm names are exact


def test_maven_two_ranges(index: AdvisoryIndex) -> None:
    name = "com.fasterxml.jackson.core:jackson-databind"
    by_purl = "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.13.2"

    def fixed(version: str, **kw: Any) -> list[str | None]:
        return [f.fixed_version for f in index.match(Component(name, version, **kw))]

    assert fixed("2.12.6", ecosystem="Maven") == ["2.12.7.1"]
    assert fixed("2.12.7.1", ecosystem="Maven") == []
    assert fixed("2.12.8", ecosystem="Maven") == []
    assert fixed("2.13.0", ecosystem="Maven") == ["2.13.4.1"]
    assert fixed("2.13.4", ecosystem="Maven") == ["2.13.4.1"]
    assert fixed("2.13.4.2", ecosystem="Maven") == []
    assert fixed("2.3.0", ecosystem="Maven") == []
    short = index.match(Component("jackson-databind", "2.13.2", purl=by_purl))
    assert [f.advisory_id for f in short] == ["GHSA-jjjh-jjxp-wpff"]
    assert _ids(index, "com.fasterxml.jackson.core/jackson-databind", "2.13.2", ecosystem="Maven")


def test_go_semver_with_v_prefixed_versions(index: AdvisoryIndex) -> None:
    assert _ids(index, "golang.org/x/net", "v0.16.0", ecosystem="Go") == ["GO-2023-2102"]
    assert _ids(index, "golang.org/x/net", "0.16.0", ecosystem="Go") == ["GO-2023-2102"]
    pseudo = "v0.0.0-20220722155237-a158d28d115b"
    assert _ids(index, "golang.org/x/net", pseudo, purl="pkg:golang/golang.org/x/net") == [
        "GO-2023-2102"
    ]
    assert _ids(index, "golang.org/x/net", "v0.17.0", ecosystem="Go") == []
    assert _ids(index, "golang.org/x/net", "v0.18.0", ecosystem="golang") == []


def test_crates_entry_kept_when_another_was_dropped(index: AdvisoryIndex) -> None:
    assert _ids(index, "example-archive", "0.3.6", ecosystem="crates.io") == ["GHSA-2222-3333-4444"]
    assert _ids(index, "example-archive", "0.3.7", purl="pkg:cargo/example-archive@0.3.7") == []


def test_git_only_ranges_never_match(index: AdvisoryIndex) -> None:
    for version in ("2.9.10", "0", "2d2a8ec7aa0e5a4ea97fe1c6b7c3c6e0a7b3b0f1"):
        assert _ids(index, "libxml2", version, ecosystem="OSS-Fuzz") == []
    assert len(index.advisories_for("OSV-2022-1047")) == 1


def test_no_version_or_unknown_ecosystem_gives_no_finding(index: AdvisoryIndex) -> None:
    assert _ids(index, "requests", None, ecosystem="PyPI") == []
    assert _ids(index, "requests", "2.30.0") == []  # no ecosystem, no purl
    assert _ids(index, "requests", "2.30.0", ecosystem="Conda") == []
    assert _ids(index, "requests", "not a version!", ecosystem="PyPI") == []


def test_limit_events_and_unsorted_events() -> None:
    advisory = parse_osv(
        {
            "id": "X-LIMIT",
            "affected": [
                {
                    "package": {"ecosystem": "PyPI", "name": "pkg"},
                    "ranges": [
                        {
                            "type": "ECOSYSTEM",
                            "events": [
                                {"fixed": "1.5"},
                                {"introduced": "2.0"},
                                {"introduced": "1.0"},
                                {"limit": "2.5"},
                            ],
                        }
                    ],
                }
            ],
        }
    )
    index = AdvisoryIndex([advisory])
    affected = [
        v
        for v in ("0.9", "1.0", "1.4", "1.5", "1.9", "2.0", "2.4", "2.5", "3.0")
        if _ids(index, "pkg", v, ecosystem="PyPI")
    ]
    assert affected == ["1.0", "1.4", "2.0", "2.4"]


def test_index_size_aliases_and_replacement(index: AdvisoryIndex) -> None:
    assert len(index) == len(VALID)
    assert [a.id for a in index.advisories_for("CVE-2023-32681")] == ["GHSA-j8r2-6x86-q33q"]
    assert [a.id for a in index.advisories_for("PYSEC-2023-74")] == ["GHSA-j8r2-6x86-q33q"]
    assert index.advisories_for("CVE-0000-0000") == []

    doc = _doc("pypi/GHSA-j8r2-6x86-q33q.json")
    fresh = AdvisoryIndex([parse_osv(doc)])
    newer = {
        **doc,
        "modified": "2024-01-01T00:00:00Z",
        "aliases": ["CVE-2023-32681"],
        "affected": [
            {
                "package": {"ecosystem": "PyPI", "name": "requests"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.32.0"}]}
                ],
            }
        ],
    }
    fresh.add(parse_osv(newer))
    assert len(fresh) == 1
    assert [
        f.fixed_version for f in fresh.match(Component("requests", "2.31.0", ecosystem="PyPI"))
    ] == ["2.32.0"]
    assert fresh.advisories_for("PYSEC-2023-74") == []
    fresh.add(parse_osv(doc))  # older than what is indexed: ignored
    assert fresh.advisories_for("CVE-2023-32681")[0].modified == _at("2024-01-01T00:00:00")


def test_one_finding_per_advisory_even_when_several_entries_match() -> None:
    entry = {
        "package": {"ecosystem": "Debian:12", "name": "x"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2"}]}],
    }
    other = {**entry, "package": {"ecosystem": "Debian:11", "name": "x"}}
    index = AdvisoryIndex([parse_osv({"id": "DLA-1", "affected": [entry, other]})])
    assert _ids(index, "x", "1", ecosystem="Debian") == ["DLA-1"]
