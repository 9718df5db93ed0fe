"""Matching SBOM components against imported OSV advisories, offline.

`AdvisoryIndex` indexes each advisory's affected packages by (ecosystem, normalised name) and
pre-parses every range boundary when the advisory is added, so `match` costs a dictionary
lookup, one (cached) parse of the installed version and a few comparisons per candidate range.

Semantics (OSV's "evaluation" section):

- ECOSYSTEM ranges use the ecosystem's version scheme through univers (PyPI, npm, crates.io,
  Hex, Pub, Go, Maven, NuGet, RubyGems, Packagist, Debian/Ubuntu, Alpine/Wolfi/Chainguard and
  the RPM distributions); SEMVER ranges use SemVer in any ecosystem (a leading "v", as Go
  modules write it, is ignored). Events are sorted by version; `introduced` (where "0" means
  "from the first version") opens, `fixed` closes before the fixed version, `last_affected`
  closes after it, and a `limit` bounds the range from above. GIT ranges are never matched.
- An explicit `versions` list matches an equal version of the same scheme.
- Ecosystems: "Debian:12" (a release suffix) and plain "Debian" match each other both ways;
  "Debian:11" and "Debian:12" do not. Names: PyPI by PEP 503 normalisation, Maven as
  `group:artifact` (a `/` is read as `:`), everything else exactly.
- Conservative by design: a component without a version, without an ecosystem (given or
  derivable from its purl), whose version does not parse in the scheme, or in an ecosystem
  univers cannot compare, produces no finding. Absence of findings is therefore not proof of
  absence of vulnerabilities.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from stella.adapters.vulndb.osv import parse_version, range_scheme, split_ecosystem
from stella.adapters.vulndb.sboms import purl_component
from stella.domain.security import Advisory, Component, Finding

_INTRODUCED, _FIXED, _LAST_AFFECTED, _LIMIT = 0, 1, 2, 3
_EVENT_CODES = {"introduced": _INTRODUCED, "fixed": _FIXED, "last_affected": _LAST_AFFECTED}
_PEP503 = re.compile(r"[-_.]+")


def normalise_name(ecosystem: str, name: str) -> str:
    """The name a package is indexed under in its (base) ecosystem."""
    name = name.strip()
    if ecosystem == "PyPI":
        return _PEP503.sub("-", name).lower()
    if ecosystem == "Maven":
        return name.replace("/", ":")
    return name


def _normalise_release(release: str | None) -> str | None:
    if release is None:
        return None
    release = release.strip().lower()
    return release[1:] if release[:1] == "v" and release[1:2].isdigit() else release


@dataclass(frozen=True, slots=True)
class _Range:
    scheme: str
    events: tuple[tuple[int, Any, str], ...]  # (code, key or None for introduced "0", text)
    limits: tuple[Any, ...]

    def affects(self, key: Any) -> bool:
        if self.limits and not any(key < limit for limit in self.limits):
            return False
        affected = False
        for code, boundary, _ in self.events:
            if code == _INTRODUCED:
                if boundary is None or not key < boundary:
                    affected = True
            elif code == _FIXED:
                if not key < boundary:
                    affected = False
            elif boundary < key:  # last_affected
                affected = False
        return affected

    def fixed_above(self, key: Any) -> str | None:
        for code, boundary, text in self.events:
            if code == _FIXED and key < boundary:
                return text
        return None


@dataclass(frozen=True, slots=True)
class _Entry:
    advisory: Advisory
    release: str | None
    ranges: tuple[_Range, ...]
    version_scheme: str | None
    versions: frozenset[Any] | tuple[Any, ...]


def _sort_events(events: list[tuple[int, Any, str]]) -> tuple[tuple[int, Any, str], ...]:
    """Insertion sort by version (keys only support `<`); "0" first; stable for ties."""
    ordered: list[tuple[int, Any, str]] = []
    for event in events:
        position = len(ordered)
        while position > 0 and _event_before(event, ordered[position - 1]):
            position -= 1
        ordered.insert(position, event)
    return tuple(ordered)


def _event_before(a: tuple[int, Any, str], b: tuple[int, Any, str]) -> bool:
    if a[1] is None:
        return b[1] is not None
    return b[1] is not None and bool(a[1] < b[1])


def _parse_range(base: str, osv_range: dict[str, Any]) -> _Range | None:
    scheme = range_scheme(base, str(osv_range.get("type")))
    if scheme is None:
        return None
    events: list[tuple[int, Any, str]] = []
    limits: list[Any] = []
    for event in osv_range.get("events", []):
        for kind, text in event.items():
            if kind == "introduced" and text == "0":
                events.append((_INTRODUCED, None, text))
                continue
            if kind == "limit" and text == "*":
                continue
            key = parse_version(scheme, text) if kind in _EVENT_CODES or kind == "limit" else None
            if key is None:  # parse_osv rejects these; an Advisory built by hand may have them
                return None
            if kind == "limit":
                limits.append(key)
            else:
                events.append((_EVENT_CODES[kind], key, text))
    return _Range(scheme, _sort_events(events), tuple(limits))


def _freeze(keys: list[Any]) -> frozenset[Any] | tuple[Any, ...]:
    try:
        return frozenset(keys)
    except TypeError:  # univers' Alpine versions compare with vercmp and are unhashable
        return tuple(keys)


def _component_key(component: Component) -> tuple[str, str | None, str] | None:
    """(base ecosystem, release, normalised name) of a component, or None when unknown. A
    component without an ecosystem gets the one its purl names (as SBOM normalisation does)."""
    if not component.ecosystem and component.purl:
        component = purl_component(component.purl, component.name, component.version)
    if not component.ecosystem:
        return None
    base, release = split_ecosystem(component.ecosystem)
    return base, _normalise_release(release), normalise_name(base, component.name)


class AdvisoryIndex:
    """Advisories indexed for matching components. Adding an advisory whose id is already
    indexed replaces the older one (by `modified`; the later added when that does not say)."""

    def __init__(self, advisories: Iterable[Advisory] = ()) -> None:
        self._by_package: dict[tuple[str, str], list[_Entry]] = {}
        self._advisories: dict[str, Advisory] = {}
        self._keys: dict[str, list[tuple[str, str]]] = {}
        self._by_alias: dict[str, set[str]] = {}
        for advisory in advisories:
            self.add(advisory)

    def __len__(self) -> int:
        return len(self._advisories)

    def add(self, advisory: Advisory) -> None:
        current = self._advisories.get(advisory.id)
        if current is not None:
            if current.modified and advisory.modified and advisory.modified < current.modified:
                return
            self._remove(current)
        self._advisories[advisory.id] = advisory
        for alias in advisory.ids:
            self._by_alias.setdefault(alias, set()).add(advisory.id)
        keys = self._keys.setdefault(advisory.id, [])
        for affected in advisory.affected:
            entry_key = self._entry(advisory, affected)
            if entry_key is None:
                continue
            key, entry = entry_key
            self._by_package.setdefault(key, []).append(entry)
            keys.append(key)

    def _entry(
        self, advisory: Advisory, affected: dict[str, Any]
    ) -> tuple[tuple[str, str], _Entry] | None:
        package = affected.get("package")
        if not isinstance(package, dict):
            return None
        base, release = split_ecosystem(str(package.get("ecosystem", "")))
        ranges = tuple(
            parsed
            for osv_range in affected.get("ranges", [])
            if (parsed := _parse_range(base, osv_range)) is not None
        )
        scheme = range_scheme(base, "ECOSYSTEM")
        listed = affected.get("versions", [])
        keys = [parse_version(scheme, v) for v in listed] if scheme else []
        versions = _freeze([k for k in keys if k is not None])
        if not ranges and not versions:
            return None  # GIT-only, or an ecosystem univers cannot compare
        entry = _Entry(advisory, _normalise_release(release), ranges, scheme, versions)
        return (base, normalise_name(base, str(package.get("name", "")))), entry

    def _remove(self, advisory: Advisory) -> None:
        for key in self._keys.pop(advisory.id, []):
            entries = [e for e in self._by_package.get(key, []) if e.advisory.id != advisory.id]
            if entries:
                self._by_package[key] = entries
            else:
                self._by_package.pop(key, None)
        for alias in advisory.ids:
            owners = self._by_alias.get(alias)
            if owners is not None:
                owners.discard(advisory.id)
                if not owners:
                    del self._by_alias[alias]
        del self._advisories[advisory.id]

    def advisories_for(self, advisory_id: str) -> list[Advisory]:
        """The advisories with this id or alias (a CVE can have a GHSA and a PYSEC advisory)."""
        return [self._advisories[i] for i in sorted(self._by_alias.get(advisory_id, ()))]

    def match(self, component: Component) -> list[Finding]:
        """One finding per advisory affecting this component's version (sorted by id); none
        for a component without a version or in an ecosystem univers cannot compare."""
        if not component.version:
            return []
        key = _component_key(component)
        if key is None:
            return []
        base, release, name = key
        entries = self._by_package.get((base, name))
        if not entries:
            return []
        found: dict[str, Finding] = {}
        for entry in entries:
            if entry.advisory.id in found:
                continue
            if release is not None and entry.release is not None and release != entry.release:
                continue
            hit = _evaluate(entry, component.version)
            if hit is not None:
                found[entry.advisory.id] = _finding(entry.advisory, component, hit[1])
        return [found[i] for i in sorted(found)]


def _evaluate(entry: _Entry, version: str) -> tuple[bool, str | None] | None:
    """(True, first fixed version above it) when `version` is affected, else None."""
    for osv_range in entry.ranges:
        key = parse_version(osv_range.scheme, version)
        if key is not None and osv_range.affects(key):
            return True, osv_range.fixed_above(key)
    if entry.versions and entry.version_scheme is not None:
        key = parse_version(entry.version_scheme, version)
        if key is not None and key in entry.versions:
            fixed = next(
                (
                    text
                    for osv_range in entry.ranges
                    if osv_range.scheme == entry.version_scheme
                    and (text := osv_range.fixed_above(key)) is not None
                ),
                None,
            )
            return True, fixed
    return None


def _finding(advisory: Advisory, component: Component, fixed: str | None) -> Finding:
    return Finding(
        advisory_id=advisory.id,
        package=component.name,
        severity=advisory.severity,
        aliases=advisory.aliases,
        purl=component.purl,
        installed_version=component.version,
        fixed_version=fixed,
        cvss_score=advisory.cvss_score,
        cvss_vector=advisory.cvss_vector,
        title=advisory.summary,
        source="advisory",
    )
