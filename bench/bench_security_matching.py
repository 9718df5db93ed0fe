"""Offline advisory matching: 10,000 SBOM components against 50,000 OSV advisories, in process.

Synthetic but OSV-shaped data, generated from a fixed seed (not timed):

- ADVISORIES advisories over a realistic mix of ecosystems (npm, PyPI, Maven, Go, Debian:11/12,
  Alpine:v3.18/v3.19, crates.io, RubyGems, NuGet), each with one affected package (one in ten
  with a second one) drawn from a skewed (popular packages get many advisories) pool of names
  per ecosystem. Language ecosystems get an ECOSYSTEM or SEMVER range per advisory
  (introduced M.0.0, fixed M.5.3 on a major of its own, so the ranges of one package do not
  overlap; one PyPI advisory in five also lists 10 explicit versions); Debian and Alpine get
  introduced "0" and a fixed Debian (`M.5.3-1`, some with an epoch) or apk (`M.5.3-r2`) version.
  A CVSS v3 vector and a database severity on most. One in twenty is GIT-only.
- COMPONENTS components with an OSV ecosystem (Debian/Alpine with a release, as an image SBOM
  gives them): about 30 % name a package that has advisories, at a fixed (safe) version; about
  1 % are at an affected version; the rest name packages without advisories. PyPI names are
  written in other spellings (case, `_`, `.`), Go versions with their leading "v".

Measured, with the product's own functions (stella.adapters.vulndb):

1. Parse: `parse_osv` on every document (validation with univers included), cold version cache.
2. Zip import: `read_osv` on a zip of all documents (one JSON file each) in a temporary
   directory, cold version cache: reading, JSON decoding, parsing.
3. Index build: `AdvisoryIndex(advisories)` (range boundaries pre-parsed), cold version cache.
4. Match: `index.match` on each component, twice: the first pass parses the components'
   versions (cold for them), the second finds them cached. Per-component latencies, findings,
   affected components.

Every loop is bounded by its count and by BUDGET seconds (`truncated` says when it stopped
early); the whole module runs under `timeout` when wired into scripts/bench.sh.

Run: .venv/bin/python -m bench.bench_security_matching (from the repository root).
`--advisories N` / `--components N` for a quick try with fewer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.bench_gates import distribution
from bench.bench_workflows import source_commit
from bench.common import exit_cleanly_on_sigterm, log, write_result
from stella.adapters.vulndb.matching import AdvisoryIndex
from stella.adapters.vulndb.osv import parse_osv, parse_version, read_osv
from stella.domain.security import Advisory, Component

ADVISORIES = 50_000
COMPONENTS = 10_000
SEED = 20261127
BUDGET = 240.0  # seconds per measured phase
AFFECTED_SHARE = 0.01
KNOWN_SHARE = 0.30  # components naming a package that has advisories
GIT_ONLY_SHARE = 0.05

# ecosystem: (share of advisories, share of components, size of the package-name pool)
MIX: dict[str, tuple[float, float, int]] = {
    "npm": (0.24, 0.25, 9000),
    "PyPI": (0.16, 0.12, 5000),
    "Maven": (0.14, 0.12, 5000),
    "Go": (0.08, 0.08, 3000),
    "Debian": (0.20, 0.25, 4000),
    "Alpine": (0.06, 0.08, 1500),
    "crates.io": (0.05, 0.04, 2000),
    "RubyGems": (0.04, 0.03, 1500),
    "NuGet": (0.03, 0.03, 1500),
}
RELEASES = {"Debian": ("11", "12"), "Alpine": ("v3.18", "v3.19")}
SEMVER_ECOSYSTEMS = frozenset({"npm", "Go", "crates.io"})
VECTORS = (
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CRITICAL"),
    ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", "HIGH"),
    ("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:C/C:H/I:N/A:N", "MODERATE"),
    ("CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:L/I:N/A:N", "LOW"),
)


def package_name(ecosystem: str, number: int) -> str:
    """The advisory's spelling of package `number` of `ecosystem`."""
    if ecosystem == "Maven":
        return f"org.example{number % 97}.lib:artifact-{number}"
    if ecosystem == "Go":
        return f"github.com/example{number % 211}/module-{number}"
    if ecosystem == "npm" and number % 5 == 0:
        return f"@scope{number % 31}/pkg-{number}"
    if ecosystem == "PyPI":
        return f"py-package-{number}"
    return f"{ecosystem.lower().replace('.', '')}-package-{number}"


def sbom_name(ecosystem: str, number: int) -> str:
    """The SBOM's spelling: PyPI names as projects write them."""
    name = package_name(ecosystem, number)
    if ecosystem == "PyPI":
        return ("Py_Package." if number % 3 == 0 else "py_package-") + str(number)
    return name


def version(ecosystem: str, major: int, minor: int, patch: int, *, epoch: bool = False) -> str:
    if ecosystem == "Debian":
        return f"{'1:' if epoch else ''}{major}.{minor}.{patch}-1"
    if ecosystem == "Alpine":
        return f"{major}.{minor}.{patch}-r2"
    return f"{major}.{minor}.{patch}"


def advisory_document(
    rng: random.Random, number: int, packages: dict[tuple[str, str | None, int], int]
) -> dict[str, Any]:
    """One OSV document; `packages` counts advisories per (ecosystem, release, package)."""
    ecosystems = list(MIX)
    ecosystem = rng.choices(ecosystems, weights=[MIX[e][0] for e in ecosystems])[0]
    modified = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=number)
    vector, word = rng.choice(VECTORS)
    document: dict[str, Any] = {
        "schema_version": "1.6.0",
        "id": f"GHSA-bench-{number:06d}",
        "aliases": [f"CVE-2024-{number + 10000}"],
        "summary": f"Synthetic vulnerability {number}",
        "published": modified.isoformat(),
        "modified": modified.isoformat(),
        "affected": [],
    }
    if rng.random() < 0.8:
        document["severity"] = [{"type": "CVSS_V3", "score": vector}]
    if rng.random() < 0.7:
        document["database_specific"] = {"severity": word}
    for _ in range(2 if rng.random() < 0.1 else 1):
        pool = MIX[ecosystem][2]
        package = int(pool * rng.random() ** 3)  # skewed: low numbers are the popular ones
        release = rng.choice(RELEASES[ecosystem]) if ecosystem in RELEASES else None
        key = (ecosystem, release, package)
        ordinal = packages.get(key, 0)
        packages[key] = ordinal + 1
        osv_ecosystem = f"{ecosystem}:{release}" if release else ecosystem
        entry: dict[str, Any] = {
            "package": {"ecosystem": osv_ecosystem, "name": package_name(ecosystem, package)}
        }
        if rng.random() < GIT_ONLY_SHARE:
            entry["ranges"] = [
                {
                    "type": "GIT",
                    "repo": f"https://example.org/{package}.git",
                    "events": [{"introduced": f"{number:040x}"}, {"fixed": f"{number + 1:040x}"}],
                }
            ]
            document["affected"].append(entry)
            continue
        major = ordinal + 1
        if ecosystem in RELEASES:  # distributions: everything before the fix
            fixed = version(ecosystem, major, 5, 3, epoch=ecosystem == "Debian" and major > 40)
            events = [{"introduced": "0"}, {"fixed": fixed}]
        else:
            events = [{"introduced": f"{major}.0.0"}, {"fixed": f"{major}.5.3"}]
        kind = "SEMVER" if ecosystem in SEMVER_ECOSYSTEMS else "ECOSYSTEM"
        entry["ranges"] = [{"type": kind, "events": events}]
        if ecosystem == "PyPI" and rng.random() < 0.2:
            entry["versions"] = [f"{major}.{m}.{p}" for m in range(5) for p in (0, 1)]
        document["affected"].append(entry)
    return document


def components(
    rng: random.Random, count: int, packages: dict[tuple[str, str | None, int], int]
) -> list[Component]:
    """SBOM components: KNOWN_SHARE on packages with advisories (safe versions), AFFECTED_SHARE
    at an affected version, the rest on packages without advisories."""
    known = [key for key, n in packages.items() if n > 0]
    ecosystems = list(MIX)
    result = []
    for number in range(count):
        draw = rng.random()
        if draw < KNOWN_SHARE + AFFECTED_SHARE:
            ecosystem, release, package = rng.choice(known)
            advisories = packages[(ecosystem, release, package)]
            if draw < AFFECTED_SHARE:  # inside the range of one of its advisories
                major = rng.randint(1, advisories)
                text = version(ecosystem, major, 2, 0)
                if ecosystem in RELEASES:  # before the first fix
                    text = version(ecosystem, 1, 2, 0)
            elif ecosystem in RELEASES:  # after the last fix
                text = version(ecosystem, advisories + 1, 0, 0, epoch=True)
            else:  # at the fixed version of one of its advisories
                text = version(ecosystem, rng.randint(1, advisories), 5, 3)
        else:
            ecosystem = rng.choices(ecosystems, weights=[MIX[e][1] for e in ecosystems])[0]
            release = rng.choice(RELEASES[ecosystem]) if ecosystem in RELEASES else None
            package = MIX[ecosystem][2] + number  # outside the advisories' pool
            text = version(ecosystem, rng.randint(0, 9), rng.randint(0, 20), rng.randint(0, 9))
        if ecosystem == "Go":
            text = "v" + text
        result.append(
            Component(
                name=sbom_name(ecosystem, package),
                version=text,
                ecosystem=f"{ecosystem}:{release}" if release else ecosystem,
            )
        )
    return result


def rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None


def bench_parse(documents: list[dict[str, Any]]) -> tuple[list[Advisory], dict[str, Any]]:
    parse_version.cache_clear()
    deadline = time.monotonic() + BUDGET
    advisories = []
    started = time.perf_counter()
    for document in documents:
        if time.monotonic() > deadline:
            break
        advisories.append(parse_osv(document))
    seconds = time.perf_counter() - started
    return advisories, {
        "documents": len(advisories),
        "truncated": len(advisories) < len(documents),
        "seconds": round(seconds, 3),
        "documents_per_second": rate(len(advisories), seconds),
    }


def bench_zip_import(documents: list[dict[str, Any]], directory: Path) -> dict[str, Any]:
    path = directory / "all.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for document in documents:
            archive.writestr(f"{document['id']}.json", json.dumps(document, indent=2))
    parse_version.cache_clear()
    started = time.perf_counter()
    result = read_osv(path)
    seconds = time.perf_counter() - started
    return {
        "zip_bytes": path.stat().st_size,
        "members": len(documents),
        "imported": len(result.advisories),
        "skipped": len(result.skipped),
        "seconds": round(seconds, 3),
        "advisories_per_second": rate(len(result.advisories), seconds),
    }


def bench_build(advisories: list[Advisory]) -> tuple[AdvisoryIndex, dict[str, Any]]:
    parse_version.cache_clear()
    deadline = time.monotonic() + BUDGET
    started = time.perf_counter()
    index = AdvisoryIndex()
    for advisory in advisories:
        if time.monotonic() > deadline:
            break
        index.add(advisory)
    seconds = time.perf_counter() - started
    return index, {
        "advisories": len(index),
        "truncated": len(index) < len(advisories),
        "seconds": round(seconds, 3),
        "advisories_per_second": rate(len(index), seconds),
        "version_cache_entries": parse_version.cache_info().currsize,
    }


def bench_match(index: AdvisoryIndex, sbom: list[Component], label: str) -> dict[str, Any]:
    deadline = time.monotonic() + BUDGET
    spent: list[float] = []
    findings = affected = 0
    started = time.perf_counter()
    for component in sbom:
        if time.monotonic() > deadline:
            break
        begun = time.perf_counter()
        found = index.match(component)
        spent.append(time.perf_counter() - begun)
        findings += len(found)
        affected += bool(found)
    seconds = time.perf_counter() - started
    log(f"match ({label}): {len(spent)} components in {seconds:.3f} s, {findings} findings")
    return {
        "pass": label,
        "components": len(spent),
        "truncated": len(spent) < len(sbom),
        "seconds": round(seconds, 3),
        "components_per_second": rate(len(spent), seconds),
        "findings": findings,
        "affected_components": affected,
        "per_component": distribution(spent),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--advisories", type=int, default=ADVISORIES)
    parser.add_argument("--components", type=int, default=COMPONENTS)
    args = parser.parse_args()
    advisory_count = max(1, min(args.advisories, ADVISORIES))
    component_count = max(1, min(args.components, COMPONENTS))
    exit_cleanly_on_sigterm()
    started = time.perf_counter()
    load_before = os.getloadavg()
    commit = source_commit()

    rng = random.Random(SEED)
    packages: dict[tuple[str, str | None, int], int] = {}
    documents = [advisory_document(rng, n, packages) for n in range(advisory_count)]
    sbom = components(rng, component_count, packages)
    log(f"generated {len(documents)} advisories, {len(sbom)} components")

    advisories, parsed = bench_parse(documents)
    log(f"parse: {parsed['seconds']} s ({parsed['documents_per_second']}/s)")
    with tempfile.TemporaryDirectory(prefix="stella-bench-osv-") as tmp:
        imported = bench_zip_import(documents, Path(tmp))
    log(f"zip import: {imported['seconds']} s ({imported['advisories_per_second']}/s)")
    index, built = bench_build(advisories)
    log(f"index build: {built['seconds']} s ({built['advisories_per_second']}/s)")
    matches = [bench_match(index, sbom, "first"), bench_match(index, sbom, "second")]

    mix = {e: sum(1 for c in sbom if (c.ecosystem or "").startswith(e)) for e in MIX}
    path = write_result(
        "security_matching",
        {
            "benchmark": "offline advisory matching: SBOM components against OSV advisories",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "commit": commit,
            "logical_cpus": os.cpu_count(),
            "load_average": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in os.getloadavg()],
            },
            "seed": SEED,
            "advisories": len(documents),
            "affected_packages": len(packages),
            "components": len(sbom),
            "component_ecosystems": mix,
            "duration_seconds": round(time.perf_counter() - started, 1),
            "parse": parsed,
            "zip_import": imported,
            "index_build": built,
            "match": matches,
        },
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
