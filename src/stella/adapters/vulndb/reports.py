"""Scan reports (Trivy, Grype, SARIF, CycloneDX with vulnerabilities, Stella's native findings)
normalised to `Finding`s, so the security gate reads one shape whatever scanner ran.

What decides a verdict is read strictly: the advisory id, the package, its purl and versions
must have the right type or the document is rejected with the field's path, because a silently
skipped finding would let an image pass. Enrichment (titles, CVSS, aliases) is best effort: a
malformed score is left out, never guessed. Severities become one of `SEVERITIES`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from stella.adapters.vulndb.sboms import (
    Fields,
    check,
    cyclonedx_walk,
    load,
    object_list,
    optional_str,
    purl_component,
    reject,
    string_list,
    unknown_format,
)
from stella.domain.security import SEVERITIES, Finding

SCAN_FORMATS = ("trivy", "grype", "sarif", "cyclonedx", "native")

# words scanners and advisory databases use beside SEVERITIES (Grype's negligible, GitHub's
# moderate, Red Hat's important, CycloneDX's info and none)
SEVERITY_WORDS: dict[str, str] = {
    **{s: s for s in SEVERITIES},
    "negligible": "low",
    "info": "low",
    "informational": "low",
    "none": "low",
    "moderate": "medium",
    "important": "high",
}
SARIF_LEVELS = {"error": "high", "warning": "medium", "note": "low", "none": "low"}
# SARIF result kinds that say "this is not a problem" rather than report one
_SARIF_NOT_PROBLEMS = frozenset({"pass", "notApplicable", "informational"})
_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # critical first


def normalise_severity(value: Any) -> str:
    """Lowercase SEVERITIES; `negligible` is `low`, anything unrecognised is `unknown`."""
    if not isinstance(value, str):
        return "unknown"
    return SEVERITY_WORDS.get(value.strip().lower(), "unknown")


def score_severity(score: float | None) -> str | None:
    """The CVSS v3 qualitative rating of a score; None for no score (or 0.0, which says none)."""
    if score is None or score <= 0:
        return None
    if score >= 9:
        return "critical"
    if score >= 7:
        return "high"
    return "medium" if score >= 4 else "low"


def _number(value: Any) -> float | None:
    """A score from a number or a numeric string (SARIF writes "7.5"); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _first_line(value: Any) -> str:
    text = _text(value)
    return text.splitlines()[0].strip() if text else ""


def _best_cvss(
    candidates: Iterable[tuple[str, Any, Any]],
) -> tuple[float | None, str | None]:
    """(score, vector) of the first CVSS v3 candidate, else v4, else v2, else anything scored.

    Candidates are (version, score, vector) in the report's order of preference; v3 first
    because it is what severities and policies are usually written against.
    """
    scored = [(str(v), s, _text(vec)) for v, raw, vec in candidates if (s := _number(raw))]
    for prefix in ("3", "4", "2", ""):
        for version, score, vector in scored:
            if version.startswith(prefix):
                return score, vector
    return None, None


def _unique(ids: Iterable[str], own: str) -> tuple[str, ...]:
    return tuple(i for i in dict.fromkeys(ids) if i != own)


def _ids(items: Iterable[dict[str, Any]]) -> list[str]:
    """The `id`s of a list of objects (Grype's related vulnerabilities, CycloneDX references)."""
    return [text for item in items if (text := _text(item.get("id")))]


def _package(label: str, name: str | None, purl: str | None, path: str) -> str:
    """The package a finding is about: the report's name, else the purl's (OSV-style) name."""
    if name:
        return name
    if purl:
        return purl_component(purl).name
    return reject(label, f"{path} must name a package (a name or a purl)")


# --- Trivy -----------------------------------------------------------------------------------


def _trivy_cvss(cvss: Any, preferred: Any) -> tuple[float | None, str | None]:
    if not isinstance(cvss, dict):
        return None, None
    order = list(dict.fromkeys(["nvd", preferred if isinstance(preferred, str) else "nvd", *cvss]))
    sources = [cvss[s] for s in order if isinstance(s, str) and isinstance(cvss.get(s), dict)]
    return _best_cvss(
        (version, source.get(f"V{key}Score"), source.get(f"V{key}Vector"))
        for version, key in (("3", "3"), ("4", "40"), ("2", "2"))
        for source in sources
    )


def _trivy(document: Any) -> list[Finding]:
    label, doc = check("trivy", document)
    findings = []
    for i, result in enumerate(doc.get("Results") or []):
        path = f"Results[{i}].Vulnerabilities"
        for j, vuln in enumerate(object_list(label, result, "Vulnerabilities", path)):
            fields = Fields(label, vuln, f"{path}[{j}]")
            ident = Fields(label, vuln.get("PkgIdentifier"), f"{fields.at}.PkgIdentifier")
            purl = ident.text("PURL")
            score, vector = _trivy_cvss(vuln.get("CVSS"), vuln.get("SeveritySource"))
            advisory = vuln["VulnerabilityID"]
            findings.append(
                Finding(
                    advisory_id=advisory,
                    package=_package(label, fields.text("PkgName"), purl, fields.at),
                    severity=normalise_severity(vuln.get("Severity")),
                    aliases=_unique(string_list(vuln.get("VendorIDs")), advisory),
                    purl=purl,
                    installed_version=fields.text("InstalledVersion"),
                    fixed_version=fields.text("FixedVersion"),
                    cvss_score=score,
                    cvss_vector=vector,
                    title=_first_line(vuln.get("Title")),
                )
            )
    return findings


# --- Grype -----------------------------------------------------------------------------------


def _grype_cvss(entries: Iterable[Any]) -> Iterable[tuple[str, Any, Any]]:
    for entry in entries:
        if isinstance(entry, dict):
            metrics = entry.get("metrics")
            score = metrics.get("baseScore") if isinstance(metrics, dict) else None
            yield str(entry.get("version", "")), score, entry.get("vector")


def _grype(document: Any) -> list[Finding]:
    label, doc = check("grype", document)
    findings = []
    for i, match in enumerate(doc["matches"]):
        at = f"matches[{i}]"
        vuln, artifact = match["vulnerability"], match["artifact"]
        advisory = vuln["id"]
        related = object_list(
            label, match, "relatedVulnerabilities", f"{at}.relatedVulnerabilities"
        )
        fix = vuln.get("fix")
        fixed = string_list(fix.get("versions")) if isinstance(fix, dict) else []
        own_cvss = vuln.get("cvss") if isinstance(vuln.get("cvss"), list) else []
        related_cvss = [c for r in related if isinstance(r.get("cvss"), list) for c in r["cvss"]]
        score, vector = _best_cvss(_grype_cvss([*own_cvss, *related_cvss]))
        fields = Fields(label, artifact, f"{at}.artifact")
        purl, name = fields.text("purl"), fields.text("name")
        findings.append(
            Finding(
                advisory_id=advisory,
                package=_package(label, name, purl, fields.at),
                severity=normalise_severity(vuln.get("severity")),
                aliases=_unique(_ids(related), advisory),
                purl=purl,
                installed_version=fields.text("version"),
                fixed_version=", ".join(fixed) or None,
                cvss_score=score,
                cvss_vector=vector,
            )
        )
    return findings


# --- SARIF -----------------------------------------------------------------------------------

# Trivy's SARIF carries the package only in the message text, one "Key: value" per line
_SARIF_LINE = re.compile(r"^(Package|Installed Version|Fixed Version): *(\S.*?) *$", re.MULTILINE)


def _properties(obj: Any) -> dict[str, Any]:
    props = obj.get("properties") if isinstance(obj, dict) else None
    return props if isinstance(props, dict) else {}


def _sarif_rules(label: str, run: dict[str, Any], at: str) -> list[dict[str, Any]]:
    tool = run["tool"]  # check_sarif made sure of tool.driver
    rules = object_list(label, tool["driver"], "rules", f"{at}.tool.driver.rules")
    for k, extension in enumerate(object_list(label, tool, "extensions", f"{at}.tool.extensions")):
        rules = rules + object_list(label, extension, "rules", f"{at}.tool.extensions[{k}].rules")
    return rules


def _sarif_rule(
    label: str, result: dict[str, Any], rules: list[dict[str, Any]], at: str
) -> tuple[str, dict[str, Any]]:
    """The result's rule id and the rule it names (by ruleId, rule.id or ruleIndex)."""
    rule_ref = result.get("rule")
    if not isinstance(rule_ref, dict):
        rule_ref = {}
    rule_id = optional_str(label, result, "ruleId", f"{at}.ruleId") or _text(rule_ref.get("id"))
    index = result.get("ruleIndex", rule_ref.get("index"))
    by_index = rules[index] if isinstance(index, int) and 0 <= index < len(rules) else None
    rule = next((r for r in rules if r.get("id") == rule_id), by_index) if rule_id else by_index
    rule_id = rule_id or (_text(rule.get("id")) if rule else None)
    if rule_id is None:
        reject(label, f"{at}.ruleId missing (and no rule it names has an id)")
    return rule_id, rule or {}


def _suppressed(result: dict[str, Any]) -> bool:
    """SARIF's own suppression: a `suppressions` entry whose status is accepted (the default)."""
    entries = result.get("suppressions")
    return isinstance(entries, list) and any(
        isinstance(s, dict) and s.get("status", "accepted") == "accepted" for s in entries
    )


def _sarif_location(result: dict[str, Any]) -> str:
    """Where a code-scanning result points, for SARIF that names no package ("" if nowhere)."""
    locations = result.get("locations")
    first = locations[0] if isinstance(locations, list) and locations else None
    physical = first.get("physicalLocation") if isinstance(first, dict) else None
    artifact = physical.get("artifactLocation") if isinstance(physical, dict) else None
    return (_text(artifact.get("uri")) if isinstance(artifact, dict) else None) or ""


def _sarif_result(
    label: str, result: dict[str, Any], rules: list[dict[str, Any]], at: str
) -> Finding:
    rule_id, rule = _sarif_rule(label, result, rules, at)
    props, rule_props = _properties(result), _properties(rule)
    score = _number(props.get("security-severity", rule_props.get("security-severity")))
    default = rule.get("defaultConfiguration")
    level = result.get("level") or (default.get("level") if isinstance(default, dict) else None)
    severity = score_severity(score) or SARIF_LEVELS.get(str(level or "warning"), "unknown")
    message = result.get("message")
    text = _text(message.get("text")) if isinstance(message, dict) else None
    lines = dict(_SARIF_LINE.findall(text or ""))
    purl = optional_str(label, props, "purl", f"{at}.properties.purl")
    name = optional_str(label, props, "package", f"{at}.properties.package")
    reachable = props.get("reachable")
    short = rule.get("shortDescription")
    # SAST results name no package: the file they point at is what a waiver can name
    package = name or lines.get("Package") or (purl_component(purl).name if purl else None)
    return Finding(
        advisory_id=rule_id,
        package=package or _sarif_location(result),
        severity=severity,
        aliases=_unique(string_list(props.get("aliases")), rule_id),
        purl=purl,
        installed_version=lines.get("Installed Version"),
        fixed_version=lines.get("Fixed Version"),
        cvss_score=score if score_severity(score) else None,
        reachable=reachable if isinstance(reachable, bool) else None,
        title=_first_line(short.get("text") if isinstance(short, dict) else None)
        or _first_line(text),
    )


def _sarif(document: Any) -> list[Finding]:
    label, doc = check("sarif", document)
    findings = []
    for i, run in enumerate(doc["runs"]):
        rules = _sarif_rules(label, run, f"runs[{i}]")
        for j, result in enumerate(run.get("results") or []):
            if result.get("kind") in _SARIF_NOT_PROBLEMS or _suppressed(result):
                continue
            findings.append(_sarif_result(label, result, rules, f"runs[{i}].results[{j}]"))
    return findings


# --- CycloneDX with vulnerabilities -----------------------------------------------------------


def _cyclonedx_rating(ratings: list[dict[str, Any]]) -> tuple[str, float | None, str | None]:
    """The worst severity the ratings give, and the CVSS of the highest-scored rating.

    Trivy and others list one rating per source (NVD, the distribution, GHSA); the gate takes
    the most severe, as a reviewer reading the report would.
    """
    severities = [normalise_severity(r.get("severity")) for r in ratings]
    scored = [(s, r) for r in ratings if (s := _number(r.get("score"))) is not None]
    best = max(scored, key=lambda pair: pair[0], default=None)
    score, vector = (best[0], _text(best[1].get("vector"))) if best else (None, None)
    known = [s for s in severities if s != "unknown"] or [score_severity(score) or "unknown"]
    return min(known, key=_RANK.__getitem__), score, vector


def _cyclonedx(document: Any) -> list[Finding]:
    label, doc = check("cyclonedx", document)
    if "vulnerabilities" not in doc:
        reject(label, "vulnerabilities missing (an SBOM without them is not a scan report)")
    by_ref = {ref: c for ref, c in cyclonedx_walk(label, doc, with_metadata=True) if ref}
    findings = []
    for i, vuln in enumerate(object_list(label, doc, "vulnerabilities", "vulnerabilities")):
        at = f"vulnerabilities[{i}]"
        advisory = optional_str(label, vuln, "id", f"{at}.id")
        if advisory is None:
            reject(label, f"{at}.id must be a non-empty string")
        references = object_list(label, vuln, "references", f"{at}.references")
        aliases = _unique(_ids(references), advisory)
        severity, score, vector = _cyclonedx_rating(
            object_list(label, vuln, "ratings", f"{at}.ratings")
        )
        affects = object_list(label, vuln, "affects", f"{at}.affects")
        for k, affected in enumerate(affects or [{}]):
            ref = optional_str(label, affected, "ref", f"{at}.affects[{k}].ref")
            if affects and ref is None:
                reject(label, f"{at}.affects[{k}].ref must be a non-empty string")
            component = by_ref.get(ref or "") or purl_component(ref, ref, None)
            fixed = [
                v["version"]
                for v in object_list(label, affected, "versions", f"{at}.affects[{k}].versions")
                if v.get("status") == "unaffected" and isinstance(v.get("version"), str)
            ]
            findings.append(
                Finding(
                    advisory_id=advisory,
                    package=component.name,
                    severity=severity,
                    aliases=aliases,
                    purl=component.purl,
                    installed_version=component.version,
                    fixed_version=", ".join(fixed) or None,
                    cvss_score=score,
                    cvss_vector=vector,
                    title=_first_line(vuln.get("description")),
                )
            )
    return findings


# --- native ----------------------------------------------------------------------------------


def _flag(label: str, finding: dict[str, Any], key: str, path: str) -> bool | None:
    value = finding.get(key)
    if value is not None and not isinstance(value, bool):
        reject(label, f"{path} must be true or false")
    return value


def _native(document: Any) -> list[Finding]:
    label, doc = check("native", document)
    findings = []
    for i, item in enumerate(doc["findings"]):
        at = f"findings[{i}]"
        reachable = _flag(label, item, "reachable", f"{at}.reachable")
        if _flag(label, item, "suppressed", f"{at}.suppressed"):
            continue  # the scanner's own suppression: it never reached the report's reader
        purl = optional_str(label, item, "purl", f"{at}.purl")
        name = optional_str(label, item, "package", f"{at}.package")
        findings.append(
            Finding(
                advisory_id=item["id"],
                package=name or (purl_component(purl).name if purl else ""),
                severity=normalise_severity(item["severity"]),
                purl=purl,
                reachable=reachable,
            )
        )
    return findings


_PARSERS: dict[str, Callable[[Any], list[Finding]]] = {
    "trivy": _trivy,
    "grype": _grype,
    "sarif": _sarif,
    "cyclonedx": _cyclonedx,
    "native": _native,
}


def parse_scan_report(format_name: str, document: Any) -> list[Finding]:
    """The findings of a scan report, deduplicated, in report order, all with source "scan".

    `document` is the parsed JSON (or the raw body). The format's upload check runs first, so
    a wrong document is rejected with the reason an upload would give; an unknown format name
    is `UnknownFormat` (a ValueError) listing SCAN_FORMATS. Native findings marked
    `suppressed: true` are left out: that is the scanner's own suppression, like SARIF's
    accepted `suppressions`; VEX and waivers are applied later, by the verdict.
    """
    parser = _PARSERS.get(format_name)
    if parser is None:
        raise unknown_format("scan", format_name, SCAN_FORMATS)
    return list(dict.fromkeys(parser(load(document))))
