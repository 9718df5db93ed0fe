"""VEX documents (OpenVEX, CycloneDX VEX) normalised to `VexStatement`s.

A statement suppresses findings only for the products and subcomponents it names, so those are
read conservatively: an image named by a digest anywhere in a product (an OCI purl, a plain
`sha256:…`, `hashes.sha-256`) becomes that digest, the form attachments are filed under; any
other product or subcomponent is kept as written. A reference that cannot be resolved is kept
verbatim rather than dropped, because an empty list would widen the statement to "any".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from stella.adapters.vulndb.sboms import (
    Fields,
    check,
    cyclonedx_walk,
    load,
    object_list,
    optional_str,
    reject,
    string_list,
    unknown_format,
)
from stella.domain.attachment_formats import openvex_product_digests
from stella.domain.security import VexStatement

VEX_FORMATS = ("openvex", "cyclonedx-vex")

# CycloneDX analysis.state → the OpenVEX status the domain uses
CYCLONEDX_STATES: dict[str, str] = {
    "not_affected": "not_affected",
    "false_positive": "not_affected",
    "resolved": "fixed",
    "resolved_with_pedigree": "fixed",
    "exploitable": "affected",
    "in_triage": "under_investigation",
}


def _timestamp(label: str, value: Any, path: str) -> datetime | None:
    """An RFC 3339 time; a time without an offset is taken as UTC so comparisons work."""
    if value is None or value == "":
        return None
    try:
        stamp = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        stamp = None
    if stamp is None:
        reject(label, f"{path} must be an RFC 3339 time (such as 2024-05-01T12:00:00Z)")
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _product_ids(product: dict[str, Any]) -> list[str]:
    """The image digests a product names (via the upload check's own reading), else its ids."""
    digests = openvex_product_digests({"statements": [{"products": [product]}]})
    if digests:
        return digests
    identifiers = product.get("identifiers")
    purl = identifiers.get("purl") if isinstance(identifiers, dict) else None
    return [t.strip() for t in (product.get("@id"), purl) if isinstance(t, str) and t.strip()]


def _subcomponent_ids(label: str, product: dict[str, Any], at: str) -> list[str]:
    ids = []
    for i, sub in enumerate(object_list(label, product, "subcomponents", f"{at}.subcomponents")):
        identifiers = sub.get("identifiers")
        purl = identifiers.get("purl") if isinstance(identifiers, dict) else None
        texts = [t.strip() for t in (sub.get("@id"), purl) if isinstance(t, str) and t.strip()]
        if not texts:
            reject(label, f"{at}.subcomponents[{i}] must have an @id or identifiers.purl")
        ids.append(texts[0])
    return ids


def _openvex(document: Any, source: str | None) -> list[VexStatement]:
    label, doc = check("openvex", document)
    default_time = _timestamp(label, doc.get("timestamp"), "timestamp")
    statements = []
    for i, statement in enumerate(doc["statements"]):
        at = f"statements[{i}]"
        vuln = statement["vulnerability"]  # check_openvex: a name, or an object with one
        if isinstance(vuln, dict):
            name = vuln.get("name") or vuln.get("@id")
            aliases = string_list(vuln.get("aliases"))
        else:
            name, aliases = vuln, []
        products: list[str] = []
        subcomponents: list[str] = []
        for j, product in enumerate(statement.get("products") or []):
            ids = _product_ids(product)
            if not ids:
                reject(label, f"{at}.products[{j}] must have an @id, identifiers or hashes")
            products.extend(ids)
            subcomponents.extend(_subcomponent_ids(label, product, f"{at}.products[{j}]"))
        stamp = _timestamp(label, statement.get("timestamp"), f"{at}.timestamp")
        fields = Fields(label, statement, at)
        statements.append(
            VexStatement(
                vulnerability=str(name).strip(),
                status=statement["status"],
                aliases=tuple(a for a in dict.fromkeys(aliases) if a != name),
                products=tuple(dict.fromkeys(products)),
                subcomponents=tuple(dict.fromkeys(subcomponents)),
                justification=fields.text("justification"),
                impact_statement=fields.text("impact_statement"),
                timestamp=stamp or default_time,
                document=source,
            )
        )
    return statements


def _cyclonedx_products(label: str, doc: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """The described product's bom-ref and its ids: the image digest in its purl, else the purl."""
    metadata = doc.get("metadata")
    component = metadata.get("component") if isinstance(metadata, dict) else None
    if not isinstance(component, dict):
        return None, ()
    ref = optional_str(label, component, "bom-ref", "metadata.component.bom-ref")
    purl = optional_str(label, component, "purl", "metadata.component.purl")
    return ref, tuple(_product_ids({"@id": purl}) if purl else ())


def _cyclonedx_vex(document: Any, source: str | None) -> list[VexStatement]:
    label, doc = check("cyclonedx-vex", document)
    product_ref, products = _cyclonedx_products(label, doc)
    by_ref = {ref: c for ref, c in cyclonedx_walk(label, doc) if ref}
    metadata = doc.get("metadata")
    default_time = _timestamp(
        label,
        metadata.get("timestamp") if isinstance(metadata, dict) else None,
        "metadata.timestamp",
    )
    statements = []
    for i, vuln in enumerate(doc["vulnerabilities"]):  # check_cyclonedx_vex: ids and states
        at = f"vulnerabilities[{i}]"
        analysis = vuln["analysis"]
        subcomponents = []
        for k, affected in enumerate(object_list(label, vuln, "affects", f"{at}.affects")):
            ref = optional_str(label, affected, "ref", f"{at}.affects[{k}].ref")
            if ref is None:
                reject(label, f"{at}.affects[{k}].ref must be a non-empty string")
            if ref == product_ref:
                continue  # the product itself: the statement covers all of its packages
            component = by_ref.get(ref)
            subcomponents.append(component.purl or ref if component else ref)
        references = object_list(label, vuln, "references", f"{at}.references")
        aliases = string_list([r.get("id") for r in references])
        stamps = [
            (analysis.get("lastUpdated"), f"{at}.analysis.lastUpdated"),
            (analysis.get("firstIssued"), f"{at}.analysis.firstIssued"),
            (vuln.get("updated"), f"{at}.updated"),
            (vuln.get("published"), f"{at}.published"),
        ]
        stamp = next((t for v, p in stamps if (t := _timestamp(label, v, p))), default_time)
        fields = Fields(label, analysis, f"{at}.analysis")
        statements.append(
            VexStatement(
                vulnerability=vuln["id"],
                status=CYCLONEDX_STATES[analysis["state"]],
                aliases=tuple(a for a in dict.fromkeys(aliases) if a != vuln["id"]),
                products=products,
                subcomponents=tuple(dict.fromkeys(subcomponents)),
                justification=fields.text("justification"),
                impact_statement=fields.text("detail"),
                timestamp=stamp,
                document=source,
            )
        )
    return statements


_PARSERS: dict[str, Callable[[Any, str | None], list[VexStatement]]] = {
    "openvex": _openvex,
    "cyclonedx-vex": _cyclonedx_vex,
}


def vex_statements(
    format_name: str, document: Any, source_digest: str | None = None
) -> list[VexStatement]:
    """The statements of a VEX document, in document order, each recording `source_digest`.

    `document` is the parsed JSON (or the raw body); the format's upload check runs first. A
    statement's timestamp falls back to the document's. An unknown format name is
    `UnknownFormat` (a ValueError) listing VEX_FORMATS.
    """
    parser = _PARSERS.get(format_name)
    if parser is None:
        raise unknown_format("VEX", format_name, VEX_FORMATS)
    return parser(load(document), source_digest)
