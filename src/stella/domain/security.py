"""Security decisioning: findings, SBOM components, VEX statements, advisories, waivers, and
the verdict an environment's security policy gives a digest.

Everything here is pure. The verdict is a function of recorded inputs (findings, VEX statements,
waivers, policy, time), so the security gate can be replayed like every other gate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low", "unknown")
SUPPRESSING_STATUSES = frozenset({"not_affected", "fixed"})


@dataclass(frozen=True, slots=True)
class Finding:
    """One vulnerability in one package of one image, as a scanner or an advisory match saw it."""

    advisory_id: str
    package: str
    severity: str = "unknown"  # one of SEVERITIES
    aliases: tuple[str, ...] = ()
    purl: str | None = None
    installed_version: str | None = None
    fixed_version: str | None = None
    cvss_score: float | None = None
    cvss_vector: str | None = None
    reachable: bool | None = None  # None: the report does not say
    title: str = ""
    source: str = "scan"  # scan | advisory

    @property
    def ids(self) -> frozenset[str]:
        return frozenset({self.advisory_id, *self.aliases})

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["aliases"] = list(self.aliases)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        return cls(**{**data, "aliases": tuple(data.get("aliases", ()))})


@dataclass(frozen=True, slots=True)
class Component:
    """A package an SBOM lists; `ecosystem` uses OSV's names (PyPI, npm, Debian, Alpine, …)."""

    name: str
    version: str | None = None
    purl: str | None = None
    ecosystem: str | None = None


@dataclass(frozen=True, slots=True)
class VexStatement:
    """What a supplier says about one vulnerability in some products (digests or purls)."""

    vulnerability: str
    status: str  # not_affected | affected | fixed | under_investigation
    aliases: tuple[str, ...] = ()
    products: tuple[str, ...] = ()  # image digests (sha256:…) or purls; empty: any product
    subcomponents: tuple[str, ...] = ()  # purls of the affected packages; empty: any package
    justification: str | None = None
    impact_statement: str | None = None
    timestamp: datetime | None = None
    document: str | None = None  # the attachment digest it came from

    @property
    def ids(self) -> frozenset[str]:
        return frozenset({self.vulnerability, *self.aliases})

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("aliases", "products", "subcomponents"):
            data[key] = list(data[key])
        data["timestamp"] = None if self.timestamp is None else self.timestamp.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VexStatement:
        stamp = data.get("timestamp")
        return cls(
            **{
                **data,
                "aliases": tuple(data.get("aliases", ())),
                "products": tuple(data.get("products", ())),
                "subcomponents": tuple(data.get("subcomponents", ())),
                "timestamp": datetime.fromisoformat(stamp) if stamp else None,
            }
        )


@dataclass(frozen=True, slots=True)
class Advisory:
    """An OSV advisory as imported: `affected` keeps OSV's packages, ranges and versions."""

    id: str
    aliases: tuple[str, ...] = ()
    summary: str = ""
    severity: str = "unknown"
    cvss_score: float | None = None
    cvss_vector: str | None = None
    modified: datetime | None = None
    published: datetime | None = None
    affected: tuple[dict[str, Any], ...] = ()

    @property
    def ids(self) -> frozenset[str]:
        return frozenset({self.id, *self.aliases})


@dataclass(frozen=True, slots=True)
class SecurityPolicy:
    """An environment's rules for the security gate."""

    blocking_severities: tuple[str, ...] = ("critical", "high")
    reachable_only: bool = True  # explicit `reachable: false` findings do not block
    max_scan_age_days: int | None = None  # older evidence gives an `unknown` verdict
    on_unknown: str = "block"  # block | pass: what no scan and no SBOM means

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["blocking_severities"] = list(self.blocking_severities)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> SecurityPolicy:
        if not data:
            return cls()
        return cls(**{**data, "blocking_severities": tuple(data["blocking_severities"])})


@dataclass(frozen=True, slots=True)
class Waiver:
    """An explicit, expiring exception: one advisory on one package (optionally one env)."""

    id: str
    advisory_id: str
    package: str  # a package name or purl
    reason: str
    expires_at: datetime
    created_by: str
    environment: str | None = None  # slug; None: every environment


@dataclass(frozen=True)
class Verdict:
    state: str  # pass | fail | unknown
    reason: str
    blocking: list[dict[str, Any]] = field(default_factory=list)
    suppressed: list[dict[str, Any]] = field(default_factory=list)
    waived: list[dict[str, Any]] = field(default_factory=list)
    findings: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "blocking": self.blocking,
            "suppressed": self.suppressed,
            "waived": self.waived,
            "findings": self.findings,
        }


# --- the verdict --------------------------------------------------------------------------


def _purl_base(purl: str) -> str:
    """A purl without version, qualifiers and subpath: `pkg:deb/debian/openssl`."""
    return purl.split("?", 1)[0].split("#", 1)[0].split("@", 1)[0].lower()


def _purl_names(named: str, purl: str) -> bool:
    """Whether the purl `named` in a statement names the package `purl`: a versioned purl names
    that version only, an unversioned one every version."""
    head = named.split("?", 1)[0]
    if "@" in head:
        return head.lower() == purl.split("?", 1)[0].lower()
    return _purl_base(named) == _purl_base(purl)


def _subcomponent_matches(finding: Finding, subcomponent: str) -> bool:
    if finding.purl is None:
        return subcomponent.lower() == finding.package.lower()
    return _purl_names(subcomponent, finding.purl)


# Rules for matching VEX products, recorded with each security context so that a decision
# replays under the rules it was made with. 1: a package purl product named every version of
# the package. 2 (current): a versioned package purl names that version only, as subcomponents
# always did, so `not_affected` for 2.31.0 no longer hides the finding in 2.28.1.
VEX_RULES = 2


def _product_matches(product: str, finding: Finding, rules: int) -> bool:
    if finding.purl is None:
        return False
    if rules >= 2:
        return _purl_names(product, finding.purl)
    return _purl_base(product) == _purl_base(finding.purl)


def _specificity(
    statement: VexStatement, digest: str, finding: Finding, rules: int = VEX_RULES
) -> int | None:
    """How precisely `statement` names this finding (higher wins), or None if it does not.
    A product given as the image digest beats a purl or no product; a named subcomponent beats
    none."""
    if not statement.ids & finding.ids:
        return None
    score = 0
    if statement.products:
        if digest in statement.products:
            score += 2
        elif any(_product_matches(p, finding, rules) for p in statement.products):
            score += 1
        else:
            return None
    if statement.subcomponents:
        if not any(_subcomponent_matches(finding, s) for s in statement.subcomponents):
            return None
        score += 1
    return score


def vex_applies(statement: VexStatement, digest: str, finding: Finding) -> bool:
    """Whether `statement` speaks about `finding` in the image `digest` (whether or not a more
    specific or newer statement outranks it): they share an id, its products name the image's
    digest or the finding's package purl (or it names none), and its subcomponents name the
    package (or it names none)."""
    return _specificity(statement, digest, finding) is not None


def applicable_vex(
    statements: list[VexStatement], digest: str, finding: Finding, rules: int = VEX_RULES
) -> VexStatement | None:
    """The statement that decides `finding`: the most specific; among equals, the newest (a
    statement without a timestamp counts as oldest); among those, the last one given."""
    best: tuple[int, datetime | None, int] | None = None
    chosen = None
    for order, statement in enumerate(statements):
        score = _specificity(statement, digest, finding, rules)
        if score is None:
            continue
        key = (score, statement.timestamp, order)
        if best is None or _newer(key, best):
            best, chosen = key, statement
    return chosen


def _newer(key: tuple[int, datetime | None, int], other: tuple[int, datetime | None, int]) -> bool:
    if key[0] != other[0]:
        return key[0] > other[0]
    if key[1] != other[1]:
        if key[1] is None or other[1] is None:
            return other[1] is None
        return key[1] > other[1]
    return key[2] > other[2]


def _waiver_for(
    waivers: list[Waiver], finding: Finding, environment: str, now: datetime
) -> Waiver | None:
    for waiver in waivers:
        if waiver.expires_at <= now or waiver.advisory_id not in finding.ids:
            continue
        if waiver.environment not in (None, environment):
            continue
        names = {finding.package.lower()}
        if finding.purl:
            names |= {finding.purl.lower(), _purl_base(finding.purl)}
        if waiver.package.lower() in names or _purl_base(waiver.package) in names:
            return waiver
    return None


def _describe(finding: Finding) -> dict[str, Any]:
    return {
        "advisory_id": finding.advisory_id,
        "aliases": list(finding.aliases),
        "package": finding.package,
        "purl": finding.purl,
        "installed_version": finding.installed_version,
        "fixed_version": finding.fixed_version,
        "severity": finding.severity,
        "reachable": finding.reachable,
        "source": finding.source,
    }


def evaluate_verdict(
    digest: str,
    findings: list[Finding],
    statements: list[VexStatement],
    waivers: list[Waiver],
    policy: SecurityPolicy,
    environment: str,
    now: datetime,
    evidence_at: datetime | None,
    vex_rules: int = VEX_RULES,
) -> Verdict:
    """The verdict for one image digest in one environment.

    `evidence_at` is when the newest scan or SBOM of the digest arrived (None: there is none).
    A finding blocks when its severity is one the policy blocks, it is not marked unreachable
    (with `reachable_only`), no VEX statement says `not_affected` or `fixed` for it, and no
    unexpired waiver covers it.
    """
    if evidence_at is None:
        return Verdict("unknown", "no scan or SBOM")
    if policy.max_scan_age_days is not None:
        age = (now - evidence_at).total_seconds() / 86_400
        if age > policy.max_scan_age_days:
            return Verdict(
                "unknown",
                f"the newest scan or SBOM is {int(age)} days old "
                f"(more than {policy.max_scan_age_days})",
            )
    blocking, suppressed, waived = [], [], []
    seen: list[tuple[frozenset[str], str]] = []
    for finding in sorted(findings, key=lambda f: (f.source != "scan", f.advisory_id, f.package)):
        package = _purl_base(finding.purl) if finding.purl else finding.package.lower()
        # the same hit reported by a scan and by an advisory match (ids overlap through
        # aliases: CVE ↔ GHSA ↔ distribution ids) counts once; the scan's report wins
        if any(package == p and ids & finding.ids for ids, p in seen):
            continue
        seen.append((finding.ids, package))
        if finding.severity not in policy.blocking_severities:
            continue
        if policy.reachable_only and finding.reachable is False:
            continue
        statement = applicable_vex(statements, digest, finding, vex_rules)
        if statement is not None and statement.status in SUPPRESSING_STATUSES:
            suppressed.append(
                _describe(finding)
                | {
                    "vex": {
                        "status": statement.status,
                        "justification": statement.justification,
                        "document": statement.document,
                        "vulnerability": statement.vulnerability,
                    }
                }
            )
            continue
        waiver = _waiver_for(waivers, finding, environment, now)
        if waiver is not None:
            waived.append(
                _describe(finding)
                | {"waiver": {"id": waiver.id, "reason": waiver.reason,
                              "expires_at": waiver.expires_at.isoformat()}}
            )  # fmt: skip
            continue
        blocking.append(_describe(finding))
    if blocking:
        counts: dict[str, int] = {}
        for item in blocking:
            counts[item["severity"]] = counts.get(item["severity"], 0) + 1
        summary = ", ".join(
            f"{counts[s]} {s}"
            for s in ("critical", "high", "medium", "low", "unknown")
            if s in counts
        )
        ids = ", ".join(sorted({b["advisory_id"] for b in blocking})[:5])
        qualifier = "reachable or of unknown reachability, " if policy.reachable_only else ""
        return Verdict(
            "fail",
            f"{summary} ({ids}) {qualifier}not covered by VEX or a waiver",
            blocking,
            suppressed,
            waived,
            len(findings),
        )
    notes = []
    if suppressed:
        notes.append(f"{len(suppressed)} suppressed by VEX")
    if waived:
        notes.append(f"{len(waived)} waived")
    reason = "no blocking findings" + (f" ({', '.join(notes)})" if notes else "")
    return Verdict("pass", reason, [], suppressed, waived, len(findings))
