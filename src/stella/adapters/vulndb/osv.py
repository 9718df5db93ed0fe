"""OSV advisories, offline: parse one document, import a directory or a zip of them.

`parse_osv` turns one OSV document (https://ossf.github.io/osv-schema/) into an `Advisory`,
validating what matching relies on; `read_osv` imports a directory tree of `*.json` files, a
`.zip` of them (OSV's per-ecosystem `all.zip` exports), or a single JSON file, skipping and
reporting the advisories it cannot use.

Decisions:

- A document is rejected (`AdvisoryRejected`) when it has no string `id`, when `affected` (or
  a range, event list or `versions`) has the wrong shape, when a range event is not a valid
  version for the range (SEMVER ranges: SemVer; ECOSYSTEM ranges: the ecosystem's scheme, for
  the ecosystems univers can compare), and when it is withdrawn.
- An `affected` entry whose ecosystem OSV does not define is dropped when it carries ranges or
  versions we would evaluate (ECOSYSTEM, SEMVER, `versions`); the rest of the advisory is kept
  and the drop is reported (`parse_osv_with_notes`, `ImportResult.dropped`). When nothing is
  left the document is rejected. GIT ranges are kept but never validated or matched.
- Severity: `database_specific.severity` when it is one of the known words (GitHub's MODERATE,
  Red Hat's Important, Debian's unimportant, … normalised to critical/high/medium/low);
  otherwise from the CVSS v3 base score, which is computed here from the vector
  (`cvss3_base_score`). A CVSS v4 or v2 vector alone is kept as `cvss_vector` with no score and
  severity "unknown".
- `modified` / `published` become aware datetimes; a time without an offset is read as UTC.
- `summary` falls back to the first line of `details` (at most 200 characters).
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from univers import versions as uv

from stella.domain.security import Advisory

MAX_ZIP_MEMBERS = 250_000
MAX_ZIP_TOTAL_BYTES = 2 * 1024**3  # uncompressed, summed over the JSON members
MAX_DOCUMENT_BYTES = 16 * 1024**2  # one JSON file or zip member

# OSV's ecosystem names (ossf/osv-schema ecosystems), the part before any ":release" suffix.
OSV_ECOSYSTEMS = frozenset(
    {
        "AlmaLinux",
        "Alpaquita",
        "Alpine",
        "Android",
        "Azure Linux",
        "BellSoft Hardened Containers",
        "Bioconductor",
        "Bitnami",
        "CRAN",
        "Chainguard",
        "CleanStart",
        "ConanCenter",
        "Debian",
        "Echo",
        "GHC",
        "GIT",
        "GSD",
        "GitHub Actions",
        "Go",
        "Hackage",
        "Hex",
        "Julia",
        "Kubernetes",
        "Linux",
        "Mageia",
        "Maven",
        "MinimOS",
        "NuGet",
        "OSS-Fuzz",
        "Packagist",
        "Photon OS",
        "Pub",
        "PyPI",
        "Red Hat",
        "Rocky Linux",
        "RubyGems",
        "SUSE",
        "SwiftURL",
        "UVI",
        "Ubuntu",
        "VSCode",
        "Wolfi",
        "crates.io",
        "npm",
        "openEuler",
        "openSUSE",
    }
)
_ECOSYSTEM_BY_LOWER = {name.lower(): name for name in OSV_ECOSYSTEMS} | {
    # purl types and common spellings an SBOM uses for the same ecosystems
    "golang": "Go",
    "cargo": "crates.io",
    "crates": "crates.io",
    "gem": "RubyGems",
    "composer": "Packagist",
    "pip": "PyPI",
    "python": "PyPI",
}

# Version scheme of each ecosystem whose ECOSYSTEM ranges univers can compare.
ECOSYSTEM_SCHEMES: dict[str, str] = {
    "PyPI": "pypi",
    "npm": "semver",
    "crates.io": "semver",
    "Hex": "semver",
    "Pub": "semver",
    "Go": "semver",  # univers' GolangVersion is SemVer with the leading "v" stripped
    "Maven": "maven",
    "NuGet": "nuget",
    "RubyGems": "gem",
    "Packagist": "composer",
    "Debian": "debian",
    "Ubuntu": "debian",
    "Alpine": "alpine",
    "Alpaquita": "alpine",
    "Chainguard": "alpine",
    "Wolfi": "alpine",
    "AlmaLinux": "rpm",
    "Azure Linux": "rpm",
    "Mageia": "rpm",
    "Photon OS": "rpm",
    "Red Hat": "rpm",
    "Rocky Linux": "rpm",
    "SUSE": "rpm",
    "openEuler": "rpm",
    "openSUSE": "rpm",
}
_SCHEME_CLASSES: dict[str, Any] = {
    "pypi": uv.PypiVersion,
    "semver": uv.SemverVersion,
    "maven": uv.MavenVersion,
    "nuget": uv.NugetVersion,
    "gem": uv.RubygemsVersion,
    "composer": uv.ComposerVersion,
    "debian": uv.DebianVersion,
    "alpine": uv.AlpineLinuxVersion,
    "rpm": uv.RpmVersion,
}
EVALUATED_RANGE_TYPES = frozenset({"ECOSYSTEM", "SEMVER"})
EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")

_SEVERITY_WORDS = {
    "critical": "critical",
    "high": "high",
    "important": "high",
    "moderate": "medium",
    "medium": "medium",
    "low": "low",
    "minor": "low",
    "negligible": "low",
    "unimportant": "low",
}


class AdvisoryRejected(ValueError):
    """The document is not an advisory we can use; the message says why."""


class OsvImportError(ValueError):
    """The import source as a whole is unreadable (not a zip or JSON, unsafe archive, …)."""


@dataclass
class ImportResult:
    """What `read_osv` imported; `skipped`: (file or id, reason) of each rejected document;
    `dropped`: (id, reason) of each `affected` entry left out of an imported advisory."""

    advisories: list[Advisory] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)


# --- versions --------------------------------------------------------------------------------


def split_ecosystem(ecosystem: str) -> tuple[str, str | None]:
    """`"Debian:12"` → `("Debian", "12")`; the base is canonicalised when OSV knows it
    (case-insensitively, and purl types such as `golang` or `cargo`)."""
    base, sep, release = ecosystem.partition(":")
    base = _ECOSYSTEM_BY_LOWER.get(base.strip().lower(), base.strip())
    return base, (release.strip() or None) if sep else None


def range_scheme(base_ecosystem: str, range_type: str) -> str | None:
    """The version scheme a range of this type in this ecosystem is evaluated with, or None
    when it is not evaluated (GIT ranges, ecosystems univers cannot compare)."""
    if range_type == "SEMVER":
        return "semver"
    if range_type == "ECOSYSTEM":
        return ECOSYSTEM_SCHEMES.get(base_ecosystem)
    return None


@lru_cache(maxsize=1 << 18)
def parse_version(scheme: str, text: str) -> Any | None:
    """A comparable key for `text` in `scheme` (only `<` and `==` are meaningful between keys
    of one scheme), or None when it is not a valid version. Cached: matching and import parse
    the same few thousand strings over and over."""
    cls = _SCHEME_CLASSES[scheme]
    try:
        version = cls(text)
    except Exception:  # noqa: BLE001 - univers raises InvalidVersion, ValueError, TypeError and its own per-scheme errors
        return None
    # Most univers classes order by their parsed `value` (attrs-generated comparisons), which is
    # much cheaper to compare directly; the Gentoo-based ones (Alpine) compare with vercmp.
    return version.value if cls.__lt__ is uv.Version.__lt__ else version


# --- severity --------------------------------------------------------------------------------

_CVSS3_WEIGHTS: dict[str, dict[str, float]] = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "UI": {"N": 0.85, "R": 0.62},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
_CVSS3_PR = {"U": {"N": 0.85, "L": 0.62, "H": 0.27}, "C": {"N": 0.85, "L": 0.68, "H": 0.5}}


def _roundup(value: float) -> float:
    """CVSS v3.1's Roundup: the smallest one-decimal number >= value, free of float noise."""
    scaled = round(value * 100_000)
    if scaled % 10_000 == 0:
        return scaled / 100_000.0
    return (math.floor(scaled / 10_000) + 1) / 10.0


@lru_cache(maxsize=4096)
def cvss3_base_score(vector: str) -> float | None:
    """The CVSS v3.0/v3.1 base score of `vector` (`CVSS:3.1/AV:N/AC:L/...`), or None when it is
    not a complete, valid v3 base vector. Temporal and environmental metrics are ignored; v3.0
    vectors use v3.1's Roundup (the two differ only in float-noise cases)."""
    parts = vector.strip().split("/")
    if not parts or parts[0] not in ("CVSS:3.0", "CVSS:3.1"):
        return None
    metrics: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition(":")
        if not sep or key in metrics:
            return None
        metrics[key] = value
    try:
        scope = metrics["S"]
        weights = {key: table[metrics[key]] for key, table in _CVSS3_WEIGHTS.items()}
        privileges = _CVSS3_PR[scope][metrics["PR"]]
    except KeyError:
        return None
    iss = 1 - (1 - weights["C"]) * (1 - weights["I"]) * (1 - weights["A"])
    impact = 6.42 * iss if scope == "U" else 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15
    exploitability = 8.22 * weights["AV"] * weights["AC"] * privileges * weights["UI"]
    if impact <= 0:
        return 0.0
    if scope == "U":
        return _roundup(min(impact + exploitability, 10))
    return _roundup(min(1.08 * (impact + exploitability), 10))


def severity_from_score(score: float) -> str:
    """CVSS v3's qualitative rating; "none" (0.0) is reported as low."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low"


def normalise_severity(word: object) -> str | None:
    """critical/high/medium/low for the words advisory databases use, None for anything else."""
    if not isinstance(word, str):
        return None
    return _SEVERITY_WORDS.get(word.strip().lower())


def _severity(document: dict[str, Any]) -> tuple[str, float | None, str | None]:
    vectors: dict[str, str] = {}
    entries = document.get("severity") or []
    if not isinstance(entries, list):
        raise AdvisoryRejected("severity is not a list")
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("score"), str):
            vectors.setdefault(str(entry.get("type")), entry["score"].strip())
    vector = vectors.get("CVSS_V3") or vectors.get("CVSS_V4") or vectors.get("CVSS_V2")
    score = cvss3_base_score(vectors["CVSS_V3"]) if "CVSS_V3" in vectors else None
    specific = document.get("database_specific")
    word = normalise_severity(specific.get("severity")) if isinstance(specific, dict) else None
    if word is None:
        word = severity_from_score(score) if score is not None else "unknown"
    return word, score, vector


# --- one document ----------------------------------------------------------------------------


def _timestamp(document: dict[str, Any], key: str) -> datetime | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        msg = f"{key} is not a string"
        raise AdvisoryRejected(msg)
    try:
        stamp = datetime.fromisoformat(value.strip())
    except ValueError:
        msg = f"{key} {value!r} is not an RFC 3339 time"
        raise AdvisoryRejected(msg) from None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _check_range(where: str, base: str, known: bool, osv_range: object) -> None:
    if not isinstance(osv_range, dict):
        msg = f"{where} is not an object"
        raise AdvisoryRejected(msg)
    range_type = osv_range.get("type")
    if not isinstance(range_type, str):
        msg = f"{where} has no type"
        raise AdvisoryRejected(msg)
    events = osv_range.get("events")
    if not isinstance(events, list) or not events:
        msg = f"{where} has no events list"
        raise AdvisoryRejected(msg)
    scheme = range_scheme(base, range_type) if known else None
    for number, event in enumerate(events):
        kinds = [k for k in EVENT_KINDS if isinstance(event, dict) and k in event]
        if len(kinds) != 1 or not isinstance(event[kinds[0]], str):
            msg = f"{where}.events[{number}] is not one of {'/'.join(EVENT_KINDS)} with a string"
            raise AdvisoryRejected(msg)
        kind, value = kinds[0], event[kinds[0]]
        if scheme is None or (kind == "introduced" and value == "0"):
            continue
        if kind == "limit" and value == "*":
            continue
        if parse_version(scheme, value) is None:
            msg = (
                f"{where}.events[{number}]: {kind} {value!r} is not a valid {scheme} version"
                f" ({range_type} range, ecosystem {base})"
            )
            raise AdvisoryRejected(msg)


def _check_affected(number: int, entry: object, notes: list[str]) -> bool:
    """Validate one `affected` entry; False when it is to be dropped (reason in `notes`)."""
    where = f"affected[{number}]"
    if not isinstance(entry, dict):
        msg = f"{where} is not an object"
        raise AdvisoryRejected(msg)
    package = entry.get("package")
    ranges = entry.get("ranges", [])
    versions = entry.get("versions", [])
    if not isinstance(ranges, list):
        msg = f"{where}.ranges is not a list"
        raise AdvisoryRejected(msg)
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        msg = f"{where}.versions is not a list of strings"
        raise AdvisoryRejected(msg)
    evaluated = bool(versions) or any(
        isinstance(r, dict) and r.get("type") in EVALUATED_RANGE_TYPES for r in ranges
    )
    if package is None:
        if evaluated:
            msg = f"{where} has versions or ranges but no package"
            raise AdvisoryRejected(msg)
        base, known = "", False
    else:
        if not isinstance(package, dict):
            msg = f"{where}.package is not an object"
            raise AdvisoryRejected(msg)
        ecosystem, name = package.get("ecosystem"), package.get("name")
        if not isinstance(ecosystem, str) or not ecosystem.strip():
            msg = f"{where}.package has no ecosystem"
            raise AdvisoryRejected(msg)
        if not isinstance(name, str) or not name.strip():
            msg = f"{where}.package has no name"
            raise AdvisoryRejected(msg)
        base, _ = split_ecosystem(ecosystem)
        known = base in OSV_ECOSYSTEMS
        if not known and evaluated:
            notes.append(f"{where}: unknown ecosystem {ecosystem!r} ({name}); entry dropped")
            return False
    for range_number, osv_range in enumerate(ranges):
        _check_range(f"{where}.ranges[{range_number}]", base, known, osv_range)
    return True


def parse_osv_with_notes(document: Any) -> tuple[Advisory, list[str]]:
    """`parse_osv`, plus the reasons of the `affected` entries it dropped."""
    if not isinstance(document, dict):
        raise AdvisoryRejected("the document is not a JSON object")
    advisory_id = document.get("id")
    if not isinstance(advisory_id, str) or not advisory_id.strip():
        raise AdvisoryRejected("missing id")
    advisory_id = advisory_id.strip()
    if document.get("withdrawn"):
        msg = f"{advisory_id} was withdrawn at {document['withdrawn']}"
        raise AdvisoryRejected(msg)
    aliases = document.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise AdvisoryRejected("aliases is not a list of strings")
    affected = document.get("affected", [])
    if not isinstance(affected, list):
        raise AdvisoryRejected("affected is not a list")
    notes: list[str] = []
    kept = [entry for number, entry in enumerate(affected) if _check_affected(number, entry, notes)]
    if affected and not kept:
        raise AdvisoryRejected("no usable affected entry: " + "; ".join(notes))
    severity, score, vector = _severity(document)
    summary = document.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        details = document.get("details")  # Alpine and OSS-Fuzz often give details only
        lines = details.strip().splitlines() if isinstance(details, str) else []
        summary = lines[0][:200] if lines else ""
    advisory = Advisory(
        id=advisory_id,
        aliases=tuple(dict.fromkeys(a.strip() for a in aliases if a.strip() != advisory_id)),
        summary=summary.strip(),
        severity=severity,
        cvss_score=score,
        cvss_vector=vector,
        modified=_timestamp(document, "modified"),
        published=_timestamp(document, "published"),
        affected=tuple(kept),
    )
    return advisory, notes


def parse_osv(document: Any) -> Advisory:
    """One OSV document (parsed JSON) as an `Advisory`; raises `AdvisoryRejected` with the reason.
    `affected` entries of ecosystems OSV does not define are dropped (see the module docstring).
    """
    return parse_osv_with_notes(document)[0]


# --- import ----------------------------------------------------------------------------------


def _import_payload(result: ImportResult, label: str, payload: bytes) -> None:
    try:
        loaded = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        result.skipped.append((label, f"not valid JSON: {exc}"))
        return
    documents = loaded if isinstance(loaded, list) else [loaded]
    for number, document in enumerate(documents):
        name = document.get("id") if isinstance(document, dict) else None
        where = name if isinstance(name, str) and name.strip() else label
        if isinstance(loaded, list) and where == label:
            where = f"{label}[{number}]"
        try:
            advisory, notes = parse_osv_with_notes(document)
        except AdvisoryRejected as exc:
            result.skipped.append((where, str(exc)))
            continue
        result.advisories.append(advisory)
        result.dropped.extend((advisory.id, note) for note in notes)


def _read_file(path: Path, label: str, result: ImportResult) -> None:
    size = path.stat().st_size
    if size > MAX_DOCUMENT_BYTES:
        result.skipped.append((label, f"{size} bytes is over the {MAX_DOCUMENT_BYTES} limit"))
        return
    _import_payload(result, label, path.read_bytes())


def _safe_member_name(name: str) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    drive = re.match(r"^[A-Za-z]:", name) is not None
    return not pure.is_absolute() and ".." not in pure.parts and not drive


def _read_zip(source: Path, result: ImportResult) -> None:
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        msg = f"{source} is not a zip archive ({exc}); give a .zip, a .json or a directory"
        raise OsvImportError(msg) from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            msg = f"{source} has {len(members)} members, over the {MAX_ZIP_MEMBERS} limit"
            raise OsvImportError(msg)
        unsafe = [m.filename for m in members if not _safe_member_name(m.filename)]
        if unsafe:
            msg = f"{source} has unsafe member names (absolute or '..'): {unsafe[:3]}"
            raise OsvImportError(msg)
        wanted = [m for m in members if not m.is_dir() and m.filename.lower().endswith(".json")]
        declared = sum(m.file_size for m in wanted)
        if declared > MAX_ZIP_TOTAL_BYTES:
            msg = f"{source} unpacks to {declared} bytes, over the {MAX_ZIP_TOTAL_BYTES} limit"
            raise OsvImportError(msg)
        total = 0
        for member in wanted:
            label = f"{source.name}:{member.filename}"
            if member.file_size > MAX_DOCUMENT_BYTES:
                reason = f"{member.file_size} bytes is over the {MAX_DOCUMENT_BYTES} limit"
                result.skipped.append((label, reason))
                continue
            try:
                with archive.open(member) as stream:
                    payload = stream.read(MAX_DOCUMENT_BYTES + 1)
            except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as exc:
                # RuntimeError: an encrypted member; NotImplementedError: an unknown compression
                result.skipped.append((label, f"unreadable member: {exc}"))
                continue
            if len(payload) > MAX_DOCUMENT_BYTES:  # the header understated the size
                result.skipped.append((label, f"over the {MAX_DOCUMENT_BYTES} byte limit"))
                continue
            total += len(payload)
            if total > MAX_ZIP_TOTAL_BYTES:
                msg = f"{source} unpacks to more than {MAX_ZIP_TOTAL_BYTES} bytes"
                raise OsvImportError(msg)
            _import_payload(result, label, payload)


def read_osv(source: Path) -> ImportResult:
    """Import OSV advisories from a directory (every `*.json` below it), a `.zip` of JSON files
    or one JSON file (one advisory or a list). Documents that are not valid JSON or not usable
    advisories are skipped and reported in `ImportResult.skipped`; an unreadable or unsafe
    source raises `OsvImportError`."""
    result = ImportResult()
    if source.is_dir():
        for path in sorted(source.rglob("*.json")):
            if path.is_file() and not path.is_symlink():
                _read_file(path, path.relative_to(source).as_posix(), result)
        return result
    if not source.is_file():
        msg = f"{source} does not exist or is not a file or directory"
        raise OsvImportError(msg)
    if zipfile.is_zipfile(source):
        _read_zip(source, result)
        return result
    if source.suffix.lower() == ".zip":
        _read_zip(source, result)  # raises the "not a zip archive" error
        return result
    with source.open("rb") as stream:
        head = stream.read(64).lstrip()
    if source.suffix.lower() != ".json" and not head.startswith((b"{", b"[")):
        msg = (
            f"{source} is neither a zip archive nor a JSON file; give a .zip, .json or a directory"
        )
        raise OsvImportError(msg)
    _read_file(source, source.name, result)
    return result
