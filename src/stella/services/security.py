"""Security decisioning: scan reports, SBOMs and VEX become findings and statements; the offline
advisory feed is matched against every stored SBOM; verdicts are recomputed when any of them
changes, recorded when they change, and promotions waiting for a decision are gated again.

The verdict itself is computed by `stella.domain.security.evaluate_verdict` from a recorded
input (see `security_context`), so the security gate replays like every other gate.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from stella.domain.canonical import digest as canonical_digest
from stella.domain.environments import Environment
from stella.domain.errors import NotFound, ValidationFailed
from stella.domain.ids import new_id
from stella.domain.pagination import PageRequest
from stella.domain.security import (
    VEX_RULES,
    Advisory,
    Component,
    Finding,
    VexStatement,
    evaluate_verdict,
    vex_applies,
)
from stella.domain.tenancy import Permission, Principal, Role
from stella.services.context import CallContext, record, require
from stella.services.metrics import Metrics, NoMetrics
from stella.services.ports import Clock, UnitOfWork, UnitOfWorkFactory
from stella.services.security_ports import Matcher, MatcherFactory

log = logging.getLogger(__name__)
OPEN_STATES = ("pending", "blocked", "awaiting_approval")
PROMOTION_PAGE = 500  # open promotions read per query when re-gating


class SecurityParsers(Protocol):
    """Turns documents into domain values (the adapter knows the formats)."""

    def scan_findings(self, format_name: str, document: Any) -> list[Finding]: ...
    def sbom_components(self, format_name: str, document: Any) -> list[Component]: ...
    def vex_statements(
        self, format_name: str, document: Any, source_digest: str | None
    ) -> list[VexStatement]: ...
    def read_advisories(self, source: Path) -> tuple[list[Advisory], list[tuple[str, str]]]: ...


Notify = Callable[[dict[str, Any]], None]
Regate = Callable[[CallContext, str], object]


@dataclass
class SecurityServices:
    uow: UnitOfWorkFactory
    clock: Clock
    parsers: SecurityParsers
    matcher_factory: MatcherFactory
    notify: Notify | None = None
    regate: Regate | None = None  # re-evaluate a promotion's gates (promotions.reevaluate)
    metrics: Metrics = field(default_factory=NoMetrics)
    _matchers: dict[uuid.UUID, tuple[tuple[int, str], Matcher]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def matcher(self, uow: UnitOfWork, tenant_id: uuid.UUID) -> Matcher:
        """The tenant's advisory index, rebuilt only when the feed changed (any process)."""
        stamp = uow.advisories.stamp(tenant_id)
        with self._lock:
            cached = self._matchers.get(tenant_id)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        matcher = self.matcher_factory(uow.advisories.all(tenant_id))
        with self._lock:
            self._matchers[tenant_id] = (stamp, matcher)
        return matcher


def system_context(tenant_id: uuid.UUID, clock: Clock, why: str) -> CallContext:
    return CallContext(Principal(None, tenant_id, why, Role.ADMIN), None, clock)


# --- findings and the gate's recorded input -------------------------------------------------


def stored_findings(scan: dict[str, Any]) -> list[Finding]:
    """A stored scan's findings; scans recorded before normalisation hold the native shape."""
    found = []
    for item in scan.get("findings") or []:
        if "advisory_id" in item:
            found.append(Finding.from_json(item))
        elif not item.get("suppressed"):
            found.append(
                Finding(
                    advisory_id=item["id"],
                    package=item.get("package") or "",
                    severity="low" if item["severity"] == "negligible" else item["severity"],
                    reachable=item.get("reachable"),
                )
            )
    return found


def findings_for(uow: UnitOfWork, tenant_id: uuid.UUID, digests: list[str]) -> dict[str, Any]:
    """Per digest: findings from its newest scan and from advisory matches of its SBOM."""
    scans = uow.verdicts.latest_for(tenant_id, digests)
    matches = uow.advisory_matches.for_digests(tenant_id, digests)
    return {
        d: (stored_findings(scans[d]) if d in scans else []) + matches.get(d, []) for d in digests
    }


def security_context(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    environment: Environment,
    digests: list[str],
    now: datetime,
) -> dict[str, Any]:
    """Everything the security gate looks at, as JSON: findings, the VEX statements about
    them, the environment's policy and active waivers, and when the evidence arrived."""
    findings = findings_for(uow, tenant_id, digests)
    ids = {i for found in findings.values() for f in found for i in f.ids}
    statements = uow.vex.for_ids(tenant_id, ids)
    evidence = uow.sboms.evidence_times(tenant_id, digests)
    waivers = uow.waivers.active(tenant_id, now)
    return {
        "environment": environment.slug,
        "vex_rules": VEX_RULES,
        "policy": environment.security.to_json(),
        "waivers": [
            {
                "id": w.id,
                "advisory_id": w.advisory_id,
                "package": w.package,
                "reason": w.reason,
                "expires_at": w.expires_at.isoformat(),
                "created_by": w.created_by,
                "environment": w.environment,
            }
            for w in waivers
        ],
        "digests": {
            d: {
                "evidence_at": evidence[d].isoformat() if d in evidence else None,
                "findings": [f.to_json() for f in findings[d]],
                "vex": [
                    s.to_json()
                    for s in statements
                    if s.ids & {i for f in findings[d] for i in f.ids}
                ],
            }
            for d in digests
        },
    }


# --- ingestion --------------------------------------------------------------------------------


def ingest_attachment(
    services: SecurityServices,
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    attachment: dict[str, Any],
    document: Any,
) -> list[str]:
    """Normalise an SBOM or VEX document just stored; returns the digests to re-evaluate."""
    kind, fmt, subject = attachment["kind"], attachment["format"], attachment["subject_digest"]
    if kind == "sbom":
        components = services.parsers.sbom_components(fmt, document)
        uow.sboms.replace(tenant_id, subject, attachment["digest"], components)
        matcher = services.matcher(uow, tenant_id)
        uow.advisory_matches.replace(tenant_id, subject, _match(matcher, components))
        return [subject]
    if kind == "vex":
        if uow.vex.ingested(tenant_id, attachment["digest"]):
            return []
        statements = services.parsers.vex_statements(fmt, document, attachment["digest"])
        uow.vex.add(tenant_id, attachment["digest"], statements, services.clock())
        return vex_reach(uow, tenant_id, statements, subject)
    return []


def _names_images_only(statement: VexStatement) -> bool:
    return bool(statement.products) and all(p.startswith("sha256:") for p in statement.products)


def vex_reach(
    uow: UnitOfWork, tenant_id: uuid.UUID, statements: list[VexStatement], subject: str
) -> list[str]:
    """The images whose verdicts `statements` can change: those with a finding one of them
    applies to (`vex_applies`: a shared id; a product naming the image's digest, or a purl of
    the finding's package, or no product; a subcomponent naming the package, or none).

    A statement whose products are all image digests can only apply to those images. One
    that names a package purl, or no product, applies wherever that package (any package) has
    the finding, whichever image the document was attached to: its candidates are every image
    with an SBOM and every image of a release with an open promotion, besides the document's
    subject and the digests it names. Only candidates with such a finding are returned."""
    if not statements:
        return []
    candidates = {subject} | {p for s in statements for p in s.products if p.startswith("sha256:")}
    if not all(_names_images_only(s) for s in statements):
        candidates |= set(uow.sboms.digests(tenant_id))
        candidates |= _open_release_digests(uow, tenant_id)
    findings = findings_for(uow, tenant_id, sorted(candidates))
    return sorted(
        digest
        for digest, found in findings.items()
        if any(vex_applies(s, digest, f) for f in found for s in statements)
    )


def _open_release_digests(uow: UnitOfWork, tenant_id: uuid.UUID) -> set[str]:
    """The image digests of the releases that have a promotion waiting for a decision."""
    release_ids: set[uuid.UUID] = set()
    for state in OPEN_STATES:
        request: PageRequest | None = PageRequest(limit=PROMOTION_PAGE)
        while request is not None:
            page = uow.promotions.page(tenant_id, request, None, state, None)
            release_ids |= {p.release_id for p in page.items}
            request = (
                PageRequest.from_query(page.next_cursor, PROMOTION_PAGE)
                if page.next_cursor
                else None
            )
    digests: set[str] = set()
    for release_id in sorted(release_ids, key=str):
        release = uow.releases.get(tenant_id, str(release_id))
        if release is not None:
            digests |= {c.digest for c in release.components}
    return digests


@dataclass
class SecurityIngestHook:
    """The attachments service's hook: SBOM and VEX uploads feed the verdicts."""

    services: SecurityServices

    def ingest(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, attachment: dict[str, Any], document: Any
    ) -> list[str]:
        """`document` is the upload as the attachments service parsed it to validate it; it is
        not parsed again."""
        return ingest_attachment(self.services, uow, tenant_id, attachment, document)

    def settle(self, tenant_id: uuid.UUID, digests: list[str], cause: str) -> object:
        return reevaluate(self.services, tenant_id, digests, cause)


def _match(matcher: Matcher, components: Iterable[Component]) -> list[Finding]:
    found: list[Finding] = []
    for component in components:
        found.extend(matcher.match(component))
    return found


def record_scan_report(
    services: SecurityServices,
    ctx: CallContext,
    digest: str,
    format_name: str,
    content: bytes,
    document: Any,
    max_bytes: int,
) -> dict[str, Any]:
    """A scanner's report for a digest: stored as evidence, normalised to findings, and the
    digest's verdicts recomputed.

    `document` is the report already parsed and `content` its bytes: the size is checked
    before anything reads the report, and the document is not parsed again to be stored."""
    from stella.services import attachments

    require(ctx, Permission.MANAGE_RELEASES, services.uow, "upload scans")
    attachments.check_size(content, max_bytes)
    findings = services.parsers.scan_findings(format_name, document)
    upload = attachments.Upload(digest, content, None, format_name)
    stored = attachments.add_attachment(services.uow, ctx, upload, max_bytes, document=document)
    values = {
        "id": new_id(),
        "tenant_id": ctx.principal.tenant_id,
        "digest": digest,
        "format": format_name,
        "findings": [f.to_json() for f in findings],
        "blocking": sorted(
            {
                f.advisory_id
                for f in findings
                if f.severity in ("critical", "high") and f.reachable is not False
            }
        ),
        "created_at": ctx.clock(),
        "created_by_name": ctx.principal.name,
        "report_digest": stored.attachment["digest"],
    }
    with services.uow() as uow:
        uow.verdicts.add(values)
        record(
            uow,
            ctx,
            "scan.recorded",
            "scan",
            values["id"],
            {"digest": digest, "format": format_name, "findings": len(findings)},
        )
        uow.commit()
    reevaluate(services, ctx.principal.tenant_id, [digest], f"scan {values['id']}")
    return values


# --- the advisory feed --------------------------------------------------------------------------


@dataclass
class ImportSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    verdict_changes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "verdict_changes": self.verdict_changes,
        }


def import_advisories(services: SecurityServices, ctx: CallContext, source: Path) -> ImportSummary:
    """Import an OSV feed (idempotent); every stored SBOM is matched again and the verdicts of
    digests whose findings changed are recomputed."""
    require(ctx, Permission.ADMINISTER, services.uow, "import advisories")
    advisories, skipped = services.parsers.read_advisories(source)
    summary = ImportSummary(skipped=[{"source": s, "reason": r} for s, r in skipped])
    tenant_id = ctx.principal.tenant_id
    now = ctx.clock()
    changed_advisories: list[Advisory] = []
    with services.uow() as uow:
        for advisory in advisories:
            outcome = uow.advisories.upsert(
                tenant_id, advisory, canonical_digest(_advisory_json(advisory)), now
            )
            setattr(summary, outcome, getattr(summary, outcome) + 1)
            if outcome != "unchanged":
                changed_advisories.append(advisory)
        record(
            uow,
            ctx,
            "advisories.imported",
            "advisory",
            None,
            {
                "added": summary.added,
                "updated": summary.updated,
                "unchanged": summary.unchanged,
                "skipped": len(summary.skipped),
            },
        )
        uow.commit()
    if changed_advisories:
        changed = rematch(
            services, tenant_id, _touched_digests(services, tenant_id, changed_advisories)
        )
        summary.verdict_changes = reevaluate(
            services, tenant_id, changed, f"advisories imported ({summary.added} new)"
        )
    return summary


def _advisory_json(advisory: Advisory) -> dict[str, Any]:
    return {
        "id": advisory.id,
        "aliases": list(advisory.aliases),
        "summary": advisory.summary,
        "severity": advisory.severity,
        "cvss_score": advisory.cvss_score,
        "cvss_vector": advisory.cvss_vector,
        "modified": advisory.modified.isoformat() if advisory.modified else None,
        "affected": list(advisory.affected),
    }


def _touched_digests(
    services: SecurityServices, tenant_id: uuid.UUID, advisories: list[Advisory]
) -> list[str]:
    """The SBOMs new or changed advisories can affect: those listing a package the advisories
    name, and those an earlier version of them matched."""
    packages = {
        (str(entry["package"].get("ecosystem", "")).split(":", 1)[0], str(entry["package"]["name"]))
        for advisory in advisories
        for entry in advisory.affected
        if isinstance(entry.get("package"), dict) and entry["package"].get("name")
    }
    with services.uow(read_only=True) as uow:
        candidates = set(uow.sboms.digests_with_packages(tenant_id, packages))
        candidates |= set(
            uow.advisory_matches.digests_hit_by(tenant_id, [a.id for a in advisories])
        )
    return sorted(candidates)


def rematch_all(services: SecurityServices, tenant_id: uuid.UUID) -> list[str]:
    """Match every stored SBOM against the feed again; returns the digests whose matches
    changed."""
    with services.uow(read_only=True) as uow:
        digests = uow.sboms.digests(tenant_id)
    return rematch(services, tenant_id, digests)


def rematch(services: SecurityServices, tenant_id: uuid.UUID, digests: list[str]) -> list[str]:
    """Match the SBOMs of `digests` against the feed again; returns those whose matches
    changed."""
    changed = []
    with services.uow() as uow:
        matcher = services.matcher(uow, tenant_id)
        for digest in digests:
            found = _match(matcher, uow.sboms.components(tenant_id, digest))
            before = uow.advisory_matches.for_digests(tenant_id, [digest]).get(digest, [])
            if _keys(before) != _keys(found):
                uow.advisory_matches.replace(tenant_id, digest, found)
                changed.append(digest)
        uow.commit()
    return changed


def _keys(findings: list[Finding]) -> set[tuple[str, str, str | None]]:
    return {(f.advisory_id, f.purl or f.package, f.severity) for f in findings}


# --- verdicts -----------------------------------------------------------------------------------


def reevaluate(
    services: SecurityServices, tenant_id: uuid.UUID, digests: list[str], cause: str
) -> list[dict[str, Any]]:
    """Recompute the verdict of `digests` in every active environment; record those that
    changed (old and new), tell the world, and gate open promotions of affected releases again."""
    digests = sorted(set(digests))  # a digest named twice is still evaluated (recorded) once
    if not digests:
        return []
    now = services.clock()
    system = system_context(tenant_id, services.clock, "security")
    changes: list[dict[str, Any]] = []
    changed: dict[str, set[uuid.UUID]] = {}  # digest -> environments whose verdict changed
    with services.uow() as uow:
        environments = [e for e in uow.environments.all(tenant_id) if str(e.state) == "active"]
        latest = uow.security_verdicts.latest(tenant_id, digests)
        for environment in environments:
            context = security_context(uow, tenant_id, environment, digests, now)
            for digest in digests:
                verdict = verdict_from_context(context, digest, now)
                previous = latest.get((digest, environment.id))
                blocking = sorted({b["advisory_id"] for b in verdict.blocking})
                if previous is not None and (previous["state"], previous["blocking"]) == (
                    verdict.state,
                    blocking,
                ):
                    continue
                values = {
                    "id": new_id(),
                    "tenant_id": tenant_id,
                    "digest": digest,
                    "environment_id": environment.id,
                    "state": verdict.state,
                    "reason": verdict.reason,
                    "blocking": blocking,
                    "previous_state": None if previous is None else previous["state"],
                    "previous_blocking": None if previous is None else previous["blocking"],
                    "cause": cause[:255],
                    "computed_at": now,
                }
                uow.security_verdicts.add(values)
                if previous is None and verdict.state == "pass":
                    continue  # a first, clean verdict is recorded but is no news
                change = {
                    "digest": digest,
                    "environment": environment.slug,
                    "old": values["previous_state"],
                    "new": verdict.state,
                    "old_blocking": values["previous_blocking"],
                    "new_blocking": blocking,
                    "reason": verdict.reason,
                    "cause": cause,
                }
                changes.append(change)
                changed.setdefault(digest, set()).add(environment.id)
        # the releases of every changed digest: named in the audit events, and gated again
        releases = (
            uow.security_verdicts.releases_containing(tenant_id, sorted(changed)) if changed else []
        )
        if changes:
            for change in changes:
                change["releases"] = [
                    f"{r['name']}@{r['version']}"
                    for r in releases
                    if r["digest"] == change["digest"]
                ]
                record(uow, system, "release.verdict_changed", "digest", change["digest"], change)
                services.metrics.verdict_changed(change["environment"], change["new"])
        open_promotions = _open_promotions(uow, tenant_id, changed, releases)
        uow.commit()
    for promotion_id in open_promotions:
        if services.regate is not None:
            try:
                services.regate(system, promotion_id)
            except Exception:
                log.exception("re-gating promotion %s failed", promotion_id)
    if changes and services.notify is not None:
        services.notify({"event": "release_verdict_changed", "changes": changes})
    return changes


def verdict_from_context(context: dict[str, Any], digest: str, now: datetime) -> Any:
    """The verdict of `digest` from a recorded security context (what the gate does too)."""
    from stella.domain.security import SecurityPolicy, Waiver

    entry = context["digests"].get(digest) or {"findings": [], "vex": [], "evidence_at": None}
    waivers = [
        Waiver(**{**w, "expires_at": datetime.fromisoformat(w["expires_at"])})
        for w in context["waivers"]
    ]
    return evaluate_verdict(
        digest,
        [Finding.from_json(f) for f in entry["findings"]],
        [VexStatement.from_json(s) for s in entry["vex"]],
        waivers,
        SecurityPolicy.from_json(context["policy"]),
        context["environment"],
        now,
        datetime.fromisoformat(entry["evidence_at"]) if entry["evidence_at"] else None,
        context.get("vex_rules", 1),  # contexts recorded before the rules were versioned: 1
    )


def _open_promotions(
    uow: UnitOfWork,
    tenant_id: uuid.UUID,
    changed: dict[str, set[uuid.UUID]],
    releases: list[dict[str, Any]],
) -> list[str]:
    """The open promotions a verdict change concerns: those of a release containing a changed
    digest into an environment where its verdict changed (the gate of any other environment
    reads the same verdicts as before, so evaluating it again would only repeat its evidence).

    Read page by page (`PROMOTION_PAGE` rows a query) until the last: the keyset cursor
    always advances, so every one is found and the loop ends."""
    into: set[tuple[uuid.UUID, uuid.UUID]] = {
        (r["id"], environment_id) for r in releases for environment_id in changed[r["digest"]]
    }
    found: list[str] = []
    for release_id, environment_id in sorted(into, key=str):
        for state in OPEN_STATES:
            request: PageRequest | None = PageRequest(limit=PROMOTION_PAGE)
            while request is not None:
                page = uow.promotions.page(tenant_id, request, environment_id, state, release_id)
                found.extend(str(p.id) for p in page.items)
                request = (
                    PageRequest.from_query(page.next_cursor, PROMOTION_PAGE)
                    if page.next_cursor
                    else None
                )
    return found


# --- exposure -----------------------------------------------------------------------------------


def exposure(uow_factory: UnitOfWorkFactory, ctx: CallContext, advisory: str) -> dict[str, Any]:
    """Which environments and targets run an image affected by `advisory` now (findings not
    suppressed by VEX), and which releases contain an affected image."""
    require(ctx, Permission.READ, uow_factory, "read exposure")
    if not advisory or len(advisory) > 128:
        raise ValidationFailed.single("advisory", "give an advisory id such as CVE-2026-1234")
    tenant_id = ctx.principal.tenant_id
    now = ctx.clock()
    with uow_factory(read_only=True) as uow:
        aliases = uow.advisories.ids_for(tenant_id, advisory)
        ids = set(aliases) | {advisory}
        running = _running(uow, tenant_id)
        digests = sorted({d for entry in running for d in entry["digests"]})
        hit = set(uow.advisory_matches.digests_hit_by(tenant_id, sorted(ids)))
        findings = findings_for(uow, tenant_id, digests)
        statements = uow.vex.for_ids(tenant_id, ids)
        affected: dict[str, list[dict[str, Any]]] = {}
        for digest in digests:
            relevant = [f for f in findings[digest] if f.ids & ids]
            if not relevant:
                continue
            from stella.domain.security import applicable_vex

            open_findings = []
            for finding in relevant:
                statement = applicable_vex(statements, digest, finding)
                if statement is None or statement.status not in ("not_affected", "fixed"):
                    open_findings.append(finding)
            if open_findings:
                affected[digest] = [
                    {
                        "package": f.package,
                        "installed_version": f.installed_version,
                        "fixed_version": f.fixed_version,
                        "severity": f.severity,
                    }
                    for f in open_findings
                ]
        all_hit = sorted(hit | set(affected))
        releases = uow.security_verdicts.releases_containing(tenant_id, all_hit)
    environments = []
    for entry in running:
        exposed = [d for d in entry["digests"] if d in affected]
        if exposed:
            environments.append(
                {
                    "environment": entry["environment"],
                    "release": entry["release"],
                    "targets": entry["targets"],
                    "digests": [{"digest": d, "findings": affected[d]} for d in exposed],
                }
            )
    return {
        "advisory": advisory,
        "ids": sorted(ids),
        "known": bool(aliases),
        "checked_at": now.isoformat(),
        "environments": environments,
        "releases": [
            {"id": str(r["id"]), "name": r["name"], "version": r["version"], "digest": r["digest"]}
            for r in releases
        ],
    }


def _running(uow: UnitOfWork, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    """What runs in each environment now: per target, the release of its last successful
    deployment; an environment without deployed targets counts its newest deployed (or
    approved) promotion."""
    from stella.services.targets import environment_targets

    found = []
    for environment in uow.environments.all(tenant_id):
        by_release: dict[uuid.UUID, list[str]] = {}
        for target in environment_targets(uow, tenant_id, environment.id):
            job = uow.jobs.last_succeeded(target.id)
            if job is not None:
                by_release.setdefault(job.release_id, []).append(target.name)
        if not by_release:
            for state in ("deployed", "approved"):
                page = uow.promotions.page(
                    tenant_id, PageRequest(limit=1), environment.id, state, None
                )
                if page.items:
                    by_release[page.items[0].release_id] = []
                    break
        for release_id, targets in by_release.items():
            release = uow.releases.get(tenant_id, str(release_id))
            if release is None:
                continue
            found.append(
                {
                    "environment": environment.slug,
                    "release": f"{release.name}@{release.version}",
                    "targets": sorted(targets),
                    "digests": [c.digest for c in release.components],
                }
            )
    return found


# --- waivers ------------------------------------------------------------------------------------


def create_waiver(
    services: SecurityServices,
    ctx: CallContext,
    advisory_id: str,
    package: str,
    reason: str,
    expires_at: datetime,
    environment: str | None,
) -> dict[str, Any]:
    """An explicit, expiring exception for one advisory on one package (admins only); the
    verdicts of the images it covers are recomputed."""
    require(ctx, Permission.ADMINISTER, services.uow, "create waivers")
    now = ctx.clock()
    tenant_id = ctx.principal.tenant_id
    if expires_at <= now:
        raise ValidationFailed.single("expires_at", "must be in the future")
    with services.uow() as uow:
        if environment is not None and uow.environments.get(tenant_id, environment) is None:
            raise ValidationFailed.single("environment", f"environment '{environment}' not found")
        values = {
            "id": new_id(),
            "tenant_id": tenant_id,
            "advisory_id": advisory_id,
            "package": package,
            "environment": environment,
            "reason": reason,
            "expires_at": expires_at,
            "created_at": now,
            "created_by_name": ctx.principal.name,
            "revoked_at": None,
        }
        uow.waivers.add(values)
        details = {
            "advisory_id": advisory_id,
            "package": package,
            "environment": environment,
            "reason": reason,
            "expires_at": expires_at.isoformat(),
        }
        record(uow, ctx, "waiver.created", "waiver", values["id"], details)
        uow.commit()
    reevaluate(services, tenant_id, _digests_with(services, tenant_id, advisory_id), "waiver")
    return values


def _digests_with(services: SecurityServices, tenant_id: uuid.UUID, advisory: str) -> list[str]:
    with services.uow(read_only=True) as uow:
        ids = set(uow.advisories.ids_for(tenant_id, advisory)) | {advisory}
        return uow.advisory_matches.digests_hit_by(tenant_id, sorted(ids))


def revoke_waiver(services: SecurityServices, ctx: CallContext, ref: str) -> dict[str, Any]:
    require(ctx, Permission.ADMINISTER, services.uow, "revoke waivers")
    tenant_id = ctx.principal.tenant_id
    try:
        waiver_id = uuid.UUID(ref)
    except ValueError:
        msg = f"waiver '{ref}' not found"
        raise NotFound(msg) from None
    with services.uow() as uow:
        found = uow.waivers.get(tenant_id, waiver_id)
        if found is None:
            msg = f"waiver '{ref}' not found"
            raise NotFound(msg)
        uow.waivers.revoke(waiver_id, ctx.clock())
        record(
            uow, ctx, "waiver.revoked", "waiver", waiver_id, {"advisory_id": found["advisory_id"]}
        )
        uow.commit()
        revoked = uow.waivers.get(tenant_id, waiver_id)
    assert revoked is not None  # noqa: S101 - just read in the same transaction
    reevaluate(
        services,
        tenant_id,
        _digests_with(services, tenant_id, found["advisory_id"]),
        "waiver revoked",
    )
    return revoked


def expire_waivers(services: SecurityServices, limit: int = 100) -> int:
    """Waivers that ran out since the last pass: each is claimed by one worker, audited as
    `waiver.expired`, and the verdicts it covered are recomputed (history, metric, webhook and
    open promotions gated again), exactly as when a waiver is revoked. A re-evaluation that
    fails hands the claim back, so the next pass tries again. Returns how many it handled."""
    now = services.clock()
    with services.uow(read_only=True) as uow:
        expired = uow.waivers.expired_unhandled(now, limit)
    handled = 0
    for waiver in expired:
        tenant_id = waiver["tenant_id"]
        with services.uow() as uow:
            if not uow.waivers.claim_expiry(waiver["id"], now):
                continue  # another worker has it
            uow.commit()
        try:
            digests = _digests_with(services, tenant_id, waiver["advisory_id"])
            reevaluate(services, tenant_id, digests, "waiver expired")
        except Exception:
            with services.uow() as uow:
                uow.waivers.release_expiry(waiver["id"])
                uow.commit()
            raise
        with services.uow() as uow:  # audited once, when handled
            system = system_context(tenant_id, services.clock, "security")
            details = {"advisory_id": waiver["advisory_id"], "package": waiver["package"]}
            record(uow, system, "waiver.expired", "waiver", waiver["id"], details)
            uow.commit()
        handled += 1
    return handled


def verdicts_now(services: SecurityServices, ctx: CallContext, digest: str) -> dict[str, Any]:
    """The digest's verdict in every active environment as the gate would compute it now, and
    the recorded history of its changes."""
    require(ctx, Permission.READ, services.uow, "read verdicts")
    tenant_id = ctx.principal.tenant_id
    now = ctx.clock()
    with services.uow(read_only=True) as uow:
        current = []
        for environment in uow.environments.all(tenant_id):
            context = security_context(uow, tenant_id, environment, [digest], now)
            verdict = verdict_from_context(context, digest, now)
            current.append({"environment": environment.slug} | verdict.to_json())
        history = uow.security_verdicts.history(tenant_id, digest, 100)
        environments = {e.id: e.slug for e in uow.environments.all(tenant_id)}
    return {
        "digest": digest,
        "verdicts": current,
        "history": [
            {
                "environment": environments.get(h["environment_id"]),
                "state": h["state"],
                "previous_state": h["previous_state"],
                "blocking": h["blocking"],
                "previous_blocking": h["previous_blocking"],
                "reason": h["reason"],
                "cause": h["cause"],
                "computed_at": h["computed_at"].isoformat(),
            }
            for h in history
        ],
    }
