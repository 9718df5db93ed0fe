"""Recognising and checking SBOM, VEX, scan-report and attestation documents."""

from __future__ import annotations

import json

import pytest

from stella.domain.attachment_formats import (
    AttachmentKind,
    DocumentRejected,
    UnknownFormat,
    classify,
    formats_of,
    openvex_product_digests,
    parse_json,
)
from tests.support import documents as docs

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


@pytest.mark.parametrize(
    ("document", "kind", "expected"),
    [
        (docs.cyclonedx(), AttachmentKind.SBOM, "cyclonedx"),
        (docs.spdx2(), AttachmentKind.SBOM, "spdx"),
        (docs.spdx3(), AttachmentKind.SBOM, "spdx"),
        (docs.openvex(DIGEST), AttachmentKind.VEX, "openvex"),
        (docs.cyclonedx_vex(), AttachmentKind.VEX, "cyclonedx-vex"),
        (docs.cyclonedx_vex(), None, "cyclonedx-vex"),
        (docs.cyclonedx(), None, "cyclonedx"),
        (docs.trivy(), None, "trivy"),
        (docs.grype(), None, "grype"),
        (docs.sarif(), None, "sarif"),
        (docs.native(), None, "native"),
        (docs.in_toto(DIGEST), AttachmentKind.ATTESTATION, "in-toto"),
        (docs.dsse(DIGEST), AttachmentKind.ATTESTATION, "dsse"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_formats_are_detected_and_accepted(document, kind, expected):
    assert classify(docs.dumps(document), None, formats_of(kind)).name == expected


def _without(document: dict, *keys: str) -> dict:
    return {k: v for k, v in document.items() if k not in keys}


REJECTIONS = [
    ("truncated", b'{"bomFormat": "CycloneDX", "specVersion"', "sbom", None, "not JSON: "),
    (
        "missing-comma",
        b'{\n  "a": 1\n  "b": 2\n}',
        "sbom",
        None,
        "not JSON: Expecting ',' delimiter: line 3 column 3",
    ),
    ("nan", b'{"bomFormat": NaN}', "sbom", None, "not JSON: NaN is not a JSON value"),
    ("not-utf8", b'{"a": "\xff"}', "sbom", None, "not JSON: "),
    ("deep", b"[" * 100_000 + b"]" * 100_000, "sbom", None, "not JSON: "),
    (
        "not-cyclonedx",
        docs.dumps(docs.cyclonedx() | {"bomFormat": "SPDX"}),
        "sbom",
        "cyclonedx",
        "not CycloneDX: bomFormat must be 'CycloneDX'",
    ),
    (
        "cyclonedx-no-spec-version",
        docs.dumps(_without(docs.cyclonedx(), "specVersion")),
        "sbom",
        None,
        "not CycloneDX: specVersion missing",
    ),
    (
        "cyclonedx-components-not-list",
        docs.dumps(docs.cyclonedx() | {"components": {}}),
        "sbom",
        None,
        "not CycloneDX: components must be a list",
    ),
    (
        "not-spdx",
        docs.dumps(docs.cyclonedx()),
        "sbom",
        "spdx",
        "not SPDX: spdxVersion missing",
    ),
    (
        "spdx-1",
        docs.dumps(docs.spdx2() | {"spdxVersion": "SPDX-1.2"}),
        "sbom",
        None,
        "not SPDX: spdxVersion must start with 'SPDX-2'",
    ),
    (
        "spdx3-foreign-context",
        docs.dumps(docs.spdx3() | {"@context": "https://schema.org"}),
        "sbom",
        "spdx",
        "not SPDX: @context must name an spdx.org context",
    ),
    ("unrecognised", b'{"hello": "world"}', "sbom", None, "format not recognised; accepted: "),
    ("array", b"[1, 2]", "sbom", "cyclonedx", "not CycloneDX: the document must be a JSON object"),
    (
        "openvex-bad-status",
        docs.dumps(docs.openvex(DIGEST, status="fine")),
        "vex",
        None,
        "not OpenVEX: statements[0].status must be one of affected, fixed, not_affected",
    ),
    (
        "openvex-not-affected-without-justification",
        docs.dumps(docs.openvex(DIGEST, justification=None)),
        "vex",
        None,
        "not OpenVEX: statements[0]: status not_affected needs a justification",
    ),
    (
        "openvex-no-vulnerability",
        docs.dumps(docs.openvex(DIGEST, vulnerability={})),
        "vex",
        None,
        "not OpenVEX: statements[0].vulnerability must be a name",
    ),
    (
        "openvex-foreign-context",
        docs.dumps(docs.openvex(DIGEST) | {"@context": "https://example.com/openvex"}),
        "vex",
        None,
        "not OpenVEX: @context must start with 'https://openvex.dev/ns'",
    ),
    (
        "cyclonedx-vex-no-state",
        docs.dumps(docs.cyclonedx_vex() | {"vulnerabilities": [{"id": "CVE-1", "analysis": {}}]}),
        "vex",
        None,
        "not CycloneDX VEX: vulnerabilities[0].analysis.state missing",
    ),
    (
        "cyclonedx-sbom-as-vex",
        docs.dumps(docs.cyclonedx()),
        "vex",
        None,
        "not CycloneDX VEX: vulnerabilities missing",
    ),
    (
        "sarif-wrong-version",
        docs.dumps(docs.sarif() | {"version": "2.0.0"}),
        "scan",
        "sarif",
        "not SARIF: version must be '2.1.0'",
    ),
    (
        "native-bad-severity",
        docs.dumps({"findings": [{"id": "CVE-1", "severity": "scary"}]}),
        "scan",
        None,
        "not a native scan report: findings[0].severity must be one of",
    ),
    (
        "in-toto-no-subject",
        docs.dumps(_without(docs.in_toto(DIGEST), "subject")),
        "attestation",
        None,
        "not an in-toto Statement: subject missing",
    ),
    (
        "dsse-bad-payload",
        docs.dumps(docs.dsse(DIGEST) | {"payload": "%%%"}),
        "attestation",
        None,
        "not a DSSE envelope: payload must be base64",
    ),
    (
        "dsse-unsigned",
        docs.dumps(docs.dsse(DIGEST) | {"signatures": []}),
        "attestation",
        None,
        "not a DSSE envelope: signatures must not be empty",
    ),
]


@pytest.mark.parametrize(
    ("content", "kind", "format_name", "reason"),
    [r[1:] for r in REJECTIONS],
    ids=[r[0] for r in REJECTIONS],
)
def test_bad_documents_are_rejected_with_the_reason(content, kind, format_name, reason):
    with pytest.raises(DocumentRejected) as caught:
        classify(content, format_name, formats_of(AttachmentKind(kind)))
    assert str(caught.value).startswith(reason), str(caught.value)


def test_a_format_of_another_kind_is_unknown_and_names_the_accepted_ones():
    with pytest.raises(UnknownFormat, match=r"unknown format 'openvex'; accepted: cyclonedx, spdx"):
        classify(docs.dumps(docs.openvex(DIGEST)), "openvex", formats_of(AttachmentKind.SBOM))


def test_json_errors_carry_the_parsers_position():
    with pytest.raises(DocumentRejected, match=r"^not JSON: Expecting value: line 1 column 1$"):
        parse_json(b"")


def test_openvex_products_name_their_digests_in_order_without_duplicates():
    document = docs.openvex(DIGEST)
    document["statements"][0]["products"] += [
        {"@id": OTHER},
        {"@id": "pkg:oci/api?digest=sha256%3A" + "ab" * 32},
        {"@id": "pkg:npm/left-pad@1.0.0"},
    ]
    assert openvex_product_digests(document) == [DIGEST, OTHER]
    assert openvex_product_digests(json.loads('{"statements": "nope"}')) == []
