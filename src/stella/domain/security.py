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
