"""Ports the security use cases need: SBOM components, VEX, advisories, matches, waivers,
verdict history, and the advisory matcher."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, Protocol

from stella.domain.security import Advisory, Component, Finding, VexStatement, Waiver


class SbomRepository(Protocol):
    def replace(
        self,
        tenant_id: uuid.UUID,
        digest: str,
        attachment_digest: str,
        components: list[Component],
    ) -> None: ...
    def components(self, tenant_id: uuid.UUID, digest: str) -> list[Component]: ...
    def digests(self, tenant_id: uuid.UUID) -> list[str]: ...
    def digests_with_packages(
        self, tenant_id: uuid.UUID, packages: set[tuple[str, str]]
    ) -> list[str]: ...
    def evidence_times(self, tenant_id: uuid.UUID, digests: list[str]) -> dict[str, datetime]: ...


class VexRepository(Protocol):
    def ingested(self, tenant_id: uuid.UUID, attachment_digest: str) -> bool: ...
    def add(
        self,
        tenant_id: uuid.UUID,
        attachment_digest: str,
        statements: list[VexStatement],
        now: datetime,
    ) -> None: ...
    def for_ids(self, tenant_id: uuid.UUID, ids: set[str]) -> list[VexStatement]: ...


class AdvisoryRepository(Protocol):
    def upsert(
        self, tenant_id: uuid.UUID, advisory: Advisory, digest: str, now: datetime
    ) -> str: ...
    def get(self, tenant_id: uuid.UUID, advisory_id: str) -> Advisory | None: ...
    def ids_for(self, tenant_id: uuid.UUID, any_id: str) -> list[str]: ...
    def all(self, tenant_id: uuid.UUID, batch: int = 2000) -> Iterator[Advisory]: ...
    def stamp(self, tenant_id: uuid.UUID) -> tuple[int, str]: ...


class AdvisoryMatchRepository(Protocol):
    def replace(self, tenant_id: uuid.UUID, digest: str, findings: list[Finding]) -> None: ...
    def for_digests(self, tenant_id: uuid.UUID, digests: list[str]) -> dict[str, list[Finding]]: ...
    def digests_hit_by(self, tenant_id: uuid.UUID, advisory_ids: list[str]) -> list[str]: ...


class WaiverRepository(Protocol):
    def add(self, values: dict[str, Any]) -> None: ...
    def get(self, tenant_id: uuid.UUID, waiver_id: uuid.UUID) -> dict[str, Any] | None: ...
    def revoke(self, waiver_id: uuid.UUID, now: datetime) -> None: ...
    def listed(
        self, tenant_id: uuid.UUID, include_inactive: bool = False
    ) -> list[dict[str, Any]]: ...
    def active(self, tenant_id: uuid.UUID, now: datetime) -> list[Waiver]: ...


class SecurityVerdictRepository(Protocol):
    def add(self, values: dict[str, Any]) -> None: ...
    def latest(
        self, tenant_id: uuid.UUID, digests: list[str]
    ) -> dict[tuple[str, uuid.UUID], dict[str, Any]]: ...
    def history(
        self, tenant_id: uuid.UUID, digest: str | None, limit: int
    ) -> list[dict[str, Any]]: ...
    def releases_containing(
        self, tenant_id: uuid.UUID, digests: list[str]
    ) -> list[dict[str, Any]]: ...


class Matcher(Protocol):
    """Matches SBOM components against an advisory feed (the adapter uses `univers`)."""

    def match(self, component: Component) -> list[Finding]: ...


MatcherFactory = Callable[[Iterable[Advisory]], Matcher]
