"""Security re-evaluation: 1,000 stored SBOMs after importing 100 new OSV advisories, with the
product's services, on SQLite and PostgreSQL.

For each database: a fresh migrated database and a container built as tests/conftest.py builds
it (`build_container(Settings(...), engine)`); one tenant (`create_tenant`) and a CallContext
for its admin; three environments through `create_environment` whose security policies block
`critical` (dev), `critical`+`high` (stage) and `critical`+`high`+`medium` (prod). No webhook
is configured and no release exists, so no notification is sent and no promotion is re-gated:
what is measured is matching and verdicts. Then, in the benchmark process (no HTTP):

1. Base feed: `import_advisories` of a zip of BASE_ADVISORIES OSV advisories (timed, for
   reference; no SBOM is stored yet, so nothing is matched).
2. SBOM uploads: SBOMS CycloneDX 1.5 JSON SBOMs of COMPONENTS_PER_SBOM components each, one
   distinct image digest each, through `add_attachment(..., container.security_hook)`, one
   after the other: format check, storing, parsing the components, matching them against the
   feed and the image's first verdict in each environment (`reevaluate`). Documents are built
   before the clock starts. An image is Debian 12 (60 %) or Alpine 3.19 (40 %) based: the
   distribution's core packages plus others drawn from a skewed pool, then PyPI or npm
   packages (skewed pools too) up to COMPONENTS_PER_SBOM; each package has three versions in
   circulation (older ones rarer).
3. The measured import: `import_advisories` of a zip of NEW_ADVISORIES new advisories, of which
   NEW_HITS (a few percent) cover versions some stored images have: a core package of the
   Alpine images (critical), a Debian one (high), a popular PyPI package (high) and an npm one
   (moderate); fixed in the newest of the three versions. The others name packages the images
   have but at versions they do not have, or packages no image has. `import_advisories`
   re-matches only the candidates: the SBOMs listing a package the new or changed advisories
   name, or that those advisories matched before (`_touched_digests`), through `rematch`.
   `_touched_digests` (candidate selection), `rematch` (the digests it is given are the
   candidates, those it returns changed), `reevaluate` and the matcher factory (reading the
   whole feed and building the index, inside `rematch`) are wrapped with timers for this call
   only, so the split comes from the same run. The candidates, the digests whose matches
   changed and the verdict rows recorded are checked against what the generator knows they
   must be.
4. For reference, with nothing changed: `rematch_all` (what the import did before it
   selected candidates; cached index: reading and matching all 1,000 SBOMs, no writes) and
   `rematch` of the same candidates again (the same walk over the candidates only);
   `Matcher.match` alone on every stored component (read beforehand), per ecosystem; and
   `reevaluate` of every stored digest (computing 3,000 verdicts, recording none).

5. A narrow import, measured like the one in 3.: NARROW_ADVISORIES advisories on one PyPI
   package (NARROW_PACKAGE, listed by about an eighth of the images) at versions no image
   has: the candidates are the SBOMs listing it; no match and no verdict changes.

Every loop is bounded by its count and a time budget (`truncated` says when it stopped early);
the whole module runs under `timeout` in scripts/bench.sh.

Run: .venv/bin/python -m bench.bench_security_reevaluation (from the repository root;
`make bench` does). `--database sqlite|postgresql` selects one; `--sboms N` stores fewer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from tests.conftest import TestDatabase, create_database, drop_database

from bench.bench_gates import distribution
from bench.bench_list import database_size
from bench.bench_workflows import source_commit
from bench.common import (
    database_settings,
    database_version,
    exit_cleanly_on_sigterm,
    log,
    write_result,
)
from stella.adapters.db import tables as t
from stella.bootstrap import Container, build_container, utc_now
from stella.config import Settings
from stella.domain.attachment_formats import AttachmentKind
from stella.domain.tenancy import Principal, Role
from stella.services import security
from stella.services.attachments import Upload, add_attachment
from stella.services.auth import create_tenant
from stella.services.context import CallContext
from stella.services.environments import create_environment
from stella.services.specs import EnvironmentSpec, SecurityPolicySpec

DATABASES = ("sqlite", "postgresql")
SBOMS = 1_000
COMPONENTS_PER_SBOM = 50
BASE_ADVISORIES = 5_000
NEW_ADVISORIES = 100
NARROW_ADVISORIES = 10  # the last import: all on one package, at versions no image has
UPLOAD_BUDGET = 150.0  # seconds to upload the SBOMs of one database; stops early (and says so)
SEED = 20261128
DEBIAN_SHARE = 0.6  # of the images; the others are Alpine based
BASE_HIT_SHARE = 0.02  # base advisories on pool packages that cover the oldest version
VARIANT_WEIGHTS = (0.2, 0.3, 0.5)  # patch versions 0, 1, 2 of each package in circulation

# environment slug: severities its security policy blocks
POLICIES: dict[str, list[str]] = {
    "dev": ["critical"],
    "stage": ["critical", "high"],
    "prod": ["critical", "high", "medium"],
}
ALIAS_YEARS = {"BENCH-NEW": 2026, "BENCH-NARROW": 2027}
SEVERITY_WORDS = {"critical": "CRITICAL", "high": "HIGH", "medium": "MODERATE", "low": "LOW"}


@dataclass(frozen=True)
class Ecosystem:
    osv: str  # OSV ecosystem
    pool: int  # package names in circulation
    names: tuple[str, ...]  # the most popular ones, real names
    core: int = 0  # the first `core` packages are in every image of this distribution
    range_type: str = "ECOSYSTEM"

    def name(self, number: int) -> str:
        if number < len(self.names):
            return self.names[number]
        if self.osv == "npm" and number % 6 == 0:
            return f"@scope{number % 17}/lib-{number}"
        prefix = {"Debian:12": "libdeb", "Alpine:v3.19": "apk-", "PyPI": "pylib-", "npm": "js-"}
        return f"{prefix[self.osv]}{number}"

    def version(self, number: int, patch: int) -> str:
        """Patch level `patch` of package `number` (its major and minor follow the number)."""
        return self.spell(1 + number % 5, number % 13, patch)

    def spell(self, major: int, minor: int, patch: int) -> str:
        if self.osv == "Debian:12":
            return f"{major}.{minor}.{patch}-1"
        if self.osv == "Alpine:v3.19":
            return f"{major}.{minor}.{patch}-r0"
        return f"{major}.{minor}.{patch}"

    def purl(self, number: int, version: str) -> str:
        name = self.name(number)
        if self.osv == "Debian:12":
            return f"pkg:deb/debian/{name}@{version}?arch=amd64&distro=debian-12"
        if self.osv == "Alpine:v3.19":
            return f"pkg:apk/alpine/{name}@{version}?arch=x86_64&distro=alpine-3.19.1"
        if self.osv == "PyPI":
            return f"pkg:pypi/{name}@{version}"
        if name.startswith("@"):
            scope, _, bare = name.partition("/")
            return f"pkg:npm/%40{scope[1:]}/{bare}@{version}"
        return f"pkg:npm/{name}@{version}"


DEBIAN = Ecosystem(
    "Debian:12",
    800,
    (
        "libc6", "libssl3", "openssl", "zlib1g", "ca-certificates", "tzdata", "bash",
        "coreutils", "libcurl4", "curl", "libsqlite3-0", "libexpat1", "libsystemd0",
        "libxml2", "libgnutls30", "libudev1", "perl-base", "libpcre2-8-0", "libzstd1",
        "liblzma5",
    ),
    core=8,
)  # fmt: skip
ALPINE = Ecosystem(
    "Alpine:v3.19",
    400,
    (
        "musl", "busybox", "libcrypto3", "libssl3", "zlib", "apk-tools",
        "ca-certificates-bundle", "libcurl", "curl", "ssl_client", "scanelf", "musl-utils",
        "libc-utils", "alpine-baselayout", "alpine-keys", "libexpat", "libxml2",
        "sqlite-libs", "pcre2", "xz-libs",
    ),
    core=6,
)  # fmt: skip
PYPI = Ecosystem(
    "PyPI",
    1500,
    (
        "requests", "urllib3", "certifi", "idna", "charset-normalizer", "setuptools", "pip",
        "six", "python-dateutil", "pyyaml", "typing-extensions", "packaging", "cryptography",
        "cffi", "pycparser", "jinja2", "markupsafe", "click", "attrs", "pydantic",
    ),
)  # fmt: skip
NPM = Ecosystem(
    "npm",
    2500,
    (
        "lodash", "debug", "ms", "semver", "express", "chalk", "commander", "minimist", "qs",
        "body-parser", "cookie", "send", "mime", "tslib", "uuid", "glob", "ws", "axios",
        "follow-redirects", "yargs",
    ),
    range_type="SEMVER",
)  # fmt: skip
ECOSYSTEMS = (DEBIAN, ALPINE, PYPI, NPM)
NARROW_PACKAGE = (PYPI, 5)  # setuptools: in about a quarter of the PyPI images
OS_PACKAGES = {DEBIAN.osv: 25, ALPINE.osv: 15}  # per image, core ones included
# the new advisories that hit: (ecosystem, package number, severity); fixed in patch 2
NEW_HITS: tuple[tuple[Ecosystem, int, str], ...] = (
    (ALPINE, 3, "critical"),  # libssl3, a core package of every Alpine image
    (DEBIAN, 12, "high"),  # libsystemd0, in some Debian images
    (PYPI, 1, "high"),  # urllib3
    (NPM, 40, "medium"),
)


# --- the estate -------------------------------------------------------------------------------


@dataclass
class Image:
    digest: str
    packages: dict[tuple[str, int], int] = field(default_factory=dict)  # (osv, number): patch


def _skewed(rng: random.Random, pool: int, low: int = 0) -> int:
    """A package number in [low, pool): low numbers (the popular packages) are drawn often."""
    return low + int((pool - low) * rng.random() ** 3)


def images(rng: random.Random, count: int) -> list[Image]:
    """`count` images with distinct digests and their packages (by number) and patch levels."""
    result = []
    for n in range(count):
        digest = "sha256:" + hashlib.sha256(f"bench-image-{SEED}-{n}".encode()).hexdigest()
        image = Image(digest)
        distro = DEBIAN if rng.random() < DEBIAN_SHARE else ALPINE
        language = PYPI if rng.random() < 0.5 else NPM
        wanted = [(distro, number) for number in range(distro.core)]
        chosen = {number for _, number in wanted}
        while len(chosen) < OS_PACKAGES[distro.osv]:
            chosen.add(_skewed(rng, distro.pool, distro.core))
        wanted = [(distro, number) for number in sorted(chosen)]
        apps: set[int] = set()
        while len(wanted) + len(apps) < COMPONENTS_PER_SBOM:
            apps.add(_skewed(rng, language.pool))
        wanted += [(language, number) for number in sorted(apps)]
        for eco, number in wanted:
            patch = rng.choices(range(3), weights=VARIANT_WEIGHTS)[0]
            image.packages[(eco.osv, number)] = patch
        result.append(image)
    return result


def cyclonedx(image: Image, number: int) -> bytes:
    """The image's SBOM as a CycloneDX 1.5 JSON document."""
    by_osv = {eco.osv: eco for eco in ECOSYSTEMS}
    components = []
    for (osv, package), patch in image.packages.items():
        eco = by_osv[osv]
        version = eco.version(package, patch)
        purl = eco.purl(package, version)
        name = eco.name(package)
        entry: dict[str, Any] = {"type": "library", "bom-ref": purl}
        if name.startswith("@"):
            entry["group"], _, name = name.partition("/")
        entry |= {"name": name, "version": version, "purl": purl}
        components.append(entry)
    document = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.UUID(int=number + 1, version=4)}",
        "version": 1,
        "metadata": {
            "timestamp": "2026-11-28T10:00:00Z",
            "tools": {"components": [{"type": "application", "name": "syft", "version": "1.0.0"}]},
            "component": {
                "type": "container",
                "bom-ref": image.digest,
                "name": f"127.0.0.1:5000/bench/service-{number}",
                "version": image.digest,
            },
        },
        "components": components,
    }
    return json.dumps(document, indent=1).encode()


# --- the advisories ---------------------------------------------------------------------------


def advisory(
    number: int,
    prefix: str,
    eco: Ecosystem,
    package: int,
    events: list[dict[str, str]],
    severity: str,
) -> dict[str, Any]:
    modified = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=number)
    return {
        "schema_version": "1.6.0",
        "id": f"{prefix}-{number:05d}",
        "aliases": [f"CVE-{ALIAS_YEARS.get(prefix, 2025)}-{number + 20000}"],
        "summary": f"Synthetic vulnerability {prefix} {number}",
        "published": modified.isoformat(),
        "modified": modified.isoformat(),
        "database_specific": {"severity": SEVERITY_WORDS[severity]},
        "affected": [
            {
                "package": {"ecosystem": eco.osv, "name": eco.name(package)},
                "ranges": [{"type": eco.range_type, "events": events}],
            }
        ],
    }


def _miss(rng: random.Random, eco: Ecosystem, package: int) -> list[dict[str, str]]:
    """A range no image's version of `package` is in: fixed in (or before) the oldest version
    in circulation, or a future major."""
    if rng.random() < 0.7:
        return [{"introduced": "0"}, {"fixed": eco.version(package, 0)}]
    major = 2 + package % 5
    return [{"introduced": eco.spell(major, 0, 0)}, {"fixed": eco.spell(major, 2, 0)}]


def base_feed(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Half on packages the images may have (a few covering their oldest version), half on
    packages no image has."""
    weights = [4, 2, 3, 5]
    documents = []
    for n in range(count):
        eco = rng.choices(ECOSYSTEMS, weights=weights)[0]
        severity = rng.choices(["critical", "high", "medium", "low"], weights=[1, 3, 4, 2])[0]
        if rng.random() < 0.5:
            package = _skewed(rng, eco.pool)
            if any(eco is hit and package == p for hit, p, _ in NEW_HITS):
                package = eco.pool - 1
            if rng.random() < BASE_HIT_SHARE:
                events = [{"introduced": "0"}, {"fixed": eco.version(package, 1)}]
            else:
                events = _miss(rng, eco, package)
        else:
            package = eco.pool + n  # nobody has it
            events = [{"introduced": "0"}, {"fixed": eco.version(package, 1)}]
        documents.append(advisory(n, "BENCH-BASE", eco, package, events, severity))
    return documents


def new_feed(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """NEW_HITS advisories fixed in patch 2 of their package, the rest missing every image."""
    documents = []
    for n, (eco, package, severity) in enumerate(NEW_HITS):
        events = [{"introduced": "0"}, {"fixed": eco.version(package, 2)}]
        documents.append(advisory(n, "BENCH-NEW", eco, package, events, severity))
    for n in range(len(NEW_HITS), count):
        eco = rng.choice(ECOSYSTEMS)
        severity = rng.choice(["critical", "high", "medium", "low"])
        if rng.random() < 0.6:
            package = _skewed(rng, eco.pool)
            events = _miss(rng, eco, package)
        else:
            package = eco.pool + 10_000 + n
            events = [{"introduced": "0"}, {"fixed": eco.version(package, 2)}]
        documents.append(advisory(n, "BENCH-NEW", eco, package, events, severity))
    return documents


def narrow_feed(count: int) -> list[dict[str, Any]]:
    """`count` advisories on one PyPI package (NARROW_PACKAGE), at versions no image has."""
    eco, package = NARROW_PACKAGE
    events = [{"introduced": "0"}, {"fixed": eco.version(package, 0)}]
    return [advisory(n, "BENCH-NARROW", eco, package, events, "high") for n in range(count)]


def write_zip(documents: list[dict[str, Any]], path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for document in documents:
            archive.writestr(f"{document['id']}.json", json.dumps(document, indent=2))
    return path


def expected_candidates(
    stored: list[Image], documents: list[dict[str, Any]]
) -> tuple[set[str], dict[str, int]]:
    """The digests whose SBOM lists a package (by name, case-blind, any ecosystem) the new
    advisories name: what `_touched_digests` must select (no new advisory matched before);
    and, per such name, how many stored images list it."""
    names = {
        entry["package"]["name"].lower() for document in documents for entry in document["affected"]
    }
    by_osv = {eco.osv: eco for eco in ECOSYSTEMS}
    digests: set[str] = set()
    per_name: dict[str, int] = {}
    for image in stored:
        listed = {by_osv[osv].name(number).lower() for osv, number in image.packages} & names
        if listed:
            digests.add(image.digest)
        for name in listed:
            per_name[name] = per_name.get(name, 0) + 1
    return digests, dict(sorted(per_name.items(), key=lambda item: (-item[1], item[0])))


def expected_changes(stored: list[Image]) -> tuple[set[str], int]:
    """The digests the new advisories hit, and the verdict rows that must be recorded: per
    environment, every hit digest gaining a finding of a severity the environment blocks."""
    hit: dict[str, set[str]] = {}
    for image in stored:
        for eco, package, severity in NEW_HITS:
            patch = image.packages.get((eco.osv, package))
            if patch is not None and patch < 2:
                hit.setdefault(image.digest, set()).add(severity)
    rows = sum(
        1
        for severities in hit.values()
        for blocked in POLICIES.values()
        if severities & set(blocked)
    )
    return set(hit), rows


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Timer:
    """Wraps a function: total seconds, calls, the last positional arguments and result."""

    inner: Callable[..., Any]
    seconds: float = 0.0
    calls: int = 0
    args: tuple[Any, ...] = ()
    result: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.args = args
        started = time.perf_counter()
        try:
            self.result = self.inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1
        return self.result


@contextmanager
def timed_import(container: Container) -> Any:
    """`_touched_digests`, `rematch`, `reevaluate` (module globals `import_advisories` calls)
    and the matcher factory wrapped with timers; restored afterwards."""
    names = ("_touched_digests", "rematch", "reevaluate")
    timers = {name: Timer(getattr(security, name)) for name in names}
    timers["matcher_factory"] = Timer(container.security.matcher_factory)
    for name in names:
        setattr(security, name, timers[name])
    container.security.matcher_factory = timers["matcher_factory"]
    try:
        yield timers
    finally:
        for name in names:
            setattr(security, name, timers[name].inner)
        container.security.matcher_factory = timers["matcher_factory"].inner


def count_rows(container: Container, table: Any) -> int:
    with container.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def upload_sboms(
    container: Container, ctx: CallContext, stored: list[Image], documents: list[bytes]
) -> tuple[list[Image], dict[str, Any]]:
    """The SBOMs one after the other through `add_attachment` with the security hook."""
    max_bytes = container.settings.attachment_max_bytes
    spent: list[float] = []
    done: list[Image] = []
    deadline = time.monotonic() + UPLOAD_BUDGET
    started = time.perf_counter()
    for image, content in zip(stored, documents, strict=True):
        if time.monotonic() > deadline:
            break
        upload = Upload(image.digest, content, AttachmentKind.SBOM, "cyclonedx")
        begun = time.perf_counter()
        added = add_attachment(container.uow, ctx, upload, max_bytes, container.security_hook)
        spent.append(time.perf_counter() - begun)
        if not added.created:
            msg = f"the SBOM of {image.digest} was already stored"
            raise RuntimeError(msg)
        done.append(image)
    seconds = time.perf_counter() - started
    return done, {
        "sboms": len(done),
        "requested": len(stored),
        "truncated_by_deadline": len(done) < len(stored),
        "components_per_sbom": COMPONENTS_PER_SBOM,
        "mean_document_bytes": round(sum(map(len, documents)) / len(documents)),
        "seconds": round(seconds, 2),
        "sboms_per_second": round(len(done) / seconds, 1) if seconds else None,
        "per_upload": distribution(spent),
    }


def matching_alone(
    container: Container, tenant_id: uuid.UUID, digests: list[str]
) -> dict[str, Any]:
    """`Matcher.match` on every stored component with the cached index, the components read
    beforehand (untimed): the matching share of `rematch_all`, per ecosystem too."""
    with container.uow(read_only=True) as uow:
        matcher = container.security.matcher(uow, tenant_id)
        components = [c for d in digests for c in uow.sboms.components(tenant_id, d)]
    by_ecosystem: dict[str, list[float]] = {}
    findings = 0
    started = time.perf_counter()
    for component in components:
        begun = time.perf_counter()
        findings += len(matcher.match(component))
        spent = time.perf_counter() - begun
        totals = by_ecosystem.setdefault(component.ecosystem or "none", [0, 0.0])
        totals[0] += 1
        totals[1] += spent
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 3),
        "components": len(components),
        "findings": findings,
        "by_ecosystem": {
            name: {
                "components": int(n),
                "seconds": round(spent, 3),
                "us_per_component": round(spent / n * 1e6, 1),
            }
            for name, (n, spent) in sorted(by_ecosystem.items())
        },
    }


def import_zip(container: Container, ctx: CallContext, path: Path) -> tuple[Any, float]:
    started = time.perf_counter()
    summary = security.import_advisories(container.security, ctx, path)
    return summary, time.perf_counter() - started


def measure_import(
    container: Container,
    ctx: CallContext,
    path: Path,
    stored: list[Image],
    documents: list[dict[str, Any]],
    want_digests: set[str],
    want_rows: int,
    kind: str,
) -> tuple[dict[str, Any], list[str]]:
    """`import_advisories` of the zip at `path` with its parts timed (`timed_import`); the
    candidates, changed digests and verdict rows checked against the generator's. Returns the
    figures and the candidates."""
    rows_before = count_rows(container, t.security_verdicts)
    with timed_import(container) as timers:
        summary, seconds = import_zip(container, ctx, path)
    rows_after = count_rows(container, t.security_verdicts)
    if timers["rematch"].calls != 1 or timers["_touched_digests"].calls != 1:
        msg = (
            f"import_advisories called rematch {timers['rematch'].calls} times and "
            f"_touched_digests {timers['_touched_digests'].calls} times (1 expected)"
        )
        raise RuntimeError(msg)
    candidates = list(timers["rematch"].args[2])
    changed = timers["rematch"].result or []
    want_candidates, listed = expected_candidates(stored, documents)
    selection = timers["_touched_digests"].seconds
    rematch = timers["rematch"].seconds
    reevaluate = timers["reevaluate"].seconds
    index = timers["matcher_factory"].seconds
    measured = {
        "advisories_added": summary.added,
        "advisories_skipped": len(summary.skipped),
        "zip_bytes": path.stat().st_size,
        "seconds": round(seconds, 3),
        "read_and_store_seconds": round(seconds - selection - rematch - reevaluate, 3),
        "candidate_selection_seconds": round(selection, 3),
        "rematch_seconds": round(rematch, 3),
        "index_rebuild_seconds": round(index, 3),
        "index_rebuilds": timers["matcher_factory"].calls,
        "reevaluate_seconds": round(reevaluate, 3),
        "sboms_stored": len(stored),
        "candidates": len(candidates),
        "candidates_expected": len(want_candidates),
        "candidates_as_expected": set(candidates) == want_candidates,
        "candidate_share": round(len(candidates) / len(stored), 3) if stored else None,
        "advisory_names_listed": len(listed),
        "images_listing_name_top": dict(list(listed.items())[:5]),
        "digests_changed": len(changed),
        "digests_changed_expected": len(want_digests),
        "digests_changed_as_expected": set(changed) == want_digests,
        "verdict_changes": len(summary.verdict_changes),
        "verdict_rows_recorded": rows_after - rows_before,
        "verdict_rows_expected": want_rows,
        "verdict_changes_by_environment": {
            slug: sum(1 for c in summary.verdict_changes if c["environment"] == slug)
            for slug in POLICIES
        },
    }
    if (
        not measured["digests_changed_as_expected"]
        or not measured["candidates_as_expected"]
        or want_rows != rows_after - rows_before
    ):
        log(
            f"{kind}: WARNING: {len(candidates)} candidates ({len(want_candidates)} "
            f"expected), {len(changed)} digests changed ({len(want_digests)} expected), "
            f"{rows_after - rows_before} verdict rows ({want_rows} expected)"
        )
    log(
        f"{kind}: import of {summary.added} new advisories + re-evaluation in {seconds:.2f} s "
        f"(read+store {measured['read_and_store_seconds']} s, candidate selection "
        f"{selection:.3f} s, rematch of {len(candidates):,} of {len(stored):,} SBOMs "
        f"{rematch:.2f} s of which index rebuild {index:.2f} s, reevaluate "
        f"{reevaluate:.2f} s); {len(changed)} digests changed, "
        f"{len(summary.verdict_changes)} verdict changes"
    )
    return measured, candidates


def bench_database(kind: str, tmp: Path, count: int) -> dict[str, Any]:
    rng = random.Random(SEED)
    estate = images(rng, count)
    documents = [cyclonedx(image, n) for n, image in enumerate(estate)]
    base_zip = write_zip(base_feed(rng, BASE_ADVISORIES), tmp / "base.zip")
    new_documents = new_feed(rng, NEW_ADVISORIES)
    new_zip = write_zip(new_documents, tmp / "new.zip")
    narrow_documents = narrow_feed(NARROW_ADVISORIES)
    narrow_zip = write_zip(narrow_documents, tmp / "narrow.zip")
    database: TestDatabase = create_database(kind, tmp)
    try:
        engine = database.engine
        labels = {
            "database": kind,
            "database_version": database_version(engine),
            "database_settings": database_settings(engine),
        }
        settings = Settings(
            home=tmp / "home",
            database_url=database.url,
            max_body_bytes=64 * 1024,
            auth_failures_per_minute=100_000,
        )
        container = build_container(settings, engine)
        issued = create_tenant(container.uow, f"bench-{uuid.uuid4().hex[:10]}", "admin", utc_now)
        tenant_id = issued.user.tenant_id
        ctx = CallContext(Principal(issued.user.id, tenant_id, "admin", Role.ADMIN), None, utc_now)
        for order, (slug, blocked) in enumerate(POLICIES.items()):
            spec = EnvironmentSpec(
                name=slug,
                slug=slug,
                promotion_order=order + 1,
                is_production=slug == "prod",
                security=SecurityPolicySpec(blocking_severities=blocked),  # type: ignore[arg-type]
            )
            create_environment(container.uow, ctx, spec)

        summary, seconds = import_zip(container, ctx, base_zip)
        base = {
            "advisories": summary.added,
            "skipped": len(summary.skipped),
            "zip_bytes": base_zip.stat().st_size,
            "seconds": round(seconds, 2),
        }
        log(f"{kind}: base feed of {summary.added:,} advisories imported in {seconds:.1f} s")

        stored, uploads = upload_sboms(container, ctx, estate, documents)
        uploads["matches_stored"] = count_rows(container, t.advisory_matches)
        uploads["components_stored"] = count_rows(container, t.sbom_components)
        uploads["verdict_rows"] = count_rows(container, t.security_verdicts)
        log(
            f"{kind}: {uploads['sboms']:,} SBOMs uploaded in {uploads['seconds']} s "
            f"({uploads['sboms_per_second']} SBOMs/s, p50 {uploads['per_upload'].get('p50_ms')} "
            f"ms); {uploads['matches_stored']:,} matches"
        )

        want_digests, want_rows = expected_changes(stored)
        measured, candidates = measure_import(
            container, ctx, new_zip, stored, new_documents, want_digests, want_rows, kind
        )

        started = time.perf_counter()
        again = security.rematch_all(container.security, tenant_id)
        rematch_again = time.perf_counter() - started
        started = time.perf_counter()
        again_candidates = security.rematch(container.security, tenant_id, candidates)
        rematch_candidates_again = time.perf_counter() - started
        digests = [image.digest for image in stored]
        alone = matching_alone(container, tenant_id, digests)
        started = time.perf_counter()
        none = security.reevaluate(container.security, tenant_id, digests, "bench: unchanged")
        reevaluate_all = time.perf_counter() - started
        reference = {
            "rematch_all_unchanged_seconds": round(rematch_again, 3),
            "rematch_all_unchanged_digests_changed": len(again),
            "rematch_all_unchanged_sboms": len(stored),
            "rematch_candidates_unchanged_seconds": round(rematch_candidates_again, 3),
            "rematch_candidates_unchanged_digests_changed": len(again_candidates),
            "match_alone": alone,
            "reevaluate_all_unchanged_seconds": round(reevaluate_all, 3),
            "reevaluate_all_unchanged_digests": len(digests),
            "reevaluate_all_unchanged_changes": len(none),
        }
        log(
            f"{kind}: unchanged: rematch_all {rematch_again:.2f} s, rematch of the "
            f"{len(candidates):,} candidates {rematch_candidates_again:.2f} s (matching alone "
            f"{alone['seconds']:.2f} s for {alone['components']:,} components: "
            + ", ".join(f"{e} {v['us_per_component']} µs" for e, v in alone["by_ecosystem"].items())
            + f"), reevaluate of "
            f"{len(digests):,} digests {reevaluate_all:.2f} s"
        )
        narrow, _ = measure_import(
            container, ctx, narrow_zip, stored, narrow_documents, set(), 0, kind
        )
        return labels | {
            "environments": POLICIES,
            "base_feed": base,
            "uploads": uploads,
            "import": measured,
            "reference": reference,
            "narrow_import": narrow,
            "database_bytes": database_size(database),
        }
    finally:
        drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=DATABASES, default=None)
    parser.add_argument("--sboms", type=int, default=SBOMS)
    args = parser.parse_args()
    count = max(1, min(args.sboms, SBOMS))
    exit_cleanly_on_sigterm()
    started = time.perf_counter()
    load_before = os.getloadavg()
    commit = source_commit()
    results = []
    for kind in [args.database] if args.database else DATABASES:
        with tempfile.TemporaryDirectory(prefix=f"stella-bench-secreeval-{kind}-") as tmp:
            results.append(bench_database(kind, Path(tmp), count))
    path = write_result(
        "security_reevaluation",
        {
            "benchmark": "security re-evaluation: stored SBOMs after importing new advisories",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "commit": commit,
            "logical_cpus": os.cpu_count(),
            "load_average": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in os.getloadavg()],
            },
            "seed": SEED,
            "sboms": count,
            "components_per_sbom": COMPONENTS_PER_SBOM,
            "base_advisories": BASE_ADVISORIES,
            "new_advisories": NEW_ADVISORIES,
            "narrow_advisories": NARROW_ADVISORIES,
            "narrow_package": {
                "ecosystem": NARROW_PACKAGE[0].osv,
                "package": NARROW_PACKAGE[0].name(NARROW_PACKAGE[1]),
            },
            "new_hits": [
                {"ecosystem": eco.osv, "package": eco.name(package), "severity": severity}
                for eco, package, severity in NEW_HITS
            ],
            "duration_seconds": round(time.perf_counter() - started, 1),
            "results": results,
        },
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
