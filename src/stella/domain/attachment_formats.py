"""What may be attached to an image digest, and how each document format is recognised.

An attachment is a JSON document about an image: an SBOM (CycloneDX, SPDX 2 or SPDX 3), a VEX
document (OpenVEX, CycloneDX VEX), a scan report (Trivy, Grype, SARIF, Stella's native
findings) or an attestation (an in-toto Statement or a DSSE envelope). The checks below are
structural, not full schema validation: they catch the wrong file, a truncated file and a
document that misses what Stella later reads, and they say which field is wrong.

Every rejection is a `DocumentRejected` whose message is the reason, such as
`not CycloneDX: bomFormat must be 'CycloneDX'`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_PLAIN_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")


class AttachmentKind(enum.StrEnum):
    """What a document says about its image."""

    SBOM = "sbom"
    VEX = "vex"
    SCAN = "scan"
    ATTESTATION = "attestation"


class DocumentRejected(ValueError):
    """Raised when a document is not (valid) JSON of the format it claims or was taken for."""


Check = Callable[[Any], None]
"""Raises DocumentRejected naming the first structural problem of a parsed document."""


@dataclass(frozen=True, slots=True)
class AttachmentFormat:
    """A document format: its name in the API, its kind, its media type and its check."""

    name: str
    kind: AttachmentKind
    media_type: str
    label: str
    check: Check
    looks_like: Callable[[dict[str, Any]], bool]


def _fail(label: str, reason: str) -> NoReturn:
    msg = f"not {label}: {reason}"
    raise DocumentRejected(msg)


def _object(label: str, document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        _fail(label, "the document must be a JSON object")
    return document


def _string(label: str, parent: dict[str, Any], key: str, path: str | None = None) -> str:
    where = path or key
    if key not in parent:
        _fail(label, f"{where} missing")
    value = parent[key]
    if not isinstance(value, str) or not value:
        _fail(label, f"{where} must be a non-empty string")
    return value


def _list(
    label: str, parent: dict[str, Any], key: str, required: bool, path: str | None = None
) -> list[Any]:
    where = path or key
    if key not in parent:
        if required:
            _fail(label, f"{where} missing")
        return []
    value = parent[key]
    if not isinstance(value, list):
        _fail(label, f"{where} must be a list")
    return value


def _objects(label: str, items: list[Any], path: str) -> list[dict[str, Any]]:
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            _fail(label, f"{path}[{i}] must be an object")
    return items


# --- SBOMs -----------------------------------------------------------------------------------


def _check_cyclonedx(document: Any, label: str = "CycloneDX") -> dict[str, Any]:
    doc = _object(label, document)
    if "bomFormat" not in doc:
        _fail(label, "bomFormat missing")
    if doc["bomFormat"] != "CycloneDX":
        _fail(label, "bomFormat must be 'CycloneDX'")
    _string(label, doc, "specVersion")
    components = _objects(label, _list(label, doc, "components", False), "components")
    for i, component in enumerate(components):
        _string(label, component, "name", f"components[{i}].name")
    return doc


def check_cyclonedx(document: Any) -> None:
    """CycloneDX JSON SBOM: bomFormat, specVersion, components (when present) with names."""
    _check_cyclonedx(document)


CYCLONEDX_VEX_STATES = frozenset(
    {
        "resolved",
        "resolved_with_pedigree",
        "exploitable",
        "in_triage",
        "false_positive",
        "not_affected",
    }
)


def check_cyclonedx_vex(document: Any) -> None:
    """CycloneDX with `vulnerabilities`, each carrying an `analysis.state`."""
    label = "CycloneDX VEX"
    doc = _check_cyclonedx(document, label)
    vulnerabilities = _objects(label, _list(label, doc, "vulnerabilities", True), "vulnerabilities")
    if not vulnerabilities:
        _fail(label, "vulnerabilities must not be empty")
    for i, vulnerability in enumerate(vulnerabilities):
        _string(label, vulnerability, "id", f"vulnerabilities[{i}].id")
        analysis = vulnerability.get("analysis")
        if not isinstance(analysis, dict):
            _fail(label, f"vulnerabilities[{i}].analysis missing")
        state = analysis.get("state")
        if state is None:
            _fail(label, f"vulnerabilities[{i}].analysis.state missing")
        if state not in CYCLONEDX_VEX_STATES:
            known = ", ".join(sorted(CYCLONEDX_VEX_STATES))
            _fail(label, f"vulnerabilities[{i}].analysis.state must be one of {known}")


def _mentions_spdx(context: Any) -> bool:
    if isinstance(context, str):
        return "spdx.org" in context
    if isinstance(context, list):
        return any(_mentions_spdx(c) for c in context)
    if isinstance(context, dict):
        return any(_mentions_spdx(v) for v in context.values())
    return False


def check_spdx(document: Any) -> None:
    """SPDX 2.x JSON (spdxVersion, SPDXID, name, packages) or SPDX 3 JSON-LD (@context, @graph)."""
    label = "SPDX"
    doc = _object(label, document)
    if "spdxVersion" not in doc and "@context" in doc:
        if not _mentions_spdx(doc["@context"]):
            _fail(label, "@context must name an spdx.org context")
        graph = _list(label, doc, "@graph", True)
        _objects(label, graph, "@graph")
        return
    version = _string(label, doc, "spdxVersion")
    if not version.startswith("SPDX-2"):
        _fail(label, f"spdxVersion must start with 'SPDX-2' (got '{version[:20]}')")
    _string(label, doc, "SPDXID")
    _string(label, doc, "name")
    packages = _objects(label, _list(label, doc, "packages", False), "packages")
    for i, package in enumerate(packages):
        _string(label, package, "SPDXID", f"packages[{i}].SPDXID")
        _string(label, package, "name", f"packages[{i}].name")


# --- VEX -------------------------------------------------------------------------------------

OPENVEX_STATUSES = frozenset({"not_affected", "affected", "fixed", "under_investigation"})
OPENVEX_JUSTIFICATIONS = frozenset(
    {
        "component_not_present",
        "vulnerable_code_not_present",
        "vulnerable_code_not_in_execute_path",
        "vulnerable_code_cannot_be_controlled_by_adversary",
        "inline_mitigations_already_exist",
    }
)


def _check_openvex_statement(label: str, statement: dict[str, Any], at: str) -> None:
    vulnerability = statement.get("vulnerability")
    if vulnerability is None:
        _fail(label, f"{at}.vulnerability missing")
    named = isinstance(vulnerability, str) and bool(vulnerability)
    if isinstance(vulnerability, dict):
        named = bool(vulnerability.get("name") or vulnerability.get("@id"))
    if not named:
        _fail(label, f"{at}.vulnerability must be a name or an object with a name")
    status = statement.get("status")
    if status is None:
        _fail(label, f"{at}.status missing")
    if status not in OPENVEX_STATUSES:
        _fail(label, f"{at}.status must be one of {', '.join(sorted(OPENVEX_STATUSES))}")
    justification = statement.get("justification")
    if status == "not_affected" and not (justification or statement.get("impact_statement")):
        _fail(label, f"{at}: status not_affected needs a justification or an impact_statement")
    if justification is not None and justification not in OPENVEX_JUSTIFICATIONS:
        known = ", ".join(sorted(OPENVEX_JUSTIFICATIONS))
        _fail(label, f"{at}.justification must be one of {known}")
    _objects(label, _list(label, statement, "products", False, f"{at}.products"), f"{at}.products")


def check_openvex(document: Any) -> None:
    """OpenVEX: the openvex.dev context and statements with a vulnerability and a status."""
    label = "OpenVEX"
    doc = _object(label, document)
    context = _string(label, doc, "@context")
    if not context.startswith("https://openvex.dev/ns"):
        _fail(label, "@context must start with 'https://openvex.dev/ns'")
    statements = _objects(label, _list(label, doc, "statements", True), "statements")
    for i, statement in enumerate(statements):
        _check_openvex_statement(label, statement, f"statements[{i}]")


def openvex_product_digests(document: Any) -> list[str]:
    """The image digests an OpenVEX document's products name, in order of appearance.

    A product's `@id` is a `pkg:oci/…?digest=sha256:…` purl or a plain `sha256:…` digest;
    `identifiers.purl` and `hashes.sha-256` are read too.
    """
    found: list[str] = []
    statements = document.get("statements") if isinstance(document, dict) else None
    for statement in statements if isinstance(statements, list) else []:
        products = statement.get("products") if isinstance(statement, dict) else None
        for product in products if isinstance(products, list) else []:
            if not isinstance(product, dict):
                continue
            texts = [product.get("@id"), (product.get("identifiers") or {}).get("purl")]
            sha = (product.get("hashes") or {}).get("sha-256")
            texts.append(f"sha256:{sha}" if isinstance(sha, str) else None)
            for text in texts:
                if isinstance(text, str):
                    found.extend(_PLAIN_DIGEST_RE.findall(text.replace("%3A", ":")))
    return list(dict.fromkeys(found))


# --- Scan reports ----------------------------------------------------------------------------

NATIVE_SEVERITIES = frozenset({"critical", "high", "medium", "low", "negligible", "unknown"})


def check_trivy(document: Any) -> None:
    """Trivy JSON report: SchemaVersion, ArtifactName, Results (when present) as a list."""
    label = "a Trivy report"
    doc = _object(label, document)
    if not isinstance(doc.get("SchemaVersion"), int) or isinstance(doc["SchemaVersion"], bool):
        _fail(label, "SchemaVersion must be an integer")
    _string(label, doc, "ArtifactName")
    results = _objects(label, _list(label, doc, "Results", False), "Results")
    for i, result in enumerate(results):
        vulnerabilities = _list(label, result, "Vulnerabilities", False)
        for j, vulnerability in enumerate(
            _objects(label, vulnerabilities, f"Results[{i}].Vulnerabilities")
        ):
            _string(label, vulnerability, "VulnerabilityID", f"Results[{i}].Vulnerabilities[{j}]")


def check_grype(document: Any) -> None:
    """Grype JSON report: matches, each with vulnerability.id and an artifact."""
    label = "a Grype report"
    doc = _object(label, document)
    matches = _objects(label, _list(label, doc, "matches", True), "matches")
    for i, match in enumerate(matches):
        vulnerability = match.get("vulnerability")
        if not isinstance(vulnerability, dict):
            _fail(label, f"matches[{i}].vulnerability missing")
        _string(label, vulnerability, "id", f"matches[{i}].vulnerability.id")
        if not isinstance(match.get("artifact"), dict):
            _fail(label, f"matches[{i}].artifact missing")


def check_sarif(document: Any) -> None:
    """SARIF 2.1.0: version and runs, each naming its tool's driver."""
    label = "SARIF"
    doc = _object(label, document)
    if doc.get("version") != "2.1.0":
        _fail(label, "version must be '2.1.0'")
    runs = _objects(label, _list(label, doc, "runs", True), "runs")
    for i, run in enumerate(runs):
        driver = (
            (run.get("tool") or {}).get("driver") if isinstance(run.get("tool"), dict) else None
        )
        if not isinstance(driver, dict):
            _fail(label, f"runs[{i}].tool.driver missing")
        _string(label, driver, "name", f"runs[{i}].tool.driver.name")
        _objects(label, _list(label, run, "results", False), f"runs[{i}].results")


def check_native(document: Any) -> None:
    """Stella's native findings: `{"findings": [{"id", "severity", ...}]}`."""
    label = "a native scan report"
    doc = _object(label, document)
    findings = _objects(label, _list(label, doc, "findings", True), "findings")
    for i, finding in enumerate(findings):
        _string(label, finding, "id", f"findings[{i}].id")
        if finding.get("severity") not in NATIVE_SEVERITIES:
            known = ", ".join(sorted(NATIVE_SEVERITIES))
            _fail(label, f"findings[{i}].severity must be one of {known}")


# --- Attestations ----------------------------------------------------------------------------


def check_in_toto(document: Any) -> None:
    """An in-toto Statement: _type, subjects with digests, predicateType."""
    label = "an in-toto Statement"
    doc = _object(label, document)
    kind = _string(label, doc, "_type")
    if not kind.startswith("https://in-toto.io/Statement/"):
        _fail(label, "_type must start with 'https://in-toto.io/Statement/'")
    subjects = _objects(label, _list(label, doc, "subject", True), "subject")
    if not subjects:
        _fail(label, "subject must not be empty")
    for i, subject in enumerate(subjects):
        digest = subject.get("digest")
        if not isinstance(digest, dict) or not digest:
            _fail(label, f"subject[{i}].digest must be an object of algorithm: hex")
    _string(label, doc, "predicateType")


def check_dsse(document: Any) -> None:
    """A DSSE envelope: payloadType, a base64 payload and at least one signature."""
    label = "a DSSE envelope"
    doc = _object(label, document)
    _string(label, doc, "payloadType")
    payload = _string(label, doc, "payload")
    standard = payload.translate(str.maketrans("-_", "+/"))  # URL-safe base64 is allowed too
    try:
        base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        _fail(label, "payload must be base64")
    signatures = _objects(label, _list(label, doc, "signatures", True), "signatures")
    if not signatures:
        _fail(label, "signatures must not be empty")
    for i, signature in enumerate(signatures):
        _string(label, signature, "sig", f"signatures[{i}].sig")


# --- The registry of formats -----------------------------------------------------------------


def _is_cdx_vex(doc: dict[str, Any]) -> bool:
    vulnerabilities = doc.get("vulnerabilities")
    return (
        "bomFormat" in doc
        and isinstance(vulnerabilities, list)
        and bool(vulnerabilities)
        and all(isinstance(v, dict) and "analysis" in v for v in vulnerabilities)
    )


def _is_spdx(doc: dict[str, Any]) -> bool:
    return "spdxVersion" in doc or _mentions_spdx(doc.get("@context"))


def _is_openvex(doc: dict[str, Any]) -> bool:
    context = doc.get("@context")
    return isinstance(context, str) and "openvex" in context


_SBOM, _VEX, _SCAN, _ATTESTATION = (
    AttachmentKind.SBOM,
    AttachmentKind.VEX,
    AttachmentKind.SCAN,
    AttachmentKind.ATTESTATION,
)
_CDX, _VND = "application/vnd.cyclonedx+json", "application/vnd."
# In detection order: CycloneDX VEX before the CycloneDX SBOM it is a special case of.
FORMATS: dict[str, AttachmentFormat] = {
    f.name: f
    for f in [
        AttachmentFormat(*row)
        for row in (
            ("cyclonedx-vex", _VEX, _CDX, "CycloneDX VEX", check_cyclonedx_vex, _is_cdx_vex),
            ("cyclonedx", _SBOM, _CDX, "CycloneDX", check_cyclonedx, lambda d: "bomFormat" in d),
            ("spdx", _SBOM, "application/spdx+json", "SPDX", check_spdx, _is_spdx),
            ("openvex", _VEX, "application/openvex+json", "OpenVEX", check_openvex, _is_openvex),
            ("trivy", _SCAN, _VND + "aquasec.trivy.report+json", "a Trivy report", check_trivy,
             lambda d: "SchemaVersion" in d and ("Results" in d or "ArtifactName" in d)),
            ("grype", _SCAN, _VND + "anchore.grype.report+json", "a Grype report", check_grype,
             lambda d: "matches" in d and ("descriptor" in d or "source" in d)),
            ("sarif", _SCAN, "application/sarif+json", "SARIF", check_sarif,
             lambda d: "runs" in d and "version" in d),
            ("native", _SCAN, _VND + "stella.findings+json", "a native scan report", check_native,
             lambda d: "findings" in d),
            ("in-toto", _ATTESTATION, _VND + "in-toto+json", "an in-toto Statement",
             check_in_toto, lambda d: "_type" in d),
            ("dsse", _ATTESTATION, _VND + "dsse.envelope.v1+json", "a DSSE envelope", check_dsse,
             lambda d: "payloadType" in d),
        )
    ]
}  # fmt: skip


def formats_of(kind: AttachmentKind | None) -> list[str]:
    """Names of the formats of `kind` (every format for None), in detection order."""
    return [f.name for f in FORMATS.values() if kind is None or f.kind is kind]


def _reject_constant(name: str) -> float:
    msg = f"{name} is not a JSON value"
    raise ValueError(msg)


def parse_json(content: bytes) -> Any:
    """The parsed document; DocumentRejected('not JSON: <parser's reason>') otherwise."""
    try:
        return json.loads(content, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        msg = f"not JSON: {exc.msg}: line {exc.lineno} column {exc.colno}"
        raise DocumentRejected(msg) from None
    except UnicodeDecodeError:
        msg = "not JSON: the body is not UTF-8 text"
        raise DocumentRejected(msg) from None
    except RecursionError:
        msg = "not JSON: nested too deeply"
        raise DocumentRejected(msg) from None
    except ValueError as exc:
        msg = f"not JSON: {exc}"
        raise DocumentRejected(msg) from None


def detect(document: Any, candidates: list[str]) -> AttachmentFormat | None:
    """The first of `candidates` whose markers the document carries; None if none does."""
    if not isinstance(document, dict):
        return None
    for name in candidates:
        fmt = FORMATS[name]
        if fmt.looks_like(document):
            return fmt
    # a CycloneDX document sent as VEX is checked as CycloneDX VEX, to say what it lacks
    if "bomFormat" in document and "cyclonedx-vex" in candidates:
        return FORMATS["cyclonedx-vex"]
    return None


def classify(content: bytes, format_name: str | None, candidates: list[str]) -> AttachmentFormat:
    """Parse `content`, pick its format (given, or detected among `candidates`) and check it.

    Raises DocumentRejected with the reason; an unknown or unaccepted format name is
    `UnknownFormat`, so that callers can report it against the `format` field.
    """
    return classify_document(content, format_name, candidates)[0]


def classify_document(
    content: bytes, format_name: str | None, candidates: list[str], document: Any = None
) -> tuple[AttachmentFormat, Any]:
    """`classify` that hands back the parsed document too, so that it is parsed once: to be
    checked here and read by an ingest hook. `document`: the content already parsed."""
    if format_name is not None and format_name not in candidates:
        msg = f"unknown format '{format_name}'; accepted: {', '.join(candidates)}"
        raise UnknownFormat(msg)
    if document is None:  # JSON `null` is no document of any format either
        document = parse_json(content)
    fmt = FORMATS[format_name] if format_name is not None else detect(document, candidates)
    if fmt is None:
        msg = (
            f"format not recognised; accepted: {', '.join(candidates)} "
            "(name one with the format parameter)"
        )
        raise DocumentRejected(msg)
    fmt.check(document)
    return fmt, document


class UnknownFormat(DocumentRejected):
    """Raised when a format name is not one of the accepted formats."""


def is_sha256_digest(value: str) -> bool:
    """True for `sha256:<64 lowercase hex>`, the digests attachments are filed under."""
    return bool(_DIGEST_RE.match(value))
